"""Fast ODE/SDE solvers for the reverse process: DPM-Solver++(2M), SDE-DPM-Solver++(2M), and EDM's Heun (and Euler).

References
- Lu, Zhou, Bao, Chen, Li, Zhu 2022, "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion Probabilistic
  Models" (arXiv:2211.01095): the diffusion ODE solved with the data-prediction model x_theta, in
  lambda_t = log(alpha_t / sigma_t). Its exact solution from s to t is
      x_t = sigma_t / sigma_s x_s + sigma_t ∫_{lambda_s}^{lambda_t} e^lambda x_theta(x_lambda, lambda) dlambda,
  DPM-Solver++1 (x_theta constant over the step) is DDIM, and Algorithm 2, DPM-Solver++(2M), extrapolates
  x_theta linearly in lambda from the two latest model outputs (one network call per step).
- The SDE counterpart, SDE-DPM-Solver++(2M), in the form of diffusers' `algorithm_type="sde-dpmsolver++"` (after
  Lu et al. 2022; Gonzalez et al. 2023, "SEEDS: Exponential SDE Solvers for Fast High-Quality Sampling from
  Diffusion Models", derive such exponential-integrator SDE updates): the reverse SDE in lambda, solved exactly
  for its linear part, from s to t (h = lambda_t - lambda_s, z ~ N(0, I)):
      x_t = sigma_t / sigma_s e^{-h} x_s + 2 alpha_t ∫ e^{-2(lambda_t - lambda)} x_theta dlambda
            + sigma_t sqrt(1 - e^{-2h}) z.
- Karras, Aittala, Aila, Laine 2022, "Elucidating the Design Space of Diffusion-Based Generative Models" (EDM):
  the probability-flow ODE in sigma space, dx/dsigma = (x - D(x; sigma)) / sigma (eq. 1 with eq. 3, sigma(t) = t,
  s(t) = 1), Algorithm 1 (Heun's second-order method, an Euler step to sigma = 0), Algorithm 2 (stochastic
  "churn"), eq. 5 (the rho = 7 time steps), Table 1 "VP" preconditioning
  (D(x; sigma) = x - sigma F(x / sqrt(sigma² + 1), t(sigma)) for a network F that predicts the noise).
- diffusers 0.42 (`DPMSolverMultistepScheduler`, `HeunDiscreteScheduler`): the timestep spacing ("linspace"), the
  first-order last step to sigma = 0 (`lower_order_final`, `final_sigmas_type="zero"`), and `_sigma_to_t`
  (log-sigma interpolation over the discrete table) that these follow so that tests compare exactly.

Notation: ab_t = alpha_bar[t]; VP: alpha_t = sqrt(ab_t), sigma_t = sqrt(1 - ab_t) (x_t = alpha_t x_0 + sigma_t eps),
lambda_t = log(alpha_t / sigma_t) (half the log-SNR). EDM: sigma = sigma_t / alpha_t = sqrt((1 - ab) / ab) and
x̂ = x_t / alpha_t, so x̂ = x_0 + sigma eps. A "step" goes from one noise level to the next; NFE counts network
calls.

`denoise(x_t, t) -> (x0_pred, eps_pred)` is the network at float timesteps t (B,) (integer-valued for the DPM
solvers, fractional for Heun). Per-step scalars are Python floats computed from the float64 table `alpha_bar_f64`;
the image math runs in x's dtype, so float64 in means float64 throughout. Randomness comes from an `ImageNoise`.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import numpy as np
import torch

from .noise import ImageNoise
from .schedule import NoiseSchedule

Denoise = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
StepCallback = Callable[[int, float, torch.Tensor, torch.Tensor], None]  # (step index, t, x_t, x0_pred)
# (low, high) that x0_pred is clamped to at every step, as in samplers.py; None = no clamp.
Bounds = Optional[tuple]

SOLVERS = ("dpmpp_2m", "dpmpp_2m_sde", "heun", "euler")


# ------------------------------------------------------------------------------------------------------------
# Continuous noise levels: EDM's sigma <-> the (fractional) timestep t of the discrete table.

def sigma_table(schedule: NoiseSchedule) -> torch.Tensor:
    """EDM's sigma at every discrete t, float64 (T,): sigma_t = sqrt((1 - ab_t) / ab_t), increasing in t."""
    ab = schedule.alpha_bar_f64.cpu()
    return ((1.0 - ab) / ab).sqrt()


def sigma_to_t(schedule: NoiseSchedule, sigma) -> torch.Tensor:
    """The fractional timestep of noise level(s) `sigma`: log-sigma interpolated linearly between the two table
    entries around it (diffusers' `_sigma_to_t`), clipped to [0, T-1]. float64, sigma's shape."""
    log_sigmas = sigma_table(schedule).log()
    log_sigma = torch.as_tensor(sigma, dtype=torch.float64).clamp(min=1e-10).log()
    low = (torch.searchsorted(log_sigmas, log_sigma, right=True) - 1).clamp(0, len(log_sigmas) - 2)
    lo, hi = log_sigmas[low], log_sigmas[low + 1]
    w = ((lo - log_sigma) / (lo - hi)).clamp(0.0, 1.0)
    return low.to(torch.float64) + w


def t_to_sigma(schedule: NoiseSchedule, t) -> torch.Tensor:
    """The inverse of `sigma_to_t` on [0, T-1]: log-sigma interpolated linearly at fractional t. float64.
    At integer t it is the table's sigma_t."""
    log_sigmas = sigma_table(schedule).log()
    t = torch.as_tensor(t, dtype=torch.float64).clamp(0, len(log_sigmas) - 1)
    low = t.floor().long().clamp(max=len(log_sigmas) - 2)
    w = t - low
    return ((1 - w) * log_sigmas[low] + w * log_sigmas[low + 1]).exp()


def t_to_alpha_bar(schedule: NoiseSchedule, t) -> torch.Tensor:
    """ab at fractional t, consistent with `t_to_sigma`: ab = 1 / (1 + sigma²) (sigma² = (1 - ab) / ab). float64."""
    return 1.0 / (1.0 + t_to_sigma(schedule, t) ** 2)


# ------------------------------------------------------------------------------------------------------------
# Time discretisations and costs.

def dpm_solver_timesteps(num_timesteps: int, steps: int) -> list[int]:
    """The `steps` integer timesteps DPM-Solver++ visits, descending: diffusers' "linspace" spacing,
    round(linspace(0, T-1, steps + 1)) without its 0, reversed. The last step goes from the smallest to sigma = 0."""
    if not 1 <= steps <= num_timesteps - 1:
        raise ValueError(f"steps must be in [1, {num_timesteps - 1}], got {steps}")
    return [int(t) for t in np.linspace(0, num_timesteps - 1, steps + 1).round()[::-1][:-1]]


def karras_sigmas(schedule: NoiseSchedule, steps: int, rho: float = 7.0) -> torch.Tensor:
    """EDM eq. 5, float64 (steps + 1,):
    sigma_i = (sigma_max^(1/rho) + i/(N-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho for i < N = steps,
    between the table's sigma_min (t = 0) and sigma_max (t = T-1), and sigma_N = 0."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    table = sigma_table(schedule)
    sigma_min, sigma_max = table[0].item(), table[-1].item()
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
    sigmas = (sigma_max ** (1 / rho) + ramp * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    return torch.cat([sigmas, torch.zeros(1, dtype=torch.float64)])


def solver_nfe(solver: str, steps: int) -> int:
    """Network evaluations per image: one per step for the DPM solvers and Euler; Heun evaluates twice per step
    except the last, an Euler step to sigma = 0 (EDM Algorithm 1): 2 steps - 1."""
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; one of {SOLVERS}")
    return 2 * steps - 1 if solver == "heun" else steps


def solver_timesteps(solver: str, schedule: NoiseSchedule, steps: int, rho: float = 7.0) -> list[float]:
    """The timesteps t at which `solver` calls the network, in call order (len = `solver_nfe`): the DPM solvers'
    integer `dpm_solver_timesteps`; Euler's t(sigma_i), i < N, of the EDM grid; Heun's t(sigma_0), then
    t(sigma_i) twice for 0 < i < N (the corrector at sigma_i, then the next step's predictor). No churn."""
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; one of {SOLVERS}")
    if solver.startswith("dpmpp"):
        return [float(t) for t in dpm_solver_timesteps(schedule.num_timesteps, steps)]
    ts = sigma_to_t(schedule, karras_sigmas(schedule, steps, rho)[:-1]).tolist()
    return ts if solver == "euler" else ts[:1] + [t for t in ts[1:] for _ in range(2)]


# ------------------------------------------------------------------------------------------------------------
# Solvers.

def _t_batch(t: float, x: torch.Tensor) -> torch.Tensor:
    """(B,) float timesteps for the network: float64 with float64 x, else float32."""
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    return torch.full((x.shape[0],), t, dtype=dtype, device=x.device)


@torch.no_grad()
def dpm_solver_pp_2m_sample(denoise: Denoise, schedule: NoiseSchedule, noise: Optional[ImageNoise],
                            timesteps: list[int], stochastic: bool = False, callback: Optional[StepCallback] = None,
                            x0_bounds: Bounds = None, x_T: Optional[torch.Tensor] = None) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2), or with `stochastic` SDE-DPM-Solver++(2M), over the
    descending integer `timesteps` (`dpm_solver_timesteps`) and then to sigma = 0; returns x_0.

    Notation: alpha, sigma, lam -> alpha_{t_i}, sigma_{t_i}, lambda_{t_i} of the step's start, *_next of its end;
    h = lambda_next - lambda (h_i), r = h_{i-1} / h_i; x0 -> x_theta(x_{t_i}, t_i), x0_prev -> the previous one.
    The first step is first order (no previous x0 yet); so is the last, to sigma = 0 (lambda = +inf), where the
    update gives x0 itself (diffusers' `lower_order_final` with `final_sigmas_type="zero"`). x0_bounds clamp
    x0_pred (the data prediction is what DPM-Solver++ integrates, so no eps is needed). The SDE variant draws one
    `noise.randn()` per step except the last (its noise term has sigma_next = 0). x_T: the start (None = the next
    draw of `noise`, as ddim_sample); its dtype is the dtype of the whole computation. `noise` may be None when
    nothing is drawn (x_T given, deterministic).
    """
    x = noise.randn() if x_T is None else x_T  # x_T ~ N(0, I)
    ab = schedule.alpha_bar_f64.cpu()
    x0_prev, h_prev = None, None
    for i, t in enumerate(timesteps):
        alpha, sigma = math.sqrt(ab[t].item()), math.sqrt(1.0 - ab[t].item())
        x0, _ = denoise(x, _t_batch(t, x))
        x0 = x0.to(x.dtype)
        if x0_bounds is not None:
            x0 = torch.clamp(x0, *x0_bounds)
        if callback is not None:
            callback(i, t, x, x0)
        if i + 1 == len(timesteps):
            # Last step, to sigma = 0: first order, x = sigma_next / sigma x - alpha_next (e^{-h} - 1) x0 = x0.
            x = x0
            break
        t_next = timesteps[i + 1]
        alpha_next, sigma_next = math.sqrt(ab[t_next].item()), math.sqrt(1.0 - ab[t_next].item())
        h = math.log(alpha_next / sigma_next) - math.log(alpha / sigma)  # lambda_{t_i} - lambda_{t_{i-1}}
        # 1. D_i: x_theta extrapolated linearly in lambda (Algorithm 2):
        #    D_i = (1 + 1/(2 r_i)) x0_i - 1/(2 r_i) x0_{i-1}; the first step has only x0_i (DPM-Solver++1 = DDIM).
        if x0_prev is None:
            d = x0
        else:
            r = h_prev / h
            d = (1 + 1 / (2 * r)) * x0 - 1 / (2 * r) * x0_prev
        if not stochastic:
            # 2. x_{t_i} = sigma_{t_i} / sigma_{t_{i-1}} x_{t_{i-1}} - alpha_{t_i} (e^{-h_i} - 1) D_i.
            x = (sigma_next / sigma) * x - (alpha_next * math.expm1(-h)) * d
        else:
            # 2'. SDE: x_t = sigma_t / sigma_s e^{-h} x_s + alpha_t (1 - e^{-2h}) D + sigma_t sqrt(1 - e^{-2h}) z.
            z = noise.randn().to(device=x.device, dtype=x.dtype)
            x = ((sigma_next / sigma) * math.exp(-h)) * x - (alpha_next * math.expm1(-2 * h)) * d \
                + (sigma_next * math.sqrt(-math.expm1(-2 * h))) * z
        x0_prev, h_prev = x0, h
    return x


@torch.no_grad()
def heun_sample(denoise: Denoise, schedule: NoiseSchedule, noise: Optional[ImageNoise], steps: int,
                rho: float = 7.0, second_order: bool = True, s_churn: float = 0.0, s_tmin: float = 0.0,
                s_tmax: float = math.inf, s_noise: float = 1.0, callback: Optional[StepCallback] = None,
                x0_bounds: Bounds = None, x_T: Optional[torch.Tensor] = None) -> torch.Tensor:
    """EDM's sampler (Karras et al. 2022, Algorithm 1; with s_churn > 0 Algorithm 2) in sigma space on the eq. 5
    grid (`karras_sigmas`): Heun's second-order method, the last step Euler to sigma = 0; returns x_0.
    second_order=False is Euler's method (Algorithm 1 without the correction). NFE: `solver_nfe`.

    Notation: sigma -> t_i, sigma_next -> t_{i+1}, sigma_hat -> t̂_i; x -> x̂ = x_t / alpha_t (EDM's x);
    D(x̂; sigma) = x̂ - sigma eps(x̂ / sqrt(sigma² + 1), t(sigma)) (Table 1, VP: c_skip = 1, c_out = -sigma,
    c_in = 1/sqrt(sigma² + 1)), with the network's eps at the fractional t = `sigma_to_t(sigma)` (diffusers'
    HeunDiscreteScheduler does the same), clamped to x0_bounds when given: d = (x̂ - D) / sigma is then the eps of
    the clamped x0, as in ddim_sample. The start x̂_0 = x_T / alpha_{T-1} = x_T sqrt(1 + sigma_max²) (x_T: None =
    the next draw of `noise`; `noise` may be None when nothing is drawn). Churn: t̂_i = t_i (1 + gamma_i),
    gamma_i = min(S_churn / N, sqrt(2) - 1) where S_tmin <= t_i <= S_tmax, capped at sigma_max (the network knows
    no higher noise level); each churned step draws one `noise.randn()` (times S_noise).
    callback(i, t, x_t, x0_pred) once per step, at its first evaluation, with x_t in VP units.
    """
    sigmas = karras_sigmas(schedule, steps, rho).tolist()
    sigma_max = sigmas[0]

    def D(x_hat: torch.Tensor, sigma: float) -> tuple[torch.Tensor, float]:
        t = sigma_to_t(schedule, sigma).item()
        _, eps = denoise(x_hat / math.sqrt(sigma ** 2 + 1), _t_batch(t, x_hat))
        x0 = x_hat - sigma * eps.to(x_hat.dtype)
        return (torch.clamp(x0, *x0_bounds) if x0_bounds is not None else x0), t

    x_T = noise.randn() if x_T is None else x_T  # x_T ~ N(0, I)
    x = x_T * math.sqrt(1 + sigma_max ** 2)     # Algorithm 1: x_0 ~ N(0, t_0² I), here through the VP prior
    gamma_churn = min(s_churn / steps, math.sqrt(2) - 1)
    for i in range(steps):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        # 1. Algorithm 2: raise the noise level to t̂_i = (1 + gamma_i) t_i, x̂ += sqrt(t̂² - t²) S_noise z.
        gamma = gamma_churn if s_tmin <= sigma <= s_tmax else 0.0
        sigma_hat = min(sigma * (1 + gamma), sigma_max)
        if sigma_hat > sigma:
            z = noise.randn().to(device=x.device, dtype=x.dtype)
            x = x + math.sqrt(sigma_hat ** 2 - sigma ** 2) * s_noise * z
        # 2. Euler step: d_i = (x̂_i - D(x̂_i; t̂_i)) / t̂_i, x_{i+1} = x̂_i + (t_{i+1} - t̂_i) d_i.
        x0, t_hat = D(x, sigma_hat)
        if callback is not None:
            callback(i, t_hat, x / math.sqrt(sigma_hat ** 2 + 1), x0)
        d = (x - x0) / sigma_hat
        x_next = x + (sigma_next - sigma_hat) * d
        # 3. Heun's correction unless t_{i+1} = 0: d'_i = (x_{i+1} - D(x_{i+1}; t_{i+1})) / t_{i+1},
        #    x_{i+1} = x̂_i + (t_{i+1} - t̂_i) (d_i / 2 + d'_i / 2).
        if second_order and sigma_next > 0:
            x0_next, _ = D(x_next, sigma_next)
            d_next = (x_next - x0_next) / sigma_next
            x_next = x + (sigma_next - sigma_hat) * (0.5 * d + 0.5 * d_next)
        x = x_next
    return x  # sigma = 0: x̂ = x_0
