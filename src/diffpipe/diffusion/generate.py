"""Batched generation with per-image seeds, and the recorded reverse process for the pictures.

Image i uses seed first_seed + i, so it does not depend on the batching, nor on the process that makes it:
under torchrun each process makes a contiguous run of whole batches and the images are gathered in index
order (core/distributed.py). Both functions go through
`samplers.run_sampler` with one `SamplerSpec`, and map model units back to uint8 the same way.

Class-conditional models take `labels` (N,) (image i's requested class; None = unconditional) and a guidance
scale (denoiser.guided); `requested_labels` spreads `sample.labels` over the images. `prediction` is what the
network predicts (diffusion.prediction: eps, v or x0; denoiser.make_denoiser turns it into x0 and eps).
"""
from __future__ import annotations

import time

import numpy as np
import torch

from ..core import distributed
from ..core.errors import PipelineError
from ..core.params import SamplerSpec
from ..core.progress import progress_bar
from ..data.channel_norm import ChannelNorm
from ..data.pixels import to_uint8
from .denoiser import guided, make_denoiser
from .noise import ImageNoise
from .samplers import run_sampler, sampler_timesteps
from .schedule import NoiseSchedule


def requested_labels(labels: tuple[int, ...] | list[int], count: int, first: int = 0) -> np.ndarray | None:
    """The class of images first … first + count - 1 when the list `labels` is repeated (int64), None for []."""
    if not len(labels):
        return None
    return np.asarray(labels, dtype=np.int64)[np.arange(first, first + count) % len(labels)]


def _label_tensor(labels: np.ndarray | None, start: int, stop: int, device: torch.device) -> torch.Tensor | None:
    return None if labels is None else torch.as_tensor(labels[start:stop], dtype=torch.long, device=device)


def generate(model: torch.nn.Module, schedule: NoiseSchedule, image_shape: tuple[int, int, int],
             spec: SamplerSpec, num_images: int, first_seed: int, batch_size: int,
             autocast_dtype: torch.dtype | None = None, progress: bool = True,
             norm: ChannelNorm | None = None, world: distributed.World = distributed.SINGLE,
             labels: np.ndarray | None = None, guidance_scale: float = 1.0, prediction: str = "eps") -> np.ndarray:
    """N images as uint8 (N, C, H, W); image i depends only on seed first_seed + i (and its label), not on the
    batching. `labels` (N,): the class each image is guided towards at `guidance_scale` (None: unconditional).
    `prediction`: what `model` predicts (diffusion.prediction).

    With a distributed `world`, this rank makes its shard of whole batches and every rank returns all N."""
    device = next(model.parameters()).device
    if labels is not None and len(labels) != num_images:
        raise ValueError(f"{len(labels)} labels for {num_images} images")
    denoiser = make_denoiser(model, schedule, prediction, autocast_dtype)
    norm = norm or ChannelNorm.identity(image_shape[0])
    mine = distributed.shard(num_images, world, batch_size)
    out = np.empty((len(mine), *image_shape), dtype=np.uint8)
    steps = len(sampler_timesteps(spec, schedule.num_timesteps, schedule))
    with progress_bar(desc=f"{spec.sampler} sampling, {num_images} images", total=len(mine) * steps,
                      unit="img-step", enabled=progress and world.main) as bar:
        for start in range(mine.start, mine.stop, batch_size):
            seeds = range(first_seed + start, first_seed + min(start + batch_size, mine.stop))
            denoise = guided(denoiser, _label_tensor(labels, start, start + len(seeds), device), guidance_scale)
            x0 = run_sampler(spec, denoise, schedule, ImageNoise(seeds, image_shape, device),
                             callback=lambda *_, n=len(seeds): bar.update(n), x0_bounds=norm.data_bounds(device))
            if not torch.isfinite(x0).all():
                raise PipelineError(f"sampling produced non-finite values for images {start}..{start + len(seeds) - 1} "
                                    "(the network's output is not finite)")
            out[start - mine.start:start - mine.start + len(seeds)] = to_uint8(norm.invert(x0)).cpu().numpy()
    return distributed.gather_rows(out, world)


def timed_generate(*args, **kwargs) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    images = generate(*args, **kwargs)
    return images, time.perf_counter() - start


@torch.no_grad()
def record_process(model: torch.nn.Module, schedule: NoiseSchedule, image_shape: tuple[int, int, int],
                   seeds, spec: SamplerSpec, num_frames: int, norm: ChannelNorm | None = None,
                   labels: np.ndarray | None = None, guidance_scale: float = 1.0, prediction: str = "eps"):
    """Run one sampler over `seeds` (with their `labels`, the model's `prediction`, as in `generate`); return
    (frames of x_t, x0-predictions, their timesteps) as uint8 arrays.

    frames: (F, B, C, H, W) at about `num_frames` evenly spaced steps; the last frame is the final image,
    whose timestep is given as -1.
    """
    device = next(model.parameters()).device
    denoise = guided(make_denoiser(model, schedule, prediction), _label_tensor(labels, 0, len(seeds), device),
                     guidance_scale)
    total = len(sampler_timesteps(spec, schedule.num_timesteps, schedule))
    keep = set(np.unique(np.linspace(0, total - 1, num_frames).round().astype(int)).tolist())
    frames, x0s, ts = [], [], []
    norm = norm or ChannelNorm.identity(image_shape[0])

    def callback(i, t, x_t, x0_pred):
        if i in keep:
            frames.append(to_uint8(norm.invert(x_t.clamp(-3, 3))).cpu().numpy())
            x0s.append(to_uint8(norm.invert(x0_pred)).cpu().numpy())
            ts.append(int(t))

    final = run_sampler(spec, denoise, schedule, ImageNoise(seeds, image_shape, device), callback=callback,
                        x0_bounds=norm.data_bounds(device))
    last = to_uint8(norm.invert(final)).cpu().numpy()
    return np.stack(frames + [last]), np.stack(x0s + [last]), ts + [-1]
