"""Save / load self-describing checkpoints; sampling and evaluation rebuild the model from the file alone."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from .config import from_dict
from .io import PipelineError, atomic_path
from .models import ModelConfig, build_model
from .normalize import ChannelNorm
from .schedule import DiffusionConfig


def save_checkpoint(path: str | os.PathLike, checkpoint: dict) -> None:
    # Saved through a file object: given a path, torch.save records the (random) temp file name in the
    # archive, and identical checkpoints would hash differently for DVC.
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(checkpoint, f)


@dataclass
class LoadedModel:
    model: nn.Module  # EMA weights, eval mode
    diffusion: DiffusionConfig
    model_cfg: ModelConfig
    image_shape: tuple[int, int, int]  # (C, H, W)
    norm: ChannelNorm
    checkpoint: dict


def load_model(path: str | os.PathLike, device: torch.device, weights: str = "ema") -> LoadedModel:
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise PipelineError(f"{path}: checkpoint not found") from None
    except Exception as e:  # noqa: BLE001 - any unreadable file is a user-facing error
        raise PipelineError(f"{path}: not a readable checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != "diffpipe-checkpoint-v1":
        raise PipelineError(f"{path}: not a diffpipe checkpoint (missing format tag)")
    diffusion = from_dict(DiffusionConfig, ckpt["config"]["diffusion"], "checkpoint.diffusion")
    model_cfg = from_dict(ModelConfig, ckpt["config"]["model"], "checkpoint.model")
    c, h, w = ckpt["image_shape"]
    model = build_model(model_cfg, c, h)
    model.load_state_dict(ckpt[weights])
    model.to(device).eval().requires_grad_(False)
    norm = ChannelNorm(**{k: tuple(v) for k, v in ckpt["data_norm"].items()})
    return LoadedModel(model, diffusion, model_cfg, (c, h, w), norm, ckpt)
