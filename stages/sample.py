"""Stage `sample`: checkpoint (EMA weights) -> N images as .npy, grid PNG, pixel CSV, report and cost.

Params: section `sample`. The model, schedule and image shape come from the checkpoint alone.

A class-conditional checkpoint samples image i towards class `sample.labels[i % len]` with classifier-free
guidance at `sample.guidance_scale` ([] = unconditional, the null label); the labels go to `--labels-out`
(-1 = none), into the CSV's `label` column, and the grid shows one class per row.
"""
from __future__ import annotations

import argparse

import numpy as np

from diffpipe.core import distributed, files
from diffpipe.core.cli import run_main
from diffpipe.core.devices import resolve_device
from diffpipe.core.params import load_params
from diffpipe.data.pixel_csv import write_pixel_csv
from diffpipe.diffusion.checkpoint import load_model
from diffpipe.diffusion.generate import record_process, requested_labels
from diffpipe.diffusion.inference import draw, schedule_of
from diffpipe.diffusion.denoiser import network_calls
from diffpipe.diffusion.samplers import describe_sampler
from diffpipe.pictures.grids import class_rows, display_scale, save_grid
from diffpipe.pictures.process import save_process


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--out", required=True, help="output .npy, uint8 (N, C, H, W)")
    p.add_argument("--labels-out", required=True, help="output .npy, int64 (N,): each image's requested class, -1 = none")
    p.add_argument("--grid", required=True, help="output PNG grid of the first sample.grid_images images")
    p.add_argument("--csv", help="output CSV in the source's pixel0… format (1-channel data only)")
    p.add_argument("--report", required=True, help="output JSON: the sampler used, pixel mean, strip timesteps")
    p.add_argument("--cost", required=True, help="output JSON of timings (not a DVC output: differs every run)")
    p.add_argument("--process-gif", required=True, help="output GIF of the reverse process for a few seeds")
    p.add_argument("--process-strip", required=True, help="output PNG: x0-predictions at chosen steps, a row per seed")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    cfg = load_params(args.params).sample
    world, device = distributed.init(resolve_device(cfg.device, "sample.device"))
    loaded = load_model(args.checkpoint, device)
    cfg.check_timesteps(loaded.diffusion.num_timesteps, "sample")
    cfg.check_labels(loaded.model_cfg.num_classes, args.checkpoint)
    # the API's and the command line's code path too (diffpipe.load(...).sample, `diffpipe sample`)
    images, labels, seconds = draw(loaded, cfg, cfg.num_images, cfg.first_seed, cfg.batch_size, cfg.labels,
                                   cfg.guidance_scale, cfg.precision, world=world)
    if not world.main:  # rank 0 draws the pictures and writes every output
        return
    seeds = range(cfg.first_seed, cfg.first_seed + cfg.process_seeds)
    schedule = schedule_of(loaded)
    frames, x0s, ts = record_process(loaded.model, schedule, loaded.image_shape, seeds, cfg, cfg.process_frames,
                                     loaded.norm, requested_labels(cfg.labels, len(seeds)), cfg.guidance_scale,
                                     prediction=loaded.diffusion.prediction)
    strip_t = save_process(frames, x0s, ts, args.process_gif, args.process_strip, cfg.strip_columns)
    files.write_npy(args.out, images)
    files.write_npy(args.labels_out, np.full(len(images), -1, dtype=np.int64) if labels is None else labels)
    if labels is None:
        save_grid(args.grid, images[: cfg.grid_images], scale=display_scale(images.shape[-1]))
    else:
        save_grid(args.grid, *class_rows(images, labels, cfg.grid_images), scale=display_scale(images.shape[-1]))
    if args.csv:
        write_pixel_csv(args.csv, images, labels)
    files.write_json(args.report, {
        "num_images": cfg.num_images,
        **describe_sampler(cfg, loaded.diffusion.num_timesteps, network_calls(bool(cfg.labels), cfg.guidance_scale)),
        "first_seed": cfg.first_seed,
        "labels": list(cfg.labels), "guidance_scale": cfg.guidance_scale if cfg.labels else None,
        "pixel_mean": float(np.mean(images) / 255.0),
        "strip_timesteps": strip_t,
    })
    files.write_json(args.cost, {"seconds": seconds, "s_per_img": seconds / cfg.num_images, "device": device.type,
                                 "processes": world.size})


if __name__ == "__main__":
    run_main(main)
