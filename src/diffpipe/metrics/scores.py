"""FID and KID on Inception-v3 pool features, computed by torch-fidelity's own functions.

FID: Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash
Equilibrium" (TTUR): ||mu_r - mu_f||^2 + Tr(S_r + S_f - 2 (S_r S_f)^(1/2)) on the 2048-d pool features.
KID: Binkowski et al. 2018, "Demystifying MMD GANs": unbiased MMD^2 with the cubic polynomial kernel,
mean and std over random subsets.
Precision and recall: Kynkäänniemi et al. 2019, "Improved Precision and Recall Metric for Assessing
Generative Models": k-nearest-neighbour balls around each set's features; precision is the share of
generated images inside the real set's balls, recall the share of real images inside the generated set's.
"""
from __future__ import annotations

import numpy as np
import torch

from ..core.errors import PipelineError
from ..core.fidelity import import_torch_fidelity


def _check_features(features: np.ndarray, name: str) -> torch.Tensor:
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise PipelineError(f"{name} features must be (N, D) with N >= 2, got shape {features.shape}")
    if not np.isfinite(features).all():
        raise PipelineError(f"{name} features are not all finite (a diverged model or a corrupted features file)")
    return torch.from_numpy(features)


def fid_from_features(real: np.ndarray, fake: np.ndarray) -> float:
    """FID between two (N, D) feature sets (torch-fidelity's TTUR-derived statistics and formula)."""
    import_torch_fidelity()
    from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_features_to_statistics, fid_statistics_to_metric

    real_t, fake_t = _check_features(real, "real"), _check_features(fake, "fake")
    if real_t.shape[1] != fake_t.shape[1]:
        raise PipelineError(f"feature sizes differ: real {real_t.shape[1]}, fake {fake_t.shape[1]}")
    stats_real, stats_fake = fid_features_to_statistics(real_t), fid_features_to_statistics(fake_t)
    return float(fid_statistics_to_metric(stats_real, stats_fake, verbose=False)[KEY_METRIC_FID])


def kid_from_features(real: np.ndarray, fake: np.ndarray, subset_size: int, subsets: int, seed: int) -> tuple[float, float]:
    """KID (mean, std over `subsets` random subsets of `subset_size`) with torch-fidelity's defaults (cubic kernel)."""
    import_torch_fidelity()
    from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric

    real_t, fake_t = _check_features(real, "real"), _check_features(fake, "fake")
    if real_t.shape[1] != fake_t.shape[1]:
        raise PipelineError(f"feature sizes differ: real {real_t.shape[1]}, fake {fake_t.shape[1]}")
    if not 2 <= subset_size <= min(len(real_t), len(fake_t)):
        raise PipelineError(
            f"KID subset size {subset_size} must be between 2 and the smaller sample count "
            f"(real {len(real_t)}, fake {len(fake_t)})"
        )
    if subsets < 1:
        raise PipelineError(f"KID needs at least 1 subset, got {subsets}")
    out = kid_features_to_metric(
        real_t, fake_t, kid_subsets=subsets, kid_subset_size=subset_size, rng_seed=seed, verbose=False
    )
    return float(out[KEY_METRIC_KID_MEAN]), float(out[KEY_METRIC_KID_STD])


PRC_NEIGHBORHOOD = 3  # k of the k-NN balls: torch-fidelity's default and the paper's


def precision_recall(real: np.ndarray, fake: np.ndarray) -> tuple[float, float]:
    """(precision, recall) of the generated set against the real set, by torch-fidelity's PRC on the given
    features (here the same Inception features as FID and KID, not torch-fidelity's default VGG16)."""
    import_torch_fidelity()
    from torch_fidelity.metric_prc import KEY_METRIC_PRECISION, KEY_METRIC_RECALL, prc_features_to_metric

    real_t, fake_t = _check_features(real, "real"), _check_features(fake, "fake")
    if min(len(real_t), len(fake_t)) <= PRC_NEIGHBORHOOD:
        raise PipelineError(f"precision/recall need more than {PRC_NEIGHBORHOOD} images per set "
                            f"(real {len(real_t)}, fake {len(fake_t)})")
    # torch-fidelity's convention: features_1 is the generated set, features_2 the real one
    out = prc_features_to_metric(fake_t, real_t, prc_neighborhood=PRC_NEIGHBORHOOD, prc_batch_size=10000,
                                 verbose=False)
    return float(out[KEY_METRIC_PRECISION]), float(out[KEY_METRIC_RECALL])
