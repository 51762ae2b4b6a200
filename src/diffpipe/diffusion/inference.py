"""Images from a loaded model: the one code path of the sample stage, the Python API (`diffpipe.load(...).sample`)
and the command line (`diffpipe sample`).

`draw` is the sample stage's generation: image i uses seed first_seed + i and label labels[i % len(labels)], so
the same model (a training checkpoint or its export), sampler, seeds and labels give the same bytes whoever
asks. The callers check their own inputs first, each naming them in its own words (params keys, arguments).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..core import distributed
from ..core.devices import autocast_dtype
from ..core.params import SamplerSpec
from .checkpoint import LoadedModel
from .generate import requested_labels, timed_generate
from .schedule import NoiseSchedule


def model_device(loaded: LoadedModel) -> torch.device:
    return next(loaded.model.parameters()).device


def schedule_of(loaded: LoadedModel) -> NoiseSchedule:
    """The model's noise schedule, on the model's device."""
    return NoiseSchedule.from_config(loaded.diffusion).to(model_device(loaded))


def draw(loaded: LoadedModel, spec: SamplerSpec, num_images: int, first_seed: int, batch_size: int,
         labels: Sequence[int] = (), guidance_scale: float = 1.0, precision: str = "fp32",
         world: distributed.World = distributed.SINGLE,
         progress: bool = True) -> tuple[np.ndarray, np.ndarray | None, float]:
    """(uint8 images (N, C, H, W), each image's requested class (int64 (N,), None when `labels` is empty), the
    seconds it took). `labels` repeat over the images; `guidance_scale` is classifier-free guidance's w;
    `precision` 'fp32' or 'bf16' (autocast). Under torchrun every rank returns all N images."""
    requested = requested_labels(labels, num_images)
    images, seconds = timed_generate(loaded.model, schedule_of(loaded), loaded.image_shape, spec, num_images,
                                     first_seed, batch_size, autocast_dtype(precision), progress=progress,
                                     norm=loaded.norm, world=world, labels=requested, guidance_scale=guidance_scale,
                                     prediction=loaded.diffusion.prediction)
    return images, requested, seconds
