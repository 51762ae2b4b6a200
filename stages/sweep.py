"""Stage `sweep`: several sampler settings from the trained checkpoint -> FID/KID per point (DVC metrics),
quality-against-cost rows (a DVC plot), a markdown table, a PNG plot, and a cost file.

Params: section `sweep` alone. It samples every point itself (seeds first_seed …, its own Inception batch,
device and KID seed), so it depends on the checkpoint, the reference features, the Inception weights, the
classifier and its own section, and a change to another stage's settings never re-runs it. The real features
are the cached reference features shared with `evaluate`. One stage for all points: a point removed from
params leaves nothing behind.

A class-conditional checkpoint samples every point with `sweep.labels` at `sweep.guidance_scale`; the guidance
points (`sweep.guidance_scales`) repeat `sweep.guidance_point` at other scales, and with --classifier each
labelled point also reports the classifier's agreement with the labels (`accuracy`). The guidance rows go to
--guidance-csv and --guidance-plot (accuracy and KID against the scale). A guidance point at
`sweep.guidance_scale` has the images of `sweep.guidance_point` (same sampler, seeds and scale), so it takes
that point's scores instead of sampling them again.
"""
from __future__ import annotations

import argparse
import time

from diffpipe.classifier.checkpoint import load_classifier
from diffpipe.classifier.predict import classify
from diffpipe.core import files
from diffpipe.core.cli import run_main
from diffpipe.core.devices import resolve_device
from diffpipe.core.errors import ConfigError
from diffpipe.core.params import load_params
from diffpipe.diffusion.checkpoint import load_model
from diffpipe.diffusion.generate import requested_labels, timed_generate
from diffpipe.diffusion.samplers import describe_sampler
from diffpipe.diffusion.schedule import NoiseSchedule
from diffpipe.metrics import classes, features, scores
from diffpipe.metrics.sweep import guidance_name, markdown_table, metrics_of, point_row, sorted_rows
from diffpipe.pictures.plots import plot_guidance, plot_xy, write_csv_rows

GUIDANCE_COLUMNS = ["point", "guidance_scale", "nfe", "accuracy", "fid", "kid_mean", "kid_std"]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--reference-features", required=True)
    p.add_argument("--weights", required=True, help="converted Inception weights (.pth)")
    p.add_argument("--classifier", help="optional: the classifier (.pt) that scores labelled samples (accuracy)")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--metrics", required=True, help="output: per-point FID/KID JSON (DVC metrics)")
    p.add_argument("--csv", required=True, help="output: one row per point (DVC plot: quality against NFE)")
    p.add_argument("--table", required=True, help="output: markdown table")
    p.add_argument("--plot", required=True, help="output: PNG of KID against NFE, one line per series")
    p.add_argument("--guidance-csv", required=True, help="output: one row per guidance scale (header only if none)")
    p.add_argument("--guidance-plot", required=True, help="output: PNG of accuracy and KID against the guidance scale")
    p.add_argument("--cost", required=True, help="output JSON of timings (not a DVC output: differs every run)")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    params = load_params(args.params)
    if params.sweep is None:
        raise ConfigError("params section `sweep` is null, but the sweep stage is running")
    cfg = params.sweep
    device = resolve_device(cfg.device, "sweep.device")
    real = features.read_features(args.reference_features)
    loaded = load_model(args.checkpoint, device)
    T = loaded.diffusion.num_timesteps
    for name, point in cfg.points.items():  # every point checked before any sampling
        point.check_timesteps(T, f"sweep.points.{name}")
    cfg.check_labels(loaded.model_cfg.num_classes, args.checkpoint)
    labels = requested_labels(cfg.labels, cfg.num_images)
    clf = load_classifier(args.classifier, str(device)) if args.classifier and labels is not None else None
    # (name, sampler point's name, guidance scale, is a guidance point)
    runs = [(name, name, cfg.guidance_scale, False) for name in cfg.points]
    runs += [(guidance_name(w), cfg.guidance_point, w, True) for w in cfg.guidance_scales]
    schedule = NoiseSchedule.from_config(loaded.diffusion).to(device)

    rows, guidance_rows, cost, done = [], [], {}, {}
    for name, point_name, scale, is_guidance in runs:
        point = cfg.points[point_name]
        if (point_name, scale) in done:  # the guidance point at sweep.guidance_scale: the same seeds and sampler,
            row = dict(done[point_name, scale], point=name)  # hence the same images: its scores are reused
            guidance_rows.append(row)
            cost[name] = {"same_images_as": point_name}
            print(f"sweep {name}: the images of {point_name} (the same sampler at w = {scale:g})", flush=True)
            continue
        images, seconds = timed_generate(loaded.model, schedule, loaded.image_shape, point, cfg.num_images,
                                         cfg.first_seed, cfg.batch_size, norm=loaded.norm, labels=labels,
                                         guidance_scale=scale, prediction=loaded.diffusion.prediction)
        start = time.perf_counter()
        fake = features.extract_features(images, args.weights, device.type, cfg.feature_batch_size, progress=True)
        cost[name] = {"sampling_s_per_img": seconds / cfg.num_images,
                      "feature_s_per_img": (time.perf_counter() - start) / cfg.num_images}
        kid_mean, kid_std = scores.kid_from_features(real, fake, cfg.kid_subset_size, cfg.kid_subsets, cfg.kid_seed)
        accuracy = None
        if clf is not None:
            accuracy = classes.conditional_accuracy(classify(clf.model, images, cfg.feature_batch_size)[0], labels)
        row = point_row(name, describe_sampler(point, T), scores.fid_from_features(real, fake), kid_mean, kid_std,
                        None if labels is None else scale, accuracy)
        (guidance_rows if is_guidance else rows).append(row)
        done[point_name, scale] = row
        more = "" if accuracy is None else f", accuracy {accuracy:.3f} at w = {scale:g}"
        print(f"sweep {name}: FID {row['fid']:.2f}, KID {kid_mean:.5f} ± {kid_std:.5f}{more}", flush=True)
    rows = sorted_rows(rows)
    guidance_rows.sort(key=lambda r: r["guidance_scale"])
    files.write_json(args.metrics, metrics_of(rows + guidance_rows))
    write_csv_rows(args.csv, rows)
    write_csv_rows(args.guidance_csv, [{k: r[k] for k in GUIDANCE_COLUMNS} for r in guidance_rows], GUIDANCE_COLUMNS)
    files.write_text(args.table, markdown_table(rows + guidance_rows, cfg.num_images))
    plot_xy(rows, "nfe", "kid_mean", args.plot, f"sampler sweep: KID against cost ({cfg.num_images} images per point)",
            group="series", logx=True)
    plot_guidance(guidance_rows, args.guidance_plot, cfg.num_images)
    files.write_json(args.cost, {"device": str(device), "num_images": cfg.num_images, "points": cost})


if __name__ == "__main__":
    run_main(main)
