"""Stage reference_features: Inception pool features of the first `evaluate.num_real` reference images."""
from __future__ import annotations

import argparse

from diffpipe import fid
from diffpipe.cli import run_main
from diffpipe.config import load_params, section
from diffpipe.io import PipelineError, read_image_array, write_npy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", required=True, help="reference images, uint8 (N, C, H, W) .npy")
    parser.add_argument("--weights", required=True, help="converted Inception weights (.pth)")
    parser.add_argument("--params", required=True, help="params.yaml (section `evaluate`)")
    parser.add_argument("--out", required=True, help="features, float64 (num_real, 2048) .npy")
    args = parser.parse_args()

    cfg = section(load_params(args.params), "evaluate", fid.EvalConfig)
    images = read_image_array(args.images)
    if len(images) < cfg.num_real:
        raise PipelineError(f"{args.images} has {len(images)} images, fewer than evaluate.num_real = {cfg.num_real}")
    features = fid.extract_features(
        images[: cfg.num_real], args.weights, fid.resolve_device(cfg.device), cfg.batch_size, progress=True
    )
    write_npy(args.out, features)
    print(f"wrote {args.out} {features.shape}")


if __name__ == "__main__":
    run_main(main)
