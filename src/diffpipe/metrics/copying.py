"""Data copying: are the samples closer to the training images than unseen real images are?

Every image is an embedding (the digit classifier's penultimate features; the pixels, scaled to [0, 1], where
there is no classifier) and is measured by its Euclidean distance to its nearest training image. Held-out real
images (the reference split, never trained on) are the yardstick: a model that generalises puts its samples as
far from the training set as unseen real images are; a model that memorises puts them closer.

- **C_T** (Meehan, Chaudhuri & Dasgupta 2020, "A Non-Parametric Test to Detect Data-Copying in Generative
  Models", AISTATS): the training set is cut into cells by k-means; in each cell the nearest-training
  distances of the samples Q and of the held-out images P that fall in it are compared by the Mann-Whitney U
  test, as the z-score Z_U = (U - mn/2) / sqrt(mn(m + n + 1)/12), U counting the (sample, held-out) pairs
  whose sample is the farther; C_T is the average of the cells' Z_U weighted by the held-out images' share of
  each cell, over the cells holding at least TAU_MIN_SAMPLES samples and held-out images (cells the model
  rarely visits say nothing about copying). C_T ~ 0: like held-out data; C_T << 0 (a z-score: below about -3): copying;
  C_T >> 0: samples farther from the data than real images (underfitting).
- **Close-copy share**: the share of samples whose nearest training image is closer than a third of the distance
  to their second-nearest (a threshold used in the memorisation literature: the nearest match stands out from
  every other training image), next to the same share for the held-out images.

Nothing here is a parameter: the cell count follows the sample counts (CELLS_PER_IMAGES), the k-means seed is
fixed, and the numbers and choices go into evaluate's report.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..core.errors import PipelineError

CLOSE_RATIO = 1 / 3  # nearest / second-nearest below this: a close copy
CELLS_PER_IMAGES = 200  # one k-means cell per 200 of the smaller image count (N = 10,000: 50 cells)
MAX_CELLS = 50
TAU_MIN_SAMPLES = 20  # a cell counts when it holds at least this many samples and this many held-out images
KMEANS_SEED = 0
KMEANS_ITERATIONS = 20
CHUNK = 1024  # query rows per distance block (a 1024 x 60,000 block of float64 is 0.5 GB)


def pixel_embedding(images: np.ndarray) -> np.ndarray:
    """uint8 (N, C, H, W) -> (N, C*H*W) float64 in [0, 1]: the embedding where there is no classifier."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4:
        raise PipelineError(f"pixel embeddings take uint8 images (N, C, H, W), got {images.dtype} {images.shape}")
    return images.reshape(len(images), -1).astype(np.float64) / 255.0


def _matrix(x: np.ndarray, name: str) -> torch.Tensor:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(x) < 1:
        raise PipelineError(f"{name} embeddings must be (N, D) with N >= 1, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise PipelineError(f"{name} embeddings are not all finite")
    return torch.from_numpy(x)


def nearest(queries: np.ndarray, train: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """For each query row, the Euclidean distances to its `k` nearest training rows and their indices, nearest
    first: (N, k) float64 and (N, k) int64."""
    q, t = _matrix(queries, "query"), _matrix(train, "training")
    if q.shape[1] != t.shape[1]:
        raise PipelineError(f"embedding sizes differ: queries {q.shape[1]}, training {t.shape[1]}")
    if len(t) < k:
        raise PipelineError(f"the data-copying check needs at least {k} training images, got {len(t)}")
    t_sq = (t * t).sum(1)
    dist, index = np.empty((len(q), k)), np.empty((len(q), k), dtype=np.int64)
    for start in range(0, len(q), CHUNK):
        block = q[start:start + CHUNK]
        # squared distances by the expansion |a|^2 - 2ab + |b|^2, clamped at 0 against round-off
        sq = ((block * block).sum(1, keepdim=True) - 2 * block @ t.T + t_sq).clamp_min_(0)
        vals, ind = torch.topk(sq, k, dim=1, largest=False)
        dist[start:start + len(block)], index[start:start + len(block)] = vals.sqrt().numpy(), ind.numpy()
    return dist, index


def kmeans_cells(train: np.ndarray, cells: int, seed: int = KMEANS_SEED) -> np.ndarray:
    """(cells, D) centres of k-means (k-means++ start, Lloyd's iterations) on the training embeddings."""
    from scipy.cluster.vq import kmeans2

    centres, _ = kmeans2(np.asarray(train, dtype=np.float64), cells, iter=KMEANS_ITERATIONS, minit="++",
                         seed=np.random.default_rng(seed))
    return centres


def mann_whitney_z(samples: np.ndarray, held_out: np.ndarray) -> float:
    """Z_U of Meehan et al. 2020: (U - mn/2) / sqrt(mn(m+n+1)/12), U = the number of (sample, held-out) pairs in
    which the sample's distance is the larger (ties count one half), as scipy's Mann-Whitney U of `samples`."""
    from scipy.stats import mannwhitneyu

    m, n = len(samples), len(held_out)
    u = mannwhitneyu(samples, held_out, alternative="two-sided", method="asymptotic").statistic
    return float((u - m * n / 2) / math.sqrt(m * n * (m + n + 1) / 12))


def data_copying(samples: np.ndarray, held_out: np.ndarray, train: np.ndarray) -> dict:
    """The statistics of the module docstring for sample, held-out and training embeddings (N, D).
    -> {"ct", "close_share", "close_share_held_out", "nearest_median", "nearest_median_held_out", "cells",
        "cells_used", "nearest": per-sample nearest training index, "ratio": per-sample nearest / second}."""
    if len(samples) < 2 or len(held_out) < 2:
        raise PipelineError(f"the data-copying check needs at least 2 samples and 2 held-out images, "
                            f"got {len(samples)} and {len(held_out)}")
    tau = min(TAU_MIN_SAMPLES, len(samples), len(held_out))  # a tiny run: one cell holding them all
    q_dist, q_index = nearest(samples, train, 2)
    (q_d1, q_d2), q_idx = q_dist.T, q_index[:, 0]
    p_d1, p_d2 = nearest(held_out, train, 2)[0].T
    cells = max(1, min(MAX_CELLS, min(len(samples), len(held_out)) // CELLS_PER_IMAGES, len(train)))
    centres = kmeans_cells(train, cells)
    q_cell, p_cell = nearest(samples, centres, 1)[1][:, 0], nearest(held_out, centres, 1)[1][:, 0]
    z, weights = [], []
    for c in range(cells):
        q, p = q_d1[q_cell == c], p_d1[p_cell == c]
        if len(q) >= tau and len(p) >= tau:
            z.append(mann_whitney_z(q, p))
            weights.append(len(p) / len(held_out))
    if not z:
        raise PipelineError(f"no k-means cell holds {tau} samples and {tau} held-out images: "
                            "the samples are nowhere near the data")
    with np.errstate(divide="ignore", invalid="ignore"):
        q_ratio = np.where(q_d2 > 0, q_d1 / q_d2, 0.0)
        p_ratio = np.where(p_d2 > 0, p_d1 / p_d2, 0.0)
    return {"ct": float(np.dot(weights, z) / np.sum(weights)),
            "close_share": float((q_ratio < CLOSE_RATIO).mean()),
            "close_share_held_out": float((p_ratio < CLOSE_RATIO).mean()),
            "nearest_median": float(np.median(q_d1)), "nearest_median_held_out": float(np.median(p_d1)),
            "cells": cells, "cells_used": len(z), "nearest": q_idx, "ratio": q_ratio}


def closest_pairs(samples: np.ndarray, train: np.ndarray, found: dict, count: int) -> np.ndarray:
    """uint8 images for a picture of the `count` samples nearest to copies (smallest nearest / second-nearest
    ratio): pairs of rows, the samples above their nearest training images. -> (2 * count', C, H, W)."""
    order = np.argsort(found["ratio"], kind="stable")[:count]
    return np.concatenate([samples[order], train[found["nearest"][order]]])
