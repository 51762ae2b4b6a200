"""Optional per-channel data normalisation (the flowers DDIM system, docs/systems/flowers-ddim.md): after pixel scaling, x ← (x - mean_c) / std_c
so the data have unit variance like the noise; samples are mapped back with x · std_c + mean_c.
The statistics are measured on the training set and stored in the checkpoint.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class ChannelNorm:
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def identity(cls, channels: int) -> "ChannelNorm":
        return cls((0.0,) * channels, (1.0,) * channels)

    @classmethod
    def measure(cls, images: np.ndarray) -> "ChannelNorm":
        """Exact per-channel mean/std of uint8 (N, C, H, W) in model range [-1, 1], from 256-bin histograms."""
        values = np.arange(256, dtype=np.float64) / 127.5 - 1.0
        means, stds = [], []
        for c in range(images.shape[1]):
            counts = np.bincount(images[:, c].ravel(), minlength=256).astype(np.float64)
            m = counts @ values / counts.sum()
            means.append(float(m))
            stds.append(float(max(np.sqrt(counts @ (values - m) ** 2 / counts.sum()), 1e-3)))
        return cls(tuple(means), tuple(stds))

    def _view(self, values, x: torch.Tensor) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self._view(self.mean, x)) / self._view(self.std, x)

    def invert(self, x: torch.Tensor) -> torch.Tensor:
        return x * self._view(self.std, x) + self._view(self.mean, x)

    def data_bounds(self, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """The data range [-1, 1] in model units, per channel, (1, C, 1, 1) each: what clip_x0 clamps to."""
        ones = torch.ones(1, len(self.mean), 1, 1, device=device)
        return self.apply(-ones), self.apply(ones)

    def to_dict(self) -> dict:
        return {"mean": list(self.mean), "std": list(self.std)}
