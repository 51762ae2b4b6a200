"""Pictures of the reverse process: an animated GIF of x_t and a strip of x0-predictions at chosen steps.

The source (SPEC System B) showed that early steps set colour and shape and late steps add detail; the
strip makes that visible per seed: one row per seed, one column per recorded step, the final image last.
"""
from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image

from .images import make_grid
from .io import atomic_path
from .models import make_eps_fn
from .normalize import ChannelNorm
from .pixels import to_uint8
from .samplers import ImageNoise, ddim_sample, ddpm_sample
from .schedule import NoiseSchedule


def record_process(model, schedule: NoiseSchedule, image_shape, seeds, sampler: str, steps: int, eta: float,
                   num_frames: int, norm: ChannelNorm | None = None, clip_x0: bool = False):
    """Run one sampler over `seeds`; return (frames of x_t, x0-predictions, their timesteps), uint8 arrays.

    frames: (F, B, C, H, W) at about `num_frames` evenly spaced steps; the last frame is the final image.
    """
    device = next(model.parameters()).device
    eps_fn = make_eps_fn(model, schedule)
    total = schedule.num_timesteps if sampler == "ddpm" else min(steps, schedule.num_timesteps)
    keep = set(np.unique(np.linspace(0, total - 1, num_frames).round().astype(int)).tolist())
    frames, x0s, ts = [], [], []
    norm = norm or ChannelNorm.identity(image_shape[0])

    def callback(i, t, x_t, x0_pred):
        if i in keep:
            frames.append(to_uint8(norm.invert(x_t.clamp(-3, 3))).cpu().numpy())
            x0s.append(to_uint8(norm.invert(x0_pred)).cpu().numpy())
            ts.append(int(t))

    noise = ImageNoise(seeds, image_shape, device)
    if sampler == "ddpm":
        final = ddpm_sample(eps_fn, schedule, noise, callback=callback, clip_x0=clip_x0)
    else:
        final = ddim_sample(eps_fn, schedule, noise, num_steps=total, eta=eta, callback=callback, clip_x0=clip_x0)
    last = to_uint8(norm.invert(final)).cpu().numpy()
    return np.stack(frames + [last]), np.stack(x0s + [last]), ts + [-1]


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


@torch.no_grad()
def visualize(model, schedule, image_shape, seeds, sampler, steps, eta, num_frames, gif_path, strip_path,
              strip_columns: int = 8, norm: ChannelNorm | None = None, clip_x0: bool = False) -> list[int]:
    """Write the GIF (all recorded frames) and the strip (`strip_columns` of them); return the strip's t values."""
    frames, x0s, ts = record_process(model, schedule, image_shape, seeds, sampler, steps, eta, num_frames, norm,
                                     clip_x0)
    save_gif(gif_path, frames)
    cols = np.unique(np.linspace(0, len(x0s) - 1, strip_columns).round().astype(int))
    save_strip(strip_path, x0s[cols])
    return [ts[i] for i in cols]
