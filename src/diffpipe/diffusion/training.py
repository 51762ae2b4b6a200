"""Training loop: the network regresses its target (DDPM eq. 14, "L_simple", for eps; v or x0 by
`diffusion.prediction`, denoiser.py) with Adam and an EMA of the weights.

Speed habits: the whole uint8 dataset lives on the device and batches are indexed there (no
per-item Python loader); foreach Adam and a foreach EMA lerp; optional channels-last, bf16 autocast (the
schedule math stays in fp32, outside autocast) and torch.compile; losses are summed on the device, and the
loop waits for it only to read numbers back: the window loss every `log_every` steps (and at each epoch's
last step), the weights' finiteness and their copy to the host at every save, and the epoch loss at each
epoch's end.

The loop's resumable state (weights, optimizer, counters, partial sums, logs) is a TrainingState
(train_state.py), which loads, resumes and saves itself, and stops the run, saved, when a stop signal
(SIGTERM, SIGINT, SIGUSR1: core/launch.py) reached any rank: after the step under way, which every rank
agrees on.

Randomness is counter-based (noise.py): the order of each pass over the set, and each image's t and eps, are
functions of (train.seed, the image's global position in the run). Under torchrun with k processes
(`train.processes`), each step's global batch of B images is split into k contiguous shards, the network is
wrapped in DistributedDataParallel (gloo on CPU, NCCL on CUDA), and each rank's loss is its images' share
of the global batch mean, so the averaged gradient is the single-process one: k × B/k follows the trajectory
of 1 × B to float round-off. The EMA is updated from identical weights on every rank; rank 0 alone writes
the resumable state, the checkpoint, the grids and the DVCLive history.

Class-conditional models (`model.num_classes` > 0) see each image's label, replaced by the null label -1 for a
share `train.cond_drop_prob` of the images (classifier-free guidance, Ho & Salimans 2021); which images is also
a function of (train.seed, position), so it too is the same for any process count and across a resume.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..core import distributed
from ..core.devices import autocast_dtype, resolve_device
from ..core.errors import PipelineError
from ..core.launch import deferred_stop
from ..core.params import DiffusionConfig, ModelConfig, TrainConfig
from ..core.progress import progress_bar
from ..core.tracking import TrainingLog
from ..data.channel_norm import ChannelNorm
from ..data.pixels import to_model_range
from . import noise
from .denoiser import Denoiser, make_denoiser
from .schedule import NoiseSchedule
from .train_state import TrainingDiverged, TrainingState, run_fingerprint  # noqa: F401 - train() raises TrainingDiverged


def diffusion_loss(eps_pred: torch.Tensor, eps: torch.Tensor, kind: str,
                   weight: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Mean prediction error (of eps, v or x0 against its target); with `weight` (B,), each image's mean error is
    weighted first."""
    if weight is None:
        return F.mse_loss(eps_pred, eps) if kind == "mse" else F.l1_loss(eps_pred, eps)
    return image_losses(eps_pred, eps, kind, weight).mean()


def image_losses(eps_pred: torch.Tensor, eps: torch.Tensor, kind: str,
                 weight: Optional[torch.Tensor] = None) -> torch.Tensor:
    """(B,) each image's mean prediction error, times its weight if given."""
    err = (eps_pred - eps).square() if kind == "mse" else (eps_pred - eps).abs()
    per_image = err.flatten(1).mean(1)
    return per_image if weight is None else per_image * weight


def timestep_cdf(schedule: NoiseSchedule, cfg: TrainConfig) -> Optional[torch.Tensor]:
    """The cumulative distribution of the training timesteps (float64 (T,)), None for uniform t.

    `lognormal` is EDM's training noise distribution (Karras et al. 2022, sec. 5 and Table 1: ln sigma ~
    N(P_mean, P_std²)) on the discrete schedule: step t gets the probability of the sigma bin around sigma_t,
    whose edges are the midpoints of ln sigma between neighbouring steps (the first bin open below, the last
    above). sigma_t = sqrt((1 - ᾱ_t) / ᾱ_t); a zero terminal ᾱ counts as 2^-24 (as the interpolation does)."""
    if cfg.timesteps == "uniform":
        return None
    ab = schedule.alpha_bar_f64.cpu().clamp(min=2.0 ** -24)
    log_sigma = 0.5 * torch.log((1.0 - ab) / ab)
    edges = 0.5 * (log_sigma[1:] + log_sigma[:-1])
    z = (edges - cfg.lognormal_mean) / cfg.lognormal_std
    upper = torch.cat([0.5 * (1.0 + torch.erf(z / math.sqrt(2.0))), torch.ones(1, dtype=torch.float64)])
    return upper / upper[-1]


def step_noise(seed: int, positions: torch.Tensor, num_timesteps: int, image_shape: tuple[int, ...],
               cdf: Optional[torch.Tensor] = None):
    """(t, eps) of the images at global `positions` (int64 (B,)) of a run: a function of (seed, position) alone,
    so any split of a batch between processes or batches draws the same numbers. t is uniform over the T steps,
    or drawn from `cdf` (timestep_cdf) by inverting it at a uniform number of the same stream."""
    key = torch.full_like(positions, seed)
    lo, hi = positions & 0xFFFFFFFF, positions >> 32
    if cdf is None:
        t = noise.randint(key, lo, hi, noise.TIMESTEP, num_timesteps)
    else:
        u = noise.uniform_from_words(noise.random_words(key, lo, hi, noise.TIMESTEP, 1))[:, 0]
        t = torch.searchsorted(cdf.to(positions.device), u.double()).clamp(max=num_timesteps - 1)
    eps = noise.normal(key, lo, hi, noise.EPS, math.prod(image_shape)).view(len(positions), *image_shape)
    return t, eps


def step_labels(seed: int, positions: torch.Tensor, labels: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """The labels the network sees for the images at global `positions`: their own, or the null label -1 with
    probability `drop_prob`, decided by a uniform keyed by (seed, position) (noise.LABEL_DROP)."""
    if drop_prob == 0:
        return labels
    key = torch.full_like(positions, seed)
    u = noise.uniform_from_words(noise.random_words(key, positions & 0xFFFFFFFF, positions >> 32, noise.LABEL_DROP, 1))
    return torch.where(u[:, 0] < drop_prob, torch.full_like(labels, -1), labels)


def epoch_order(seed: int, epoch: int, n: int, repeats: int, device: torch.device) -> torch.Tensor:
    """The image indices an epoch visits: `repeats` passes over range(n), each in its own seeded order."""
    return torch.cat([noise.permutation(seed, epoch * repeats + r, n, device=device) for r in range(repeats)])


def min_snr_weight(schedule: NoiseSchedule, t: torch.Tensor, gamma: float,
                   prediction: str = "eps") -> Optional[torch.Tensor]:
    """Min-SNR-gamma loss weight (Hang et al. 2023, eq. 9) with SNR_t = alpha_bar_t / (1 - alpha_bar_t): the
    x0-loss weight min(SNR_t, gamma), expressed for the network's target. An eps error is SNR_t times the x0
    error and a v error (SNR_t + 1) times it, so the weight is min(SNR_t, gamma) / SNR_t for eps,
    min(SNR_t, gamma) / (SNR_t + 1) for v, and min(SNR_t, gamma) for x0. It down-weights the nearly noise-free
    timesteps, whose gradients conflict with the rest; None when gamma is 0 (the plain L_simple of DDPM eq. 14).
    At SNR_t = 0 (zero terminal SNR) the v and x0 weights are 0, as in the paper's reference code; the eps weight
    would be 0/0 and is 1 (its limit; eps with zero terminal SNR is refused by the params check anyway)."""
    if gamma == 0:
        return None
    ab = schedule.alpha_bar[t]
    snr = ab / (1 - ab)
    if prediction == "v":
        return snr.clamp(max=gamma) / (snr + 1)
    if prediction == "x0":
        return snr.clamp(max=gamma)
    return torch.where(snr > 0, snr.clamp(max=gamma) / snr, torch.ones_like(snr))


def lr_at(step: int, total_steps: int, cfg: TrainConfig) -> float:
    """Learning rate of optimizer step `step` (0-based): linear warm-up over `warmup_steps`, then constant or a
    cosine decay reaching 0 after `total_steps` (Loshchilov & Hutter 2017, without restarts)."""
    warm = min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps else 1.0
    if cfg.lr_schedule == "constant":
        return cfg.lr * warm
    progress = min(1.0, step / max(1, total_steps))
    return cfg.lr * warm * 0.5 * (1.0 + math.cos(math.pi * progress))


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
    summary: dict  # quality numbers worth comparing across runs (final and best epoch loss)
    report: dict   # what the run was (steps, images, parameters, device): not a metric
    cost: dict     # timings: differ on every run, never read by another stage


def checked_labels(labels: Optional[np.ndarray], n: int, model_cfg: ModelConfig) -> Optional[np.ndarray]:
    """The training labels a class-conditional model needs, checked; None for an unconditional model."""
    if model_cfg.num_classes == 0:
        return None
    if labels is None:
        raise PipelineError(f"model.num_classes is {model_cfg.num_classes}, but no training labels were given "
                            "(a class-conditional model trains on labelled data)")
    if labels.shape != (n,) or int(labels.min()) < 0 or int(labels.max()) >= model_cfg.num_classes:
        raise PipelineError(f"training labels must be (N,) = ({n},) integers in 0-{model_cfg.num_classes - 1} "
                            f"(model.num_classes), got shape {labels.shape}, range {labels.min()}-{labels.max()}")
    return labels


@dataclass
class DeviceData:
    """The whole uint8 training set (and its labels) resident on the device, batches indexed there."""
    pixels: torch.Tensor
    labels: Optional[torch.Tensor]
    norm: ChannelNorm
    memory_format: torch.memory_format

    def take(self, index: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """The images at `index` in the model's range and memory layout, and their labels."""
        x0 = self.norm.apply(to_model_range(self.pixels[index])).contiguous(memory_format=self.memory_format)
        return x0, None if self.labels is None else self.labels[index]


def my_share(batch: int, batch_size: int, per_epoch: int, world: distributed.World,
             device: torch.device) -> tuple[torch.Tensor, int]:
    """(this rank's contiguous share of the epoch slots of global batch `batch`, the global batch's size)."""
    slots = torch.arange(batch * batch_size, min((batch + 1) * batch_size, per_epoch), device=device)
    part = distributed.shard(len(slots), world)
    return slots[part.start:part.stop], len(slots)


def batch_losses(denoiser: Denoiser, schedule: NoiseSchedule, x0: torch.Tensor, positions: torch.Tensor,
                 labels: Optional[torch.Tensor], cfg: TrainConfig, cdf: Optional[torch.Tensor] = None) -> torch.Tensor:
    """(B,) each image's loss: x0 noised at its (t, eps) (t drawn from `cdf`, timestep_cdf, when given), which,
    like the dropping of its label, is a function of (train.seed, its global position in the run); the error of the network's output against its target (eps, v
    or x0: `denoiser.prediction`), Min-SNR weighted for that target if set."""
    t, eps = step_noise(cfg.seed, positions, schedule.num_timesteps, tuple(x0.shape[1:]), cdf)
    y = None if labels is None else step_labels(cfg.seed, positions, labels, cfg.cond_drop_prob)
    x_t = schedule.q_sample(x0, t, eps)  # fp32, outside autocast
    target = denoiser.target(x0.float(), eps, t)  # fp32, outside autocast; eps itself for eps-prediction
    return image_losses(denoiser.output(x_t, t, y), target, cfg.loss,
                        min_snr_weight(schedule, t, cfg.min_snr_gamma, denoiser.prediction))


def optimizer_step(state: TrainingState, loss: torch.Tensor, lr: float) -> None:
    """One Adam step on `loss` at learning rate `lr`, then the EMA at the new step's decay."""
    for group in state.optimizer.param_groups:
        group["lr"] = lr
    state.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    state.optimizer.step()
    state.step += 1
    ema_update(state.ema, state.model, ema_decay_at(state.step, state.cfg))


class Clock:
    """Throughput of this invocation (the state keeps the run's timings across invocations)."""

    def __init__(self) -> None:
        self.start = self.window_start = self.epoch_start = time.perf_counter()
        self.window_images = self.epoch_images = 0
        self.epochs: list[tuple[int, float]] = []  # (images, seconds) of each epoch ended here

    def begin_epoch(self) -> None:
        self.epoch_start, self.epoch_images = time.perf_counter(), 0

    def count(self, images: int) -> None:
        self.window_images += images
        self.epoch_images += images

    def window_rate(self) -> float:
        return self.window_images / (time.perf_counter() - self.window_start)

    def new_window(self) -> None:
        self.window_start, self.window_images = time.perf_counter(), 0

    def end_epoch(self) -> float:
        """The epoch's images per second."""
        self.epochs.append((self.epoch_images, time.perf_counter() - self.epoch_start))
        return self.epoch_images / self.epochs[-1][1]

    def elapsed(self) -> float:
        return time.perf_counter() - self.start


def log_window(state: TrainingState, clock: Clock, bar, history: Optional[TrainingLog]) -> None:
    """The window's mean loss (read from the device: a host sync) to step_losses, the progress bar and DVCLive,
    with the learning rate, the EMA decay and the throughput; then a new window begins."""
    loss = state.close_window()
    img_per_s = clock.window_rate()
    bar.set_postfix(epoch=f"{state.epoch + 1}/{state.cfg.epochs}", loss=f"{loss:.4f}", img_s=f"{img_per_s:.0f}")
    if history is not None:
        history.log(state.step, {"train/loss": loss, "schedule/lr": state.optimizer.param_groups[0]["lr"],
                                 "schedule/ema_decay": ema_decay_at(state.step, state.cfg),
                                 "cost/img_per_s": img_per_s})
    clock.new_window()


def train_report(state: TrainingState, kept: Optional[dict], images_seen: int) -> dict:
    """What the run was (not a metric)."""
    cfg = state.cfg
    return {
        "keep": cfg.keep,
        "kept_epoch": None if kept is None else kept["epoch"],
        "epochs": cfg.epochs,
        "steps": state.step,
        "images_seen": images_seen,
        "processes": state.world.size,
        "device": str(state.device),
        "precision": cfg.precision,
        "parameters": sum(p.numel() for p in state.model.parameters()),
    }


def train_cost(state: TrainingState, wall: float, world: distributed.World, device: torch.device) -> dict:
    """Timings (they differ on every run): this invocation's wall time, and the whole run's, over every
    invocation that built the state (a run stopped and resumed, or re-run after a code change that kept it)."""
    timings = state.timings_now()
    epochs = timings["epochs"]
    images_timed = sum(e["images"] for e in epochs)
    return {
        "wall_time_s": wall,  # this invocation
        "train_time_s": timings["seconds"],  # the whole run (None: it continued a state saved without timings)
        "invocations": timings["invocations"],
        "img_per_s": images_timed / sum(e["seconds"] for e in epochs) if images_timed else None,
        "epochs_timed": len(epochs),
        "epoch_img_per_s": [e["images"] / e["seconds"] for e in epochs],
        "processes": world.size,
        "device": str(device),
    }


def train(images: np.ndarray, diffusion: DiffusionConfig, model_cfg: ModelConfig, cfg: TrainConfig,
          state_dir: Optional[Path] = None,
          on_epoch_end: Optional[Callable[[int, nn.Module, NoiseSchedule, ChannelNorm], None]] = None,
          progress: bool = True, log: Callable[[str], None] = print,
          history: Optional[TrainingLog] = None, labels: Optional[np.ndarray] = None) -> TrainResult:
    """Train on uint8 images (N, C, H, W). `on_epoch_end(epoch, ema_model, schedule, norm)` e.g. writes a grid.

    `labels` (N,) int64 in [0, model.num_classes): required by a class-conditional model, unused otherwise.

    `history` (DVCLive) receives, every `train.log_every` steps, the window loss, learning rate, EMA decay
    and throughput, and each epoch's mean loss; it is opened resumed when the state is.

    With `state_dir`, the complete state is saved there atomically every `train.checkpoint_every` steps, at
    each epoch end and when a stop signal ends the run (launch.Stopped is raised then), and a run made from
    the same data and settings is resumed from it.

    Under torchrun (WORLD_SIZE > 1) every process calls this with the same arguments; rank 0 alone saves,
    logs and calls `on_epoch_end`, and the other ranks' result has no checkpoint (None).
    """
    n, c, h, w = images.shape
    labels = checked_labels(labels, n, model_cfg)
    world, device = distributed.init(resolve_device(cfg.device, "train.device"))
    state = TrainingState.start(model_cfg, (c, h, w), cfg, run_fingerprint(images, diffusion, model_cfg, cfg, labels),
                                state_dir, world, device, log)
    schedule = NoiseSchedule.from_config(diffusion).to(device)
    cdf = timestep_cdf(schedule, cfg)  # None: uniform t
    forward = state.model
    if world.distributed:
        forward = nn.parallel.DistributedDataParallel(forward, device_ids=[device] if device.type == "cuda" else None)
    if cfg.compile:
        forward = torch.compile(forward)
    denoiser = make_denoiser(forward, schedule, diffusion.prediction, autocast_dtype(cfg.precision))
    norm = ChannelNorm.measure(images) if cfg.normalize else ChannelNorm.identity(c)
    data = DeviceData(torch.from_numpy(images).to(device),
                      None if labels is None else torch.from_numpy(np.asarray(labels, dtype=np.int64)).to(device),
                      norm, torch.channels_last if cfg.channels_last else torch.contiguous_format)
    describe = dict(diffusion=diffusion, model_cfg=model_cfg, train_cfg=cfg, image_shape=images.shape[1:], norm=norm,
                    data_md5=state.fingerprint["data_md5"])
    per_epoch = n * cfg.repeats  # an epoch walks the set `repeats` times, each pass in its own order
    steps_per_epoch = math.ceil(per_epoch / cfg.batch_size)
    if not world.main:
        history, on_epoch_end, progress = None, None, False
    if history is not None:
        history.start(state.saved_step)

    # The loop waits for the device only to read numbers back: the window loss when it is logged, the weights'
    # finiteness (and their copy to the host) at every save, and the epoch loss at each epoch's end. A stop signal
    # (SIGTERM, SIGINT, SIGUSR1) waits for the step to finish: after it the ranks agree to stop, and it is saved.
    clock = Clock()
    bar = progress_bar(desc="training", total=cfg.epochs * steps_per_epoch, initial=state.step, unit="step",
                       enabled=progress)
    with deferred_stop(), state.peer_failures(), bar:
        for epoch in range(state.epoch, cfg.epochs):
            state.begin_epoch(epoch)
            state.model.train()
            order = epoch_order(cfg.seed, epoch, n, cfg.repeats, device)
            clock.begin_epoch()
            for b in range(state.batch, steps_per_epoch):
                # this rank's share of the batch
                mine, size = my_share(b, cfg.batch_size, per_epoch, world, device)
                x0, y = data.take(order[mine])
                # noise and loss: this rank's share of the global batch mean (DDP averages the k ranks' gradients: × k)
                losses = batch_losses(denoiser, schedule, x0, epoch * per_epoch + mine, y, cfg, cdf)
                loss = losses.sum() * (world.size / size)
                # optimizer and EMA (the learning rate is a function of the step alone: it resumes exactly)
                optimizer_step(state, loss, lr_at(state.step, cfg.epochs * steps_per_epoch, cfg))
                # the global batch's loss sum into the epoch and window sums (on the device)
                state.add_batch(distributed.all_reduce_sum(losses.detach().sum(), world), size)
                clock.count(size)
                bar.update(1)
                # log the window
                if state.step % cfg.log_every == 0 or b == steps_per_epoch - 1:
                    log_window(state, clock, bar, history)
                # periodic save, and a stop if one was asked for (at the epoch's last batch the epoch end does both)
                if b < steps_per_epoch - 1:
                    if cfg.checkpoint_every and state.step % cfg.checkpoint_every == 0:
                        state.save()
                    state.stop_if_requested()
            # end of epoch: mean loss, best epoch, preview grid, save, and a stop if asked
            epoch_loss = state.end_epoch(per_epoch)
            img_per_s = clock.end_epoch()
            state.time_epoch(*clock.epochs[-1])
            if history is not None:
                history.log(state.step, {"train/epoch_loss": epoch_loss})
            if world.main:
                bar.write(f"epoch {epoch + 1}/{cfg.epochs}: loss {epoch_loss:.5f} ({img_per_s:.1f} img/s)")
            if world.main and cfg.keep == "best" and (state.best is None or epoch_loss < state.best["loss"]):
                # The MNIST DDPM source keeps the checkpoint with the lowest mean epoch loss.
                state.best = {"loss": epoch_loss, "checkpoint": state.checkpoint(epoch + 1, epoch_loss, **describe)}
            if on_epoch_end is not None:
                state.ema.eval()
                on_epoch_end(epoch + 1, state.ema, schedule, norm)
            state.epoch, state.batch = epoch + 1, 0
            state.save()
            state.stop_if_requested()
    wall = clock.elapsed()

    if not world.main:
        kept = None
    elif cfg.keep == "last":  # the flowers DDIM source keeps the final weights
        kept = state.checkpoint(cfg.epochs, state.epoch_losses[-1]["loss"], **describe)
    else:
        kept = state.best["checkpoint"]
    summary = {"final_loss": state.epoch_losses[-1]["loss"],
               "best_loss": min(e["loss"] for e in state.epoch_losses)}
    if history is not None:
        history.summary({f"train/{k}": v for k, v in summary.items()})
    return TrainResult(kept, state.step_losses, state.epoch_losses, summary,
                       train_report(state, kept, cfg.epochs * per_epoch), train_cost(state, wall, world, device))
