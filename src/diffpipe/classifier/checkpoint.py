"""The classifier file, written and read here only: self-describing (widths, feature size, classes, image shape,
held-out accuracy) so that evaluate rebuilds the network from the file alone. Read with
`torch.load(weights_only=True)`: tensors and plain values only, never code."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..core.errors import PipelineError
from ..core.files import atomic_path
from .net import ClassifierNet

FORMAT = "diffpipe-classifier-v1"


def save_classifier(path: str | os.PathLike, model: ClassifierNet, widths: tuple[int, ...], accuracy: float) -> None:
    state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}
    checkpoint = {
        "format": FORMAT,
        "widths": list(widths),
        "feature_dim": int(model.head.in_features),
        "num_classes": int(model.num_classes),
        "image_shape": [int(s) for s in model.image_shape],  # (C, H, W)
        "accuracy": float(accuracy),  # on the held-out reference split
        "state": state,
    }
    # Through a file object: given a path, torch.save records the (random) temp file name in the archive.
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(checkpoint, f)


@dataclass
class LoadedClassifier:
    model: ClassifierNet  # eval mode, no gradients
    num_classes: int
    image_shape: tuple[int, int, int]
    accuracy: float  # held-out accuracy recorded at training


def load_classifier(path: str | os.PathLike, device: torch.device | str) -> LoadedClassifier:
    """The classifier in `path`, on `device`; a missing, corrupted or foreign file is one PipelineError."""
    path = Path(path)
    hint = "re-run the classifier stage (dvc repro -f classifier)"
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise PipelineError(f"{path}: classifier not found; {hint}") from None
    except Exception as e:  # noqa: BLE001 - any unreadable file is a user-facing error
        first = (str(e).strip().splitlines() or [""])[0]
        raise PipelineError(f"{path}: not a readable classifier ({type(e).__name__}: {first}); {hint}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise PipelineError(f"{path}: not a diffpipe classifier (missing format tag {FORMAT!r}); {hint}")
    try:
        c, h, w = (int(s) for s in ckpt["image_shape"])
        model = ClassifierNet((c, h, w), tuple(int(x) for x in ckpt["widths"]), int(ckpt["feature_dim"]),
                              int(ckpt["num_classes"]))
        model.load_state_dict(ckpt["state"])
        accuracy = float(ckpt["accuracy"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise PipelineError(f"{path}: not a usable classifier ({type(e).__name__}: {first}); {hint}") from None
    bad = [k for k, v in ckpt["state"].items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise PipelineError(f"{path}: {len(bad)} weight tensors are not finite (e.g. {bad[0]}); {hint}")
    model.to(device).eval().requires_grad_(False)
    return LoadedClassifier(model, model.num_classes, (c, h, w), accuracy)
