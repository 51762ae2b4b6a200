"""Stopped politely, never losing work (core/launch.py): real signals to real processes.

- `dvc repro train` sent SIGTERM at random steps: to its whole process group (SLURM, Ctrl-C), to DVC's process
  alone (DVC dies at once; the stage gets SIGTERM from its parent's death), and to the group of a DVC that ignores
  SIGTERM (the scheduler recipe of docs/distributed.md): each time the stage saves the state at the step it stopped
  at and says so, DVC records nothing, `dvc repro` continues from that very step, and the final checkpoint has the
  bytes of an uninterrupted run.
- Two torchrun processes: SIGTERM to one worker stops both at the same step (rank 0 saves); `kill -9` of a worker
  ends the run in seconds, and the next run resumes from the last saved state.
- A sampling stage stopped mid-way keeps its previous outputs; a stop in an atomic write removes the temp file,
  and a second signal changes nothing; a second signal during the state save leaves a complete state.
- A write past the disk's room (RLIMIT_FSIZE: the kernel refuses it with EFBIG) fails in one line naming the
  file, with the previous state intact and no temp file.

Every training here is a tiny U-Net on 64 random 8×8 images: 8 steps an epoch, about 25 ms a step.
"""
import contextlib
import fcntl
import json
import os
import pty
import random
import re
import resource
import select
import shutil
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from helpers import REDUCED_UNET, ROOT, TINY_UNET, diffusion_cfg, model_cfg, train_cfg

from diffpipe.core import launch
from diffpipe.diffusion import train_state
from diffpipe.diffusion.checkpoint import save_checkpoint
from diffpipe.diffusion.training import train

LAUNCH = ROOT / "scripts" / "launch.py"
EPOCHS, STEPS_PER_EPOCH = 4, 8
STOP = re.compile(r"^train: stopped by (SIG\w+) at step (\d+); state saved, re-run to continue$", re.M)
TRAIN_OUTPUTS = ["--data", "data/train.npy", "--params", "params.yaml", "--state", "models/train_state",
                 "--checkpoint", "models/checkpoint.pt", "--live", "dvclive/train", "--report", "reports/train.json",
                 "--cost", "costs/train.json", "--loss-plot", "plots/loss.png"]
DVC_YAML = f"""stages:
  train:
    cmd: >-
      python scripts/launch.py --processes ${{train.processes}} --share-cores stages/train.py
      {' '.join(TRAIN_OUTPUTS)}
    deps: [data/train.npy, stages/train.py, scripts/launch.py, src/diffpipe]
    params: [diffusion, model, train]
    outs:
      - models/train_state:
          persist: true
      - models/checkpoint.pt
    metrics:
      - dvclive/train/metrics.json:
          cache: false
          persist: true
"""


def write_tiny_run(dest: Path, **train) -> None:
    """params.yaml (the root file with a tiny U-Net, 50 timesteps and `train` overrides) and data/train.npy."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["model"].update(num_classes=0, unet={**REDUCED_UNET, **TINY_UNET, "attn_down": [False, False],
                                                "attn_up": [False, False], "attn_mid": False})
    params["diffusion"]["num_timesteps"] = 50
    params["train"].update(dict(epochs=EPOCHS, batch_size=8, grid_images=0, checkpoint_every=1000, log_every=1,
                                lr=1e-3, lr_schedule="constant", warmup_steps=0, device="cpu", processes=1), **train)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (dest / "data").mkdir(exist_ok=True)
    np.save(dest / "data" / "train.npy", np.random.default_rng(0).integers(0, 256, (64, 1, 8, 8), dtype=np.uint8))


def environment() -> dict:
    # one thread: steady step times on a busy machine, and the same bytes in every run
    return dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", OMP_NUM_THREADS="1")


def logged_step(dest: Path) -> int:
    """The step of the DVCLive summary (rewritten at every logged step), -1 before the first."""
    try:
        return json.loads((dest / "dvclive" / "train" / "metrics.json").read_text())["step"]
    except (OSError, ValueError, KeyError):
        return -1


def interrupt(cmd: list, cwd: Path, env: dict, step: int, send) -> tuple[str, int, float, int]:
    """Start `cmd` in a new session; once training has logged `step`, call `send(proc)`. Returns the output of the
    command and of its stage (read to its end: the stage may outlive DVC), the step logged when the signal was
    sent, the seconds from the signal to the end, and the command's exit status."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        deadline = time.time() + 120
        while logged_step(cwd) < step and proc.poll() is None and time.time() < deadline:
            time.sleep(0.002)
        assert proc.poll() is None, f"{cmd} ended before step {step}:\n{proc.stdout.read()}"
        at, start = logged_step(cwd), time.perf_counter()
        send(proc)
        out = proc.stdout.read()  # to the end of the output: every process writing it has ended
        return out, at, time.perf_counter() - start, proc.wait(timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # whatever is left of the session, if the test failed


def stopped_at(out: str, name: str = "SIGTERM") -> int:
    lines = STOP.findall(out)
    assert len(lines) == 1 and lines[0][0] == name, out[-3000:]
    return int(lines[0][1])


def saved_step(state_dir: Path) -> int:
    assert [p.name for p in state_dir.iterdir()] == ["state.pt"]  # and no temp file
    return torch.load(state_dir / "state.pt", weights_only=True)["step"]


def run(cmd: list, cwd: Path, env: dict) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A git + DVC repository whose pipeline is the train stage alone, on the tiny run; trained once, uninterrupted,
    by `dvc exp run` (which starts the stage so that its parent-death signal does not fire early: it runs to the
    end): (its folder, the environment, the md5 of that run's checkpoint)."""
    dest = tmp_path_factory.mktemp("signals")
    shutil.copytree(ROOT / "src" / "diffpipe", dest / "src" / "diffpipe", ignore=shutil.ignore_patterns("__pycache__"))
    for script in ("scripts/launch.py", "stages/train.py"):
        (dest / script).parent.mkdir(exist_ok=True)
        shutil.copy2(ROOT / script, dest / script)
    write_tiny_run(dest)
    (dest / "dvc.yaml").write_text(DVC_YAML)
    env = environment()
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "tiny train"],
                ["dvc", "exp", "run", "train"]):
        run(cmd, dest, env)
    shutil.copytree(dest / "models" / "train_state", dest / "finished_state")  # for the full-disk test
    return dest, env, md5(dest / "models" / "checkpoint.pt")


def md5(path: Path) -> str:
    import hashlib

    return hashlib.md5(path.read_bytes()).hexdigest()


def test_sigterm_to_dvc_repro_saves_the_step_and_the_rerun_continues_to_the_same_bytes(repo):
    """DVC runs the cmd as `$SHELL -c CMD`; here /bin/sh, Debian's dash (DVC's shell where SHELL is unset), which
    stays between DVC and the stage (bash replaces itself with the stage: tests/test_launch.py checks both)."""
    dest, env, uninterrupted = repo
    env = dict(env, SHELL="/bin/sh")
    rng = random.Random()
    state = dest / "models" / "train_state"
    shutil.rmtree(state)
    shutil.rmtree(dest / "dvclive")
    (dest / "models" / "checkpoint.pt").unlink()
    lock = (dest / "dvc.lock").read_text()  # the uninterrupted run's

    # 1. SIGTERM to every process of `dvc repro` (its process group: SLURM, or a terminal's Ctrl-C): DVC dies, the
    # stage finishes its step, saves and says so; DVC records nothing
    first = rng.randint(2, 8)
    out, at, seconds, code = interrupt(["dvc", "repro", "train"], dest, env, first,
                                       lambda p: os.killpg(p.pid, signal.SIGTERM))
    stop1 = stopped_at(out)
    print(f"group SIGTERM at logged step {at}: stopped at step {stop1}, {seconds:.2f} s after the signal")
    assert code != 0 and first <= at <= stop1 <= at + 2 and saved_step(state) == stop1
    assert not (dest / "models" / "checkpoint.pt").exists() and (dest / "dvc.lock").read_text() == lock  # no record

    # 2. the re-run continues from that very step (no step repeated: fewer than train.checkpoint_every); SIGTERM to
    # DVC's process alone: DVC dies at once, and the stage gets SIGTERM from its parent's death (PR_SET_PDEATHSIG)
    # instead of running on unrecorded
    second = rng.randint(stop1 + 3, 16)
    out, at, seconds, code = interrupt(["dvc", "repro", "train"], dest, env, second,
                                       lambda p: os.kill(p.pid, signal.SIGTERM))
    assert f"train: resuming from step {stop1} " in out, out[-3000:]
    stop2 = stopped_at(out)
    print(f"SIGTERM to DVC alone at logged step {at}: stopped at step {stop2}, {seconds:.2f} s after the signal")
    assert code == -signal.SIGTERM and second <= at <= stop2 <= at + 2 and saved_step(state) == stop2
    assert not (dest / "models" / "checkpoint.pt").exists() and (dest / "dvc.lock").read_text() == lock

    # 3. as docs/distributed.md runs it under a scheduler: DVC started ignoring SIGTERM, the signal to the group
    # (`tini -g`, a batch script's trap): DVC waits for its stage, which stops, and fails as for any failed stage
    third = rng.randint(stop2 + 3, EPOCHS * STEPS_PER_EPOCH - 6)
    out, at, seconds, code = interrupt(["sh", "-c", "trap '' TERM; exec dvc repro train"], dest, env, third,
                                       lambda p: os.killpg(p.pid, signal.SIGTERM))
    assert f"train: resuming from step {stop2} " in out, out[-3000:]
    stop3 = stopped_at(out)
    print(f"group SIGTERM, DVC ignoring it, at logged step {at}: stopped at step {stop3}, {seconds:.2f} s after")
    assert code > 0 and "exited with 143" in out and third <= at <= stop3 <= at + 2 and saved_step(state) == stop3
    assert not (dest / "models" / "checkpoint.pt").exists() and (dest / "dvc.lock").read_text() == lock

    # 4. `dvc repro` continues from there to the end, with the uninterrupted run's bytes. (Not `dvc exp run`: it
    # first checks out the outputs dvc.lock records, and so would replace the saved state with the recorded one.)
    out = run(["dvc", "repro", "train"], dest, env)
    assert f"train: resuming from step {stop3} " in out and "stopped" not in out, out[-3000:]
    assert md5(dest / "models" / "checkpoint.pt") == uninterrupted


def workers(agent: int) -> dict[int, int]:
    """{rank: pid} of a torchrun agent's workers."""
    pids = [int(p) for p in Path(f"/proc/{agent}/task/{agent}/children").read_text().split()]
    ranks = {}
    for pid in pids:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        ranks[int(next(e for e in env if e.startswith(b"RANK="))[5:])] = pid
    return ranks


def test_two_processes_stop_at_one_step_and_a_dead_rank_ends_the_run(tmp_path):
    write_tiny_run(tmp_path, processes=2, checkpoint_every=4)
    env, rng = environment(), random.Random()
    cmd = [sys.executable, str(LAUNCH), "--processes", "2", "--share-cores", str(ROOT / "stages" / "train.py"),
           *TRAIN_OUTPUTS]
    state = tmp_path / "models" / "train_state"

    # SIGTERM to rank 1 alone: the ranks agree on the step, rank 0 saves it and says so (rank 1 says nothing)
    first = rng.randint(2, 10)
    out, at, seconds, code = interrupt(cmd, tmp_path, env, first, lambda p: os.kill(workers(p.pid)[1], signal.SIGTERM))
    stop = stopped_at(out)
    print(f"SIGTERM to rank 1 at logged step {at}: both stopped at step {stop}, {seconds:.2f} s after the signal")
    assert code != 0 and first <= at <= stop <= at + 2 and saved_step(state) == stop

    # kill -9 of rank 1: rank 0's next collective fails at once, torchrun ends the run; the periodic state is kept
    second = rng.randint(stop + 2, EPOCHS * STEPS_PER_EPOCH - 6)
    out, at, seconds, code = interrupt(cmd, tmp_path, env, second, lambda p: os.kill(workers(p.pid)[1], signal.SIGKILL))
    print(f"kill -9 of rank 1 at logged step {at}: the run ended {seconds:.2f} s later")
    assert f"train: resuming from step {stop} " in out and code != 0, out[-3000:]
    assert seconds < 30  # measured: 2 s (the survivor's gloo collective fails on the broken connection)
    kept = saved_step(state)
    lost = re.search(r"^error: train: another process of the run is gone \(.+\) at step (\d+); the last state "
                     r"saved \(step (\d+)\) is kept in models/train_state, re-run to continue$", out, re.M)
    assert lost and int(lost.group(2)) == kept and stop <= kept <= int(lost.group(1)), out[-3000:]

    out = run(cmd, tmp_path, env)
    assert f"train: resuming from step {kept} " in out
    assert json.loads((tmp_path / "reports" / "train.json").read_text())["steps"] == EPOCHS * STEPS_PER_EPOCH


def on_a_terminal(cmd: list, signal_after: bytes | None = None) -> tuple[bytes, int]:
    """Run `cmd` on a terminal (120 columns, so progress bars show); with `signal_after`, send it SIGTERM once its
    output holds those bytes. -> (everything it wrote, its exit status)."""
    master, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=terminal, stderr=terminal, env=environment())
    os.close(terminal)
    seen = b""
    try:
        while signal_after is not None and signal_after not in seen:
            assert select.select([master], [], [], 60)[0], seen
            seen += os.read(master, 4096)  # (an OSError when the process ended before)
        if signal_after is not None:
            proc.send_signal(signal.SIGTERM)
        while select.select([master], [], [], 60)[0]:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the terminal's other side closed
                break
            if not chunk:
                break
            seen += chunk
        return seen, proc.wait(timeout=60)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()


def test_a_sampling_stage_stopped_mid_way_keeps_its_previous_outputs(tmp_path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["sample"].update(num_images=300, steps=50, batch_size=100, device="cpu", grid_images=4, process_seeds=1,
                            process_frames=2, strip_columns=2)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = tmp_path / "out"
    out.mkdir()
    outputs = {"--out": "samples.npy", "--labels-out": "labels.npy", "--grid": "grid.png", "--report": "sample.json",
               "--cost": "cost.json", "--process-gif": "process.gif", "--process-strip": "strip.png"}
    for name in outputs.values():
        (out / name).write_bytes(b"the previous run's")
    cmd = [sys.executable, str(LAUNCH), str(ROOT / "stages" / "sample.py"), "--checkpoint",
           str(ROOT / "tests" / "fixtures" / "tiny_unet.pt"), "--params", str(tmp_path / "params.yaml"),
           *[a for flag, name in outputs.items() for a in (flag, str(out / name))]]
    seen, code = on_a_terminal(cmd, signal_after=b"sampling")  # its progress bar shows sampling has begun
    assert code == 128 + signal.SIGTERM
    # the progress bar ended, then the line
    tail = seen.decode(errors="replace")[-200:]
    assert tail.endswith("\r\nsample: stopped by SIGTERM; previous outputs kept\r\n"), tail
    assert sorted(p.name for p in out.iterdir()) == sorted(outputs.values())  # no temp file
    assert all((out / name).read_bytes() == b"the previous run's" for name in outputs.values())


BAR = """import os, signal
import tqdm
from diffpipe.core.cli import run_main
from diffpipe.core.progress import progress_bar

drawn = tqdm.tqdm.refresh
def refresh(bar, *args, **kwargs):  # the stop arrives while tqdm draws the new bar, in its __init__
    os.kill(os.getpid(), signal.SIGTERM)
    return drawn(bar, *args, **kwargs)
tqdm.tqdm.refresh = refresh

def main():
    with progress_bar(desc="work", total=10) as bar:
        print("not reached", flush=True)
run_main(main)
"""


def test_a_stop_while_a_progress_bar_is_drawn_ends_its_line_first(tmp_path):
    """On a terminal, a SIGTERM while tqdm draws a new bar (before the bar exists for a `with` to close) still
    ends the bar's line before the stop line."""
    script = tmp_path / "stage.py"
    script.write_text(BAR)
    seen, code = on_a_terminal([sys.executable, str(LAUNCH), str(script)])
    assert code == 128 + signal.SIGTERM
    out = seen.decode(errors="replace")
    assert "work:" in out and "not reached" not in out, out
    assert out.endswith("\r\nstage: stopped by SIGTERM; previous outputs kept\r\n"), out

WRITER = """import sys, time
from diffpipe.core import files
from diffpipe.core.cli import run_main

def main():
    with files.atomic_path(sys.argv[1]) as tmp:
        tmp.write_text("half of the new")
        print("writing", flush=True)
        time.sleep(60)

run_main(main)
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGUSR1])
def test_a_stop_in_an_atomic_write_removes_the_temp_and_a_second_signal_changes_nothing(tmp_path, sig):
    (tmp_path / "writer.py").write_text(WRITER)
    target = tmp_path / "out.json"
    target.write_text("old")
    proc = subprocess.Popen([sys.executable, str(LAUNCH), str(tmp_path / "writer.py"), str(target)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "writing\n"
    proc.send_signal(sig)
    time.sleep(0.01)
    proc.send_signal(sig)
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode == 128 + sig
    assert err.splitlines() == [f"writer: stopped by {signal.Signals(sig).name}; previous outputs kept"]
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.json", "writer.py"]


def test_a_second_signal_during_the_state_save_leaves_a_complete_state(tmp_path, monkeypatch):
    """In this process: the handler of every stage, SIGTERM at step 5 (mid-epoch), another one in the middle of the
    save; then the run continued (as a re-run would) ends with an uninterrupted run's bytes."""
    images = np.random.default_rng(0).integers(0, 256, (16, 1, 8, 8), dtype=np.uint8)
    model = model_cfg(**TINY_UNET, attn_down=[False, False], attn_up=[False, False])
    cfg = train_cfg(epochs=3, batch_size=6, checkpoint_every=1000, log_every=1)
    diffusion = diffusion_cfg(num_timesteps=50)
    saves = []

    def save_signalled(path, checkpoint):
        saves.append(checkpoint["step"])
        if launch.stop_requested():
            os.kill(os.getpid(), signal.SIGTERM)  # a second signal, in the middle of the save
        save_checkpoint(path, checkpoint)

    class SignalAtStep5:  # stands for DVCLive, which is called at every logged step
        def start(self, step):
            pass

        def log(self, step, values):
            if step == 5:  # mid-epoch: 3 steps an epoch
                os.kill(os.getpid(), signal.SIGTERM)

    previous = {sig: signal.getsignal(sig) for sig in launch.STOP_SIGNALS}
    monkeypatch.setattr(launch, "_requested", 0)
    monkeypatch.setattr(train_state, "save_checkpoint", save_signalled)
    launch.install_stop_handlers()
    try:
        with pytest.raises(launch.Stopped) as stop:
            train(images, diffusion, model, cfg, state_dir=tmp_path / "state", progress=False, history=SignalAtStep5())
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    assert stop.value.signum == signal.SIGTERM and saves == [3, 5]  # the epoch end, then the stop
    assert stop.value.message == "train: stopped by SIGTERM at step 5; state saved, re-run to continue"
    assert saved_step(tmp_path / "state") == 5

    monkeypatch.setattr(launch, "_requested", 0)
    monkeypatch.setattr(train_state, "save_checkpoint", save_checkpoint)
    resumed = train(images, diffusion, model, cfg, state_dir=tmp_path / "state", progress=False)
    full = train(images, diffusion, model, cfg, progress=False)
    save_checkpoint(tmp_path / "resumed.pt", resumed.checkpoint)
    save_checkpoint(tmp_path / "full.pt", full.checkpoint)
    assert (tmp_path / "resumed.pt").read_bytes() == (tmp_path / "full.pt").read_bytes()


def limit_file_size(size: int):
    """For preexec_fn: the kernel refuses to grow a file past `size` bytes (EFBIG), as a full disk refuses (ENOSPC)."""
    def limited():
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    return limited


def test_a_full_disk_outside_the_atomic_writers_is_one_line_too(tmp_path):
    """As DVCLive appending to its history: run_main words the OSError."""
    (tmp_path / "appender.py").write_text("from diffpipe.core.cli import run_main\n"
                                          "run_main(lambda: open('history.tsv', 'a').write('step\\tloss\\n' * 1000))\n")
    proc = subprocess.run([sys.executable, str(LAUNCH), "appender.py"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60, preexec_fn=limit_file_size(1000))
    assert proc.returncode == 1 and proc.stderr.splitlines() == ["error: could not write (File too large)"]


def test_a_full_disk_fails_the_state_save_in_one_line_and_keeps_the_previous_state(repo, tmp_path):
    """The finished 4-epoch state continued to 5 epochs (a constant learning rate continues) with the file size
    limited to the old state's: the kernel refuses the new state's last bytes (EFBIG), as a full disk would."""
    dest, env, _ = repo
    write_tiny_run(tmp_path, epochs=EPOCHS + 1)
    state = tmp_path / "models" / "train_state"
    shutil.copytree(dest / "finished_state", state)
    before = (state / "state.pt").read_bytes()
    proc = subprocess.run([sys.executable, str(LAUNCH), str(ROOT / "stages" / "train.py"), *TRAIN_OUTPUTS],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
                          preexec_fn=limit_file_size(len(before)))
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert proc.stderr.splitlines()[-1] == "error: models/train_state/state.pt: could not write (File too large)"
    assert (state / "state.pt").read_bytes() == before and [p.name for p in state.iterdir()] == ["state.pt"]
    assert not (tmp_path / "models" / "checkpoint.pt").exists()
