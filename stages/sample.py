"""Stage `sample`: checkpoint (EMA weights) -> N images as .npy, grid PNG, pixel CSV, sample metrics.

Params: section `sample`. The model, schedule and image shape come from the checkpoint alone.
"""
from __future__ import annotations

import argparse

import numpy as np

from diffpipe import io
from diffpipe.checkpoint import load_model
from diffpipe.cli import run_main
from diffpipe.config import load_params, section
from diffpipe.csv_data import write_pixel_csv
from diffpipe.images import save_grid
from diffpipe.sample import SampleConfig, timed_generate
from diffpipe.schedule import NoiseSchedule
from diffpipe.devices import autocast_dtype, resolve_device
from diffpipe.visualize import visualize


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--out", required=True, help="output .npy, uint8 (N, C, H, W)")
    p.add_argument("--grid", required=True, help="output PNG grid of the first sample.grid_images images")
    p.add_argument("--csv", help="output CSV in the source's pixel0… format (1-channel data only)")
    p.add_argument("--metrics", required=True, help="output metrics JSON")
    p.add_argument("--process-gif", required=True, help="output GIF of the reverse process for a few seeds")
    p.add_argument("--process-strip", required=True, help="output PNG: x0-predictions at chosen steps, a row per seed")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    cfg = section(load_params(args.params), "sample", SampleConfig)
    device = resolve_device(cfg.device, "sample.device")
    loaded = load_model(args.checkpoint, device)
    schedule = NoiseSchedule.from_config(loaded.diffusion).to(device)
    images, seconds = timed_generate(loaded.model, schedule, loaded.image_shape, cfg.sampler, cfg.num_images,
                                     cfg.first_seed, cfg.batch_size, cfg.steps, cfg.eta,
                                     autocast_dtype(cfg.precision), norm=loaded.norm,
                                     clip_x0=cfg.clip_x0)
    strip_t = visualize(loaded.model, schedule, loaded.image_shape,
                        range(cfg.first_seed, cfg.first_seed + cfg.process_seeds), cfg.sampler, cfg.steps, cfg.eta,
                        cfg.process_frames, args.process_gif, args.process_strip, cfg.strip_columns, loaded.norm,
                        cfg.clip_x0)
    io.write_npy(args.out, images)
    save_grid(args.grid, images[: cfg.grid_images], scale=2)
    if args.csv:
        write_pixel_csv(args.csv, images)
    steps = loaded.diffusion.num_timesteps if cfg.sampler == "ddpm" else min(cfg.steps, loaded.diffusion.num_timesteps)
    io.write_json(args.metrics, {
        "num_images": cfg.num_images,
        "sampler": cfg.sampler,
        "steps": steps,
        "eta": cfg.eta if cfg.sampler == "ddim" else 1.0,
        "clip_x0": cfg.clip_x0,
        "seconds": seconds,
        "s_per_img": seconds / cfg.num_images,
        "device": str(device),
        "first_seed": cfg.first_seed,
        "pixel_mean": float(np.mean(images) / 255.0),
        "strip_timesteps": strip_t,
    })


if __name__ == "__main__":
    run_main(main)
