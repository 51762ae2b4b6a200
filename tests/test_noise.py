"""Counter-based noise (Philox4x32-10) and the index sharding that multi-process runs rely on."""
import numpy as np
import pytest
import torch
from scipy import stats

from diffpipe.core.distributed import World, shard
from diffpipe.diffusion import noise
from diffpipe.diffusion.noise import ImageNoise
from diffpipe.diffusion.training import epoch_order, step_noise


def words(*values):
    return [torch.tensor([v], dtype=torch.int64) for v in values]


@pytest.mark.parametrize("counter, key, expected", [
    # Known-answer vectors of Random123 (kat_vectors, philox4x32 with 10 rounds).
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
])
def test_philox_matches_the_published_known_answers(counter, key, expected):
    out = noise.philox4x32(*words(*counter), *words(*key))
    assert tuple(int(w) for w in out) == expected


def test_normals_are_standard_normal_and_streams_independent():
    key = torch.arange(200, dtype=torch.int64) + 12345
    zero = torch.zeros_like(key)
    x = noise.normal(key, zero, zero, noise.SAMPLE, 501)  # odd count: the last Box–Muller pair is cut
    assert x.shape == (200, 501) and x.dtype == torch.float32
    assert stats.kstest(x.flatten().numpy(), "norm").pvalue > 1e-3
    corr = np.corrcoef(x[:, :500].numpy())  # 200 streams: no two correlated beyond sampling noise
    assert np.abs(corr[~np.eye(200, dtype=bool)]).max() < 0.25
    other = noise.normal(key, zero + 1, zero, noise.SAMPLE, 501)  # the next draw differs
    assert not torch.equal(x, other)


def test_image_noise_depends_on_the_seed_alone():
    shape = (1, 5, 5)
    together = ImageNoise([7, 8, 9, 10], shape)
    apart = [ImageNoise([s], shape) for s in (9, 10, 7, 8)]
    for _ in range(3):  # three draws: each image's k-th draw is the same in any batch
        a = together.randn()
        b = torch.cat([n.randn() for n in apart])
        assert torch.equal(a, b[[2, 3, 0, 1]])
    assert not torch.equal(a[0], a[1])


def test_randint_covers_the_range_uniformly():
    key = torch.full((20000,), 3, dtype=torch.int64)
    t = noise.randint(key, torch.arange(20000), torch.zeros_like(key), noise.TIMESTEP, 10)
    counts = torch.bincount(t, minlength=10).numpy()
    assert t.min() >= 0 and t.max() <= 9
    assert stats.chisquare(counts).pvalue > 1e-3


def test_permutations_are_permutations_and_differ_per_pass():
    a, b = noise.permutation(0, 0, 1000), noise.permutation(0, 1, 1000)
    assert torch.equal(torch.sort(a).values, torch.arange(1000)) and not torch.equal(a, b)
    assert torch.equal(a, noise.permutation(0, 0, 1000))
    order = epoch_order(5, 2, 10, 3, torch.device("cpu"))
    assert order.shape == (30,) and all(torch.equal(torch.sort(p).values, torch.arange(10)) for p in order.split(10))


def test_training_noise_is_the_same_however_the_batch_is_split():
    positions = torch.arange(100, 164)
    t, eps = step_noise(0, positions, 1000, (1, 4, 4))
    parts = [step_noise(0, p, 1000, (1, 4, 4)) for p in positions.tensor_split(3)]
    assert torch.equal(t, torch.cat([p[0] for p in parts])) and torch.equal(eps, torch.cat([p[1] for p in parts]))
    t2, _ = step_noise(1, positions, 1000, (1, 4, 4))
    assert not torch.equal(t, t2)  # another seed, another run


@pytest.mark.parametrize("n, size, batch", [(10, 2, 1), (10, 3, 4), (2, 3, 1), (0, 2, 5), (500, 2, 250), (7, 4, 3)])
def test_shards_cover_every_index_once_in_whole_batches(n, size, batch):
    parts = [shard(n, World(r, size, r), batch) for r in range(size)]
    assert [i for p in parts for i in p] == list(range(n))
    assert all(p.start % batch == 0 for p in parts if len(p))


def test_lognormal_timesteps_follow_edm_s_sigma_distribution():
    """EDM's training noise levels (Karras et al. 2022, sec. 5: ln sigma ~ N(P_mean, P_std²)) on the discrete
    linear schedule: the drawn steps' ln sigma has the normal's mean, standard deviation and quantiles (the
    bins are narrow where the mass is: T = 1000 steps over ln sigma in [-4.6, 5.1]); the draw is a function of
    (seed, position) as the uniform one is, and the uniform draw is unchanged by the option."""
    from helpers import diffusion_cfg, train_cfg

    from diffpipe.diffusion.schedule import NoiseSchedule
    from diffpipe.diffusion.training import timestep_cdf

    schedule = NoiseSchedule.from_config(diffusion_cfg(num_timesteps=1000, schedule="linear"))
    assert timestep_cdf(schedule, train_cfg(timesteps="uniform")) is None
    cdf = timestep_cdf(schedule, train_cfg(timesteps="lognormal", lognormal_mean=-1.2, lognormal_std=1.2))
    assert cdf.shape == (1000,) and cdf[-1] == 1.0 and bool((cdf[1:] >= cdf[:-1]).all())
    positions = torch.arange(200_000)
    t, _ = step_noise(0, positions, 1000, (1, 1, 1), cdf)
    ab = schedule.alpha_bar_f64[t]
    log_sigma = 0.5 * torch.log((1 - ab) / ab).numpy()
    assert abs(log_sigma.mean() - (-1.2)) < 0.02 and abs(log_sigma.std() - 1.2) < 0.02
    assert stats.kstest((log_sigma + 1.2) / 1.2, "norm").statistic < 0.01  # the bins' width is the only error
    parts = [step_noise(0, p, 1000, (1, 1, 1), cdf)[0] for p in positions[:64].tensor_split(3)]
    assert torch.equal(t[:64], torch.cat(parts))
    assert torch.equal(step_noise(0, positions[:64], 1000, (1, 1, 1))[0],
                       step_noise(0, positions[:64], 1000, (1, 1, 1), None)[0])
