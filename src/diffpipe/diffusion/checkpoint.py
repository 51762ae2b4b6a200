"""The checkpoint format, written and read here only: a self-describing file from which sampling and
evaluation rebuild the model alone (weights, EMA weights, optimizer, step, RNG state, the configs).

It is the resumable training format (a torch file: every reader must trust it). The portable, pickle-free
form of the same model is the export (export.py: safetensors + config.json); both are rebuilt into a
`LoadedModel` by `assemble`, so a model samples the same images from either."""
from __future__ import annotations

import copy
import os
import pickle
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

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
                    train_cfg: TrainConfig, image_shape: tuple[int, int, int], norm: ChannelNorm,
                    data_md5: Optional[str] = None) -> dict:
    """The checkpoint dict (the keys' order is part of the format: the file's bytes and md5 depend on it).

    data_md5: the md5 of the training images (the training state's fingerprint `data_md5`), recorded as the
    export's provenance; checkpoints written without it (None) lack the key and still load."""
    checkpoint = {
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
    if data_md5 is not None:
        checkpoint["data_md5"] = data_md5
    return checkpoint


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
    checkpoint: Optional[dict]  # the training checkpoint's dict; None for an export (export.py)
    train_cfg: TrainConfig


def read_configs(config: dict, where: str = "checkpoint") -> tuple[DiffusionConfig, ModelConfig, TrainConfig]:
    """A checkpoint's stored configs (`config` of make_checkpoint), checked as params are, except that a key
    added to the schema after the checkpoint was written takes the `legacy` value its declaration gives
    (core/config.py `key`): checkpoints outlive the schema's growth. params.yaml itself is read strictly.
    Errors name the keys under `where` (`checkpoint.model.arch`; an export's config.json: `model.arch`)."""
    prefix = f"{where}." if where else ""
    return (from_dict(DiffusionConfig, config["diffusion"], f"{prefix}diffusion", fill_legacy=True),
            from_dict(ModelConfig, config["model"], f"{prefix}model", fill_legacy=True),
            from_dict(TrainConfig, config["train"], f"{prefix}train", fill_legacy=True))


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def assemble(name: str, config: dict, image_shape, data_norm: dict, weights: dict, device: torch.device,
             checkpoint: Optional[dict] = None, what: str = "checkpoint") -> LoadedModel:
    """The network of `config` (make_checkpoint's `config`: diffusion, model, train) for images of `image_shape`
    (C, H, W), with `weights` (a state dict), in eval mode on `device`; `name` (the file) and `what` word the
    one-line errors (config keys are named as under `what`: `checkpoint.model.arch`, `export.model.arch`)."""
    try:
        diffusion, model_cfg, train_cfg = read_configs(config, what)
        c, h, w = image_shape
        model = build_model(model_cfg, c, h)
        model.load_state_dict(weights)
        norm = ChannelNorm(**{k: tuple(v) for k, v in data_norm.items()})
    except (PipelineError, KeyError, TypeError, ValueError, RuntimeError) as e:
        raise PipelineError(f"{name}: not a usable {what} ({type(e).__name__}: {_first_line(e)})") from None
    bad = [k for k, v in weights.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise PipelineError(f"{name}: {len(bad)} weight tensors are not finite (e.g. {bad[0]}): training diverged")
    # Inference runs in the memory layout the network was trained in: channels-last convolutions are about 1.4x
    # faster on this CPU, and the same layout keeps the sampled images the same from run to run.
    layout = torch.channels_last if train_cfg.channels_last else torch.contiguous_format
    model.to(device=device, memory_format=layout).eval().requires_grad_(False)
    return LoadedModel(model, diffusion, model_cfg, (c, h, w), norm, checkpoint, train_cfg)


def load_model(path: str | os.PathLike, device: torch.device, weights: str = "ema",
               name: Optional[str] = None) -> LoadedModel:
    """The checkpoint at `path` (its `weights`: the EMA by default) on `device`; `name` (default: the path)
    is what one-line errors call the file."""
    path = Path(path)
    name = name or str(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise PipelineError(f"{name}: checkpoint not found") from None
    except pickle.UnpicklingError:  # torch's message runs to many lines about weights_only
        raise PipelineError(f"{name}: not a readable checkpoint (not a torch file of tensors and plain values: "
                            "UnpicklingError)") from None
    except Exception as e:  # noqa: BLE001 - any unreadable file is a user-facing error
        raise PipelineError(f"{name}: not a readable checkpoint ({type(e).__name__}: {_first_line(e)})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise PipelineError(f"{name}: not a diffpipe checkpoint (missing format tag {FORMAT!r})")
    missing = [k for k in ("config", "image_shape", "data_norm", weights) if k not in ckpt]
    if missing:
        raise PipelineError(f"{name}: checkpoint lacks {missing}")
    return assemble(name, ckpt["config"], ckpt["image_shape"], ckpt["data_norm"], ckpt[weights], device, ckpt)


def run_record(checkpoint: dict) -> dict:
    """What a checkpoint says of the run that wrote it: the step, epoch and loss it was kept at, and the
    training data's md5 (None when the checkpoint predates the key)."""
    return {"step": checkpoint.get("step"), "epoch": checkpoint.get("epoch"), "loss": checkpoint.get("loss"),
            "data_md5": checkpoint.get("data_md5")}
