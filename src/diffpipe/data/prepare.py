"""Stage `prepare` logic: CSV images or image folders -> the uint8 arrays (and int64 labels) that training,
the classifier and evaluation read.

The stage script writes the outputs: here each set is read and checked (labels included, when
`prepare.num_classes` is set), the first N rows taken, the two sets' shapes compared, and each set
described for the data report. Reported pixel statistics use values scaled to [0, 1] (x / 255).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.errors import PipelineError
from ..core.params import PrepareConfig
from .image_folder import scan_folder, split_indices
from .labels import check_labels, folder_labels
from .pixel_csv import label_place, read_pixel_csv


@dataclass(frozen=True)
class ImageSet:
    """Images as read from one CSV or folder, with where they came from."""

    images: np.ndarray  # (N, C, H, W) uint8
    labels: np.ndarray | None  # (N,) int64, or None when unlabelled (a CSV without label column, a plain folder)
    source: str


def csv_set(path: str, num_classes: int) -> ImageSet:
    """One digit-recognizer CSV; with `num_classes` > 0 it must have a `label` column of 0 .. num_classes - 1."""
    images, labels = read_pixel_csv(path)
    if num_classes:
        if labels is None:
            raise PipelineError(f"{path}: has no `label` column, but params key `prepare.num_classes` is {num_classes} "
                                "(0 = unlabelled data)")
        labels = check_labels(labels, num_classes, path, lambda i: label_place(path, i),
                              f"params key `prepare.num_classes` is {num_classes}")
    return ImageSet(images, labels, path)


def first_rows(data: ImageSet, limit: int, key: str) -> ImageSet:
    """The first `limit` rows (all when 0). Asking for more rows than exist is an error, so a run's
    image count never silently differs from its params."""
    n = len(data.images)
    if limit == 0:
        return data
    if limit > n:
        raise PipelineError(f"params key `{key}` is {limit} but {data.source} has only {n} rows")
    labels = None if data.labels is None else data.labels[:limit]
    return ImageSet(data.images[:limit], labels, data.source)


def check_same_shape(train: ImageSet, reference: ImageSet) -> None:
    if train.images.shape[1:] != reference.images.shape[1:]:
        raise PipelineError(
            f"image shapes differ: {train.source} has (C, H, W) = {train.images.shape[1:]}, "
            f"{reference.source} has {reference.images.shape[1:]}"
        )


def pixel_mean_std(images: np.ndarray) -> tuple[float, float]:
    """Mean and (population) std of uint8 pixels scaled to [0, 1], from a 256-bin histogram: exact
    and without a float copy of the images."""
    counts = np.bincount(images.ravel(), minlength=256).astype(np.float64)
    values = np.arange(256, dtype=np.float64) / 255.0
    mean = float(counts @ values / counts.sum())
    var = float(counts @ (values - mean) ** 2 / counts.sum())
    return mean, var ** 0.5


def describe(data: ImageSet, source_rows: int) -> dict:
    """Report entry for one set: JSON-ready, keys stable across runs."""
    mean, std = pixel_mean_std(data.images)
    entry = {
        "source": data.source,
        "source_rows": source_rows,
        "count": int(len(data.images)),
        "image_shape": [int(s) for s in data.images.shape[1:]],
        "pixel_mean": round(mean, 6),
        "pixel_std": round(std, 6),
    }
    if data.labels is not None:
        values, counts = np.unique(data.labels, return_counts=True)
        entry["label_counts"] = {str(int(v)): int(c) for v, c in zip(values, counts)}
    return entry


def prepare(train: ImageSet, reference: ImageSet, cfg: PrepareConfig) -> tuple[ImageSet, ImageSet, dict]:
    """Apply the row limits and the shape check -> (train, reference, report)."""
    check_same_shape(train, reference)
    train_used = first_rows(train, cfg.train_limit, "prepare.train_limit")
    reference_used = first_rows(reference, cfg.reference_limit, "prepare.reference_limit")
    report = {
        "train": describe(train_used, len(train.images)),
        "reference": describe(reference_used, len(reference.images)),
    }
    return train_used, reference_used, report


def folder_sets(train_dir: str, reference_dir: str | None, cfg: PrepareConfig) -> tuple[ImageSet, ImageSet, dict]:
    """Image folder(s) -> (train, reference, extra report): a second folder, or a seeded split of the first.

    With `prepare.num_classes` > 0 each image's label is its first-level subfolder, classes numbered in sorted
    name order (the names go into the report); a reference folder must use the training folder's classes."""
    labelled = cfg.num_classes > 0
    images, paths, skipped = scan_folder(train_dir, cfg.images)
    labels, names = folder_labels(train_dir, paths, cfg.num_classes) if labelled else (None, None)
    extra = {"train_dir": {"files_used": len(paths), "skipped": skipped}}
    if labelled:
        extra["class_names"] = names  # label i is the subfolder names[i]
    if reference_dir is not None:
        if cfg.images.reference_fraction != 0:
            raise PipelineError("params key `prepare.images.reference_fraction` must be 0 when a reference folder is given")
        ref_images, ref_paths, ref_skipped = scan_folder(reference_dir, cfg.images)
        ref_labels = folder_labels(reference_dir, ref_paths, cfg.num_classes, names)[0] if labelled else None
        extra["reference_dir"] = {"files_used": len(ref_paths), "skipped": ref_skipped}
        return ImageSet(images, labels, train_dir), ImageSet(ref_images, ref_labels, reference_dir), extra
    if cfg.images.reference_fraction == 0:
        raise PipelineError("params key `prepare.images.reference_fraction` must be > 0 without a reference folder "
                            "(evaluation needs held-out images)")
    train_idx, ref_idx = split_indices(len(images), cfg.images.reference_fraction, cfg.images.split_seed)
    extra["split"] = {"reference_fraction": cfg.images.reference_fraction, "split_seed": cfg.images.split_seed}
    pick = (lambda idx: None) if labels is None else (lambda idx: labels[idx])
    return (ImageSet(images[train_idx], pick(train_idx), train_dir),
            ImageSet(images[ref_idx], pick(ref_idx), f"{train_dir} (held-out split)"), extra)
