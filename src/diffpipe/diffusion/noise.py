"""Per-image noise streams: image i always draws the same noise, whatever the batch size or device count.

Each image has its own `torch.Generator` seeded with its seed (`first_seed + i` in the sample stage), the
habit of NVlabs' EDM code: results do not change when the batching does.
"""
from __future__ import annotations

from typing import Sequence

import torch


class ImageNoise:
    """Per-image Gaussian noise streams: image i draws from a generator seeded with seeds[i]."""

    def __init__(self, seeds: Sequence[int], image_shape: tuple[int, ...], device: torch.device | str = "cpu"):
        self.shape = tuple(image_shape)
        self.device = torch.device(device)
        self.generators = [torch.Generator(self.device).manual_seed(int(s)) for s in seeds]

    def randn(self) -> torch.Tensor:
        """(B, *image_shape) standard normal, one draw per image generator."""
        return torch.stack([torch.randn(self.shape, generator=g, device=self.device) for g in self.generators])
