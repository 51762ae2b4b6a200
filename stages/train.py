"""Stage `train`: prepared uint8 images -> checkpoint, loss curves, per-epoch sample grids, train metrics.

Params: sections `diffusion`, `model`, `train` (and `sample.first_seed` is not used: grids use train.seed).
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path


from diffpipe import io
from diffpipe.checkpoint import save_checkpoint
from diffpipe.cli import run_main
from diffpipe.config import load_params, section
from diffpipe.images import save_grid
from diffpipe.models import ModelConfig
from diffpipe.plots import write_csv_rows
from diffpipe.sample import generate
from diffpipe.schedule import DiffusionConfig
from diffpipe.train import TrainConfig, train


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
    diffusion = section(params, "diffusion", DiffusionConfig)
    model_cfg = section(params, "model", ModelConfig)
    cfg = section(params, "train", TrainConfig)
    images = io.read_image_array(args.data)
    model_cfg.check_image(images.shape[1], images.shape[2])

    grids_out = Path(args.grids)
    grids_out.parent.mkdir(parents=True, exist_ok=True)
    grids_tmp = Path(tempfile.mkdtemp(dir=grids_out.parent, prefix=f".{grids_out.name}."))

    def write_grid(epoch, ema_model, schedule, norm):
        if cfg.grid_images == 0:
            return
        samples = generate(ema_model, schedule, images.shape[1:], "ddim", cfg.grid_images, cfg.seed,
                           cfg.grid_images, steps=cfg.grid_steps, progress=False, norm=norm,
                           clip_x0=not cfg.normalize)  # a preview: clamp x0 where the data range is [-1, 1]
        save_grid(grids_tmp / f"epoch_{epoch:03d}.png", samples, scale=2)

    try:
        result = train(images, diffusion, model_cfg, cfg, on_epoch_end=write_grid)
        save_checkpoint(args.checkpoint, result.checkpoint)
        write_csv_rows(args.loss_steps, result.step_losses)
        write_csv_rows(args.loss_epochs, result.epoch_losses)
        io.write_json(args.metrics, result.metrics)
        if grids_out.exists():
            shutil.rmtree(grids_out)
        grids_tmp.chmod(0o755)  # mkdtemp makes it private
        grids_tmp.rename(grids_out)
    finally:
        shutil.rmtree(grids_tmp, ignore_errors=True)


if __name__ == "__main__":
    run_main(main)
