"""Stage `timestep_loss`: held-out noise-prediction MSE in timestep buckets (DVC plot + PNG).

Params: section `timestep_loss`. The model (EMA weights) comes from the checkpoint.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

# This tree's package first, not the one installed in editable mode: a `--temp` or `--queue` experiment
# runs in its own copy of the repository and must run that copy's code (the code dvc.lock records).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from diffpipe.core import files  # noqa: E402
from diffpipe.core.cli import run_main  # noqa: E402
from diffpipe.core.devices import resolve_device  # noqa: E402
from diffpipe.core.params import load_params  # noqa: E402
from diffpipe.diffusion.checkpoint import load_model  # noqa: E402
from diffpipe.diffusion.schedule import NoiseSchedule  # noqa: E402
from diffpipe.metrics.timestep_loss import loss_by_timestep  # noqa: E402
from diffpipe.pictures.plots import plot_xy, write_csv_rows  # noqa: E402


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
    rows = loss_by_timestep(loaded.model, schedule, images, cfg, loaded.norm)
    write_csv_rows(args.csv, rows)
    plot_xy(rows, "t_mid", "mse", args.plot, f"held-out noise-prediction MSE by timestep ({min(len(images), cfg.num_images)} images)")


if __name__ == "__main__":
    run_main(main)
