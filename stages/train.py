"""Stage `train`: prepared uint8 images -> checkpoint, loss curves, per-epoch sample grids, train metrics.

Params: sections `diffusion`, `model`, `train` (the whole file is checked first).
"""
from __future__ import annotations

import argparse

from diffpipe.core import files
from diffpipe.core.cli import run_main
from diffpipe.core.params import load_params
from diffpipe.diffusion.checkpoint import save_checkpoint
from diffpipe.diffusion.generate import generate
from diffpipe.diffusion.training import train
from diffpipe.pictures.grids import save_grid
from diffpipe.pictures.plots import write_csv_rows


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="prepared training images, .npy uint8 (N, C, H, W)")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--checkpoint", required=True, help="output: best-epoch checkpoint (.pt)")
    p.add_argument("--metrics", required=True, help="output: metrics JSON")
    p.add_argument("--loss-steps", required=True, help="output: CSV of loss per log window (DVC plot)")
    p.add_argument("--loss-epochs", required=True, help="output: CSV of mean loss per epoch (DVC plot)")
    p.add_argument("--grids", required=True, help="output folder: one sample grid PNG per epoch")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    params = load_params(args.params)
    cfg = params.train
    images = files.read_image_array(args.data)
    params.model.check_image(images.shape[1], images.shape[2])
    preview = cfg.preview_sampler()

    with files.atomic_dir(args.grids) as grids:
        def write_grid(epoch, ema_model, schedule, norm):
            if cfg.grid_images == 0:
                return
            samples = generate(ema_model, schedule, images.shape[1:], preview, cfg.grid_images, cfg.seed,
                               cfg.grid_images, progress=False, norm=norm)
            save_grid(grids / f"epoch_{epoch:03d}.png", samples, scale=2)

        result = train(images, params.diffusion, params.model, cfg, on_epoch_end=write_grid)
        save_checkpoint(args.checkpoint, result.checkpoint)
        write_csv_rows(args.loss_steps, result.step_losses)
        write_csv_rows(args.loss_epochs, result.epoch_losses)
        files.write_json(args.metrics, result.metrics)


if __name__ == "__main__":
    run_main(main)
