"""The data-copying check (metrics/copying.py) on constructed data: copies of training points must score as copies
(C_T far below 0, most of them close copies), fresh draws from the data's distribution as held-out data do (C_T
near 0), and samples blurred away from the data as underfitting (C_T far above 0). Its parts against references
nobody here wrote: the nearest neighbours against scipy's cdist, the Mann-Whitney z against scipy's p-value."""
import numpy as np
import pytest
from scipy.spatial.distance import cdist
from scipy.stats import mannwhitneyu, norm

from diffpipe.core.errors import PipelineError
from diffpipe.metrics import copying


def mixture(n: int, seed: int, dim: int = 16, modes: int = 10) -> np.ndarray:
    """n points of a fixed mixture of 10 Gaussians in 16 dimensions (the modes do not depend on `seed`)."""
    centres = np.random.default_rng(1234).normal(scale=4.0, size=(modes, dim))
    rng = np.random.default_rng(seed)
    return centres[rng.integers(0, modes, n)] + rng.normal(size=(n, dim))


TRAIN, HELD_OUT = mixture(6000, 0), mixture(1000, 1)


def test_nearest_neighbours_match_scipy():
    q, t = mixture(50, 2), mixture(300, 3)
    dist, index = copying.nearest(q, t, 2)
    full = cdist(q, t)
    order = np.argsort(full, axis=1)[:, :2]
    np.testing.assert_array_equal(index, order)
    np.testing.assert_allclose(dist, np.take_along_axis(full, order, axis=1), rtol=1e-9)


def test_mann_whitney_z_matches_scipys_normal_approximation():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=70), rng.normal(0.3, size=90)
    z = copying.mann_whitney_z(a, b)
    p = mannwhitneyu(a, b, alternative="two-sided", method="asymptotic", use_continuity=False).pvalue
    assert 2 * norm.sf(abs(z)) == pytest.approx(p, rel=1e-9)
    assert z < 0  # a is the nearer on average
    # all of one set below the other: U = 0, z = -mn/2 / sqrt(mn(m+n+1)/12), exactly
    assert copying.mann_whitney_z(np.arange(5.0), np.arange(10.0, 17.0)) == pytest.approx(
        -(5 * 7 / 2) / np.sqrt(5 * 7 * 13 / 12))


def test_copies_score_as_copies():
    rng = np.random.default_rng(5)
    copies = TRAIN[rng.integers(0, len(TRAIN), 1000)] + rng.normal(scale=0.02, size=(1000, 16))
    found = copying.data_copying(copies, HELD_OUT, TRAIN)
    assert found["cells"] == 5 and found["cells_used"] >= 4
    assert found["ct"] < -10  # a z-score: chance alone rarely goes below -3
    assert found["close_share"] > 0.9 and found["close_share_held_out"] < 0.1
    assert found["nearest_median"] < 0.1 * found["nearest_median_held_out"]


def test_fresh_draws_score_as_held_out_data():
    found = copying.data_copying(mixture(1000, 6), HELD_OUT, TRAIN)
    assert abs(found["ct"]) < 3
    assert abs(found["close_share"] - found["close_share_held_out"]) < 0.05


def test_half_copies_are_seen_and_blurred_samples_score_as_underfitting():
    rng = np.random.default_rng(7)
    half = np.concatenate([TRAIN[rng.integers(0, len(TRAIN), 500)] + rng.normal(scale=0.02, size=(500, 16)),
                           mixture(500, 8)])
    assert copying.data_copying(half, HELD_OUT, TRAIN)["ct"] < -3
    blurred = mixture(1000, 9) + rng.normal(scale=1.0, size=(1000, 16))
    assert copying.data_copying(blurred, HELD_OUT, TRAIN)["ct"] > 3


def test_the_closest_pairs_picture_puts_each_copy_above_its_training_image():
    train = np.random.default_rng(10).integers(0, 256, (50, 1, 8, 8), dtype=np.uint8)
    samples = np.random.default_rng(11).integers(0, 256, (30, 1, 8, 8), dtype=np.uint8)
    samples[[3, 17]] = train[[40, 7]]  # two exact copies
    emb = copying.pixel_embedding
    found = copying.data_copying(emb(samples), emb(samples[:25]), emb(train))
    pairs = copying.closest_pairs(samples, train, found, 4)
    assert pairs.shape == (8, 1, 8, 8)
    np.testing.assert_array_equal(pairs[:2], samples[[3, 17]])  # the copies first (ratio 0), in sample order
    np.testing.assert_array_equal(pairs[4:6], train[[40, 7]])
    assert found["close_share"] == pytest.approx(2 / 30)


def test_bad_embeddings_are_one_line_errors():
    with pytest.raises(PipelineError, match="embedding sizes differ: queries 16, training 8"):
        copying.data_copying(mixture(30, 1), mixture(30, 2), mixture(30, 3, dim=8))
    bad = mixture(30, 1)
    bad[4, 2] = np.nan
    with pytest.raises(PipelineError, match="query embeddings are not all finite"):
        copying.data_copying(bad, mixture(30, 2), TRAIN)
    with pytest.raises(PipelineError, match="at least 2 samples and 2 held-out images"):
        copying.data_copying(mixture(1, 1), HELD_OUT, TRAIN)
