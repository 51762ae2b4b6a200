"""Stage `evaluate`: FID / KID / precision / recall of the samples against the cached reference features,
with the real-vs-real floor at the same N (DVCLive metrics).

Params: section `evaluate`. The floor is FID and KID of the first N training images against the N reference
images, with the same extractor and KID subsets: what a perfect generator would score at this N. The protocol
(N real, N generated, extractor, KID subsets, PRC settings) goes into the report next to the metrics, so
numbers from different runs are only compared when measured the same way.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

# This tree's package first, not the one installed in editable mode: a `--temp` or `--queue` experiment
# runs in its own copy of the repository and must run that copy's code (the code dvc.lock records).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import diffpipe.core.lone_threads  # noqa: E402,F401  (first: before numpy and torch load)
import torch  # noqa: E402

from diffpipe.core import distributed, files  # noqa: E402
from diffpipe.core.cli import run_main  # noqa: E402
from diffpipe.core.params import load_params  # noqa: E402
from diffpipe.core.tracking import open_live  # noqa: E402
from diffpipe.metrics import features, scores  # noqa: E402

EXTRACTOR = "InceptionV3 pool3 2048-d (torch-fidelity, FID weights pt_inception-2015-12-05)"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", required=True, help="generated images, uint8 (N, C, H, W) .npy")
    p.add_argument("--reference-features", required=True, help="cached Inception features of the real images")
    p.add_argument("--train-features", required=True, help="cached Inception features of N training images")
    p.add_argument("--weights", required=True, help="converted Inception weights (.pth)")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--live", required=True, help="output: DVCLive folder; its metrics.json holds FID and KID")
    p.add_argument("--report", required=True, help="output JSON: the evaluation protocol")
    p.add_argument("--cost", required=True, help="output JSON of timings (not a DVC output: differs every run)")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    cfg = load_params(args.params).evaluate
    samples = files.read_image_array(args.samples)
    real = features.read_features(args.reference_features, rows=cfg.num_real)
    train_real = features.read_features(args.train_features, rows=cfg.num_real)
    world, torch_device = distributed.init(torch.device(features.resolve_device(cfg.device)))
    device = str(torch_device)
    start = time.perf_counter()
    fake = features.extract_features(samples, args.weights, device, cfg.batch_size, progress=True, world=world)
    feature_seconds = time.perf_counter() - start
    if not world.main:
        return
    kid_mean, kid_std = scores.kid_from_features(real, fake, cfg.kid_subset_size, cfg.kid_subsets, cfg.seed)
    kid_floor, _ = scores.kid_from_features(real, train_real, cfg.kid_subset_size, cfg.kid_subsets, cfg.seed)
    precision, recall = scores.precision_recall(real, fake)
    live = open_live(args.live)
    for name, value in (("fid", scores.fid_from_features(real, fake)), ("kid_mean", kid_mean), ("kid_std", kid_std),
                        ("fid_floor", scores.fid_from_features(real, train_real)), ("kid_floor_mean", kid_floor),
                        ("precision", precision), ("recall", recall)):
        live.log_metric(name, value, plot=False)
    live.end()
    files.write_json(args.report, {
        "num_real": int(len(real)), "num_generated": int(len(fake)), "extractor": EXTRACTOR,
        "kid_subset_size": cfg.kid_subset_size, "kid_subsets": cfg.kid_subsets, "device": torch_device.type,
        "floor": f"the first {len(train_real)} training images against the {len(real)} reference images, "
                 "same extractor and KID subsets",
        "precision_recall": {"implementation": "torch-fidelity prc_features_to_metric (Kynkaanniemi et al. 2019)",
                             "features": "the Inception features above (not torch-fidelity's default VGG16)",
                             "neighborhood_k": scores.PRC_NEIGHBORHOOD, "generated": int(len(fake)),
                             "real": int(len(real))},
    })
    files.write_json(args.cost, {"feature_s_per_img": feature_seconds / len(samples), "device": torch_device.type,
                                 "processes": world.size})


if __name__ == "__main__":
    run_main(main)
