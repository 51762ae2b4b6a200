"""Stage `export`: checkpoint -> a folder others can load without trusting a pickle (docs/model.md).

The EMA weights go to `model.safetensors`; `config.json` holds what rebuilds the network, the schedule and the
data normalisation, the sample stage's sampler (from `--sample-report`: the defaults of `diffpipe sample`) and
the provenance: the git revision checked out, the checkpoint's and the training data's md5, the evaluation
metrics (`--metrics`). The folder is the model that DVC's registry serves (`artifacts:` in dvc.yaml).
"""
from __future__ import annotations

import argparse

import torch

from diffpipe.core import files
from diffpipe.core.cli import run_main
from diffpipe.diffusion.checkpoint import load_model
from diffpipe.diffusion.export import checkpoint_provenance, git_revision, sampling_from_report, write_export


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, help="the training checkpoint (.pt)")
    p.add_argument("--metrics", help="the evaluate stage's metrics (JSON), recorded as provenance")
    p.add_argument("--sample-report", help="the sample stage's report (JSON): its sampler becomes the default")
    p.add_argument("--out", required=True, help="output folder: model.safetensors and config.json")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    loaded = load_model(args.checkpoint, torch.device("cpu"))
    metrics = files.read_json(args.metrics) if args.metrics else None
    sampling = sampling_from_report(files.read_json(args.sample_report), args.sample_report) \
        if args.sample_report else None
    provenance = checkpoint_provenance(args.checkpoint, loaded, metrics, git_revision())
    config = write_export(args.out, loaded, provenance, sampling)
    print(f"export: {args.out} ({config['num_parameters']:,} parameters, EMA weights)")


if __name__ == "__main__":
    run_main(main)
