"""How the diffusion code calls a network: integer timesteps -> the network's conditioning input -> eps_pred.

The networks never see the schedule. Each declares in `conditioning` what float per image it expects:
"timestep" (the MNIST U-Net: the timestep itself) or "noise_variance" (the residual U-Net: 1 - alpha_bar_t,
as the flowers source feeds noise_rate²).
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
    """eps_fn(x_t, t) -> predicted noise in fp32, the network run under autocast when a dtype is given."""
    device_type = next(model.parameters()).device.type

    def eps_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        cond = conditioning(model, schedule, t)
        with torch.autocast(device_type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
            return model(x, cond).float()

    return eps_fn
