"""Stage `evaluate`: FID / KID of the samples against the cached reference features, plus the loss plot.

Params: section `evaluate`. The protocol (N real, N generated, extractor, KID subsets) goes into the
metrics file so numbers from different runs are only compared when they were measured the same way.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

# This tree's package first, not the one installed in editable mode: a `--temp` or `--queue` experiment
# runs in its own copy of the repository and must run that copy's code (the code dvc.lock records).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from diffpipe.core import files  # noqa: E402
from diffpipe.core.cli import run_main  # noqa: E402
from diffpipe.core.params import load_params  # noqa: E402
from diffpipe.metrics import features, scores  # noqa: E402
from diffpipe.pictures.plots import plot_loss, read_csv_rows  # noqa: E402


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", required=True, help="generated images, uint8 (N, C, H, W) .npy")
    p.add_argument("--reference-features", required=True, help="cached Inception features of the real images")
    p.add_argument("--weights", required=True, help="converted Inception weights (.pth)")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--loss-steps", required=True)
    p.add_argument("--loss-epochs", required=True)
    p.add_argument("--metrics", required=True, help="output metrics JSON")
    p.add_argument("--loss-plot", required=True, help="output PNG of the training loss")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    cfg = load_params(args.params).evaluate
    samples = files.read_image_array(args.samples)
    real = features.read_features(args.reference_features, rows=cfg.num_real)
    loss_steps = read_csv_rows(args.loss_steps, ("step", "loss"))
    loss_epochs = read_csv_rows(args.loss_epochs, ("epoch", "loss"))
    device = features.resolve_device(cfg.device)
    start = time.perf_counter()
    fake = features.extract_features(samples, args.weights, device, cfg.batch_size, progress=True)
    feature_seconds = time.perf_counter() - start
    kid_mean, kid_std = scores.kid_from_features(real, fake, cfg.kid_subset_size, cfg.kid_subsets, cfg.seed)
    plot_loss(loss_steps, loss_epochs, args.loss_plot)
    files.write_json(args.metrics, {
        "fid": scores.fid_from_features(real, fake),
        "kid_mean": kid_mean,
        "kid_std": kid_std,
        "num_real": int(len(real)),
        "num_generated": int(len(fake)),
        "extractor": "InceptionV3 pool3 2048-d (torch-fidelity, FID weights pt_inception-2015-12-05)",
        "kid_subset_size": cfg.kid_subset_size,
        "kid_subsets": cfg.kid_subsets,
        "feature_s_per_img": feature_seconds / len(samples),
        "device": device,
    })


if __name__ == "__main__":
    run_main(main)
