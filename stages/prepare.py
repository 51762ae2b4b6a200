"""Stage `prepare`: training and reference CSVs or image folders -> uint8 .npy arrays, a preview, a report.

Params: section `prepare` (row limits, preview size). Every input is read and checked before any
output is written, so a bad CSV leaves the previous outputs as they were.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

# This tree's package first, not the one installed in editable mode: a `--temp` or `--queue` experiment
# runs in its own copy of the repository and must run that copy's code (the code dvc.lock records).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from diffpipe.core import files  # noqa: E402
from diffpipe.core.cli import run_main  # noqa: E402
from diffpipe.core.errors import PipelineError  # noqa: E402
from diffpipe.core.params import load_params  # noqa: E402
from diffpipe.data.pixel_csv import read_pixel_csv  # noqa: E402
from diffpipe.data.prepare import ImageSet, folder_sets, prepare  # noqa: E402
from diffpipe.pictures.grids import save_grid  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--train-csv", help="training images (digit-recognizer CSV)")
    source.add_argument("--train-dir", help="training images: a folder of image files (recursive)")
    parser.add_argument("--reference-csv", help="held-out real images for FID/KID (same CSV layout)")
    parser.add_argument("--reference-dir", help="held-out real images as a folder (else a seeded split of --train-dir)")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out-train", required=True, help="output .npy, uint8 (N, C, H, W)")
    parser.add_argument("--out-reference", required=True, help="output .npy, uint8 (N, C, H, W)")
    parser.add_argument("--preview", required=True, help="output PNG grid of the first training images")
    parser.add_argument("--report", required=True, help="output JSON: counts, shape, pixel stats, labels")
    return parser.parse_args()


def read_set(path: str) -> ImageSet:
    pixels, labels = read_pixel_csv(path)
    return ImageSet(pixels, labels, path)


def main() -> None:
    args = parse_args()
    cfg = load_params(args.params).prepare
    if args.train_csv:
        if not args.reference_csv:
            raise PipelineError("--reference-csv is required with --train-csv")
        train_in, reference_in, extra = read_set(args.train_csv), read_set(args.reference_csv), {}
    else:
        train_in, reference_in, extra = folder_sets(args.train_dir, args.reference_dir, cfg)
    train, reference, report = prepare(train_in, reference_in, cfg)
    report.update(extra)
    files.write_npy(args.out_train, train.images)
    files.write_npy(args.out_reference, reference.images)
    save_grid(args.preview, train.images[: cfg.preview_count], scale=2)
    files.write_json(args.report, report)


if __name__ == "__main__":
    run_main(main)
