"""Reverse-process samplers: DDPM ancestral sampling and DDIM. They know nothing of the network.

References
- Ho et al. 2020 (DDPM), Algorithm 2 and eq. 11: mu_theta = (x_t - beta_t / sqrt(1 - alpha_bar_t) · eps) / sqrt(alpha_t);
  sigma_t² = beta_tilde_t (eq. 7).
- Song, Meng, Ermon 2021 (DDIM), eq. 12 (the generalised update) and eq. 16 (sigma(eta)).
  With eta = 1 over all T steps, eq. 12 is exactly DDPM's update (tested).

`denoise(x_t, t)` (a Denoise, denoiser.py) returns (x0_pred, eps_pred) for a batch at integer timesteps t (B,),
whatever the network predicts (diffusion.prediction); a function returning one tensor is taken as an eps
predictor (the contract before Denoise). Randomness comes from an `ImageNoise` (noise.py). `run_sampler` is
the one dispatch from a `SamplerSpec` (params) to a sampler (here, or a solver of solvers.py: DPM-Solver++(2M),
its SDE variant, EDM's Heun), `sampler_timesteps` the one place a spec becomes the timesteps it visits and
`sampler_nfe` its network evaluations per image.

Zero terminal SNR (schedule.py, Lin et al. 2023): at the first step ᾱ_t = 0 and alpha_t = 0. The samplers then
take x0 from the denoiser (a v or x0 network's output, never a division by sqrt(ᾱ)) and DDPM uses the posterior
mean in terms of x0 (eq. 7), since eq. 11 divides by sqrt(alpha_t); DDIM's eq. 12 needs no change.
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import torch

from ..core.errors import ConfigError
from ..core.params import SamplerSpec
from .denoiser import Denoise, as_denoise
from .noise import ImageNoise
from . import solvers
from .schedule import NoiseSchedule

EpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # the contract before Denoise: predicted noise only
StepCallback = Callable[[int, int, torch.Tensor, torch.Tensor], None]  # (step index, t, x_t, x0_pred)
# (low, high) that x0_pred is clamped to at every step, in model units: floats or (1, C, 1, 1) tensors; None =
# no clamp. The data range [-1, 1] is (-1, 1) unless the data are normalised (ChannelNorm.data_bounds).
Bounds = Optional[tuple]


@torch.no_grad()
def ddpm_sample(denoise: Denoise, schedule: NoiseSchedule, noise: ImageNoise,
                callback: Optional[StepCallback] = None, x0_bounds: Bounds = None) -> torch.Tensor:
    """DDPM ancestral sampling (Ho et al. 2020, Algorithm 2) over all T steps; returns x_0 (unclamped).

    Notation: betas -> beta_t, alphas -> alpha_t, alpha_bar -> ᾱ_t, posterior_variance -> sigma_t² = beta_tilde_t.
    x0_bounds=None is the source's rule (eq. 11, x0_pred only reported); bounds clamp x0_pred to the data range
    and use the posterior mean of eq. 7 in terms of x0 (as Ho et al.'s released code does), as does a step
    with ᾱ_t = 0 (zero terminal SNR: eq. 11 divides by sqrt(alpha_t) = 0).
    """
    denoise = as_denoise(denoise, schedule)
    x = noise.randn()  # x_T ~ N(0, I)
    batch = x.shape[0]
    for i, t in enumerate(range(schedule.num_timesteps - 1, -1, -1)):
        t_batch = torch.full((batch,), t, device=x.device, dtype=torch.long)
        x0_pred, eps_pred = denoise(x, t_batch)
        beta, alpha, alpha_bar = schedule.betas[t], schedule.alphas[t], schedule.alpha_bar[t]
        if x0_bounds is not None or schedule.alpha_bar_f64[t] == 0:
            # 1'. Posterior mean, eq. 7: mu_tilde = sqrt(ᾱ_{t-1}) beta_t / (1 - ᾱ_t) x0 + sqrt(alpha_t)(1 - ᾱ_{t-1}) / (1 - ᾱ_t) x_t.
            if x0_bounds is not None:
                x0_pred = torch.clamp(x0_pred, *x0_bounds)
            alpha_bar_prev = schedule.alpha_bar_prev[t]
            mean = (alpha_bar_prev.sqrt() * beta * x0_pred + alpha.sqrt() * (1.0 - alpha_bar_prev) * x) / (1.0 - alpha_bar)
        else:
            # 1. Posterior mean, eq. 11.
            mean = (x - beta / (1.0 - alpha_bar).sqrt() * eps_pred) / alpha.sqrt()
        if callback is not None:
            callback(i, t, x, x0_pred)
        # 2. Add noise with sigma_t² = beta_tilde_t (eq. 7) except at the last step.
        if t > 0:
            x = mean + schedule.posterior_variance[t].sqrt() * noise.randn()
        else:
            x = mean
    return x


def ddim_timesteps(num_timesteps: int, num_steps: int) -> list[int]:
    """S timesteps evenly spread over {0 … T-1}, both ends included, descending: T-1 first for every S
    (S = 1 is the single step [T-1], from pure noise straight to x_0)."""
    if not 1 <= num_steps <= num_timesteps:
        raise ValueError(f"num_steps must be in [1, {num_timesteps}], got {num_steps}")
    if num_steps == 1:
        return [num_timesteps - 1]
    ts = np.unique(np.round(np.linspace(0, num_timesteps - 1, num_steps)).astype(int))
    return [int(t) for t in ts[::-1]]


@torch.no_grad()
def ddim_sample(denoise: Denoise, schedule: NoiseSchedule, noise: ImageNoise, timesteps: list[int], eta: float,
                callback: Optional[StepCallback] = None, x0_bounds: Bounds = None) -> torch.Tensor:
    """DDIM (Song et al. 2021, eq. 12) over the descending `timesteps`; eta = 0 deterministic, 1 = DDPM-like.

    Notation: alpha_bar[t] -> ᾱ_t (the paper's α_t), alpha_bar_prev -> ᾱ at the next (smaller) timestep of
    the sub-sequence, 1 after the last; sigma -> σ_t(η) of eq. 16. x0_bounds clamp x0_pred to the data
    range, and eps is then re-derived from x_t and the clamped x0, so that eq. 12's two terms describe the same
    x_0: with eta = 1 over all T steps this is exactly DDPM's clamped posterior mean (eq. 7, as in Ho et al.'s
    released code). Keeping the network's eps beside a clamped x0 (diffusers' `clip_sample`) mixes two x_0.
    x0_pred and eps_pred come from the denoiser, so a step at ᾱ_t = 0 (zero terminal SNR) is finite.
    """
    denoise = as_denoise(denoise, schedule)
    x = noise.randn()  # x_T ~ N(0, I)
    batch = x.shape[0]
    one = torch.ones((), device=x.device)
    for i, t in enumerate(timesteps):
        t_prev = timesteps[i + 1] if i + 1 < len(timesteps) else -1
        alpha_bar = schedule.alpha_bar[t]
        alpha_bar_prev = schedule.alpha_bar[t_prev] if t_prev >= 0 else one
        t_batch = torch.full((batch,), t, device=x.device, dtype=torch.long)
        # 1. "Predicted x_0" term of eq. 12, and the noise, from the denoiser.
        x0_pred, eps_pred = denoise(x, t_batch)
        if x0_bounds is not None:
            x0_pred = torch.clamp(x0_pred, *x0_bounds)
            eps_pred = (x - alpha_bar.sqrt() * x0_pred) / (1.0 - alpha_bar).sqrt()  # the eps of that x0
        if callback is not None:
            callback(i, t, x, x0_pred)
        # 2. sigma_t(eta), eq. 16.
        sigma = eta * ((1.0 - alpha_bar_prev) / (1.0 - alpha_bar) * (1.0 - alpha_bar / alpha_bar_prev)).sqrt()
        # 3. Eq. 12: x_{t-1} = sqrt(ᾱ_prev) x0_pred + sqrt(1 - ᾱ_prev - σ²) eps_pred + σ z.
        x = alpha_bar_prev.sqrt() * x0_pred + (1.0 - alpha_bar_prev - sigma ** 2).clamp(min=0).sqrt() * eps_pred
        if eta > 0 and t_prev >= 0:
            x = x + sigma * noise.randn()
    return x


def sampler_timesteps(spec: SamplerSpec, num_timesteps: int, schedule: Optional[NoiseSchedule] = None) -> list:
    """The timesteps, descending, that `spec` visits, one per step (one callback each): all T for DDPM, S spread
    ones for DDIM, the DPM solvers' S (diffusers' spacing), Heun's t(sigma_i) of EDM's grid (fractional; needs
    the `schedule`)."""
    if spec.steps > num_timesteps:
        raise ConfigError(f"sampler steps ({spec.steps}) must not exceed the number of diffusion steps T = {num_timesteps}")
    if spec.sampler == "ddpm":
        return list(range(num_timesteps - 1, -1, -1))
    if spec.sampler == "ddim":
        return ddim_timesteps(num_timesteps, spec.steps)
    if spec.sampler.startswith("dpmpp"):
        if spec.steps >= num_timesteps:
            raise ConfigError(f"DPM-Solver++ steps ({spec.steps}) must be below the number of diffusion steps "
                              f"T = {num_timesteps}")
        return solvers.dpm_solver_timesteps(num_timesteps, spec.steps)
    if schedule is None:
        raise ValueError("Heun's timesteps depend on the schedule: pass it")
    return solvers.sigma_to_t(schedule, solvers.karras_sigmas(schedule, spec.steps)[:-1]).tolist()


def sampler_nfe(spec: SamplerSpec, num_timesteps: int) -> int:
    """Network evaluations per image (unguided): T for DDPM, S for DDIM and the DPM solvers, 2S - 1 for Heun
    (its second-order correction evaluates again at every step but the last, EDM Algorithm 1)."""
    if spec.sampler == "ddpm":
        return num_timesteps
    if spec.sampler == "ddim":
        return len(ddim_timesteps(num_timesteps, spec.steps))
    return solvers.solver_nfe(spec.sampler, spec.steps)


def run_sampler(spec: SamplerSpec, denoise: Denoise, schedule: NoiseSchedule, noise: ImageNoise,
                callback: Optional[StepCallback] = None, x0_bounds: tuple = (-1.0, 1.0)) -> torch.Tensor:
    """x_0 for the images of `noise` by the sampler `spec` names (unclamped, in model units), `denoise` giving
    (x0_pred, eps_pred). With `spec.clip_x0`, x0_pred is clamped to `x0_bounds`: the data range [-1, 1] in
    model units."""
    bounds = x0_bounds if spec.clip_x0 else None
    if spec.sampler == "ddpm":
        return ddpm_sample(denoise, schedule, noise, callback=callback, x0_bounds=bounds)
    if spec.sampler == "ddim":
        return ddim_sample(denoise, schedule, noise, sampler_timesteps(spec, schedule.num_timesteps), spec.eta,
                           callback=callback, x0_bounds=bounds)
    denoise = as_denoise(denoise, schedule)
    if spec.sampler.startswith("dpmpp"):
        return solvers.dpm_solver_pp_2m_sample(denoise, schedule, noise, sampler_timesteps(spec, schedule.num_timesteps),
                                               stochastic=spec.sampler == "dpmpp_2m_sde", callback=callback,
                                               x0_bounds=bounds)
    # Heun: eta is EDM's churn per step, gamma_i = min(S_churn / N, sqrt(2) - 1) with S_churn = eta N
    return solvers.heun_sample(denoise, schedule, noise, spec.steps, s_churn=spec.eta * spec.steps,
                               callback=callback, x0_bounds=bounds)


def describe_sampler(spec: SamplerSpec, num_timesteps: int, network_calls: int = 1) -> dict:
    """What a run actually did, for metrics files: the sampler, its effective steps and eta, clip_x0, and nfe,
    the network evaluations per image (`network_calls` per evaluation: 2 under classifier-free guidance with a
    scale other than 0 or 1, which doubles the batch)."""
    solver = spec.sampler not in ("ddpm", "ddim")
    # eta as the noise each sampler actually adds: DDPM 1; DPM-Solver++ none, its SDE variant the full reverse SDE's
    eta = {"ddpm": 1.0, "dpmpp_2m": 0.0, "dpmpp_2m_sde": 1.0}.get(spec.sampler, spec.eta)
    return {"sampler": spec.sampler, "steps": spec.steps if solver else len(sampler_timesteps(spec, num_timesteps)),
            "eta": eta, "clip_x0": spec.clip_x0, "nfe": sampler_nfe(spec, num_timesteps) * network_calls}
