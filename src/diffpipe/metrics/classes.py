"""In-domain metrics from the digit classifier (classifier/): does a sample look like a digit, and which one?

- `fd_classifier`: the Frechet distance (the FID formula, torch-fidelity's implementation) between Gaussians
  fitted to the classifier's penultimate features of the reference and of the generated images. With a floor:
  the first N training images against the same N reference images, as for the Inception FID.
- The class histogram of the (unconditional) samples, each counted as its most probable class, against the
  training data's class frequencies: `class_max_deviation` = max_c |p_gen(c) - p_data(c)| and
  `class_entropy` = H(p_gen) in nats (ln 10 = 2.303 for ten equally frequent classes), beside H(p_data).
- `confident_fraction`: the share of samples whose top class probability is >= `evaluate.confidence`.
- `cond_accuracy` (class-conditional samples): the share of samples whose most probable class is the class
  they were generated for.
"""
from __future__ import annotations

import numpy as np

from .scores import fid_from_features


def fd_classifier(real_features: np.ndarray, fake_features: np.ndarray) -> float:
    """Frechet distance between two (N, D) sets of classifier features (FID's formula on other features)."""
    return fid_from_features(real_features, fake_features)


def entropy_nats(p: np.ndarray) -> float:
    """H(p) = -sum p log p in nats, with 0 log 0 = 0."""
    p = np.asarray(p, dtype=np.float64)
    nonzero = p[p > 0]
    return float(-(nonzero * np.log(nonzero)).sum()) + 0.0  # + 0.0: no -0.0 for a one-class histogram


def class_metrics(probs: np.ndarray, data_frequencies: np.ndarray, confidence: float) -> dict:
    """Class probabilities of N samples (N, K) and the data's class shares (K,) -> the metrics above and the
    per-class histograms (the `histogram` entry, for the report rather than the metrics)."""
    probs = np.asarray(probs, dtype=np.float64)
    p_data = np.asarray(data_frequencies, dtype=np.float64)
    if probs.ndim != 2 or len(probs) == 0 or probs.shape[1] != len(p_data):
        raise ValueError(f"probabilities (N, K) with N >= 1 and K = {len(p_data)} expected, got {probs.shape}")
    k = probs.shape[1]
    p_gen = np.bincount(probs.argmax(axis=1), minlength=k) / len(probs)
    return {
        "class_max_deviation": float(np.abs(p_gen - p_data).max()),
        "class_entropy": entropy_nats(p_gen),
        "class_entropy_data": entropy_nats(p_data),
        "confident_fraction": float((probs.max(axis=1) >= confidence).mean()),
        "histogram": {str(c): {"generated": float(p_gen[c]), "data": float(p_data[c])} for c in range(k)},
    }


def conditional_accuracy(probs: np.ndarray, labels: np.ndarray) -> float | None:
    """The share of the labelled samples (label >= 0) whose most probable class is their label; None if none is."""
    labels = np.asarray(labels)
    mine = labels >= 0
    if not mine.any():
        return None
    return float((np.asarray(probs)[mine].argmax(axis=1) == labels[mine]).mean())
