"""Stage reference_features: Inception pool features of the first `evaluate.num_real` reference images, and of
as many training images (the real-vs-real floor that evaluate reports next to FID and KID).

Both are computed once per data version and cached by DVC; evaluate and the sweep only read them.
"""
from __future__ import annotations

import argparse

import torch

from diffpipe.core import distributed
from diffpipe.core.cli import run_main
from diffpipe.core.errors import PipelineError
from diffpipe.core.files import read_image_array, write_npy
from diffpipe.core.params import load_params
from diffpipe.metrics import features


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", required=True, help="reference images, uint8 (N, C, H, W) .npy")
    parser.add_argument("--train-images", required=True, help="training images, uint8 (N, C, H, W) .npy")
    parser.add_argument("--weights", required=True, help="converted Inception weights (.pth)")
    parser.add_argument("--params", required=True, help="params.yaml (section `evaluate`)")
    parser.add_argument("--out", required=True, help="reference features, float64 (num_real, 2048) .npy")
    parser.add_argument("--out-train", required=True, help="training-image features, float64 (num_real, 2048) .npy")
    args = parser.parse_args()

    cfg = load_params(args.params).evaluate
    sets = {}
    for path in (args.images, args.train_images):  # both checked before any feature extraction
        images = read_image_array(path)
        if len(images) < cfg.num_real:
            raise PipelineError(f"{path} has {len(images)} images, fewer than evaluate.num_real = {cfg.num_real}")
        sets[path] = images[: cfg.num_real]
    world, device = distributed.init(torch.device(features.resolve_device(cfg.device)))
    for path, out in ((args.images, args.out), (args.train_images, args.out_train)):
        real = features.extract_features(sets[path], args.weights, str(device), cfg.batch_size, progress=True,
                                         world=world)
        if world.main:
            write_npy(out, real)
            print(f"wrote {out} {real.shape}")


if __name__ == "__main__":
    run_main(main)
