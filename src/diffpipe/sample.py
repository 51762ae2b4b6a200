"""Batched sampling of N images with per-image seeds (image i uses seed first_seed + i)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from tqdm import tqdm

from .config import require
from .models import make_eps_fn
from .normalize import ChannelNorm
from .pixels import to_uint8
from .samplers import ImageNoise, ddim_sample, ddpm_sample
from .schedule import NoiseSchedule


@dataclass(frozen=True)
class SampleConfig:
    sampler: Literal["ddpm", "ddim"] = "ddim"
    num_images: int = 1000
    steps: int = 50  # DDIM only; DDPM always walks all T steps
    eta: float = 0.0
    clip_x0: bool = False  # clamp x0_pred to [-1, 1] at every step (the source: no, only for display)
    batch_size: int = 250
    first_seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["fp32", "bf16"] = "fp32"
    grid_images: int = 64
    process_seeds: int = 4  # reverse-process pictures for seeds first_seed … first_seed + process_seeds - 1
    process_frames: int = 40  # GIF frames (evenly spaced steps)
    strip_columns: int = 8  # x0-prediction columns in the strip

    def __post_init__(self):
        require(self.num_images >= 1, "sample.num_images", f"must be >= 1, got {self.num_images}")
        require(self.steps >= 1, "sample.steps", f"must be >= 1, got {self.steps}")
        require(0.0 <= self.eta <= 1.0, "sample.eta", f"must be in [0, 1], got {self.eta}")
        require(self.batch_size >= 1, "sample.batch_size", f"must be >= 1, got {self.batch_size}")
        require(self.first_seed >= 0, "sample.first_seed", f"must be >= 0, got {self.first_seed}")
        require(self.grid_images >= 1, "sample.grid_images", f"must be >= 1, got {self.grid_images}")
        require(self.process_seeds >= 1, "sample.process_seeds", f"must be >= 1, got {self.process_seeds}")
        require(self.process_frames >= 2, "sample.process_frames", f"must be >= 2, got {self.process_frames}")
        require(self.strip_columns >= 2, "sample.strip_columns", f"must be >= 2, got {self.strip_columns}")


def generate(model: torch.nn.Module, schedule: NoiseSchedule, image_shape: tuple[int, int, int],
             sampler: str, num_images: int, first_seed: int, batch_size: int, steps: int = 50, eta: float = 0.0,
             autocast_dtype: torch.dtype | None = None, progress: bool = True,
             norm: ChannelNorm | None = None, clip_x0: bool = False) -> np.ndarray:
    """N images as uint8 (N, C, H, W); image i depends only on seed first_seed + i, not on the batching."""
    device = next(model.parameters()).device
    eps_fn = make_eps_fn(model, schedule, autocast_dtype)
    out = np.empty((num_images, *image_shape), dtype=np.uint8)
    for start in tqdm(range(0, num_images, batch_size), desc=f"{sampler} sampling", disable=not progress):
        seeds = range(first_seed + start, first_seed + min(start + batch_size, num_images))
        noise = ImageNoise(seeds, image_shape, device)
        if sampler == "ddpm":
            x0 = ddpm_sample(eps_fn, schedule, noise, clip_x0=clip_x0)
        else:
            x0 = ddim_sample(eps_fn, schedule, noise, num_steps=min(steps, schedule.num_timesteps), eta=eta,
                             clip_x0=clip_x0)
        if norm is not None:
            x0 = norm.invert(x0)
        out[start:start + len(seeds)] = to_uint8(x0).cpu().numpy()
    return out


def timed_generate(*args, **kwargs) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    images = generate(*args, **kwargs)
    return images, time.perf_counter() - start
