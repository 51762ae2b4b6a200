"""How the diffusion code calls a network, and the one place its output becomes (x0_pred, eps_pred).

The networks never see the schedule. Each declares in `conditioning` what float per image it expects:
"timestep" (the MNIST U-Net: the timestep itself) or "noise_variance" (the residual U-Net: 1 - alpha_bar_t,
as the flowers source feeds noise_rate²).

What the network outputs is `diffusion.prediction` (PREDICTIONS):
- "eps": the added noise (DDPM),
- "v": v = sqrt(ᾱ) eps - sqrt(1 - ᾱ) x0 (Salimans & Ho 2022, "Progressive Distillation", sec. 4 and appendix D),
- "x0": the clean image itself.
With x_t = sqrt(ᾱ) x0 + sqrt(1 - ᾱ) eps (DDPM eq. 4), `split_prediction` turns any of them into (x0, eps) and
`prediction_target` gives training the target of each. v and x0 stay defined at ᾱ = 0 (zero terminal SNR:
there x0 = -v and eps = x_t); eps does not (x0 = (x_t - eps) / 0), which is why the params check refuses
`prediction: eps` with `zero_terminal_snr`.

The samplers' contract (samplers.py, solvers.py):

    Denoise = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
    denoise(x_t, t) -> (x0_pred, eps_pred) for x_t (B, C, H, W) at timesteps t (B,)

float32 out (x_t's dtype when it is float64, in tests). t may be fractional (a float tensor): the network is
conditioned on a float, and ᾱ at fractional t (for the conversion, and as the "noise_variance" network's
1 - ᾱ) interpolates the schedule's log sigma (NoiseSchedule.alpha_bar_at). `make_denoiser` builds a `Denoiser`
for a network: called with (x_t, t, labels=None) it is a Denoise; `.output` is the network's raw output (what
training regresses on its target) and `.split` the conversion.

Class-conditional networks also take labels (-1 = the null label); `guided` turns a Denoiser into the
sampler's denoise(x_t, t) with classifier-free guidance (Ho & Salimans 2021): out = out_uncond + w (out_cond -
out_uncond) on the network's outputs, both from one network call on a doubled batch, then converted. Guidance
is linear in the predictions; combining eps, v or x0 is the same, since for a fixed x_t each of x0 and eps is
affine in the network's output. Given a plain eps_fn (make_eps_fn, a function returning one tensor) it guides
that, as before.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn as nn

from .schedule import NoiseSchedule

PREDICTIONS = ("eps", "v", "x0")
Denoise = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def conditioning(model: nn.Module, schedule: NoiseSchedule, t: torch.Tensor) -> torch.Tensor:
    """The float per image that the network is conditioned on, for timesteps t (B,): integer, or fractional
    (a float tensor; 1 - ᾱ then from the interpolated schedule)."""
    model = getattr(model, "_orig_mod", model)  # torch.compile wrapper
    model = getattr(model, "module", model)  # DistributedDataParallel wrapper
    if getattr(model, "conditioning", "timestep") == "noise_variance":
        return 1.0 - (schedule.alpha_bar[t] if not t.is_floating_point() else schedule.alpha_bar_at(t))
    return t.float()


def _column(alpha_bar: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """alpha_bar (B,) (or a scalar) shaped to broadcast against images like `like` (B, C, H, W)."""
    return alpha_bar.view(-1, *([1] * (like.dim() - 1))) if alpha_bar.dim() else alpha_bar


def split_prediction(out: torch.Tensor, x_t: torch.Tensor, alpha_bar: torch.Tensor,
                     prediction: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(x0, eps) of the network's output `out` for x_t at ᾱ `alpha_bar` (broadcastable to x_t: (B, 1, 1, 1)
    or a scalar). The one conversion: x_t = a x0 + s eps with a = sqrt(ᾱ), s = sqrt(1 - ᾱ), a² + s² = 1;
    v = a eps - s x0 gives x0 = a x_t - s v and eps = s x_t + a v."""
    if prediction == "eps":
        return (x_t - (1.0 - alpha_bar).sqrt() * out) / alpha_bar.sqrt(), out
    if prediction == "x0":
        return out, (x_t - alpha_bar.sqrt() * out) / (1.0 - alpha_bar).sqrt()
    if prediction == "v":
        a, s = alpha_bar.sqrt(), (1.0 - alpha_bar).sqrt()
        return a * x_t - s * out, s * x_t + a * out
    raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")


def prediction_target(x0: torch.Tensor, eps: torch.Tensor, alpha_bar: torch.Tensor, prediction: str) -> torch.Tensor:
    """What the network should output for x_t = sqrt(ᾱ) x0 + sqrt(1 - ᾱ) eps: eps, v = sqrt(ᾱ) eps -
    sqrt(1 - ᾱ) x0, or x0 (`alpha_bar` broadcastable to the images). The inverse of `split_prediction`."""
    if prediction == "eps":
        return eps
    if prediction == "x0":
        return x0
    if prediction == "v":
        return alpha_bar.sqrt() * eps - (1.0 - alpha_bar).sqrt() * x0
    raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")


class Denoiser:
    """A network (its raw output `output(x_t, t, labels=None)`) and what it predicts. Called as
    denoise(x_t, t, labels=None) it returns (x0_pred, eps_pred): with labels None it is a `Denoise`."""

    def __init__(self, output: Callable[..., torch.Tensor], schedule: NoiseSchedule, prediction: str):
        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
        self.output = output
        self.schedule = schedule
        self.prediction = prediction

    def alpha_bar(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """ᾱ at t, shaped (B, 1, 1, 1), in x_t's precision (float32, or float64 in tests)."""
        dtype = torch.float64 if x_t.dtype == torch.float64 else torch.float32
        return _column(self.schedule.alpha_bar_at(t, dtype), x_t)

    def split(self, out: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(x0_pred, eps_pred) of the network's output `out` for x_t at t."""
        return split_prediction(out, x_t, self.alpha_bar(x_t, t), self.prediction)

    def target(self, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """What the network should output for x0 noised with eps at t (training's regression target)."""
        return prediction_target(x0, eps, self.alpha_bar(x0, t), self.prediction)

    def __call__(self, x: torch.Tensor, t: torch.Tensor,
                 labels: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.split(self.output(x, t, labels), x, t)


def network_output(model: nn.Module, schedule: NoiseSchedule, autocast_dtype: torch.dtype | None = None):
    """output(x_t, t, labels=None) -> the network's output in fp32 (float64 for float64 x_t), the network run
    under autocast when a dtype is given."""
    device_type = next(model.parameters()).device.type

    def output(x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        cond = conditioning(model, schedule, t)
        with torch.autocast(device_type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
            out = model(x, cond) if labels is None else model(x, cond, labels)
        return out.double() if x.dtype == torch.float64 else out.float()

    return output


def make_denoiser(model: nn.Module, schedule: NoiseSchedule, prediction: str,
                  autocast_dtype: torch.dtype | None = None) -> Denoiser:
    """The Denoiser of `model`, a network trained to predict `prediction` (diffusion.prediction)."""
    return Denoiser(network_output(model, schedule, autocast_dtype), schedule, prediction)


def make_eps_fn(model: nn.Module, schedule: NoiseSchedule, autocast_dtype: torch.dtype | None = None):
    """eps_fn(x_t, t, labels=None) -> the output of a network predicting eps, in fp32: the contract before
    Denoise (samplers still take such a function as an eps predictor). New code uses make_denoiser."""
    return network_output(model, schedule, autocast_dtype)


def combine(eps_cond: torch.Tensor, eps_uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance: out_uncond + w (out_cond - out_uncond), on eps or any prediction linear in it.
    w = 0 is the unconditional prediction, w = 1 the conditional one, w > 1 extrapolates away from the
    unconditional."""
    return eps_uncond + scale * (eps_cond - eps_uncond)


def network_calls(labelled: bool, scale: float) -> int:
    """Network evaluations per denoiser call of `guided`: 2 for guidance between/beyond the conditional and the
    unconditional (the batch doubled), else 1."""
    return 2 if labelled and scale not in (0.0, 1.0) else 1


def guided(fn, labels: torch.Tensor | None, scale: float):
    """The sampler's denoise(x_t, t) for images with `labels` (B,) guided at `scale`; labels None = unconditional.
    `fn` is a Denoiser (the result is a Denoise) or a plain eps_fn (the result returns the guided eps).
    w = 1 and w = 0 need one prediction each (the conditional, the null label's); any other w runs the network
    once on the batch doubled: [x with its labels; x with the null label], and combines the two outputs."""
    if isinstance(fn, Denoiser):
        output, finish = fn.output, fn.split
    else:
        output, finish = fn, None
    if labels is None:
        return lambda x, t: fn(x, t)
    if scale == 1.0:
        return lambda x, t: fn(x, t, labels)
    null = torch.full_like(labels, -1)
    if scale == 0.0:
        return lambda x, t: fn(x, t, null)
    both = torch.cat([labels, null])

    def denoise(x: torch.Tensor, t: torch.Tensor):
        out_cond, out_uncond = output(torch.cat([x, x]), torch.cat([t, t]), both).chunk(2)
        out = combine(out_cond, out_uncond, scale)
        return out if finish is None else finish(out, x, t)

    return denoise


def as_denoise(fn, schedule: NoiseSchedule) -> Denoise:
    """A Denoise from `fn`: a Denoise itself (returning (x0_pred, eps_pred)), or an eps predictor returning one
    tensor (the samplers' contract before Denoise: make_eps_fn, tests' analytic predictors), whose x0 is derived
    here (integer t: float32, on the schedule's float32 table, as the samplers always did; float t: ᾱ
    interpolated, NoiseSchedule.alpha_bar_at)."""
    def denoise(x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = fn(x, t)
        if isinstance(out, tuple):
            return out
        if t.is_floating_point():  # the solvers' (possibly fractional) timesteps, in x's precision
            eps = out.to(x.dtype)
            ab = schedule.alpha_bar_at(t, torch.float64 if x.dtype == torch.float64 else torch.float32)
            return split_prediction(eps, x, _column(ab, x), "eps")
        eps = out.float()
        return split_prediction(eps, x, _column(schedule.alpha_bar[t], x), "eps")

    return denoise
