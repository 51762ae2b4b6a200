"""The checkpoint format, written and read here only: a self-describing file from which sampling and
evaluation rebuild the model alone (weights, EMA weights, optimizer, step, RNG state, the configs)."""
from __future__ import annotations

import copy
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from ..core.config import from_dict, to_dict
from ..core.errors import PipelineError
from ..core.files import atomic_path
from ..core.params import DiffusionConfig, ModelConfig, TrainConfig
from ..data.channel_norm import ChannelNorm
from ..nets.builder import build_model

FORMAT = "diffpipe-checkpoint-v1"


def cpu_state(module: nn.Module) -> dict:
    # Saved from the un-compiled module and copied to CPU so later epochs do not mutate it.
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in module.state_dict().items()}


def make_checkpoint(model: nn.Module, ema: nn.Module, optimizer: torch.optim.Optimizer, step: int, epoch: int,
                    loss: float, diffusion: DiffusionConfig, model_cfg: ModelConfig,
                    train_cfg: TrainConfig, image_shape: tuple[int, int, int], norm: ChannelNorm) -> dict:
    """The checkpoint dict (the keys' order is part of the format: the file's bytes and md5 depend on it)."""
    return {
        "format": FORMAT,
        "model": cpu_state(model),
        "ema": cpu_state(ema),
        "optimizer": copy.deepcopy(optimizer.state_dict()),
        "step": step,
        "epoch": epoch,
        "loss": loss,
        "rng": {"torch": torch.get_rng_state()},  # the training noise is counter-based (noise.py): no generator
        "config": {"diffusion": to_dict(diffusion), "model": to_dict(model_cfg), "train": to_dict(train_cfg)},
        "image_shape": list(image_shape),  # (C, H, W)
        "data_norm": norm.to_dict(),
    }


def _canonical(obj):
    """The same values with interned strings. pickle shares (memoises) strings by object identity, so a dict
    key built in this process and the same key loaded from a saved state would otherwise serialise to
    different bytes; with every string interned, a resumed run writes the bytes an uninterrupted one does."""
    if isinstance(obj, str):
        return sys.intern(obj)
    if isinstance(obj, dict):
        return {_canonical(k): _canonical(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_canonical(v) for v in obj)
    return obj


def save_checkpoint(path: str | os.PathLike, checkpoint: dict) -> None:
    # Saved through a file object: given a path, torch.save records the (random) temp file name in the
    # archive, and identical checkpoints would hash differently for DVC.
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(_canonical(checkpoint), f)


@dataclass
class LoadedModel:
    model: nn.Module  # EMA weights, eval mode
    diffusion: DiffusionConfig
    model_cfg: ModelConfig
    image_shape: tuple[int, int, int]  # (C, H, W)
    norm: ChannelNorm
    checkpoint: dict
    train_cfg: TrainConfig


def read_configs(config: dict) -> tuple[DiffusionConfig, ModelConfig, TrainConfig]:
    """A checkpoint's stored configs (`config` of make_checkpoint), checked as params are, except that a key
    added to the schema after the checkpoint was written takes the `legacy` value its declaration gives
    (core/config.py `key`): checkpoints outlive the schema's growth. params.yaml itself is read strictly."""
    return (from_dict(DiffusionConfig, config["diffusion"], "checkpoint.diffusion", fill_legacy=True),
            from_dict(ModelConfig, config["model"], "checkpoint.model", fill_legacy=True),
            from_dict(TrainConfig, config["train"], "checkpoint.train", fill_legacy=True))


def load_model(path: str | os.PathLike, device: torch.device, weights: str = "ema") -> LoadedModel:
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise PipelineError(f"{path}: checkpoint not found") from None
    except Exception as e:  # noqa: BLE001 - any unreadable file is a user-facing error
        raise PipelineError(f"{path}: not a readable checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise PipelineError(f"{path}: not a diffpipe checkpoint (missing format tag {FORMAT!r})")
    missing = [k for k in ("config", "image_shape", "data_norm", weights) if k not in ckpt]
    if missing:
        raise PipelineError(f"{path}: checkpoint lacks {missing}")
    try:
        diffusion, model_cfg, train_cfg = read_configs(ckpt["config"])
        c, h, w = ckpt["image_shape"]
        model = build_model(model_cfg, c, h)
        model.load_state_dict(ckpt[weights])
        norm = ChannelNorm(**{k: tuple(v) for k, v in ckpt["data_norm"].items()})
    except (PipelineError, KeyError, TypeError, ValueError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise PipelineError(f"{path}: not a usable checkpoint ({type(e).__name__}: {first})") from None
    bad = [k for k, v in ckpt[weights].items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise PipelineError(f"{path}: {len(bad)} weight tensors are not finite (e.g. {bad[0]}): training diverged")
    # Inference runs in the memory layout the network was trained in: channels-last convolutions are about 1.4x
    # faster on this CPU, and the same layout keeps the sampled images the same from run to run.
    layout = torch.channels_last if train_cfg.channels_last else torch.contiguous_format
    model.to(device=device, memory_format=layout).eval().requires_grad_(False)
    return LoadedModel(model, diffusion, model_cfg, (c, h, w), norm, ckpt, train_cfg)
