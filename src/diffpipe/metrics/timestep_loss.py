"""Noise-prediction error by diffusion time on held-out images: where along t the model is good or bad.

For each of `buckets` equal ranges of t, every held-out image is noised once at a t drawn in that range
(DDPM eq. 4) and the MSE between predicted and true noise is averaged. Seeds are fixed, so two runs (or
two checkpoints) are compared on exactly the same (x0, t, eps) triples. The error is in eps units whatever the
network predicts (diffusion.prediction): eps_pred is the denoiser's (denoiser.py), so models trained on
different targets compare. (With zero terminal SNR, the last step's eps_pred is x_t itself, its error 0.)
"""
from __future__ import annotations

import numpy as np
import torch

from ..core.errors import ConfigError
from ..core.params import TimestepLossConfig
from ..data.channel_norm import ChannelNorm
from ..data.pixels import to_model_range
from ..diffusion.denoiser import make_denoiser
from ..diffusion.schedule import NoiseSchedule


@torch.no_grad()
def loss_by_timestep(model, schedule: NoiseSchedule, images: np.ndarray, cfg: TimestepLossConfig,
                     norm: ChannelNorm | None = None, prediction: str = "eps") -> list[dict]:
    """Rows {bucket, t_start, t_end, t_mid, mse} (t_end exclusive) over the first cfg.num_images images;
    `prediction` is what `model` predicts (diffusion.prediction), mse is in eps units for any."""
    if cfg.num_images > len(images):
        raise ConfigError(f"params key `timestep_loss.num_images` ({cfg.num_images}) exceeds the {len(images)} "
                          "held-out images available")
    device = next(model.parameters()).device
    T = schedule.num_timesteps
    buckets = min(cfg.buckets, T)
    edges = np.linspace(0, T, buckets + 1).round().astype(int)
    images = images[: cfg.num_images]
    norm = norm or ChannelNorm.identity(images.shape[1])
    denoise = make_denoiser(model, schedule, prediction)
    gen = torch.Generator().manual_seed(cfg.seed)
    rows = []
    for b in range(buckets):
        lo, hi = int(edges[b]), int(edges[b + 1])
        total, count = 0.0, 0
        for start in range(0, len(images), cfg.batch_size):
            x0 = norm.apply(to_model_range(torch.from_numpy(images[start:start + cfg.batch_size])))
            t = torch.randint(lo, hi, (len(x0),), generator=gen)
            eps = torch.randn(x0.shape, generator=gen)
            x0, t, eps = x0.to(device), t.to(device), eps.to(device)
            _, eps_pred = denoise(schedule.q_sample(x0, t, eps), t)
            err = (eps_pred - eps).square().mean(dim=(1, 2, 3))
            total += err.sum().item()
            count += len(err)
        rows.append({"bucket": b, "t_start": lo, "t_end": hi, "t_mid": (lo + hi - 1) / 2, "mse": total / count})
    return rows
