"""Pictures of the reverse process: an animated GIF of x_t and a strip of x0-predictions at chosen steps.

The flowers DDIM source showed that early steps set colour and shape and late steps add detail; the strip
makes that visible per seed: one row per seed, one column per recorded step, the final image last. The
frames come from `diffusion.generate.record_process`.
"""
from __future__ import annotations

import os

import numpy as np
from PIL import Image

from ..core.files import atomic_path
from .grids import display_scale, make_grid


def _to_pil(grid: np.ndarray, scale: int) -> Image.Image:
    img = Image.fromarray(grid[:, :, 0], "L") if grid.shape[2] == 1 else Image.fromarray(grid, "RGB")
    return img.resize((img.width * scale, img.height * scale), Image.NEAREST) if scale > 1 else img


def save_gif(path: str | os.PathLike, frames: np.ndarray, scale: int = 3, ms_per_frame: int = 120) -> None:
    """frames (F, B, C, H, W) -> an animated GIF showing the B images side by side, the last frame held."""
    images = [_to_pil(make_grid(f, nrow=f.shape[0]), scale) for f in frames]
    durations = [ms_per_frame] * (len(images) - 1) + [ms_per_frame * 10]
    with atomic_path(path) as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=durations, loop=0)


def save_strip(path: str | os.PathLike, x0s: np.ndarray, scale: int = 2) -> None:
    """x0-predictions (F, B, C, H, W) -> PNG with one row per seed and one column per recorded step."""
    f, b = x0s.shape[:2]
    per_seed = x0s.transpose(1, 0, 2, 3, 4).reshape(f * b, *x0s.shape[2:])  # row-major: seed, then step
    with atomic_path(path) as tmp:
        _to_pil(make_grid(per_seed, nrow=f), scale).save(tmp, format="PNG")


def save_process(frames: np.ndarray, x0s: np.ndarray, timesteps: list[int], gif_path: str | os.PathLike,
                 strip_path: str | os.PathLike, strip_columns: int) -> list[int]:
    """Write the GIF (all recorded frames) and the strip (`strip_columns` of them); return the strip's t values."""
    size = frames.shape[-1]
    save_gif(gif_path, frames, scale=display_scale(size, minimum=3))
    cols = np.unique(np.linspace(0, len(x0s) - 1, strip_columns).round().astype(int))
    save_strip(strip_path, x0s[cols], scale=display_scale(size))
    return [timesteps[i] for i in cols]
