"""Which network, built from the `model` params section, and how the samplers call it.

`model.arch` picks the architecture; each has its own sub-section (`model.unet`, ...). The network never
sees the schedule: `make_eps_fn` adapts integer timesteps to the network's conditioning input.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn as nn

from .schedule import NoiseSchedule
from .unet import UNet, UNetConfig


@dataclass(frozen=True)
class ModelConfig:
    arch: Literal["unet"] = "unet"
    unet: UNetConfig = field(default_factory=UNetConfig)

    def check_image(self, channels: int, size: int) -> None:
        self.unet.check_image(channels, size)


def build_model(cfg: ModelConfig, image_channels: int, image_size: int) -> nn.Module:
    cfg.check_image(image_channels, image_size)
    return UNet(cfg.unet, image_channels)


def make_eps_fn(model: nn.Module, schedule: NoiseSchedule, autocast_dtype: torch.dtype | None = None):
    """eps_fn(x_t, t) for the samplers: System A's U-Net is conditioned on the timestep index itself."""
    device_type = next(model.parameters()).device.type

    def eps_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
            return model(x, t.float()).float()

    return eps_fn
