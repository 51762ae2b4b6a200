"""Stage `prepare`: training and reference CSVs -> uint8 .npy arrays, a preview grid, a data report.

Params: section `prepare` (row limits, preview size). Every input is read and checked before any
output is written, so a bad CSV leaves the previous outputs as they were.
"""
from __future__ import annotations

import argparse

from diffpipe import csv_data, images, io
from diffpipe.cli import run_main
from diffpipe.config import load_params, section
from diffpipe.prepare import ImageSet, PrepareConfig, prepare


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-csv", required=True, help="training images (digit-recognizer CSV)")
    parser.add_argument("--reference-csv", required=True, help="held-out real images for FID/KID (same layout)")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out-train", required=True, help="output .npy, uint8 (N, C, H, W)")
    parser.add_argument("--out-reference", required=True, help="output .npy, uint8 (N, C, H, W)")
    parser.add_argument("--preview", required=True, help="output PNG grid of the first training images")
    parser.add_argument("--report", required=True, help="output JSON: counts, shape, pixel stats, labels")
    return parser.parse_args()


def read_set(path: str) -> ImageSet:
    pixels, labels = csv_data.read_pixel_csv(path)
    return ImageSet(pixels, labels, path)


def main() -> None:
    args = parse_args()
    cfg = section(load_params(args.params), "prepare", PrepareConfig)
    train, reference, report = prepare(read_set(args.train_csv), read_set(args.reference_csv), cfg)
    io.write_npy(args.out_train, train.images)
    io.write_npy(args.out_reference, reference.images)
    images.save_grid(args.preview, train.images[: cfg.preview_count], scale=2)
    io.write_json(args.report, report)


if __name__ == "__main__":
    run_main(main)
