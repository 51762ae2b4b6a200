"""`classify`: uint8 images -> class probabilities and penultimate features, in batches, without gradients.

Used for the classifier's held-out accuracy, and by evaluate for the in-domain metrics (the Frechet distance
in the classifier's features, the class histogram of samples, the share of confident samples).
"""
from __future__ import annotations

import numpy as np
import torch

from ..core.errors import PipelineError
from ..data.pixels import to_model_range
from .net import ClassifierNet


def classify(model: ClassifierNet, images: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (N, C, H, W) -> (probabilities (N, K), features (N, D)), both float64, in eval mode on the model's
    device. Images of another shape than the classifier was trained on are a PipelineError."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4:
        raise PipelineError(f"the classifier takes uint8 images (N, C, H, W), got {images.dtype} {images.shape}")
    if tuple(images.shape[1:]) != tuple(model.image_shape):
        raise PipelineError(f"the classifier was trained on (C, H, W) = {tuple(model.image_shape)} images, "
                            f"got {tuple(images.shape[1:])}")
    if batch_size < 1:
        raise PipelineError(f"batch_size must be at least 1, got {batch_size}")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    probs = np.empty((len(images), model.num_classes), dtype=np.float64)
    features = np.empty((len(images), model.head.in_features), dtype=np.float64)
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            x = to_model_range(torch.from_numpy(images[start:start + batch_size]).to(device))
            f = model.features(x)
            probs[start:start + len(x)] = torch.softmax(model.head(f).double(), dim=1).cpu().numpy()
            features[start:start + len(x)] = f.double().cpu().numpy()
    model.train(was_training)
    return probs, features


def accuracy(model: ClassifierNet, images: np.ndarray, labels: np.ndarray,
             batch_size: int) -> tuple[float, list[float | None]]:
    """(share of images whose most probable class is their label, the same per class: None for an absent class)."""
    probs, _ = classify(model, images, batch_size)
    right = probs.argmax(axis=1) == labels
    per_class = [float(right[labels == c].mean()) if (labels == c).any() else None for c in range(model.num_classes)]
    return float(right.mean()), per_class
