"""Stage `sweep@<point>`: one sampler setting from the trained checkpoint -> FID/KID and s/img.

Params: `sweep.num_images`, `sweep.batch_size`, `sweep.first_seed`, KID settings and `sweep.points.<point>`;
`evaluate.batch_size` / `evaluate.device` for the Inception features. The real features are the cached
reference features shared with `evaluate`.
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
from diffpipe.core.devices import resolve_device  # noqa: E402
from diffpipe.core.errors import ConfigError  # noqa: E402
from diffpipe.core.params import load_params  # noqa: E402
from diffpipe.diffusion.checkpoint import load_model  # noqa: E402
from diffpipe.diffusion.generate import generate  # noqa: E402
from diffpipe.diffusion.samplers import describe_sampler  # noqa: E402
from diffpipe.diffusion.schedule import NoiseSchedule  # noqa: E402
from diffpipe.metrics import features, scores  # noqa: E402


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--point", required=True, help="name of the point under sweep.points")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--reference-features", required=True)
    p.add_argument("--weights", required=True, help="converted Inception weights (.pth)")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--metrics", required=True, help="output JSON for this point")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    params = load_params(args.params)
    if params.sweep is None:
        raise ConfigError("params section `sweep` is null, but a sweep stage is running")
    cfg, ev = params.sweep, params.evaluate
    point = cfg.point(args.point)
    device = resolve_device(ev.device, "evaluate.device")
    real = features.read_features(args.reference_features, rows=ev.num_real)
    loaded = load_model(args.checkpoint, device)
    point.check_timesteps(loaded.diffusion.num_timesteps, f"sweep.points.{args.point}")
    schedule = NoiseSchedule.from_config(loaded.diffusion).to(device)
    start = time.perf_counter()
    images = generate(loaded.model, schedule, loaded.image_shape, point, cfg.num_images, cfg.first_seed,
                      cfg.batch_size, norm=loaded.norm)
    seconds = time.perf_counter() - start
    fake = features.extract_features(images, args.weights, device.type, ev.batch_size)
    kid_mean, kid_std = scores.kid_from_features(real, fake, cfg.kid_subset_size, cfg.kid_subsets, ev.seed)
    files.write_json(args.metrics, {
        "point": args.point, **describe_sampler(point, loaded.diffusion.num_timesteps),
        "fid": scores.fid_from_features(real, fake), "kid_mean": kid_mean, "kid_std": kid_std,
        "num_images": cfg.num_images, "num_real": int(len(real)), "s_per_img": seconds / cfg.num_images,
        "device": str(device),
    })


if __name__ == "__main__":
    run_main(main)
