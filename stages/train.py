"""Stage `train`: prepared uint8 images -> checkpoint, loss curves, per-epoch sample grids, train metrics.

Params: sections `diffusion`, `model`, `train` (the whole file is checked first). The complete training
state is kept in `--state` (a DVC `persist` output): a run interrupted, or continued with more epochs,
resumes from it when the data and the other settings are unchanged.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

# This tree's package first, not the one installed in editable mode: a `--temp` or `--queue` experiment
# runs in its own copy of the repository and must run that copy's code (the code dvc.lock records).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from diffpipe.core import files  # noqa: E402
from diffpipe.core.cli import run_main  # noqa: E402
from diffpipe.core.params import load_params  # noqa: E402
from diffpipe.diffusion.checkpoint import save_checkpoint  # noqa: E402
from diffpipe.diffusion.generate import generate  # noqa: E402
from diffpipe.diffusion.training import train  # noqa: E402
from diffpipe.pictures.grids import save_grid  # noqa: E402
from diffpipe.pictures.plots import write_csv_rows  # noqa: E402


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="prepared training images, .npy uint8 (N, C, H, W)")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--state", required=True, help="folder of the resumable training state (kept between runs)")
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
    state_grids = Path(args.state) / "grids"  # part of the state: a resumed run keeps earlier epochs' grids

    def write_grid(epoch, ema_model, schedule, norm):
        if cfg.grid_images == 0:
            return
        samples = generate(ema_model, schedule, images.shape[1:], preview, cfg.grid_images, cfg.seed,
                           cfg.grid_images, progress=False, norm=norm)
        save_grid(state_grids / f"epoch_{epoch:03d}.png", samples, scale=2)

    result = train(images, params.diffusion, params.model, cfg, state_dir=Path(args.state), on_epoch_end=write_grid)
    save_checkpoint(args.checkpoint, result.checkpoint)
    write_csv_rows(args.loss_steps, result.step_losses)
    write_csv_rows(args.loss_epochs, result.epoch_losses)
    files.write_json(args.metrics, result.metrics)
    with files.atomic_dir(args.grids) as grids:
        for epoch in range(1, cfg.epochs + 1):
            png = state_grids / f"epoch_{epoch:03d}.png"
            if png.exists():
                shutil.copy2(png, grids / png.name)


if __name__ == "__main__":
    run_main(main)
