"""Markdown table of DVC experiments: what each changed against a base, its cost, and its scores.

    python scripts/ablation_table.py --base EXP EXP1 EXP2 ... > docs/ablation.md
    python scripts/ablation_table.py --project systems/emoji_ddim --base EXP EXP1 ...   # System B's experiments

Reads each experiment's commit (`refs/exps/.../<name>`, made by `dvc exp run -n <name>`) with git: its
`params.yaml`, `dvclive/evaluate/metrics.json` and the git-tracked cost files `costs/train.json` and
`costs/sample.json` (under `--project`, the pipeline's folder). The "changes" column lists the params that differ from the base experiment's, so each
row is re-run by `dvc exp run evaluate -S key=value ...` from the base's params.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

import yaml

SECTIONS = ("prepare", "diffusion", "model", "train", "sample")
# Keys added to params.yaml after some experiments ran, at the value that reproduces the earlier behaviour:
# an experiment without the key is compared as if it had this value.
ADDED_LATER = {"prepare.num_classes": 10, "train.lr_schedule": "constant", "train.warmup_steps": 0, "train.min_snr_gamma": 0.0,
               "train.repeats": 1, "train.keep": "best", "model.num_classes": 0, "train.cond_drop_prob": 0.1,
               "train.processes": 1, "sample.processes": 1, "sample.labels": [], "sample.guidance_scale": 1.0,
               "diffusion.prediction": "eps", "diffusion.zero_terminal_snr": False, "train.timesteps": "uniform",
               "train.lognormal_mean": -1.2, "train.lognormal_std": 1.2,
               "train.grid_sampler": "ddim", "train.grid_eta": 0.0}


def git(*args: str) -> str:
    return subprocess.run(["git", *args], check=True, capture_output=True, text=True).stdout


def exp_ref(name: str) -> str:
    """The experiment's ref, or `name` itself when it is a commit (e.g. the committed default run: HEAD)."""
    refs = [r for r in git("for-each-ref", "--format=%(refname)", "refs/exps").split()
            if r.rsplit("/", 1)[-1] == name and r.count("/") == 4]
    if len(refs) > 1:
        sys.exit(f"experiment {name!r}: {len(refs)} refs under refs/exps carry this name")
    if refs:
        return refs[0]
    if subprocess.run(["git", "rev-parse", "--verify", "-q", f"{name}^{{commit}}"], capture_output=True).returncode:
        sys.exit(f"{name!r} is neither an experiment name nor a commit")
    return name


def flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        out.update(flat(v, key + ".") if isinstance(v, dict) else {key: v})
    return out


def read(ref: str, project: str) -> dict:
    def show(path: str) -> str:
        return git("show", f"{ref}:{project.strip('/') + '/' if project not in ('', '.') else ''}{path}")

    params = yaml.safe_load(show("params.yaml"))
    return {"params": {**ADDED_LATER, **flat({s: params[s] for s in SECTIONS})},
            "metrics": json.loads(show("dvclive/evaluate/metrics.json")),
            "train": json.loads(show("costs/train.json")),
            "sample": json.loads(show("costs/sample.json"))}


def changes(params: dict, base: dict) -> str:
    diff = [f"{k}={json.dumps(v).replace(' ', '')}" for k, v in params.items() if base.get(k) != v]
    return " ".join(f"`{d}`" for d in diff) or "(base)"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", required=True, help="experiment whose params the changes are listed against")
    p.add_argument("--project", default=".", help="the pipeline's folder in the repository (System B: systems/emoji_ddim)")
    p.add_argument("names", nargs="+", help="experiments, one row each, in this order")
    args = p.parse_args()
    base = read(exp_ref(args.base), args.project)
    rows = ["| experiment | changes against the base | train min | train img/s | sampling s | FID (floor) | KID × 1e3 "
            "| precision | recall |", "|---|---|---|---|---|---|---|---|---|"]
    for name in args.names:
        r = read(exp_ref(name), args.project)
        m, t = r["metrics"], r["train"]
        floor = f" ({m['fid_floor']:.1f})" if "fid_floor" in m else ""
        rows.append(f"| {name} | {changes(r['params'], base['params'])} | {t['wall_time_s'] / 60:.1f} | "
                    f"{t['img_per_s']:.0f} | {r['sample']['seconds']:.0f} | {m['fid']:.2f}{floor} | "
                    f"{1e3 * m['kid_mean']:.2f} ± {1e3 * m['kid_std']:.2f} | {m['precision']:.3f} | {m['recall']:.3f} |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
