"""Stage `prepare`: training and reference CSVs or image folders -> uint8 .npy arrays (and int64 labels), a
preview, a report.

Params: section `prepare` (row limits, preview size, number of classes). With `prepare.num_classes` > 0 the
labels (the CSV `label` column, or an image folder's first-level subfolders) are checked and written to
--out-train-labels / --out-reference-labels; with 0 the data are unlabelled and those options are refused.
Every input is read and checked before any output is written, so a bad CSV leaves the previous outputs as
they were.
"""
from __future__ import annotations

import argparse

from diffpipe.core import files
from diffpipe.core.cli import run_main
from diffpipe.core.errors import PipelineError
from diffpipe.core.params import load_params
from diffpipe.data.prepare import csv_set, folder_sets, prepare
from diffpipe.pictures.grids import display_scale, save_grid


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
    parser.add_argument("--out-train-labels", help="output .npy, int64 (N,): with prepare.num_classes > 0 only")
    parser.add_argument("--out-reference-labels", help="output .npy, int64 (N,): with prepare.num_classes > 0 only")
    parser.add_argument("--preview", required=True, help="output PNG grid of the first training images")
    parser.add_argument("--report", required=True, help="output JSON: counts, shape, pixel stats, labels")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    cfg = load_params(args.params).prepare
    label_outs = [p for p in (args.out_train_labels, args.out_reference_labels) if p]
    if cfg.num_classes and len(label_outs) != 2:
        raise PipelineError(f"params key `prepare.num_classes` is {cfg.num_classes}: labelled data need "
                            "--out-train-labels and --out-reference-labels")
    if not cfg.num_classes and label_outs:
        raise PipelineError("params key `prepare.num_classes` is 0 (unlabelled data), but label outputs were given")
    if args.train_csv:
        if not args.reference_csv:
            raise PipelineError("--reference-csv is required with --train-csv")
        train_in, reference_in = csv_set(args.train_csv, cfg.num_classes), csv_set(args.reference_csv, cfg.num_classes)
        extra = {}
    else:
        train_in, reference_in, extra = folder_sets(args.train_dir, args.reference_dir, cfg)
    train, reference, report = prepare(train_in, reference_in, cfg)
    report["num_classes"] = cfg.num_classes
    report.update(extra)
    files.write_npy(args.out_train, train.images)
    files.write_npy(args.out_reference, reference.images)
    if cfg.num_classes:
        files.write_npy(args.out_train_labels, train.labels)
        files.write_npy(args.out_reference_labels, reference.labels)
    save_grid(args.preview, train.images[: cfg.preview_count], scale=display_scale(train.images.shape[-1]))
    files.write_json(args.report, report)


if __name__ == "__main__":
    run_main(main)
