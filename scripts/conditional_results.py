"""Copy a committed class-conditional experiment's results into docs/conditional/ (read by docs/conditional.md).

    python scripts/conditional_results.py conditional

reads the experiment's commit (a `dvc exp` name, an exp ref or any git revision) with `git show`, and writes
- docs/conditional/metrics.json: its headline numbers (a DVC metrics file of the root project, so
  `dvc metrics show` lists them beside the default run's): the conditional accuracy at the committed guidance
  scale, FID / KID / precision / recall of the conditional set with their real-vs-real floors, the digit
  classifier's held-out accuracy and the guidance sweep's accuracy and KID per scale;
- docs/conditional/{grid,guidance,process_strip}.png and docs/conditional/sweep.md: its pictures and sweep table;
- docs/conditional/provenance.json: the commit, its params changes against its baseline, and the timings.
Nothing is computed here: every number is read from the experiment's own files.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ablation_table import exp_ref, flat, git  # noqa: E402  (the ablation table's experiment lookup)

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "conditional"
EVALUATE_KEYS = ("cond_accuracy", "fid", "fid_floor", "kid_mean", "kid_std", "kid_floor_mean", "precision", "recall",
                 "fd_classifier", "fd_classifier_floor", "confident_fraction")


def show_bytes(rev: str, path: str) -> bytes:
    return subprocess.run(["git", "show", f"{rev}:{path}"], cwd=ROOT, capture_output=True, check=True).stdout


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("experiment", help="dvc exp name, exp ref or git revision")
    args = p.parse_args()
    rev = git("rev-parse", exp_ref(args.experiment)).strip()
    show = lambda path: git("show", f"{rev}:{path}")  # noqa: E731
    evaluate = json.loads(show("dvclive/evaluate/metrics.json"))
    if "cond_accuracy" not in evaluate:
        sys.exit(f"error: {args.experiment} ({rev[:7]}) has no cond_accuracy: not a class-conditional run")
    sweep = json.loads(show("metrics/sweep.json"))
    params = yaml.safe_load(show("params.yaml"))
    base = yaml.safe_load(git("show", f"{rev}~1:params.yaml"))
    new, old = flat(params), flat(base)
    metrics = {k: evaluate[k] for k in EVALUATE_KEYS}
    metrics["guidance_scale"] = params["sample"]["guidance_scale"]
    metrics["classifier_accuracy"] = json.loads(show("metrics/classifier.json"))["accuracy"]
    metrics["guidance_sweep"] = {name: {k: v[k] for k in ("accuracy", "kid_mean", "fid")}
                                 for name, v in sweep.items() if name.startswith("w")}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    for src, dst in (("samples/grid.png", "grid.png"), ("plots/guidance.png", "guidance.png"),
                     ("samples/process_strip.png", "process_strip.png"), ("reports/sweep.md", "sweep.md")):
        (OUT / dst).write_bytes(show_bytes(rev, src))
    costs = {name: json.loads(show(f"costs/{name}.json")) for name in ("train", "sample", "evaluate", "sweep")}
    provenance = {
        "experiment": args.experiment, "commit": rev, "baseline": git("rev-parse", f"{rev}~1").strip(),
        "params_changed": {k: {"baseline": old.get(k), "experiment": v} for k, v in new.items() if old.get(k) != v},
        "train_s": costs["train"]["wall_time_s"], "train_img_per_s": costs["train"]["img_per_s"],
        "sample_s": costs["sample"]["seconds"], "evaluate_feature_s_per_img": costs["evaluate"]["feature_s_per_img"],
        "sweep_points_s_per_img": {k: v["sampling_s_per_img"] + v["feature_s_per_img"]
                                   for k, v in costs["sweep"]["points"].items() if "same_images_as" not in v},
    }
    (OUT / "provenance.json").write_text(json.dumps(provenance, indent=2) + "\n")
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    main()
