"""Stage `sweep`: several sampler settings from the trained checkpoint -> FID/KID per point (DVC metrics),
quality-against-cost rows (a DVC plot), a markdown table, a PNG plot, and a cost file.

Params: section `sweep` (points and how many images per point); `evaluate.batch_size` / `evaluate.device` /
`evaluate.seed` for the Inception features and KID subsets. The real features are the cached reference
features shared with `evaluate`. One stage for all points: a point removed from params leaves nothing behind.
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
from diffpipe.diffusion.generate import timed_generate  # noqa: E402
from diffpipe.diffusion.samplers import describe_sampler  # noqa: E402
from diffpipe.diffusion.schedule import NoiseSchedule  # noqa: E402
from diffpipe.metrics import features, scores  # noqa: E402
from diffpipe.metrics.sweep import markdown_table, metrics_of, point_row, sorted_rows  # noqa: E402
from diffpipe.pictures.plots import plot_xy, write_csv_rows  # noqa: E402


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--reference-features", required=True)
    p.add_argument("--weights", required=True, help="converted Inception weights (.pth)")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--metrics", required=True, help="output: per-point FID/KID JSON (DVC metrics)")
    p.add_argument("--csv", required=True, help="output: one row per point (DVC plot: quality against NFE)")
    p.add_argument("--table", required=True, help="output: markdown table")
    p.add_argument("--plot", required=True, help="output: PNG of KID against NFE, one line per series")
    p.add_argument("--cost", required=True, help="output JSON of timings (not a DVC output: differs every run)")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    params = load_params(args.params)
    if params.sweep is None:
        raise ConfigError("params section `sweep` is null, but the sweep stage is running")
    cfg, ev = params.sweep, params.evaluate
    device = resolve_device(ev.device, "evaluate.device")
    real = features.read_features(args.reference_features, rows=ev.num_real)
    loaded = load_model(args.checkpoint, device)
    T = loaded.diffusion.num_timesteps
    for name, point in cfg.points.items():  # every point checked before any sampling
        point.check_timesteps(T, f"sweep.points.{name}")
    schedule = NoiseSchedule.from_config(loaded.diffusion).to(device)
    rows, cost = [], {}
    for name, point in cfg.points.items():
        images, seconds = timed_generate(loaded.model, schedule, loaded.image_shape, point, cfg.num_images,
                                         cfg.first_seed, cfg.batch_size, norm=loaded.norm)
        start = time.perf_counter()
        fake = features.extract_features(images, args.weights, device.type, ev.batch_size, progress=True)
        kid_mean, kid_std = scores.kid_from_features(real, fake, cfg.kid_subset_size, cfg.kid_subsets, ev.seed)
        rows.append(point_row(name, describe_sampler(point, T), scores.fid_from_features(real, fake), kid_mean, kid_std))
        cost[name] = {"sampling_s_per_img": seconds / cfg.num_images,
                      "feature_s_per_img": (time.perf_counter() - start) / cfg.num_images}
        print(f"sweep {name}: FID {rows[-1]['fid']:.2f}, KID {kid_mean:.5f} ± {kid_std:.5f}", flush=True)
    rows = sorted_rows(rows)
    files.write_json(args.metrics, metrics_of(rows))
    write_csv_rows(args.csv, rows)
    files.write_text(args.table, markdown_table(rows, cfg.num_images))
    plot_xy(rows, "nfe", "kid_mean", args.plot, f"sampler sweep: KID against cost ({cfg.num_images} images per point)",
            group="series", logx=True)
    files.write_json(args.cost, {"device": str(device), "num_images": cfg.num_images, "points": cost})


if __name__ == "__main__":
    run_main(main)
