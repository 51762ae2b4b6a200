"""Stage `timestep_loss`: held-out noise-prediction MSE in timestep buckets (DVC plot + PNG).

Params: section `timestep_loss`. The model (EMA weights) comes from the checkpoint.
"""
from __future__ import annotations

import argparse

from diffpipe import io
from diffpipe.checkpoint import load_model
from diffpipe.cli import run_main
from diffpipe.config import load_params, section
from diffpipe.plots import plot_xy, write_csv_rows
from diffpipe.schedule import NoiseSchedule
from diffpipe.timestep_loss import TimestepLossConfig, loss_by_timestep
from diffpipe.devices import resolve_device


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--images", required=True, help="held-out images, uint8 (N, C, H, W) .npy")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--csv", required=True, help="output CSV: bucket, t range, mse")
    p.add_argument("--plot", required=True, help="output PNG")
    args = p.parse_args()
    cfg = section(load_params(args.params), "timestep_loss", TimestepLossConfig)
    images = io.read_image_array(args.images)
    loaded = load_model(args.checkpoint, resolve_device("auto"))
    schedule = NoiseSchedule.from_config(loaded.diffusion).to(next(loaded.model.parameters()).device)
    rows = loss_by_timestep(loaded.model, schedule, images, cfg, loaded.norm)
    write_csv_rows(args.csv, rows)
    plot_xy(rows, "t_mid", "mse", args.plot, f"held-out noise-prediction MSE by timestep ({min(len(images), cfg.num_images)} images)")


if __name__ == "__main__":
    run_main(main)
