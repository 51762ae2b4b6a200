"""Which network, built from the `model` params section, and how the samplers call it.

`model.arch` picks the architecture; each has its own sub-section (`model.unet` for SPEC System A,
`model.resunet` for System B). The networks never see the schedule: `make_eps_fn` turns integer timesteps
into each network's conditioning input (System A: the timestep itself; System B: the noise variance
1 - alpha_bar_t, as the Keras source feeds noise_rate²).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn as nn

from .resunet import ResUNet, ResUNetConfig
from .schedule import NoiseSchedule
from .unet import UNet, UNetConfig


@dataclass(frozen=True)
class ModelConfig:
    arch: Literal["unet", "resunet"] = "unet"
    unet: UNetConfig = field(default_factory=UNetConfig)
    resunet: ResUNetConfig = field(default_factory=ResUNetConfig)

    def check_image(self, channels: int, size: int) -> None:
        (self.unet if self.arch == "unet" else self.resunet).check_image(channels, size)


def build_model(cfg: ModelConfig, image_channels: int, image_size: int) -> nn.Module:
    cfg.check_image(image_channels, image_size)
    if cfg.arch == "unet":
        return UNet(cfg.unet, image_channels)
    return ResUNet(cfg.resunet, image_channels)


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
