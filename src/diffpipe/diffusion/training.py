"""Training loop: eps-prediction (DDPM eq. 14, "L_simple") with Adam and an EMA of the weights.

Speed habits: the whole uint8 dataset lives on the device and batches are indexed there (no
per-item Python loader); foreach Adam and a foreach EMA lerp; optional channels-last, bf16 autocast (the
schedule math stays in fp32, outside autocast) and torch.compile; the step loop never syncs with the host
except every `log_every` steps, when the accumulated loss is read.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from ..core.devices import autocast_dtype, resolve_device
from ..core.params import DiffusionConfig, ModelConfig, TrainConfig
from ..data.channel_norm import ChannelNorm
from ..data.pixels import to_model_range
from ..nets.builder import build_model
from .checkpoint import make_checkpoint
from .denoiser import make_eps_fn
from .schedule import NoiseSchedule


def diffusion_loss(eps_pred: torch.Tensor, eps: torch.Tensor, kind: str) -> torch.Tensor:
    return F.mse_loss(eps_pred, eps) if kind == "mse" else F.l1_loss(eps_pred, eps)


def ema_decay_at(step: int, cfg: TrainConfig) -> float:
    return min(cfg.ema_decay, (1 + step) / (10 + step)) if cfg.ema_warmup else cfg.ema_decay


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema ← decay · ema + (1 - decay) · θ, as one foreach lerp over all parameters and float buffers
    (BatchNorm running statistics, as the Keras source averages all of its network's weights)."""
    torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1.0 - decay)
    pairs = [(e, m) for e, m in zip(ema.buffers(), model.buffers())]
    floats = [(e, m) for e, m in pairs if e.is_floating_point()]
    if floats:
        torch._foreach_lerp_([e for e, _ in floats], [m for _, m in floats], 1.0 - decay)
    for e, m in pairs:
        if not e.is_floating_point():
            e.copy_(m)


@dataclass
class TrainResult:
    checkpoint: dict  # the best epoch's self-describing checkpoint
    step_losses: list[dict]
    epoch_losses: list[dict]
    metrics: dict


def train(images: np.ndarray, diffusion: DiffusionConfig, model_cfg: ModelConfig, cfg: TrainConfig,
          on_epoch_end: Optional[Callable[[int, nn.Module, NoiseSchedule, ChannelNorm], None]] = None,
          progress: bool = True) -> TrainResult:
    """Train on uint8 images (N, C, H, W). `on_epoch_end(epoch, ema_model, schedule, norm)` e.g. writes a grid."""
    n, c, h, w = images.shape
    device = resolve_device(cfg.device, "train.device")
    torch.manual_seed(cfg.seed)
    model = build_model(model_cfg, c, h).to(device)  # raises ConfigError before any training
    ema = copy.deepcopy(model).requires_grad_(False)
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    schedule = NoiseSchedule.from_config(diffusion).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, foreach=True)
    forward = torch.compile(model) if cfg.compile else model
    eps_fn = make_eps_fn(forward, schedule, autocast_dtype(cfg.precision))

    norm = ChannelNorm.measure(images) if cfg.normalize else ChannelNorm.identity(c)
    data = torch.from_numpy(images).to(device)  # uint8, resident on the device
    gen = torch.Generator(device).manual_seed(cfg.seed)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    step, best, step_losses, epoch_losses = 0, None, [], []
    start = time.perf_counter()
    for epoch in range(cfg.epochs):
        model.train()
        perm = torch.randperm(n, generator=gen, device=device)
        epoch_sum = torch.zeros((), device=device)
        window_sum, window_n = torch.zeros((), device=device), 0
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not progress,
                   leave=False, mininterval=2.0)
        epoch_start = time.perf_counter()
        for b in bar:
            idx = perm[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            x0 = norm.apply(to_model_range(data[idx])).contiguous(memory_format=memory_format)  # (B, C, H, W)
            t = torch.randint(0, diffusion.num_timesteps, (len(idx),), generator=gen, device=device)
            eps = torch.randn(x0.shape, generator=gen, device=device)
            x_t = schedule.q_sample(x0, t, eps)  # fp32, outside autocast
            loss = diffusion_loss(eps_fn(x_t, t), eps, cfg.loss)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            ema_update(ema, model, ema_decay_at(step, cfg))
            loss_d = loss.detach() * len(idx)
            epoch_sum += loss_d
            window_sum += loss_d
            window_n += len(idx)
            if step % cfg.log_every == 0 or b == steps_per_epoch - 1:
                window_loss = (window_sum / window_n).item()  # the only host sync in the loop
                step_losses.append({"step": step, "epoch": epoch + 1, "loss": window_loss})
                seen = (b + 1) * cfg.batch_size
                bar.set_postfix(loss=f"{window_loss:.4f}",
                                img_s=f"{min(seen, n) / (time.perf_counter() - epoch_start):.0f}")
                window_sum.zero_()
                window_n = 0
        epoch_loss = (epoch_sum / n).item()
        epoch_losses.append({"epoch": epoch + 1, "loss": epoch_loss, "seconds": time.perf_counter() - epoch_start})
        if progress:
            print(f"epoch {epoch + 1}/{cfg.epochs}: loss {epoch_loss:.5f} "
                  f"({n / (time.perf_counter() - epoch_start):.1f} img/s)", flush=True)
        if best is None or epoch_loss < best["loss"]:
            # The MNIST DDPM source keeps the checkpoint with the lowest mean epoch loss.
            best = {"loss": epoch_loss, "checkpoint": make_checkpoint(
                model, ema, optimizer, step, epoch + 1, epoch_loss, gen, diffusion, model_cfg, cfg, images.shape[1:], norm)}
        if on_epoch_end is not None:
            ema.eval()
            on_epoch_end(epoch + 1, ema, schedule, norm)
    wall = time.perf_counter() - start
    final = epoch_losses[-1]["loss"]
    metrics = {
        "final_loss": final,
        "best_loss": best["loss"],
        "best_epoch": best["checkpoint"]["epoch"],
        "epochs": cfg.epochs,
        "steps": step,
        "images_seen": step * cfg.batch_size if n % cfg.batch_size == 0 else cfg.epochs * n,
        "train_img_per_s": cfg.epochs * n / sum(e["seconds"] for e in epoch_losses),
        "wall_time_s": wall,
        "device": str(device),
        "precision": cfg.precision,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    return TrainResult(best["checkpoint"], step_losses, epoch_losses, metrics)

