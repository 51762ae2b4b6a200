"""Training loop: eps-prediction (DDPM eq. 14, "L_simple") with Adam and an EMA of the weights.

Speed habits: the whole uint8 dataset lives on the device and batches are indexed there (no
per-item Python loader); foreach Adam and a foreach EMA lerp; optional channels-last, bf16 autocast (the
schedule math stays in fp32, outside autocast) and torch.compile; the step loop never syncs with the host
except every `log_every` steps, when the accumulated loss is read.

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

import copy
import hashlib
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..core import distributed
from ..core.config import to_dict
from ..core.devices import autocast_dtype, resolve_device
from ..core.errors import PipelineError
from ..core.params import DiffusionConfig, ModelConfig, TrainConfig
from ..core.progress import progress_bar
from ..core.tracking import TrainingLog
from ..data.channel_norm import ChannelNorm
from ..data.pixels import to_model_range
from ..nets.builder import build_model
from .checkpoint import cpu_state, make_checkpoint, save_checkpoint
from . import noise
from .denoiser import make_eps_fn
from .schedule import NoiseSchedule


def diffusion_loss(eps_pred: torch.Tensor, eps: torch.Tensor, kind: str,
                   weight: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Mean noise-prediction error; with `weight` (B,), each image's mean error is weighted first."""
    if weight is None:
        return F.mse_loss(eps_pred, eps) if kind == "mse" else F.l1_loss(eps_pred, eps)
    return image_losses(eps_pred, eps, kind, weight).mean()


def image_losses(eps_pred: torch.Tensor, eps: torch.Tensor, kind: str,
                 weight: Optional[torch.Tensor] = None) -> torch.Tensor:
    """(B,) each image's mean noise-prediction error, times its weight if given."""
    err = (eps_pred - eps).square() if kind == "mse" else (eps_pred - eps).abs()
    per_image = err.flatten(1).mean(1)
    return per_image if weight is None else per_image * weight


def step_noise(seed: int, positions: torch.Tensor, num_timesteps: int, image_shape: tuple[int, ...]):
    """(t, eps) of the images at global `positions` (int64 (B,)) of a run: a function of (seed, position) alone,
    so any split of a batch between processes or batches draws the same numbers."""
    key = torch.full_like(positions, seed)
    lo, hi = positions & 0xFFFFFFFF, positions >> 32
    t = noise.randint(key, lo, hi, noise.TIMESTEP, num_timesteps)
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


def min_snr_weight(schedule: NoiseSchedule, t: torch.Tensor, gamma: float) -> Optional[torch.Tensor]:
    """Min-SNR-gamma loss weight for eps-prediction (Hang et al. 2023, eq. 9): min(SNR_t, gamma) / SNR_t with
    SNR_t = alpha_bar_t / (1 - alpha_bar_t). It down-weights the nearly noise-free timesteps, whose gradients
    conflict with the rest; None when gamma is 0 (the plain L_simple of DDPM eq. 14)."""
    if gamma == 0:
        return None
    ab = schedule.alpha_bar[t]
    snr = ab / (1 - ab)
    return snr.clamp(max=gamma) / snr


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


class TrainingDiverged(PipelineError):
    """Non-finite loss or weights: training stopped, the last good state is kept."""


# ---- the resumable state -------------------------------------------------------------------------------
# Everything the loop needs to continue exactly where it stopped: weights, EMA, optimizer, the global RNG,
# the step, the epoch and the batch within it, the epoch's partial sums, the logs and the best epoch so far
# (the data order and the noise are functions of the position in the run, so they need no state). A resumed
# run ends with the same bytes as an uninterrupted one. `fingerprint` says what the state was made from; only
# keys in CONTINUABLE may differ (with a constant learning rate nothing in the loop depends on the total
# number of epochs, so raising it continues the run; a cosine schedule depends on it, so there `epochs` is part
# of the fingerprint; the process count never changes the trajectory).

STATE_FILE = "state.pt"
STATE_FORMAT = "diffpipe-train-state-v2"
CONTINUABLE = ("epochs", "checkpoint_every", "processes")


def run_fingerprint(images: np.ndarray, diffusion: DiffusionConfig, model_cfg: ModelConfig,
                    cfg: TrainConfig, labels: Optional[np.ndarray] = None) -> dict:
    continuable = CONTINUABLE if cfg.lr_schedule == "constant" else tuple(k for k in CONTINUABLE if k != "epochs")
    train_keys = {k: v for k, v in to_dict(cfg).items() if k not in continuable}
    used = {} if labels is None else {"labels_md5": hashlib.md5(np.ascontiguousarray(labels).tobytes()).hexdigest()}
    return {**used, "data_md5": hashlib.md5(np.ascontiguousarray(images).tobytes()).hexdigest(),
            "data_shape": list(images.shape), "diffusion": to_dict(diffusion), "model": to_dict(model_cfg),
            "train": train_keys}


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def read_state(state_dir: Path, fingerprint: dict, epochs: int) -> tuple[Optional[dict], str]:
    """(the saved state, "") when it can be continued to `epochs`, else (None, why not)."""
    path = state_dir / STATE_FILE
    if not path.exists():
        return None, f"no saved state in {state_dir}"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - an unreadable state is not resumed, and the user is told why
        return None, f"{path} is not readable ({type(e).__name__})"
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        return None, f"{path} is not a diffpipe training state"
    old, new = _flat(state["fingerprint"]), _flat(fingerprint)
    changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    if changed:
        what = ", ".join(f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in changed[:3])
        return None, f"the saved state was made from other data or settings ({what})"
    if state["epoch"] > epochs or (state["epoch"] == epochs and state["batch"] > 0):
        return None, f"the saved state is past train.epochs = {epochs} (epoch {state['epoch']})"
    return state, ""


def _finite(*modules: nn.Module) -> bool:
    return all(bool(torch.isfinite(t).all()) for m in modules for t in m.state_dict().values() if t.is_floating_point())


def train(images: np.ndarray, diffusion: DiffusionConfig, model_cfg: ModelConfig, cfg: TrainConfig,
          state_dir: Optional[Path] = None,
          on_epoch_end: Optional[Callable[[int, nn.Module, NoiseSchedule, ChannelNorm], None]] = None,
          progress: bool = True, log: Callable[[str], None] = print,
          history: Optional[TrainingLog] = None, labels: Optional[np.ndarray] = None) -> TrainResult:
    """Train on uint8 images (N, C, H, W). `on_epoch_end(epoch, ema_model, schedule, norm)` e.g. writes a grid.

    `labels` (N,) int64 in [0, model.num_classes): required by a class-conditional model, unused otherwise.

    `history` (DVCLive) receives, every `train.log_every` steps, the window loss, learning rate, EMA decay
    and throughput, and each epoch's mean loss; it is opened resumed when the state is.

    With `state_dir`, the complete state is saved there atomically every `train.checkpoint_every` steps and
    at each epoch end, and a run made from the same data and settings is resumed from it.

    Under torchrun (WORLD_SIZE > 1) every process calls this with the same arguments; rank 0 alone saves,
    logs and calls `on_epoch_end`, and the other ranks' result has no checkpoint (None).
    """
    n, c, h, w = images.shape
    if model_cfg.num_classes == 0:
        labels = None
    elif labels is None:
        raise PipelineError(f"model.num_classes is {model_cfg.num_classes}, but no training labels were given "
                            "(a class-conditional model trains on labelled data)")
    elif labels.shape != (n,) or int(labels.min()) < 0 or int(labels.max()) >= model_cfg.num_classes:
        raise PipelineError(f"training labels must be (N,) = ({n},) integers in 0-{model_cfg.num_classes - 1} "
                            f"(model.num_classes), got shape {labels.shape}, range {labels.min()}-{labels.max()}")
    world, device = distributed.init(resolve_device(cfg.device, "train.device"), split_threads=True)
    main = world.main
    torch.manual_seed(cfg.seed)
    model = build_model(model_cfg, c, h).to(device)  # raises ConfigError before any training
    ema = copy.deepcopy(model).requires_grad_(False)
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    schedule = NoiseSchedule.from_config(diffusion).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, foreach=True)
    forward = model
    if world.distributed:
        forward = nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    if cfg.compile:
        forward = torch.compile(forward)
    eps_fn = make_eps_fn(forward, schedule, autocast_dtype(cfg.precision))

    norm = ChannelNorm.measure(images) if cfg.normalize else ChannelNorm.identity(c)
    data = torch.from_numpy(images).to(device)  # uint8, resident on the device
    label_data = None if labels is None else torch.from_numpy(np.asarray(labels, dtype=np.int64)).to(device)
    per_epoch = n * cfg.repeats  # an epoch walks the set `repeats` times, each pass in its own order
    steps_per_epoch = math.ceil(per_epoch / cfg.batch_size)
    run = {"step": 0, "epoch": 0, "batch": 0, "epoch_sum": torch.zeros((), device=device),
           "window_sum": torch.zeros((), device=device), "window_n": 0, "step_losses": [], "epoch_losses": [],
           "best": None, "saved_step": None}
    fingerprint = run_fingerprint(images, diffusion, model_cfg, cfg, labels)
    if state_dir is not None:
        state_dir = Path(state_dir)
        # Rank 0 reads the state and sends it to the others, whose machines need not have it (several nodes).
        saved, why = distributed.broadcast_object(read_state(state_dir, fingerprint, cfg.epochs) if main else None,
                                                  world)
        if saved is None:
            if main:
                log(f"train: starting fresh: {why}")
                if state_dir.exists():
                    shutil.rmtree(state_dir)
        else:
            model.load_state_dict(saved["model"])
            ema.load_state_dict(saved["ema"])
            optimizer.load_state_dict(saved["optimizer"])
            torch.set_rng_state(saved["torch_rng"])
            for key in ("step", "epoch", "batch", "window_n", "step_losses", "epoch_losses", "best"):
                run[key] = saved[key]
            for key in ("epoch_sum", "window_sum"):
                run[key] = saved[key].to(device)
            run["saved_step"] = run["step"]
            if main:
                log(f"train: resuming from step {run['step']} (epoch {run['epoch'] + 1}, batch {run['batch']}) "
                    f"of {state_dir / STATE_FILE}")
        if main:
            state_dir.mkdir(parents=True, exist_ok=True)
    if not main:
        history, on_epoch_end, progress = None, None, False
    if history is not None:
        history.start(run["saved_step"])

    def save_state() -> None:
        if state_dir is None:
            return
        if not _finite(model, ema):
            stop(f"the weights are not finite at step {run['step']}")
        if main:
            state = {"format": STATE_FORMAT, "fingerprint": fingerprint, "model": cpu_state(model),
                     "ema": cpu_state(ema), "optimizer": copy.deepcopy(optimizer.state_dict()),
                     "torch_rng": torch.get_rng_state(),
                     **{k: run[k] for k in ("step", "epoch", "batch", "window_n", "step_losses", "epoch_losses",
                                            "best")},
                     **{k: run[k].cpu() for k in ("epoch_sum", "window_sum")}}
            save_checkpoint(state_dir / STATE_FILE, state)
        run["saved_step"] = run["step"]

    def stop(what: str) -> None:
        kept = (f"the last good state (step {run['saved_step']}) is kept in {state_dir}" if run["saved_step"] is not None
                else "no state was saved")
        raise TrainingDiverged(f"training diverged at step {run['step']} (epoch {run['epoch'] + 1}, "
                               f"train.lr = {cfg.lr}): {what}; {kept}")

    start = time.perf_counter()
    bar = progress_bar(desc="training", total=cfg.epochs * steps_per_epoch, initial=run["step"], unit="step",
                       enabled=progress)
    window_start, window_images = time.perf_counter(), 0
    epoch_seconds = []
    for epoch in range(run["epoch"], cfg.epochs):
        run["epoch"] = epoch
        model.train()
        if run["batch"] == 0:
            run["epoch_sum"] = torch.zeros((), device=device)
            run["window_sum"], run["window_n"] = torch.zeros((), device=device), 0
        order = epoch_order(cfg.seed, epoch, n, cfg.repeats, device)
        epoch_start, epoch_images = time.perf_counter(), 0
        for b in range(run["batch"], steps_per_epoch):
            slots = torch.arange(b * cfg.batch_size, min((b + 1) * cfg.batch_size, per_epoch), device=device)
            size = len(slots)  # the global batch
            part = distributed.shard(size, world)
            mine = slots[part.start:part.stop]  # this rank's contiguous share of it
            x0 = norm.apply(to_model_range(data[order[mine]])).contiguous(memory_format=memory_format)
            positions = epoch * per_epoch + mine
            t, eps = step_noise(cfg.seed, positions, diffusion.num_timesteps, (c, h, w))
            y = None if label_data is None else step_labels(cfg.seed, positions, label_data[order[mine]],
                                                             cfg.cond_drop_prob)
            x_t = schedule.q_sample(x0, t, eps)  # fp32, outside autocast
            losses = image_losses(eps_fn(x_t, t, y), eps, cfg.loss, min_snr_weight(schedule, t, cfg.min_snr_gamma))
            # This rank's share of the global batch mean; DDP averages the k ranks' gradients, hence × k.
            loss = losses.sum() * (world.size / size)
            for group in optimizer.param_groups:  # a function of the step alone: resumes exactly
                group["lr"] = lr_at(run["step"], cfg.epochs * steps_per_epoch, cfg)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            run["step"] += 1
            step = run["step"]
            ema_update(ema, model, ema_decay_at(step, cfg))
            loss_d = distributed.all_reduce_sum(losses.detach().sum(), world)  # the global batch's sum
            run["epoch_sum"] += loss_d
            run["window_sum"] += loss_d
            run["window_n"] += size
            run["batch"] = b + 1
            window_images += size
            epoch_images += size
            bar.update(1)
            if step % cfg.log_every == 0 or b == steps_per_epoch - 1:
                window_loss = (run["window_sum"] / run["window_n"]).item()  # the only host sync in the loop
                if not math.isfinite(window_loss):
                    stop(f"the loss is {window_loss}")
                run["step_losses"].append({"step": step, "epoch": epoch + 1, "loss": window_loss})
                img_per_s = window_images / (time.perf_counter() - window_start)
                bar.set_postfix(epoch=f"{epoch + 1}/{cfg.epochs}", loss=f"{window_loss:.4f}", img_s=f"{img_per_s:.0f}")
                if history is not None:
                    history.log(step, {"train/loss": window_loss, "schedule/lr": optimizer.param_groups[0]["lr"],
                                       "schedule/ema_decay": ema_decay_at(step, cfg), "cost/img_per_s": img_per_s})
                window_start, window_images = time.perf_counter(), 0
                run["window_sum"].zero_()
                run["window_n"] = 0
            if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and b < steps_per_epoch - 1:
                save_state()
        epoch_loss = (run["epoch_sum"] / per_epoch).item()
        if not math.isfinite(epoch_loss):
            stop(f"the epoch loss is {epoch_loss}")
        run["epoch_losses"].append({"epoch": epoch + 1, "loss": epoch_loss})
        epoch_seconds.append((epoch_images, time.perf_counter() - epoch_start))
        if history is not None:
            history.log(run["step"], {"train/epoch_loss": epoch_loss})
        if main:
            bar.write(f"epoch {epoch + 1}/{cfg.epochs}: loss {epoch_loss:.5f} "
                      f"({epoch_images / epoch_seconds[-1][1]:.1f} img/s)")
        best = run["best"]
        if main and cfg.keep == "best" and (best is None or epoch_loss < best["loss"]):
            # The MNIST DDPM source keeps the checkpoint with the lowest mean epoch loss.
            run["best"] = {"loss": epoch_loss, "checkpoint": make_checkpoint(
                model, ema, optimizer, run["step"], epoch + 1, epoch_loss, diffusion, model_cfg, cfg,
                images.shape[1:], norm)}
        if on_epoch_end is not None:
            ema.eval()
            on_epoch_end(epoch + 1, ema, schedule, norm)
        run["epoch"], run["batch"] = epoch + 1, 0
        save_state()
    bar.close()
    wall = time.perf_counter() - start
    epoch_losses = run["epoch_losses"]
    if not main:
        kept = None
    elif cfg.keep == "last":  # the flowers DDIM source keeps the final weights
        kept = make_checkpoint(model, ema, optimizer, run["step"], cfg.epochs, epoch_losses[-1]["loss"],
                               diffusion, model_cfg, cfg, images.shape[1:], norm)
    else:
        kept = run["best"]["checkpoint"]
    summary = {"final_loss": epoch_losses[-1]["loss"], "best_loss": min(e["loss"] for e in epoch_losses)}
    if history is not None:
        history.summary({f"train/{k}": v for k, v in summary.items()})
    report = {
        "keep": cfg.keep,
        "kept_epoch": None if kept is None else kept["epoch"],
        "epochs": cfg.epochs,
        "steps": run["step"],
        "images_seen": cfg.epochs * per_epoch,
        "processes": world.size,
        "device": str(device),
        "precision": cfg.precision,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    images_timed = sum(i for i, _ in epoch_seconds)
    cost = {
        "wall_time_s": wall,  # this invocation (a resumed run times only the part it ran)
        "img_per_s": images_timed / sum(s for _, s in epoch_seconds) if images_timed else None,
        "epochs_timed": len(epoch_seconds),
        "epoch_img_per_s": [i / s for i, s in epoch_seconds],
        "processes": world.size,
        "device": str(device),
    }
    return TrainResult(kept, run["step_losses"], epoch_losses, summary, report, cost)
