"""Class labels: integers 0 .. K-1 beside the images, checked wherever they are read.

Labels come from a CSV's `label` column or, for an image folder, from the sorted names of the first-level
subfolders (one per class). `prepare` writes them as int64 .npy arrays next to the image arrays; the
classifier and evaluate stages read them back with `read_labels`. A label outside 0 .. K-1 is one
`PipelineError` naming the file and the row (or the image file).
"""
from __future__ import annotations

import os
from typing import Callable

import numpy as np

from ..core.errors import PipelineError


def check_labels(labels: np.ndarray, num_classes: int, source: str | os.PathLike, place: Callable[[int], str],
                 why: str, low: int = 0) -> np.ndarray:
    """`labels` as int64 if every one is in [low, num_classes); else an error naming `source` and `place(i)` of
    the first bad row i (0-based). `why` says where num_classes comes from (e.g. the params key)."""
    labels = np.asarray(labels)
    bad = np.flatnonzero((labels < low) | (labels >= num_classes))
    if bad.size:
        i = int(bad[0])
        raise PipelineError(f"{source}: {place(i)}: label {int(labels[i])} is outside {low}-{num_classes - 1} ({why})")
    return labels.astype(np.int64)


def read_labels(path: str | os.PathLike, count: int, num_classes: int, why: str,
                hint: str = "re-run the prepare stage (dvc repro -f prepare)", low: int = 0) -> np.ndarray:
    """Labels written by `prepare` (or, with low = -1 for "no label", by `sample`): int64 (N,) .npy with
    N == `count` (the matching images), each in [low, num_classes); anything else is one PipelineError naming
    the file (and the row)."""
    try:
        labels = np.load(path)
    except FileNotFoundError:
        raise PipelineError(f"{path}: file not found; {hint}") from None
    except (OSError, ValueError, EOFError) as e:
        raise PipelineError(f"{path}: not a readable .npy array ({e}); {hint}") from None
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise PipelineError(f"{path}: expected integer labels (N,), got {labels.dtype} {labels.shape}; {hint}")
    if len(labels) != count:
        raise PipelineError(f"{path}: {len(labels)} labels for {count} images; {hint}")
    return check_labels(labels, num_classes, path, lambda i: f"row {i + 1}", why, low)


def folder_labels(root: str | os.PathLike, paths: list[str], num_classes: int,
                  class_names: list[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """Image paths relative to `root` -> (labels int64, class names): the class of `a/b/c.png` is its first-level
    folder `a`, numbered in sorted name order. Without `class_names` (the training folder) the classes are the
    folders found, which must number `num_classes`; with them (a reference folder) each folder must be one."""
    firsts = []
    for rel in paths:
        parts = rel.split("/", 1)
        if len(parts) == 1:
            raise PipelineError(f"{os.path.join(root, rel)}: not in a class subfolder (params key "
                                f"`prepare.num_classes` is {num_classes}: labelled images lie in one first-level "
                                "subfolder per class)")
        firsts.append(parts[0])
    if class_names is None:
        class_names = sorted(set(firsts))
        if len(class_names) != num_classes:
            shown = ", ".join(class_names[:12]) + (", ..." if len(class_names) > 12 else "")
            raise PipelineError(f"{root}: {len(class_names)} class subfolders with images ({shown}) but params key "
                                f"`prepare.num_classes` is {num_classes}")
    index = {name: i for i, name in enumerate(class_names)}
    for rel, first in zip(paths, firsts):
        if first not in index:
            raise PipelineError(f"{os.path.join(root, rel)}: class subfolder {first!r} is not one of the training "
                                f"folder's classes {class_names}")
    return np.array([index[f] for f in firsts], dtype=np.int64), list(class_names)


def class_frequencies(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(K,) float64: the share of each class among `labels` (all zeros for no labels)."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes).astype(np.float64)
    return counts / max(counts.sum(), 1.0)
