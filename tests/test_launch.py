"""scripts/launch.py, the one way every stage starts: 1 process runs the script in place (its argv, `__main__`,
its own folder then this tree's `src` first on sys.path, its exit status); N processes run it under a real
torchrun whose workers get the same import path, MKL_DYNAMIC and their thread count; bad arguments are one line."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import ROOT

LAUNCH = ROOT / "scripts" / "launch.py"
SRC = ROOT / "src"

PROBE = """import json, os, sys
import torch
import diffpipe
print(json.dumps({"name": __name__, "argv": sys.argv[1:], "path": sys.path[:2], "ppid": os.getppid(),
                  "rank": os.environ.get("RANK"), "mkl_dynamic": os.environ.get("MKL_DYNAMIC"),
                  "omp": os.environ.get("OMP_NUM_THREADS"), "threads": torch.get_num_threads(),
                  "package": diffpipe.__file__}))
sys.exit(int(os.environ.get("EXIT", "0")))
"""


def launch(*args, env=None):
    return subprocess.run([sys.executable, str(LAUNCH), *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)


def test_one_process_runs_the_script_itself_with_this_trees_package(tmp_path):
    script = tmp_path / "stage.py"
    script.write_text(PROBE)
    env = {k: v for k, v in os.environ.items() if k != "MKL_DYNAMIC"}
    proc = subprocess.run([sys.executable, str(LAUNCH), str(script), "--a", "b c"], capture_output=True, text=True,
                          env={**env, "EXIT": "3"}, timeout=120)
    assert proc.returncode == 3, proc.stderr
    out = json.loads(proc.stdout)
    assert out["name"] == "__main__" and out["argv"] == ["--a", "b c"]
    assert out["path"] == [str(tmp_path), str(SRC)]  # as `python stage.py` would, with this tree's src next
    assert out["package"] == str(SRC / "diffpipe" / "__init__.py")
    assert out["ppid"] == os.getpid()  # no launcher process in between: the test started it
    assert out["mkl_dynamic"] == "FALSE" and out["rank"] is None


@pytest.mark.parametrize("share, expected", [(True, 1), (False, 2)])
def test_torchrun_workers_get_the_import_path_and_their_threads(tmp_path, monkeypatch, share, expected):
    """2 workers on a machine given 2 CPUs: sharing gives each 1 thread (training), otherwise each keeps a lone
    process's 2 (sampling, features: a single process's bytes)."""
    script = tmp_path / "stage.py"
    script.write_text(PROBE)
    cpus = ["taskset", "-c", ",".join(map(str, sorted(os.sched_getaffinity(0))[:2]))]
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs 2 CPUs")
    cmd = [*cpus, sys.executable, str(LAUNCH), "--processes", "2", *(["--share-cores"] if share else []),
           str(script), "x"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert sorted(r["rank"] for r in rows) == ["0", "1"]
    for r in rows:
        assert r["argv"] == ["x"] and r["package"] == str(SRC / "diffpipe" / "__init__.py")
        assert r["mkl_dynamic"] == "FALSE" and r["omp"] == str(expected) and r["threads"] == expected


@pytest.mark.parametrize("args, message", [
    (["--processes", "0", "stages/train.py"], "--processes must be a whole number >= 1, got '0'"),
    (["--processes", "two", "stages/train.py"], "--processes must be a whole number >= 1, got 'two'"),
    (["--processes"], "--processes must be a whole number >= 1, got ''"),
    (["--threads", "stages/train.py"], "unknown launcher option '--threads'"),
    ([], "no SCRIPT given"),
])
def test_bad_arguments_are_one_line(args, message):
    proc = launch(*args)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"error: {message}; usage: python scripts/launch.py [--processes N] [--share-cores] SCRIPT [ARGS...]"]


WAITER = """import os, sys, time
print(os.environ.get("DIFFPIPE_RUNNER", "-"), flush=True)
time.sleep(60)
print("ran on", flush=True)
"""


@pytest.mark.parametrize("shell", ["/bin/sh", "/bin/bash"])
def test_the_stage_stops_when_its_runner_dies_behind_a_shell(tmp_path, shell):
    """A runner starts `SHELL -c 'python scripts/launch.py stage.py'`, as DVC does, and is killed: the stage is sent
    SIGTERM and stops. Debian's /bin/sh (dash) stays as the stage's parent and lives on, so there the launcher
    watches the runner itself (named in DIFFPIPE_RUNNER); bash replaces itself with the command."""
    script = tmp_path / "stage.py"
    script.write_text(WAITER)
    runner = ("import subprocess, sys; subprocess.Popen([sys.argv[1], '-c', sys.argv[2]]).wait()")
    cmd = f"{sys.executable} {LAUNCH} {script}"
    env = {k: v for k, v in os.environ.items() if k != "DIFFPIPE_RUNNER"}
    proc = subprocess.Popen([sys.executable, "-c", runner, shell, cmd], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)
    try:
        named = proc.stdout.readline().strip()
        if Path(shell).resolve().name == "dash":
            assert named.split(":")[0] == str(proc.pid)  # the runner, behind the shell
        proc.kill()  # SIGKILL: the runner cannot pass anything on
        proc.wait(timeout=10)
        started = time.perf_counter()
        rest = proc.stdout.read()  # to its end: the stage (and a shell that stayed) have ended
        assert rest.strip().splitlines() == ["stage: stopped by SIGTERM; previous outputs kept"], rest
        assert time.perf_counter() - started < 10
    finally:
        proc.kill()
