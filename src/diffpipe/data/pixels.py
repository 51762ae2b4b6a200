"""The project's only two pixel-scaling functions (one home for pixel scaling: no other module converts).

Data are stored as uint8 in [0, 255]; the model works in [-1, 1] (the MNIST DDPM system: x/255 then 2x - 1).
"""
from __future__ import annotations

import torch


def to_model_range(x_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [-1, 1]."""
    return x_uint8.to(torch.float32).div(255.0).mul(2.0).sub(1.0)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Model range [-1, 1] (clamped) -> uint8 [0, 255], rounding to nearest."""
    return x.detach().float().clamp(-1.0, 1.0).add(1.0).mul(127.5).round().to(torch.uint8)
