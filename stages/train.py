"""Stage `train`: prepared uint8 images -> checkpoint, DVCLive history and per-epoch grids, report, cost.

Params: sections `diffusion`, `model`, `train` (the whole file is checked first). A class-conditional model
(`model.num_classes` > 0) also reads the training labels (`--labels`); its per-epoch grids show every class in
turn. The complete training
state is kept in `--state` (a DVC `persist` output): a run interrupted, or continued with more epochs,
resumes from it when the data and the other settings are unchanged, and the DVCLive history in `--live`
(also `persist`) continues from the same step. SIGTERM, SIGINT or SIGUSR1 stop it after the current step with
the state saved there (exit 128 + the signal; README, "When a run is stopped").
"""
from __future__ import annotations

import argparse
from pathlib import Path

from diffpipe.core import distributed, files
from diffpipe.core.cli import run_main
from diffpipe.core.errors import PipelineError
from diffpipe.core.params import load_params
from diffpipe.core.tracking import TrainingLog
from diffpipe.diffusion.checkpoint import save_checkpoint
from diffpipe.data.labels import read_labels
from diffpipe.diffusion.generate import generate, requested_labels
from diffpipe.diffusion.training import train
from diffpipe.nets.builder import check_model
from diffpipe.pictures.grids import display_scale, grid_image
from diffpipe.pictures.plots import plot_loss


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="prepared training images, .npy uint8 (N, C, H, W)")
    p.add_argument("--labels", help="their labels, int64 .npy (read when model.num_classes > 0)")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--state", required=True, help="folder of the resumable training state (kept between runs)")
    p.add_argument("--checkpoint", required=True, help="output: the kept epoch's checkpoint (.pt)")
    p.add_argument("--live", required=True, help="output: DVCLive folder (metrics.json, loss histories, grids)")
    p.add_argument("--report", required=True, help="output: JSON describing the run (steps, parameters, device)")
    p.add_argument("--cost", required=True, help="output: JSON of timings (not a DVC output: differs every run)")
    p.add_argument("--loss-plot", required=True, help="output: PNG of the loss curves (for the README)")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    params = load_params(args.params)
    cfg = params.train
    images = files.read_image_array(args.data)
    check_model(params.model, images.shape[1], images.shape[2])  # one line naming the key, before any training
    k = params.model.num_classes
    labels = None
    if k:
        if not args.labels:
            raise PipelineError(f"params key `model.num_classes` is {k} (class-conditional), but the train stage "
                                "was given no --labels")
        labels = read_labels(args.labels, len(images), k, f"params key `model.num_classes` is {k}")
    grid_labels = requested_labels(range(k), cfg.grid_images) if k else None
    preview = cfg.preview_sampler()
    main_rank = distributed.world_from_env().main  # under torchrun, rank 0 alone logs and writes
    history = TrainingLog(args.live) if main_rank else None

    def write_grid(epoch, ema_model, schedule, norm):
        if cfg.grid_images == 0:
            return
        samples = generate(ema_model, schedule, images.shape[1:], preview, cfg.grid_images, cfg.seed,
                           cfg.grid_images, progress=False, norm=norm, labels=grid_labels,
                           prediction=params.diffusion.prediction)
        history.image(f"grids/epoch_{epoch:03d}.png", grid_image(samples, scale=display_scale(samples.shape[-1])))

    result = train(images, params.diffusion, params.model, cfg, state_dir=Path(args.state), on_epoch_end=write_grid,
                   history=history, labels=labels)
    if not main_rank:
        return
    save_checkpoint(args.checkpoint, result.checkpoint)
    plot_loss(result.step_losses, result.epoch_losses, args.loss_plot)
    files.write_json(args.report, result.report)
    files.write_json(args.cost, result.cost)


if __name__ == "__main__":
    run_main(main)
