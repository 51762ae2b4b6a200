"""Stage `classifier`: a small CNN trained on the labelled training images; its accuracy on the held-out
reference images (MNIST: the 10,000-image test split, never trained on) is a DVC metric.

Params: section `classifier` and `prepare.num_classes` (the whole file is checked first). The checkpoint is
self-describing (widths, classes, image shape); evaluate uses its penultimate features and class probabilities
for the in-domain metrics. Deterministic on CPU for a given `classifier.seed`.
"""
from __future__ import annotations

import argparse

from diffpipe.classifier.checkpoint import save_classifier
from diffpipe.classifier.predict import accuracy
from diffpipe.classifier.training import train_classifier
from diffpipe.core import files
from diffpipe.core.cli import run_main
from diffpipe.core.devices import resolve_device
from diffpipe.core.errors import ConfigError, PipelineError
from diffpipe.core.params import load_params
from diffpipe.data.labels import read_labels


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", required=True, help="training images, uint8 (N, C, H, W) .npy")
    p.add_argument("--train-labels", required=True, help="their labels, int64 (N,) .npy")
    p.add_argument("--reference", required=True, help="held-out images for the accuracy, uint8 (N, C, H, W) .npy")
    p.add_argument("--reference-labels", required=True, help="their labels, int64 (N,) .npy")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--out", required=True, help="output: the classifier (.pt, self-describing)")
    p.add_argument("--metrics", required=True, help="output JSON (a DVC metric): held-out accuracy")
    p.add_argument("--report", required=True, help="output JSON: the run (sizes, per-class accuracy, losses)")
    p.add_argument("--cost", required=True, help="output JSON of timings (not a DVC output: differs every run)")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    params = load_params(args.params)
    cfg, num_classes = params.classifier, params.prepare.num_classes
    if cfg is None:
        raise ConfigError("params key `classifier` is null (unlabelled data): this pipeline has no classifier stage")
    why = f"params key `prepare.num_classes` is {num_classes}"
    train = files.read_image_array(args.train)
    train_labels = read_labels(args.train_labels, len(train), num_classes, why)
    reference = files.read_image_array(args.reference)
    reference_labels = read_labels(args.reference_labels, len(reference), num_classes, why)
    if train.shape[1:] != reference.shape[1:]:
        raise PipelineError(f"image shapes differ: {args.train} has (C, H, W) = {train.shape[1:]}, "
                            f"{args.reference} has {reference.shape[1:]}")
    cfg.check_image(train.shape[2])
    device = resolve_device(cfg.device, "classifier.device")

    result = train_classifier(train, train_labels, num_classes, cfg, device, progress=True)
    held_out, per_class = accuracy(result.model, reference, reference_labels, cfg.batch_size)
    save_classifier(args.out, result.model, cfg.widths, held_out)
    files.write_json(args.metrics, {"accuracy": held_out})
    files.write_json(args.report, {
        "accuracy": held_out,
        "accuracy_on": f"the {len(reference)} reference (held-out) images, never trained on",
        "per_class_accuracy": {str(c): a for c, a in enumerate(per_class)},
        "num_train": int(len(train)), "num_classes": num_classes, "image_shape": [int(s) for s in train.shape[1:]],
        "parameters": sum(p.numel() for p in result.model.parameters()),
        "epochs": cfg.epochs, "steps": result.steps, "epoch_losses": result.epoch_losses, "device": device.type,
    })
    files.write_json(args.cost, {"train_s": result.seconds, "img_per_s": cfg.epochs * len(train) / result.seconds,
                                 "device": device.type})
    print(f"classifier: held-out accuracy {held_out:.4f} after {result.steps} steps ({result.seconds:.0f} s)")


if __name__ == "__main__":
    run_main(main)
