"""Stage `evaluate`: FID / KID / precision / recall of the samples against the cached reference features,
with the real-vs-real floor at the same N (DVCLive metrics); with a classifier, the in-domain metrics too.

Params: section `evaluate`. The floor is FID and KID of the first N training images against the N reference
images, with the same extractor and KID subsets: what a perfect generator would score at this N. The protocol
(N real, N generated, extractor, KID subsets, PRC settings) goes into the report next to the metrics, so
numbers from different runs are only compared when measured the same way.

With the prepared reference and training images (--reference-images, --train-images), also the data-copying
check (metrics/copying.py): `copy_ct` (Meehan et al. 2020's C_T: about 0 when the samples are as far from the
training images as the held-out reference images are, below about -3 when they copy), `copy_close_share` and
`copy_close_share_held_out` (the shares of samples and of held-out images whose nearest training image is closer
than a third of their second-nearest), in the classifier's features where there is one, else in pixels; with
--copies, a picture of the samples nearest to copies above their nearest training images.

With --classifier (and the prepared reference images, training images and training labels), also: the
Frechet distance in the classifier's penultimate features (`fd_classifier`) and its floor at the same N
(`fd_classifier_floor`, as for FID), the samples' predicted class histogram against the training labels'
(`class_max_deviation`, `class_entropy` in nats; the histograms in the report) and `confident_fraction`.
Without it (unlabelled data, System B) those metrics are left out. With --sample-labels of class-conditional
samples (the class each was generated for; -1 = none) and the classifier: `cond_accuracy`, the share the
classifier puts in their requested class.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from diffpipe.classifier.checkpoint import LoadedClassifier, load_classifier
from diffpipe.classifier.predict import classify
from diffpipe.core import distributed, files
from diffpipe.core.cli import run_main
from diffpipe.core.errors import PipelineError
from diffpipe.core.params import EvalConfig, load_params
from diffpipe.core.tracking import open_live
from diffpipe.data.labels import class_frequencies, read_labels
from diffpipe.metrics import classes, copying, features, scores
from diffpipe.pictures.grids import display_scale, save_grid

EXTRACTOR = "InceptionV3 pool3 2048-d (torch-fidelity, FID weights pt_inception-2015-12-05)"
CLASSIFIER_INPUTS = ("classifier", "reference_images", "train_images", "train_labels")
COPY_INPUTS = ("reference_images", "train_images")
COPY_PAIRS = 16  # the picture's pairs


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", required=True, help="generated images, uint8 (N, C, H, W) .npy")
    p.add_argument("--reference-features", required=True, help="cached Inception features of the real images")
    p.add_argument("--train-features", required=True, help="cached Inception features of N training images")
    p.add_argument("--weights", required=True, help="converted Inception weights (.pth)")
    p.add_argument("--classifier", help="optional: the classifier (.pt) for the in-domain metrics; then also:")
    p.add_argument("--reference-images", help="with --classifier: prepared reference images, uint8 .npy")
    p.add_argument("--train-images", help="with --classifier: prepared training images, uint8 .npy")
    p.add_argument("--train-labels", help="with --classifier: their labels, int64 .npy (the data's class shares)")
    p.add_argument("--sample-labels", help="with --classifier: the samples' requested classes, int64 .npy (-1 = none)")
    p.add_argument("--copies", help="with --reference-images and --train-images: output PNG, the samples nearest to "
                                    "copies (top row) above their nearest training images")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--live", required=True, help="output: DVCLive folder; its metrics.json holds FID and KID")
    p.add_argument("--report", required=True, help="output JSON: the evaluation protocol")
    p.add_argument("--cost", required=True, help="output JSON of timings (not a DVC output: differs every run)")
    return p.parse_args()


class RealImages:
    """The prepared real images: the first evaluate.num_real reference images and all training images, read and
    checked against the samples before any Inception work."""

    def __init__(self, args: argparse.Namespace, cfg: EvalConfig, samples: np.ndarray):
        missing = [n for n in COPY_INPUTS if not getattr(args, n)]
        if missing:
            raise PipelineError(f"the data-copying check needs --reference-images and --train-images together; "
                                f"missing: {', '.join('--' + n.replace('_', '-') for n in missing)}")
        self.reference = self._read(args.reference_images, samples, cfg.num_real)[:cfg.num_real]
        self.train = self._read(args.train_images, samples, cfg.num_real)
        self.train_path = args.train_images

    @staticmethod
    def _read(path: str, samples: np.ndarray, n: int) -> np.ndarray:
        images = files.read_image_array(path)
        if len(images) < n:
            raise PipelineError(f"{path} has {len(images)} images, fewer than evaluate.num_real = {n}")
        if images.shape[1:] != samples.shape[1:]:
            raise PipelineError(f"{path}: images are (C, H, W) = {tuple(images.shape[1:])}, but the samples are "
                                f"{tuple(samples.shape[1:])}")
        return images


def copy_check(samples: np.ndarray, real: RealImages, clf: LoadedClassifier | None, cfg: EvalConfig,
               picture: str | None) -> tuple[dict, dict]:
    """The data-copying metrics and their report entry (metrics/copying.py); the picture where asked."""
    if clf is not None:
        embed = lambda images: classify(clf.model, images, cfg.batch_size)[1]  # noqa: E731
        space = "the classifier's penultimate features"
    else:
        embed, space = copying.pixel_embedding, "pixels scaled to [0, 1]"
    start = time.perf_counter()
    found = copying.data_copying(embed(samples), embed(real.reference), embed(real.train))
    if picture:
        pairs = copying.closest_pairs(samples, real.train, found, COPY_PAIRS)
        save_grid(picture, pairs, nrow=len(pairs) // 2, scale=display_scale(samples.shape[-1]))
    metrics = {"copy_ct": found["ct"], "copy_close_share": found["close_share"],
               "copy_close_share_held_out": found["close_share_held_out"]}
    report = {
        "embedding": space, "distance": "Euclidean, to the nearest training image",
        "training_images": int(len(real.train)), "held_out": f"the first {len(real.reference)} reference images",
        "ct": "Meehan, Chaudhuri & Dasgupta 2020, C_T: Mann-Whitney z of the samples' nearest-training distances "
              "against the held-out images', per k-means cell of the training set, weighted by the held-out share "
              "of each cell; about 0: like held-out data; below about -3: copying",
        "cells": found["cells"], "cells_used": found["cells_used"], "cell_min_images": copying.TAU_MIN_SAMPLES,
        "close_ratio": copying.CLOSE_RATIO,
        "nearest_median": found["nearest_median"], "nearest_median_held_out": found["nearest_median_held_out"],
        "picture": None if not picture else f"the {min(COPY_PAIRS, len(samples))} samples with the smallest nearest / "
                                            "second-nearest ratio (top) above their nearest training images",
        "seconds": time.perf_counter() - start,
    }
    return metrics, report


class InDomain:
    """The classifier and the real images of the in-domain metrics, all read and checked before any Inception work."""

    def __init__(self, args: argparse.Namespace, cfg: EvalConfig, samples: np.ndarray, device: str,
                 real: RealImages | None):
        given = [name for name in CLASSIFIER_INPUTS if getattr(args, name)]
        if len(given) != len(CLASSIFIER_INPUTS) or real is None:
            missing = ", ".join("--" + n.replace("_", "-") for n in CLASSIFIER_INPUTS if n not in given)
            raise PipelineError(f"the in-domain metrics need --classifier, --reference-images, --train-images and "
                                f"--train-labels together; missing: {missing}")
        self.clf: LoadedClassifier = load_classifier(args.classifier, device)
        if tuple(samples.shape[1:]) != self.clf.image_shape:
            raise PipelineError(f"{args.samples}: images are (C, H, W) = {tuple(samples.shape[1:])}, but "
                                f"{args.classifier} was trained on {self.clf.image_shape}")
        self.reference = real.reference
        labels = read_labels(args.train_labels, len(real.train), self.clf.num_classes,
                             f"{args.classifier} has {self.clf.num_classes} classes")
        self.train = real.train[:cfg.num_real]
        self.num_train_labels = len(labels)
        self.data_frequencies = class_frequencies(labels, self.clf.num_classes)
        self.sample_labels = None if not args.sample_labels else read_labels(
            args.sample_labels, len(samples), self.clf.num_classes, f"{args.classifier} has {self.clf.num_classes} "
            "classes", hint="re-run the sample stage (dvc repro -f sample)", low=-1)

    def scores(self, samples: np.ndarray, cfg: EvalConfig) -> tuple[dict, dict]:
        """-> (metrics, report entry)."""
        model = self.clf.model
        probs, fake = classify(model, samples, cfg.batch_size)
        _, real = classify(model, self.reference, cfg.batch_size)
        _, train_real = classify(model, self.train, cfg.batch_size)
        found = classes.class_metrics(probs, self.data_frequencies, cfg.confidence)
        metrics = {"fd_classifier": classes.fd_classifier(real, fake),
                   "fd_classifier_floor": classes.fd_classifier(real, train_real),
                   **{k: found[k] for k in ("class_max_deviation", "class_entropy", "confident_fraction")}}
        accuracy = None if self.sample_labels is None else classes.conditional_accuracy(probs, self.sample_labels)
        if accuracy is not None:  # class-conditional samples
            metrics["cond_accuracy"] = accuracy
        report = {
            "held_out_accuracy": self.clf.accuracy, "num_classes": self.clf.num_classes,
            "features": f"the classifier's penultimate layer, {fake.shape[1]}-d",
            "fd_floor": f"the first {len(train_real)} training images against the {len(real)} reference images, "
                        "same features",
            "class_histogram": f"each of the {len(samples)} samples counted as its most probable class; data: the "
                               f"class shares of the {self.num_train_labels} training labels",
            "entropy_units": "nats", "class_entropy": found["class_entropy"],
            "class_entropy_data": found["class_entropy_data"], "confidence": cfg.confidence,
            "histogram": found["histogram"],
            "cond_accuracy": None if accuracy is None else "the share of the samples generated for a class whose most "
                             "probable class is that class",
        }
        return metrics, report


def main() -> None:
    args = parse_args()
    cfg = load_params(args.params).evaluate
    samples = files.read_image_array(args.samples)
    real = features.read_features(args.reference_features, rows=cfg.num_real)
    train_real = features.read_features(args.train_features, rows=cfg.num_real)
    world, torch_device = distributed.init(torch.device(features.resolve_device(cfg.device)))
    device = str(torch_device)
    real_images = RealImages(args, cfg, samples) if any(getattr(args, n) for n in COPY_INPUTS) else None
    in_domain = (InDomain(args, cfg, samples, device, real_images) if args.classifier or args.train_labels
                 else None)
    if args.copies and real_images is None:
        raise PipelineError("--copies needs --reference-images and --train-images (the data-copying check)")
    start = time.perf_counter()
    fake = features.extract_features(samples, args.weights, device, cfg.batch_size, progress=True, world=world)
    feature_seconds = time.perf_counter() - start
    if not world.main:
        return
    kid_mean, kid_std = scores.kid_from_features(real, fake, cfg.kid_subset_size, cfg.kid_subsets, cfg.seed)
    kid_floor, kid_floor_std = scores.kid_from_features(real, train_real, cfg.kid_subset_size, cfg.kid_subsets,
                                                        cfg.seed)
    precision, recall = scores.precision_recall(real, fake)
    metrics = {"fid": scores.fid_from_features(real, fake), "kid_mean": kid_mean, "kid_std": kid_std,
               "fid_floor": scores.fid_from_features(real, train_real), "kid_floor_mean": kid_floor,
               "kid_floor_std": kid_floor_std, "precision": precision, "recall": recall}
    in_domain_report = copy_report = None
    if in_domain is not None:
        in_domain_metrics, in_domain_report = in_domain.scores(samples, cfg)
        metrics.update(in_domain_metrics)
    if real_images is not None:
        copy_metrics, copy_report = copy_check(samples, real_images, in_domain and in_domain.clf, cfg, args.copies)
        metrics.update(copy_metrics)
    live = open_live(args.live)
    for name, value in metrics.items():
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
        "classifier": in_domain_report,  # the in-domain metrics' protocol and class histograms (null: none)
        "data_copying": copy_report,  # the data-copying check's protocol (null: not asked for)
    })
    files.write_json(args.cost, {"feature_s_per_img": feature_seconds / len(samples), "device": torch_device.type,
                                 "processes": world.size})


if __name__ == "__main__":
    run_main(main)
