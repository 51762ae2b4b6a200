"""Copy a committed run's numbers at the field's sample size into docs/results/ (read by docs/results.md).

    python scripts/field_results.py EXPERIMENT --out docs/results/NAME.json [--pictures docs/results/NAME]
                                    [--train-costs REVISION]

EXPERIMENT is a `dvc exp` name, an exp ref or any git revision whose evaluation was made at one N for both
sides (scripts/evaluate_at.sh N). Writes the JSON: the run's epochs, N, FID and KID (± std) with their
real-vs-real floors at the same N, precision / recall, the data-copying statistics, the in-domain metrics,
the sampler and its network evaluations per image, and the stages' costs; with --pictures, the run's sample
grid, loss curve and closest-pairs picture. Nothing is computed here: every number is read from the
experiment's own files (`git show`), and the commit is recorded.

The training cost is the whole run's (`train_time_s` of costs/train.json, over every invocation that built
the training state), or null when the file cannot say (written before runs kept their timings, by an
invocation that trained only some epochs). --train-costs REVISION takes it from another revision whose
dvc.lock records the same checkpoint (e.g. the commit of the run that trained it, when the experiment only
re-sampled it).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ablation_table import exp_ref, git  # noqa: E402  (the ablation table's experiment lookup)

EVALUATE_KEYS = ("fid", "fid_floor", "kid_mean", "kid_std", "kid_floor_mean", "kid_floor_std", "precision", "recall",
                 "copy_ct", "copy_close_share", "copy_close_share_held_out")
IN_DOMAIN_KEYS = ("fd_classifier", "fd_classifier_floor", "class_max_deviation", "confident_fraction")
PICTURES = {"samples/grid.png": "grid.png", "plots/loss.png": "loss.png", "plots/copies.png": "copies.png"}


def checkpoint_md5(rev: str) -> str:
    lock = subprocess.run(["git", "show", f"{rev}:dvc.lock"], capture_output=True, text=True)
    if lock.returncode:
        sys.exit(f"error: {rev[:7]} has no dvc.lock, so its checkpoint is unknown")
    for stage in (yaml.safe_load(lock.stdout) or {}).get("stages", {}).values():
        for out in stage.get("outs", []):
            if out.get("path") == "models/checkpoint.pt":
                return out["md5"]
    sys.exit(f"error: {rev[:7]}'s dvc.lock has no models/checkpoint.pt")


def train_costs(rev: str, costs_rev: str) -> dict:
    """The whole run's training time and throughput, read at `costs_rev` (which trained rev's checkpoint)."""
    if costs_rev != rev and checkpoint_md5(costs_rev) != checkpoint_md5(rev):
        sys.exit(f"error: --train-costs {costs_rev[:7]}: its dvc.lock records another models/checkpoint.pt than "
                 f"{rev[:7]}'s, so its training cost is not this checkpoint's")
    train = json.loads(git("show", f"{costs_rev}:costs/train.json"))
    epochs = yaml.safe_load(git("show", f"{costs_rev}:params.yaml"))["train"]["epochs"]
    whole = train.get("train_time_s")
    if whole is None and "train_time_s" not in train and train["epochs_timed"] == epochs:
        whole = train["wall_time_s"]  # an older file whose one invocation trained every epoch
    return {"train_s": whole, "train_last_invocation_s": train["wall_time_s"], "train_img_per_s": train["img_per_s"],
            "train_epoch_img_per_s": train.get("epoch_img_per_s"), "train_costs_commit": costs_rev}


def results(rev: str, costs_rev: str) -> dict:
    show = lambda path: git("show", f"{rev}:{path}")  # noqa: E731
    evaluate = json.loads(show("dvclive/evaluate/metrics.json"))
    report = json.loads(show("reports/evaluate.json"))
    if report["num_real"] != report["num_generated"]:
        sys.exit(f"error: {rev[:7]} was evaluated with {report['num_generated']} generated against "
                 f"{report['num_real']} real images; evaluate both sides at one N (scripts/evaluate_at.sh N)")
    missing = [k for k in EVALUATE_KEYS if k not in evaluate]
    if missing:
        sys.exit(f"error: {rev[:7]}'s dvclive/evaluate/metrics.json lacks {', '.join(missing)}: evaluated by older code")
    params = yaml.safe_load(show("params.yaml"))
    sample = json.loads(show("reports/sample.json"))
    costs = {name: json.loads(show(f"costs/{name}.json")) for name in ("train", "sample", "evaluate")}
    return {
        "commit": rev, "epochs": params["train"]["epochs"], "num_images": report["num_real"],
        **{k: evaluate[k] for k in EVALUATE_KEYS},
        **{k: evaluate[k] for k in IN_DOMAIN_KEYS if k in evaluate},
        "kid_subset_size": report["kid_subset_size"], "kid_subsets": report["kid_subsets"],
        "copy_cells_used": report["data_copying"]["cells_used"],
        "sampler": {k: sample[k] for k in ("sampler", "steps", "eta", "nfe")},
        "costs": {"device": costs["train"]["device"], **train_costs(rev, costs_rev),
                  "sample_s": costs["sample"]["seconds"],
                  "evaluate_feature_s": costs["evaluate"]["feature_s_per_img"] * report["num_generated"]},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("experiment", help="dvc exp name, exp ref or git revision")
    p.add_argument("--out", required=True, help="the JSON to write")
    p.add_argument("--pictures", help="optional folder for the run's grid, loss curve and closest pairs")
    p.add_argument("--train-costs", metavar="REVISION",
                   help="take the training cost from this revision (its dvc.lock must record the same checkpoint)")
    args = p.parse_args()
    rev = git("rev-parse", exp_ref(args.experiment)).strip()
    costs_rev = git("rev-parse", exp_ref(args.train_costs)).strip() if args.train_costs else rev
    found = {"experiment": args.experiment, **results(rev, costs_rev)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(found, indent=2) + "\n")
    if args.pictures:
        Path(args.pictures).mkdir(parents=True, exist_ok=True)
        for src, name in PICTURES.items():
            data = subprocess.run(["git", "show", f"{rev}:{src}"], capture_output=True, check=True).stdout
            (Path(args.pictures) / name).write_bytes(data)
    print(json.dumps(found, indent=2))


if __name__ == "__main__":
    main()
