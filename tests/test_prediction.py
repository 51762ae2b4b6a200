"""The prediction target (diffusion.prediction: eps | v | x0) and zero terminal SNR (diffusion.zero_terminal_snr).

- the conversions between eps, v and x0 are exact inverses (float64);
- the zero-terminal-SNR schedule is Lin et al. 2023's Algorithm 1 (written out here): ᾱ_T = 0, ᾱ_0 unchanged;
- with an exact denoiser on Gaussian data, DDIM (eta 0) draws the same samples whatever the network predicts;
- training regresses the network's output on its target (checked by hand for one batch), Min-SNR weighted per
  target, and a tiny run trains for each target;
- v (and x0) with zero terminal SNR sample finitely through DDPM and DDIM, the terminal step included;
- guidance, the timestep-loss metric and the export work for every target; eps + zero terminal SNR is refused.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn
from helpers import TINY_UNET, diffusion_cfg, model_cfg, spec, train_cfg

from diffpipe.core.config import from_dict, to_dict
from diffpipe.core.errors import ConfigError
from diffpipe.core.params import DiffusionConfig, TimestepLossConfig
from diffpipe.data.channel_norm import ChannelNorm
from diffpipe.data.pixels import to_model_range
from diffpipe.diffusion.checkpoint import LoadedModel, read_configs
from diffpipe.diffusion.denoiser import (PREDICTIONS, Denoiser, as_denoise, guided, make_denoiser, make_eps_fn,
                                         prediction_target, split_prediction)
from diffpipe.diffusion.noise import ImageNoise
from diffpipe.diffusion.samplers import ddim_sample, ddim_timesteps, ddpm_sample, run_sampler
from diffpipe.diffusion.schedule import (NoiseSchedule, angle_betas, cosine_betas, linear_betas,
                                         rescale_zero_terminal_snr)
from diffpipe.diffusion.training import batch_losses, min_snr_weight, step_noise, train
from diffpipe.metrics.timestep_loss import loss_by_timestep
from diffpipe.nets.builder import build_model

TINY = model_cfg(**TINY_UNET, attn_down=(False, True), attn_up=(True, False))


def column(ab: torch.Tensor) -> torch.Tensor:
    return ab.view(-1, 1, 1, 1)


# ---- conversions ---------------------------------------------------------------------------------------------

def test_eps_v_x0_conversions_are_exact_inverses_in_float64():
    gen = torch.Generator().manual_seed(0)
    x0 = torch.rand(6, 2, 3, 3, generator=gen, dtype=torch.float64) * 2 - 1
    eps = torch.randn(6, 2, 3, 3, generator=gen, dtype=torch.float64)
    ab = column(torch.tensor([0.0, 1e-6, 0.01, 0.5, 0.9, 0.9999], dtype=torch.float64))
    x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    v = ab.sqrt() * eps - (1 - ab).sqrt() * x0  # Salimans & Ho 2022, appendix D
    torch.testing.assert_close(prediction_target(x0, eps, ab, "v"), v, atol=0, rtol=0)
    assert prediction_target(x0, eps, ab, "eps") is eps and prediction_target(x0, eps, ab, "x0") is x0
    for prediction in PREDICTIONS:
        nonzero = slice(1, None) if prediction == "eps" else slice(None)  # eps says nothing of x0 at ᾱ = 0
        out = prediction_target(x0, eps, ab, prediction)[nonzero]
        x0_back, eps_back = split_prediction(out, x_t[nonzero], ab[nonzero], prediction)
        torch.testing.assert_close(x0_back, x0[nonzero], atol=1e-9, rtol=0)
        torch.testing.assert_close(eps_back, eps[nonzero], atol=1e-12, rtol=0)
        # eps -> v -> x0 -> eps: any target's (x0, eps) gives every other target back
        for other in PREDICTIONS:
            torch.testing.assert_close(prediction_target(x0_back, eps_back, ab[nonzero], other),
                                       prediction_target(x0, eps, ab, other)[nonzero], atol=1e-9, rtol=0)
    # at ᾱ = 0 (zero terminal SNR) x_t is the noise: v = -x0, and x0 comes from v or x0 only
    x0_v, eps_v = split_prediction(-x0[:1], x_t[:1], ab[:1], "v")
    assert torch.equal(x0_v, x0[:1]) and torch.equal(eps_v, x_t[:1])


def test_fractional_timesteps_interpolate_log_sigma():
    s = NoiseSchedule.from_config(diffusion_cfg(num_timesteps=50))
    t_long = torch.tensor([0, 7, 49])
    assert torch.equal(s.alpha_bar_at(t_long), s.alpha_bar[t_long])
    assert torch.equal(s.alpha_bar_at(t_long.double()), s.alpha_bar[t_long])  # whole-numbered floats: the table
    assert torch.equal(s.alpha_bar_at(t_long, torch.float64), s.alpha_bar_f64[t_long])
    log_sigma = lambda ab: 0.5 * torch.log((1 - ab) / ab)  # noqa: E731
    ab_half = s.alpha_bar_at(torch.tensor([7.5]), torch.float64)
    ends = log_sigma(s.alpha_bar_f64[7:9])
    torch.testing.assert_close(log_sigma(ab_half), ends.mean(0, keepdim=True))
    ts = torch.linspace(0, 49, 200, dtype=torch.float64)
    assert (s.alpha_bar_at(ts, torch.float64).diff() < 0).all()  # monotone in t
    z = NoiseSchedule.from_config(diffusion_cfg(num_timesteps=50, prediction="v", zero_terminal_snr=True))
    ab = z.alpha_bar_at(torch.tensor([48.0, 48.5, 48.99, 49.0]), torch.float64)
    assert ab[-1] == 0 and (ab[:-1] > 0).all() and (ab.diff() < 0).all()


def test_a_denoiser_at_whole_numbered_float_timesteps_is_the_integer_one():
    torch.manual_seed(0)
    for arch in ("unet", "resunet"):  # conditioned on t, and on 1 - ᾱ_t
        net = build_model(model_cfg(arch=arch, **TINY_UNET), 1, 8).eval()
        s = NoiseSchedule.from_config(diffusion_cfg(num_timesteps=50))
        denoise = make_denoiser(net, s, "v")
        x, t = torch.randn(3, 1, 8, 8), torch.tensor([0, 20, 49])
        with torch.no_grad():
            a, b = denoise(x, t), denoise(x, t.float())
            c = denoise(x, torch.tensor([0.5, 20.25, 48.5]))
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        assert all(torch.isfinite(v).all() for v in c) and a[0].dtype == c[0].dtype == torch.float32


# ---- zero terminal SNR ---------------------------------------------------------------------------------------

def algorithm_1(betas: np.ndarray) -> np.ndarray:
    """Lin et al. 2023, Algorithm 1 (and diffusers' rescale_zero_terminal_snr), in numpy float64."""
    alphas = 1 - betas
    alphas_bar = np.cumprod(alphas)
    alphas_bar_sqrt = np.sqrt(alphas_bar)
    alphas_bar_sqrt_0 = alphas_bar_sqrt[0].copy()
    alphas_bar_sqrt_T = alphas_bar_sqrt[-1].copy()
    alphas_bar_sqrt -= alphas_bar_sqrt_T  # shift so the last timestep is zero
    alphas_bar_sqrt *= alphas_bar_sqrt_0 / (alphas_bar_sqrt_0 - alphas_bar_sqrt_T)  # scale: the first unchanged
    alphas_bar = alphas_bar_sqrt ** 2
    alphas = alphas_bar[1:] / alphas_bar[:-1]
    alphas = np.concatenate([alphas_bar[0:1], alphas])
    return 1 - alphas


@pytest.mark.parametrize("betas", [linear_betas(1000, 1e-4, 0.02), cosine_betas(1000), angle_betas(1000, 0.95, 0.02)],
                         ids=["linear", "cosine", "angle"])
def test_zero_terminal_snr_is_algorithm_1(betas):
    rescaled = rescale_zero_terminal_snr(betas)
    np.testing.assert_allclose(rescaled.numpy(), algorithm_1(betas.numpy()), rtol=1e-12, atol=1e-15)
    before, after = NoiseSchedule(betas), NoiseSchedule(rescaled)
    assert after.alpha_bar_f64[-1].item() == 0.0 and after.alpha_bar[-1].item() == 0.0
    assert after.alpha_bar_f64[0].item() == pytest.approx(before.alpha_bar_f64[0].item(), rel=1e-12)
    assert after.betas[-1].item() == 1.0 and after.alphas[-1].item() == 0.0
    # sqrt(ᾱ) is an affine image of the old one: shifted and scaled
    old, new = before.alpha_bar_f64.sqrt(), after.alpha_bar_f64.sqrt()
    scale = (new[0] - new[500]) / (old[0] - old[500])
    torch.testing.assert_close(new, (old - old[-1]) * scale, atol=1e-12, rtol=0)
    # the tables stay finite: the posterior variance at the last step is 1 - ᾱ_{T-2}
    for table in (after.posterior_variance, after.alpha_bar_prev, after.betas):
        assert torch.isfinite(table).all() and (table >= 0).all()
    assert after.posterior_variance[-1].item() == pytest.approx(1 - after.alpha_bar_f64[-2].item(), rel=1e-6)


def test_from_config_rescales_only_when_asked():
    plain = NoiseSchedule.from_config(diffusion_cfg(num_timesteps=100))
    z = NoiseSchedule.from_config(diffusion_cfg(num_timesteps=100, prediction="v", zero_terminal_snr=True))
    assert plain.alpha_bar[-1] > 0 and z.alpha_bar[-1] == 0
    torch.testing.assert_close(z.betas, rescale_zero_terminal_snr(linear_betas(100, 1e-4, 0.02)).float())


def test_the_params_check_refuses_eps_with_zero_terminal_snr():
    base = to_dict(diffusion_cfg())
    with pytest.raises(ConfigError, match=r"^params key `diffusion\.zero_terminal_snr` needs diffusion\.prediction "
                                          r"v or x0") as e:
        from_dict(DiffusionConfig, {**base, "zero_terminal_snr": True}, "diffusion")
    assert "\n" not in str(e.value)
    for prediction in ("v", "x0"):
        assert from_dict(DiffusionConfig, {**base, "prediction": prediction, "zero_terminal_snr": True}, "diffusion")
    with pytest.raises(ConfigError, match=r"`diffusion\.prediction` must be one of"):
        from_dict(DiffusionConfig, {**base, "prediction": "velocity"}, "diffusion")
    # a checkpoint's configs: the legacy values (eps, false) fill in; the same rule applies to stored keys
    legacy = {k: v for k, v in base.items() if k not in ("prediction", "zero_terminal_snr")}
    config = {"diffusion": legacy, "model": to_dict(TINY), "train": to_dict(train_cfg())}
    diffusion, _, _ = read_configs(config)
    assert (diffusion.prediction, diffusion.zero_terminal_snr) == ("eps", False)
    with pytest.raises(ConfigError, match=r"`checkpoint\.diffusion\.zero_terminal_snr`"):
        read_configs({**config, "diffusion": {**legacy, "zero_terminal_snr": True}})


# ---- sampling does not depend on the target --------------------------------------------------------------------

MU, VAR = 0.3, 0.25  # the data: every pixel N(MU, VAR), independent


def gaussian_denoiser(schedule: NoiseSchedule, prediction: str) -> Denoiser:
    """The exact denoiser of the Gaussian data: E[x0 | x_t] = MU + a VAR / (a² VAR + 1 - a²) (x_t - a MU), a =
    sqrt(ᾱ_t), computed in float64 and given as the `prediction` network's (float32) output."""
    def output(x, t, labels=None):
        ab = column(schedule.alpha_bar_at(t, torch.float64))
        a, x = ab.sqrt(), x.double()
        x0 = MU + a * VAR / (ab * VAR + 1 - ab) * (x - a * MU)
        eps = (x - a * x0) / (1 - ab).sqrt()
        return prediction_target(x0, eps, ab, prediction).float()

    return Denoiser(output, schedule, prediction)


def test_ddim_with_an_exact_denoiser_gives_the_same_samples_for_every_target():
    s = NoiseSchedule.from_config(diffusion_cfg(num_timesteps=1000))
    noise = lambda: ImageNoise(range(6), (1, 16, 16))  # noqa: E731
    out = {p: ddim_sample(gaussian_denoiser(s, p), s, noise(), ddim_timesteps(1000, 50), eta=0.0) for p in PREDICTIONS}
    for p in ("v", "x0"):
        torch.testing.assert_close(out[p], out["eps"], atol=2e-4, rtol=0)
    # and the samples are the data's distribution (ᾱ_T = 4e-5: x_T is nearly the N(0, I) the sampler starts from)
    assert out["v"].mean().item() == pytest.approx(MU, abs=0.05)
    assert out["v"].var().item() == pytest.approx(VAR, rel=0.15)
    # A short schedule ends far from noise (T = 200: ᾱ_T = 0.13) and starting from N(0, I) loses the data's mean
    # (Lin et al. 2023); with zero terminal SNR it is kept. v and x0 (eps is undefined at ᾱ_T = 0) sample the same.
    short = NoiseSchedule.from_config(diffusion_cfg(num_timesteps=200))
    biased = ddim_sample(gaussian_denoiser(short, "v"), short, noise(), ddim_timesteps(200, 50), eta=0.0)
    assert abs(biased.mean().item() - MU) > 0.04
    z = NoiseSchedule.from_config(diffusion_cfg(num_timesteps=200, prediction="v", zero_terminal_snr=True))
    zv = ddim_sample(gaussian_denoiser(z, "v"), z, noise(), ddim_timesteps(200, 50), eta=0.0)
    zx = ddim_sample(gaussian_denoiser(z, "x0"), z, noise(), ddim_timesteps(200, 50), eta=0.0)
    torch.testing.assert_close(zv, zx, atol=2e-4, rtol=0)
    assert zv.mean().item() == pytest.approx(MU, abs=0.02) and zv.var().item() == pytest.approx(VAR, rel=0.15)


def test_an_eps_denoiser_gives_the_eps_functions_bytes():
    """The eps path is the samplers' old one: a Denoiser predicting eps and the plain eps_fn give equal bytes,
    guided too."""
    torch.manual_seed(0)
    net = build_model(model_cfg(num_classes=2, **TINY_UNET), 1, 8).eval()
    s = NoiseSchedule.from_config(diffusion_cfg(num_timesteps=8))
    y = torch.tensor([0, 1, 1])
    for scale in (1.0, 2.5):
        for sampler, eta, clip in (("ddim", 1.0, True), ("ddpm", 1.0, False), ("ddpm", 1.0, True)):
            sp = spec(sampler, steps=4, eta=eta, clip_x0=clip)
            a = run_sampler(sp, guided(make_denoiser(net, s, "eps"), y, scale), s, ImageNoise(range(3), (1, 8, 8)))
            b = run_sampler(sp, guided(make_eps_fn(net, s), y, scale), s, ImageNoise(range(3), (1, 8, 8)))
            assert torch.equal(a, b)


def test_guidance_is_linear_in_every_prediction():
    """Combining the network's outputs (v or x0) is combining x0 and eps: both are affine in the output."""
    torch.manual_seed(0)
    net = build_model(model_cfg(num_classes=2, **TINY_UNET), 1, 8).eval()
    s = NoiseSchedule.from_config(diffusion_cfg(num_timesteps=30, prediction="v", zero_terminal_snr=True))
    x, t, y = torch.randn(3, 1, 8, 8), torch.tensor([29, 10, 0]), torch.tensor([0, 1, 1])
    for prediction in ("v", "x0", "eps"):
        d = make_denoiser(net, s, prediction)
        with torch.no_grad():
            (x0_c, eps_c), (x0_u, eps_u) = d(x, t, y), d(x, t, torch.full_like(y, -1))
            x0_g, eps_g = guided(d, y, 2.5)(x, t)
        rows = slice(None) if prediction != "eps" else slice(1, None)  # eps: x0 undefined at ᾱ_T = 0
        # float32 round-off, amplified by the conversion's 1 / sqrt(1 - ᾱ_0) ≈ 100 (x0) or 1 / sqrt(ᾱ) (eps)
        torch.testing.assert_close(x0_g[rows], (x0_u + 2.5 * (x0_c - x0_u))[rows], atol=1e-3, rtol=1e-4)
        torch.testing.assert_close(eps_g, eps_u + 2.5 * (eps_c - eps_u), atol=1e-3, rtol=1e-4)


# ---- v and x0 with zero terminal SNR sample finitely -----------------------------------------------------------

@pytest.mark.parametrize("prediction", ["v", "x0"])
def test_zero_terminal_snr_samples_finitely_through_every_sampler(prediction):
    torch.manual_seed(0)
    s = NoiseSchedule.from_config(diffusion_cfg(num_timesteps=10, prediction=prediction, zero_terminal_snr=True))
    assert s.alpha_bar[-1].item() == 0.0
    every = (spec("ddpm", steps=10, eta=1.0), spec("ddpm", steps=10, clip_x0=True), spec("ddim", steps=4, eta=0.0),
             spec("ddim", steps=1, eta=0.0), spec("ddim", steps=10, eta=1.0),
             spec("ddim", steps=4, eta=0.5, clip_x0=True))
    for arch, specs in (("unet", every), ("resunet", every[:1] + every[3:4])):  # conditioned on t, on 1 - ᾱ_t = 1
        net = build_model(model_cfg(arch=arch, **TINY_UNET), 1, 8).eval()
        denoise = make_denoiser(net, s, prediction)
        for sp in specs:
            seen = []
            out = run_sampler(sp, denoise, s, ImageNoise(range(2), (1, 8, 8)),
                              callback=lambda i, t, x, x0: seen.append((t, x0.clone())))
            assert seen[0][0] == 9 and torch.isfinite(seen[0][1]).all(), sp  # the terminal step's x0 prediction
            assert torch.isfinite(out).all(), sp
    # the exact denoiser: at ᾱ_T = 0 the terminal x0 prediction is E[x0] = MU, by DDPM and DDIM
    for sample in (lambda d: ddpm_sample(d, s, ImageNoise(range(2), (1, 8, 8)), callback=keep),
                   lambda d: ddim_sample(d, s, ImageNoise(range(2), (1, 8, 8)), ddim_timesteps(10, 4), 1.0,
                                         callback=keep)):
        first = []
        keep = lambda i, t, x, x0: first.append(x0) if i == 0 else None  # noqa: E731
        assert torch.isfinite(sample(gaussian_denoiser(s, prediction))).all()
        torch.testing.assert_close(first[0], torch.full_like(first[0], MU), atol=1e-6, rtol=0)


def test_a_plain_eps_function_is_still_taken_by_the_samplers():
    s = NoiseSchedule.from_config(diffusion_cfg(num_timesteps=10))
    eps_fn = lambda x, t: 0.3 * x  # noqa: E731
    x, t = torch.randn(2, 1, 4, 4), torch.tensor([9, 3])
    x0, eps = as_denoise(eps_fn, s)(x, t)
    assert torch.equal(eps, 0.3 * x) and torch.equal(x0, s.predict_x0(x, t, 0.3 * x))


# ---- training --------------------------------------------------------------------------------------------------

def tiny_images(n=8, size=8):
    bar = np.zeros((1, size, size), np.uint8)
    bar[:, :, size // 2 - 1:size // 2 + 1] = 255
    return np.stack([bar if i % 2 else bar.transpose(0, 2, 1) for i in range(n)])


@pytest.mark.parametrize("gamma", [0.0, 5.0])
@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_the_training_loss_is_the_targets_error_by_hand(prediction, gamma):
    torch.manual_seed(0)
    zero = prediction != "eps"  # v and x0 also under zero terminal SNR (its last step has SNR 0)
    s = NoiseSchedule.from_config(diffusion_cfg(num_timesteps=20, prediction=prediction, zero_terminal_snr=zero))
    net = build_model(TINY, 1, 8)
    cfg = train_cfg(min_snr_gamma=gamma, seed=3)
    x0 = to_model_range(torch.from_numpy(tiny_images()))
    positions = torch.arange(100, 108)
    losses = batch_losses(make_denoiser(net, s, prediction), s, x0, positions, None, cfg)

    # by hand: the same (t, eps), x_t = sqrt(ᾱ) x0 + sqrt(1 - ᾱ) eps, the network on t, its target, the mean square
    t, eps = step_noise(3, positions, 20, (1, 8, 8))
    ab = s.alpha_bar_f64[t].view(-1, 1, 1, 1)
    x_t = (ab.sqrt() * x0.double() + (1 - ab).sqrt() * eps.double()).float()
    out = net(x_t, t.float()).double()
    target = {"eps": eps.double(), "x0": x0.double(),
              "v": ab.sqrt() * eps.double() - (1 - ab).sqrt() * x0.double()}[prediction]
    mse = (out - target).square().mean(dim=(1, 2, 3))
    if gamma:
        snr = (ab / (1 - ab)).flatten()
        capped = snr.clamp(max=gamma)
        mse = mse * {"eps": capped / snr, "v": capped / (snr + 1), "x0": capped}[prediction]
    torch.testing.assert_close(losses.double(), mse, atol=1e-5, rtol=1e-5)
    assert losses.requires_grad


def test_min_snr_weights_per_target():
    s = NoiseSchedule.from_config(diffusion_cfg(num_timesteps=50, prediction="v", zero_terminal_snr=True))
    t = torch.tensor([0, 10, 30, 48, 49])
    ab = s.alpha_bar[t]
    snr = ab / (1 - ab)
    for prediction in PREDICTIONS:
        assert min_snr_weight(s, t, 0.0, prediction) is None
    torch.testing.assert_close(min_snr_weight(s, t, 5.0, "v"), snr.clamp(max=5) / (snr + 1))
    torch.testing.assert_close(min_snr_weight(s, t, 5.0, "x0"), snr.clamp(max=5))
    eps_w = min_snr_weight(s, t, 5.0, "eps")
    assert torch.isfinite(eps_w).all() and eps_w[-1] == 1.0 and eps_w[:-1].equal(snr[:-1].clamp(max=5) / snr[:-1])
    # all three are one x0-space weight min(SNR, gamma): eps error = SNR x0 error, v error = (SNR + 1) x0 error
    torch.testing.assert_close(min_snr_weight(s, t, 5.0, "v")[:-1] * (snr[:-1] + 1), snr[:-1].clamp(max=5))
    torch.testing.assert_close(eps_w[:-1] * snr[:-1], snr[:-1].clamp(max=5))


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_a_tiny_run_trains_for_every_target(prediction):
    zero = prediction != "eps"
    diffusion = diffusion_cfg(num_timesteps=20, prediction=prediction, zero_terminal_snr=zero)
    result = train(tiny_images(), diffusion, TINY, train_cfg(epochs=1, batch_size=8, min_snr_gamma=5.0),
                   progress=False, log=lambda _: None)
    assert result.step_losses and math.isfinite(result.epoch_losses[-1]["loss"])
    assert result.checkpoint["config"]["diffusion"]["prediction"] == prediction
    assert result.checkpoint["config"]["diffusion"]["zero_terminal_snr"] is zero


# ---- the metric and the export ---------------------------------------------------------------------------------

class AsTarget(nn.Module):
    """An eps network re-expressed as a network predicting `prediction` (conditioned on the timestep)."""

    conditioning = "timestep"

    def __init__(self, eps_net: nn.Module, schedule: NoiseSchedule, prediction: str):
        super().__init__()
        self.eps_net, self.schedule, self.prediction = eps_net, schedule, prediction

    def forward(self, x, t):
        eps = self.eps_net(x, t)
        ab = column(self.schedule.alpha_bar[t.long()])
        x0 = (x - (1 - ab).sqrt() * eps) / ab.sqrt()
        return prediction_target(x0, eps, ab, self.prediction)


def test_the_timestep_loss_is_in_eps_units_for_every_target():
    torch.manual_seed(0)
    s = NoiseSchedule.from_config(diffusion_cfg(num_timesteps=40))
    eps_net = build_model(TINY, 1, 8).eval()
    images = tiny_images(6)
    cfg = from_dict(TimestepLossConfig, dict(buckets=4, num_images=6, batch_size=4, seed=1), "timestep_loss")
    reference = loss_by_timestep(eps_net, s, images, cfg)
    for prediction in ("v", "x0"):
        rows = loss_by_timestep(AsTarget(eps_net, s, prediction), s, images, cfg, prediction=prediction)
        assert [r["bucket"] for r in rows] == [r["bucket"] for r in reference]
        np.testing.assert_allclose([r["mse"] for r in rows], [r["mse"] for r in reference], rtol=1e-3)


def test_the_export_records_and_rebuilds_the_prediction_and_zero_terminal_snr(tmp_path):
    from diffpipe.diffusion.export import read_export, write_export
    from diffpipe.diffusion.inference import draw

    torch.manual_seed(0)
    diffusion = diffusion_cfg(num_timesteps=20, prediction="v", zero_terminal_snr=True)
    net = build_model(TINY, 1, 8).eval().requires_grad_(False)
    loaded = LoadedModel(net, diffusion, TINY, (1, 8, 8), ChannelNorm.identity(1), None, train_cfg())
    config = write_export(tmp_path / "export", loaded, provenance={})
    assert config["prediction_type"] == "v_prediction"
    assert config["diffusion"]["prediction"] == "v" and config["diffusion"]["zero_terminal_snr"] is True
    back, _ = read_export(tmp_path / "export", torch.device("cpu"))
    assert back.diffusion == diffusion
    sp = spec("ddim", steps=5, eta=1.0)
    a, _, _ = draw(loaded, sp, 3, 0, 3, progress=False)
    b, _, _ = draw(back, sp, 3, 0, 3, progress=False)
    np.testing.assert_array_equal(a, b)
    # the same weights read as an eps model draw other images: the target is used
    eps_model = LoadedModel(net, diffusion_cfg(num_timesteps=20), TINY, (1, 8, 8), ChannelNorm.identity(1), None,
                            train_cfg())
    assert not np.array_equal(a, draw(eps_model, sp, 3, 0, 3, progress=False)[0])
