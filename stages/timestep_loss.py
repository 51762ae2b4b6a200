"""Stage `timestep_loss`: held-out noise-prediction MSE in timestep buckets (DVC plot + PNG).

Params: section `timestep_loss`. The model (EMA weights) comes from the checkpoint.
"""
from __future__ import annotations

import argparse

from diffpipe.core import files
from diffpipe.core.cli import run_main
from diffpipe.core.devices import resolve_device
from diffpipe.core.params import load_params
from diffpipe.diffusion.checkpoint import load_model
from diffpipe.diffusion.schedule import NoiseSchedule
from diffpipe.metrics.timestep_loss import loss_by_timestep
from diffpipe.pictures.plots import plot_xy, write_csv_rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--images", required=True, help="held-out images, uint8 (N, C, H, W) .npy")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--csv", required=True, help="output CSV: bucket, t range, mse")
    p.add_argument("--plot", required=True, help="output PNG")
    args = p.parse_args()
    cfg = load_params(args.params).timestep_loss
    images = files.read_image_array(args.images)
    loaded = load_model(args.checkpoint, resolve_device("auto"))
    schedule = NoiseSchedule.from_config(loaded.diffusion).to(next(loaded.model.parameters()).device)
    rows = loss_by_timestep(loaded.model, schedule, images, cfg, loaded.norm, loaded.diffusion.prediction)
    write_csv_rows(args.csv, rows)
    plot_xy(rows, "t_mid", "mse", args.plot, f"held-out noise-prediction MSE by timestep ({min(len(images), cfg.num_images)} images)")


if __name__ == "__main__":
    run_main(main)
