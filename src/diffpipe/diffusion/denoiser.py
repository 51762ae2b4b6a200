"""How the diffusion code calls a network: integer timesteps -> the network's conditioning input -> eps_pred.

The networks never see the schedule. Each declares in `conditioning` what float per image it expects:
"timestep" (the MNIST U-Net: the timestep itself) or "noise_variance" (the residual U-Net: 1 - alpha_bar_t,
as the flowers source feeds noise_rate²).

Class-conditional networks also take labels (-1 = the null label); `guided` turns them into the sampler's
eps_fn(x_t, t) with classifier-free guidance (Ho & Salimans 2021): eps = eps_uncond + w (eps_cond - eps_uncond),
both predictions from one network call on a doubled batch.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .schedule import NoiseSchedule


def conditioning(model: nn.Module, schedule: NoiseSchedule, t: torch.Tensor) -> torch.Tensor:
    """The float per image that the network is conditioned on, for integer timesteps t (B,)."""
    model = getattr(model, "_orig_mod", model)  # torch.compile wrapper
    if getattr(model, "conditioning", "timestep") == "noise_variance":
        return 1.0 - schedule.alpha_bar[t]
    return t.float()


def make_eps_fn(model: nn.Module, schedule: NoiseSchedule, autocast_dtype: torch.dtype | None = None):
    """eps_fn(x_t, t, labels=None) -> predicted noise in fp32, the network run under autocast when a dtype is given."""
    device_type = next(model.parameters()).device.type

    def eps_fn(x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        cond = conditioning(model, schedule, t)
        with torch.autocast(device_type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
            out = model(x, cond) if labels is None else model(x, cond, labels)
        return out.float()

    return eps_fn


def combine(eps_cond: torch.Tensor, eps_uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance: eps_uncond + w (eps_cond - eps_uncond). w = 0 is the unconditional prediction,
    w = 1 the conditional one, w > 1 extrapolates away from the unconditional."""
    return eps_uncond + scale * (eps_cond - eps_uncond)


def guided(eps_fn, labels: torch.Tensor | None, scale: float):
    """The sampler's eps_fn(x_t, t) for images with `labels` (B,) guided at `scale`; labels None = unconditional.
    w = 1 and w = 0 need one prediction each (the conditional, the null label's); any other w runs the network
    once on the batch doubled: [x with its labels; x with the null label]."""
    if labels is None:
        return lambda x, t: eps_fn(x, t)
    if scale == 1.0:
        return lambda x, t: eps_fn(x, t, labels)
    null = torch.full_like(labels, -1)
    if scale == 0.0:
        return lambda x, t: eps_fn(x, t, null)
    both = torch.cat([labels, null])

    def eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        eps_cond, eps_uncond = eps_fn(torch.cat([x, x]), torch.cat([t, t]), both).chunk(2)
        return combine(eps_cond, eps_uncond, scale)

    return eps
