"""Discrete noise schedules and the forward process q(x_t | x_0).

References
- Ho, Jain, Abbeel 2020, "Denoising Diffusion Probabilistic Models" (DDPM): linear betas, eq. 4 (q(x_t|x_0)),
  eq. 7 (posterior variance beta_tilde).
- Nichol & Dhariwal 2021, "Improved DDPM": cosine alpha_bar, eq. 17.
- Keras DDIM example (the flowers DDIM system): signal rate cos(angle(t)) with angle linear in t between
  acos(0.95) and acos(0.02); discretised here on t = (i + 1) / T.

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


class NoiseSchedule:
    """Precomputed tables for a discrete schedule; knows nothing of the network."""

    def __init__(self, betas: torch.Tensor):
        betas = betas.to(torch.float64)
        alphas = 1.0 - betas
        alpha_bar = torch.cumprod(alphas, dim=0)
        alpha_bar_prev = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bar[:-1]])
        # DDPM eq. 7: beta_tilde_t = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) · beta_t
        posterior_variance = betas * (1.0 - alpha_bar_prev) / (1.0 - alpha_bar)
        self.num_timesteps = len(betas)
        self.betas = betas.float()
        self.alphas = alphas.float()
        self.alpha_bar = alpha_bar.float()
        self.alpha_bar_prev = alpha_bar_prev.float()
        self.posterior_variance = posterior_variance.float()
        self.alpha_bar_f64 = alpha_bar

    @classmethod
    def from_config(cls, cfg: DiffusionConfig) -> "NoiseSchedule":
        if cfg.schedule == "linear":
            betas = linear_betas(cfg.num_timesteps, cfg.beta_start, cfg.beta_end)
        elif cfg.schedule == "cosine":
            betas = cosine_betas(cfg.num_timesteps, cfg.cosine_s)
        else:
            betas = angle_betas(cfg.num_timesteps, cfg.max_signal_rate, cfg.min_signal_rate)
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

    def predict_x0(self, x_t: torch.Tensor, t: torch.Tensor, eps_pred: torch.Tensor) -> torch.Tensor:
        """Invert eq. 4 for x_0 given the predicted noise: (x_t - sqrt(1 - ab_t) eps) / sqrt(ab_t)."""
        ab = self.alpha_bar[t].view(-1, *([1] * (x_t.dim() - 1)))
        return (x_t - (1.0 - ab).sqrt() * eps_pred) / ab.sqrt()
