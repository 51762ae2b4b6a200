"""DDPM / DDIM samplers: DDIM(eta=1, all T) == DDPM; DDIM(eta=0) with an oracle recovers x0; seeds per image."""
import numpy as np
import torch

import pytest
from helpers import TINY_UNET, diffusion_cfg, model_cfg, spec

from diffpipe.core.errors import ConfigError
from diffpipe.diffusion.generate import generate
from diffpipe.diffusion.noise import ImageNoise
from diffpipe.diffusion.samplers import ddim_sample, ddim_timesteps, ddpm_sample, sampler_timesteps
from diffpipe.diffusion.schedule import NoiseSchedule
from diffpipe.nets.builder import build_model


def toy_eps_fn(x, t):
    """A fixed, non-trivial noise predictor (any function of x and t exercises the update rules)."""
    return 0.3 * x + 0.1 * torch.sin(t.float()[:, None, None, None] / 7.0)


def test_ddim_eta1_all_steps_equals_ddpm():
    s = NoiseSchedule.from_config(diffusion_cfg(num_timesteps=60))
    shape = (1, 4, 4)
    x_ddpm = ddpm_sample(toy_eps_fn, s, ImageNoise([3, 4, 5], shape))
    x_ddim = ddim_sample(toy_eps_fn, s, ImageNoise([3, 4, 5], shape), ddim_timesteps(60, 60), eta=1.0)
    torch.testing.assert_close(x_ddim, x_ddpm, atol=1e-4, rtol=1e-4)


def test_ddim_eta0_with_oracle_recovers_x0():
    s = NoiseSchedule.from_config(diffusion_cfg())
    torch.manual_seed(0)
    x0 = torch.rand(4, 1, 6, 6) * 2 - 1

    def oracle(x_t, t):  # the exact noise that maps x0 to x_t under eq. 4
        ab = s.alpha_bar[t].view(-1, 1, 1, 1)
        return (x_t - ab.sqrt() * x0) / (1 - ab).sqrt()

    for steps in (10, 50):
        out = ddim_sample(oracle, s, ImageNoise(range(4), (1, 6, 6)), ddim_timesteps(1000, steps), eta=0.0)
        torch.testing.assert_close(out, x0, atol=1e-4, rtol=0)


def test_ddim_timesteps_cover_both_ends():
    assert ddim_timesteps(1000, 50)[0] == 999 and ddim_timesteps(1000, 50)[-1] == 0
    assert len(ddim_timesteps(1000, 50)) == 50
    assert ddim_timesteps(10, 10) == list(range(9, -1, -1))


def test_sampler_timesteps_is_the_one_place_steps_become_timesteps():
    assert sampler_timesteps(spec("ddpm", steps=7), 20) == list(range(19, -1, -1))  # DDPM walks all T
    assert sampler_timesteps(spec("ddim", steps=5), 20) == ddim_timesteps(20, 5)
    with pytest.raises(ConfigError, match="must not exceed"):
        sampler_timesteps(spec("ddim", steps=50), 20)


def test_images_do_not_depend_on_batch_size():
    torch.manual_seed(0)
    cfg = model_cfg(**TINY_UNET, attn_down=(False, True), attn_up=(True, False))
    model = build_model(cfg, 1, 8).eval()
    s = NoiseSchedule.from_config(diffusion_cfg(num_timesteps=20))
    for sampler, eta in (("ddim", 0.5), ("ddpm", 1.0)):
        sp = spec(sampler, steps=5, eta=eta)
        a = generate(model, s, (1, 8, 8), sp, 5, first_seed=10, batch_size=5, progress=False)
        b = generate(model, s, (1, 8, 8), sp, 5, first_seed=10, batch_size=2, progress=False)
        np.testing.assert_array_equal(a, b)
        c = generate(model, s, (1, 8, 8), sp, 2, first_seed=13, batch_size=2, progress=False)
        np.testing.assert_array_equal(a[3:], c)  # image i depends only on seed first_seed + i


def test_clipped_ddpm_mean_equals_eq11_when_x0_in_range():
    """Eq. 7's posterior mean in terms of x0 equals eq. 11 whenever x0_pred needs no clamping."""
    s = NoiseSchedule.from_config(diffusion_cfg(num_timesteps=40))
    torch.manual_seed(0)
    x0 = torch.rand(3, 1, 4, 4) * 1.6 - 0.8

    def oracle(x_t, t):
        ab = s.alpha_bar[t].view(-1, 1, 1, 1)
        return (x_t - ab.sqrt() * x0) / (1 - ab).sqrt()

    a = ddpm_sample(oracle, s, ImageNoise([1, 2, 3], (1, 4, 4)))
    b = ddpm_sample(oracle, s, ImageNoise([1, 2, 3], (1, 4, 4)), x0_bounds=(-1.0, 1.0))
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_clipped_ddim_eta1_all_steps_equals_clipped_ddpm():
    """With x0 clamped, DDIM re-derives eps from the clamped x0, so eta = 1 over all T steps is still DDPM's
    update (its clamped posterior mean, eq. 7). The toy predictor's x0 leaves [-1, 1] at large t."""
    s = NoiseSchedule.from_config(diffusion_cfg(num_timesteps=60))
    x_ddpm = ddpm_sample(toy_eps_fn, s, ImageNoise([3, 4, 5], (1, 4, 4)), x0_bounds=(-1.0, 1.0))
    x_ddim = ddim_sample(toy_eps_fn, s, ImageNoise([3, 4, 5], (1, 4, 4)), ddim_timesteps(60, 60), eta=1.0,
                         x0_bounds=(-1.0, 1.0))
    unclamped = ddpm_sample(toy_eps_fn, s, ImageNoise([3, 4, 5], (1, 4, 4)))
    assert (unclamped - x_ddpm).abs().max().item() > 0.1  # the clamp changed the result
    # float32 round-off: eps is re-derived with a division by sqrt(1 - ᾱ_t), about 0.01 at t = 0
    torch.testing.assert_close(x_ddim, x_ddpm, atol=1e-3, rtol=0)


def test_clip_x0_keeps_ddim_inside_the_data_range():
    s = NoiseSchedule.from_config(diffusion_cfg(num_timesteps=50))
    wild = lambda x, t: -3.0 * x  # noqa: E731 - a predictor that pushes x0 far outside [-1, 1]
    out = ddim_sample(wild, s, ImageNoise(range(2), (1, 4, 4)), ddim_timesteps(50, 10), eta=0.0, x0_bounds=(-1.0, 1.0))
    assert out.abs().max().item() <= 1.0 + 1e-5


def test_ddim_timesteps_start_at_t_minus_1_for_every_s():
    assert ddim_timesteps(1000, 1) == [999]  # one step from pure noise, not a single step at t = 0
    for steps in (2, 3, 10, 50, 1000):
        ts = ddim_timesteps(1000, steps)
        assert ts[0] == 999 and ts[-1] == 0 and len(ts) == steps and ts == sorted(ts, reverse=True)


def test_clip_x0_clamps_in_data_units_with_normalised_data():
    """With train.normalize, model units are (x - mean) / std: clip_x0 clamps to the data range [-1, 1] mapped
    into those units, per channel (clamping to [-1, 1] in model units would wash out dark pixels)."""
    from diffpipe.data.channel_norm import ChannelNorm

    norm = ChannelNorm(mean=(-0.7, 0.2), std=(0.3, 0.5))
    low, high = norm.data_bounds()
    torch.testing.assert_close(norm.invert(low).flatten(), torch.tensor([-1.0, -1.0]))
    torch.testing.assert_close(norm.invert(high).flatten(), torch.tensor([1.0, 1.0]))
    s = NoiseSchedule.from_config(diffusion_cfg(num_timesteps=50))
    wild = lambda x, t: -3.0 * x  # noqa: E731
    out = ddim_sample(wild, s, ImageNoise(range(3), (2, 4, 4)), ddim_timesteps(50, 10), eta=0.0, x0_bounds=(low, high))
    data = norm.invert(out)
    assert data.abs().max().item() <= 1.0 + 1e-4
    assert data[:, 0].min().item() < -0.99  # the dark end is reachable: -1 in data units is (−1 + 0.7) / 0.3 = −1 model units
