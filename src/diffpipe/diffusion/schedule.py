"""Discrete noise schedules and the forward process q(x_t | x_0).

References
- Ho, Jain, Abbeel 2020, "Denoising Diffusion Probabilistic Models" (DDPM): linear betas, eq. 4 (q(x_t|x_0)),
  eq. 7 (posterior variance beta_tilde).
- Nichol & Dhariwal 2021, "Improved DDPM": cosine alpha_bar, eq. 17.
- Keras DDIM example (the flowers DDIM system): signal rate cos(angle(t)) with angle linear in t between
  acos(0.95) and acos(0.02); discretised here on t = (i + 1) / T.
- Lin, Liu, Li, Yang 2023, "Common Diffusion Noise Schedules and Sample Steps are Flawed", Algorithm 1 (zero
  terminal SNR): sqrt(alpha_bar) shifted and scaled so that its last value is 0 and its first unchanged
  (`diffusion.zero_terminal_snr`; diffusers' `rescale_zero_terminal_snr`). Then beta_{T-1} = 1, alpha_{T-1} = 0
  and alpha_bar_{T-1} = 0 exactly: x_{T-1} is pure noise, the SNR there is 0, and x0 can only come from a
  network predicting v or x0 (denoiser.py), never from dividing by sqrt(alpha_bar).

Notation: betas -> beta_t, alphas -> alpha_t = 1 - beta_t, alpha_bar -> prod_{s<=t} alpha_s,
alpha_bar_prev -> alpha_bar_{t-1} (1 at t = 0). t is 0-based: t in {0 ... T-1}.
Tables are computed in float64 and stored as float32 (lucidrains habit).
"""
from __future__ import annotations

import math

import torch

from ..core.params import DiffusionConfig


def linear_betas(T: int, beta_start: float, beta_end: float) -> torch.Tensor:
    """DDPM (Ho et al. 2020, sec. 4): betas linear from beta_start to beta_end, float64."""
    return torch.linspace(beta_start, beta_end, T, dtype=torch.float64)


def cosine_betas(T: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Improved DDPM (Nichol & Dhariwal 2021, eq. 17): alpha_bar(t) = cos²((t/T + s)/(1 + s) · π/2)."""
    steps = torch.arange(T + 1, dtype=torch.float64) / T
    f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    alpha_bar = f / f[0]
    return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=max_beta)


def angle_signal_rates(t: torch.Tensor, max_signal_rate: float = 0.95, min_signal_rate: float = 0.02):
    """Keras DDIM example (the flowers DDIM system): continuous t in [0, 1] -> (signal_rate, noise_rate).

    angle(t) = acos(max_signal_rate) + t (acos(min_signal_rate) - acos(max_signal_rate));
    signal = cos(angle), noise = sin(angle), so signal² + noise² = 1.
    """
    start, end = math.acos(max_signal_rate), math.acos(min_signal_rate)
    angle = start + t * (end - start)
    return torch.cos(angle), torch.sin(angle)


def angle_betas(T: int, max_signal_rate: float, min_signal_rate: float) -> torch.Tensor:
    """The angle schedule on the grid t = (i + 1)/T, i in {0 … T-1}: alpha_bar_i = signal_rate(t_i)².

    The first step's beta is 1 - alpha_bar_0 (alpha_bar_{-1} = 1), so x_0 itself is never reached exactly:
    as in the source, the least noisy level keeps signal rate ≈ 0.95 at t = 1/T ≈ 0.
    """
    t = torch.arange(1, T + 1, dtype=torch.float64) / T
    signal, _ = angle_signal_rates(t, max_signal_rate, min_signal_rate)
    alpha_bar = signal ** 2
    prev = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bar[:-1]])
    return 1 - alpha_bar / prev


def rescale_zero_terminal_snr(betas: torch.Tensor) -> torch.Tensor:
    """Lin et al. 2023, Algorithm 1: the betas whose sqrt(alpha_bar) is the given one shifted and scaled so that
    its last value is exactly 0 and its first unchanged (float64)."""
    alpha_bar_sqrt = torch.cumprod(1.0 - betas.to(torch.float64), dim=0).sqrt()
    first, last = alpha_bar_sqrt[0].clone(), alpha_bar_sqrt[-1].clone()
    alpha_bar_sqrt = (alpha_bar_sqrt - last) * (first / (first - last))
    alpha_bar = alpha_bar_sqrt ** 2
    alphas = torch.cat([alpha_bar[:1], alpha_bar[1:] / alpha_bar[:-1]])
    return 1.0 - alphas


# alpha_bar standing in for an exact 0 at the last step when the schedule is interpolated at fractional t (its
# log sigma would be infinite): diffusers' Euler scheduler uses the same 2^-24 under rescale_betas_zero_snr.
INTERPOLATION_FLOOR = 2.0 ** -24


class NoiseSchedule:
    """Precomputed tables for a discrete schedule; knows nothing of the network."""

    def __init__(self, betas: torch.Tensor):
        betas = betas.to(torch.float64)
        alphas = 1.0 - betas
        alpha_bar = torch.cumprod(alphas, dim=0)
        alpha_bar_prev = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bar[:-1]])
        # DDPM eq. 7: beta_tilde_t = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) · beta_t; finite also where
        # alpha_bar_t = 0 (zero terminal SNR: beta_tilde = 1 - alpha_bar_{t-1} there), as alpha_bar_t < 1 always.
        posterior_variance = betas * (1.0 - alpha_bar_prev) / (1.0 - alpha_bar)
        self.num_timesteps = len(betas)
        self.betas = betas.float()
        self.alphas = alphas.float()
        self.alpha_bar = alpha_bar.float()
        self.alpha_bar_prev = alpha_bar_prev.float()
        self.posterior_variance = posterior_variance.float()
        self.alpha_bar_f64 = alpha_bar
        # log sigma, sigma = sqrt((1 - alpha_bar) / alpha_bar): what fractional timesteps interpolate (alpha_bar_at)
        self.log_sigmas_f64 = 0.5 * (torch.log1p(-alpha_bar) - torch.log(alpha_bar.clamp(min=INTERPOLATION_FLOOR)))

    @classmethod
    def from_config(cls, cfg: DiffusionConfig) -> "NoiseSchedule":
        if cfg.schedule == "linear":
            betas = linear_betas(cfg.num_timesteps, cfg.beta_start, cfg.beta_end)
        elif cfg.schedule == "cosine":
            betas = cosine_betas(cfg.num_timesteps, cfg.cosine_s)
        else:
            betas = angle_betas(cfg.num_timesteps, cfg.max_signal_rate, cfg.min_signal_rate)
        if cfg.zero_terminal_snr:
            betas = rescale_zero_terminal_snr(betas)
        return cls(betas)

    def to(self, device) -> "NoiseSchedule":
        for name in ("betas", "alphas", "alpha_bar", "alpha_bar_prev", "posterior_variance"):
            setattr(self, name, getattr(self, name).to(device))
        return self

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """DDPM eq. 4: x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps, per-image t (B,).

        Always in float32, outside autocast (the schedule math must not run in bf16).
        """
        ab = self.alpha_bar[t].view(-1, *([1] * (x0.dim() - 1)))
        return ab.sqrt() * x0.float() + (1.0 - ab).sqrt() * eps.float()

    def alpha_bar_at(self, t: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """alpha_bar at timesteps t (B,), as `dtype`, on t's device. Integer t index the table (float32: the
        stored table itself; float64: the float64 one). Fractional t (a float tensor, in [0, T-1]) interpolate
        log sigma linearly between the neighbouring steps, sigma = sqrt((1 - alpha_bar) / alpha_bar), as
        diffusers' `_sigma_to_t` inverts it; a whole-numbered float t gets its step's table value exactly. A zero
        terminal alpha_bar enters the interpolation as INTERPOLATION_FLOOR (only t = T-1 itself gives 0)."""
        if not t.is_floating_point():
            table = self.alpha_bar if dtype == torch.float32 else self.alpha_bar_f64.to(dtype)
            return table.to(t.device)[t]
        tt = t.detach().to(torch.float64).clamp(0, self.num_timesteps - 1)
        low = tt.floor().long().clamp(max=max(self.num_timesteps - 2, 0))
        high = (low + 1).clamp(max=self.num_timesteps - 1)
        w = tt - low
        log_sigmas = self.log_sigmas_f64.to(t.device)
        ab = torch.sigmoid(-2.0 * ((1 - w) * log_sigmas[low] + w * log_sigmas[high]))  # 1 / (1 + sigma²)
        step = tt.round().long()
        exact = self.alpha_bar.to(t.device) if dtype == torch.float32 else self.alpha_bar_f64.to(t.device)
        return torch.where(tt == step, exact[step].to(dtype), ab.to(dtype))

    def predict_x0(self, x_t: torch.Tensor, t: torch.Tensor, eps_pred: torch.Tensor) -> torch.Tensor:
        """Invert eq. 4 for x_0 given the predicted noise: (x_t - sqrt(1 - ab_t) eps) / sqrt(ab_t). Not finite
        where ab_t = 0 (zero terminal SNR): there x0 comes from a v or x0 prediction (denoiser.py)."""
        ab = self.alpha_bar[t].view(-1, *([1] * (x_t.dim() - 1)))
        return (x_t - (1.0 - ab).sqrt() * eps_pred) / ab.sqrt()
