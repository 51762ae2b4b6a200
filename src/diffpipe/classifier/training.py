"""Training the classifier: Adam with the learning rate cosine-annealed to 0 over the run, cross-entropy,
seeded initial weights and batch order (the same weights on every CPU run with the same seed)."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..core.errors import PipelineError
from ..core.params import ClassifierConfig
from ..core.progress import progress_bar
from ..data.pixels import to_model_range
from .net import ClassifierNet


@dataclass
class TrainedClassifier:
    model: ClassifierNet  # eval mode
    epoch_losses: list[float]  # mean cross-entropy per epoch
    steps: int
    seconds: float


def train_classifier(images: np.ndarray, labels: np.ndarray, num_classes: int, cfg: ClassifierConfig,
                     device: torch.device, progress: bool = False) -> TrainedClassifier:
    """uint8 (N, C, H, W) images and int64 (N,) labels in [0, num_classes) -> a trained ClassifierNet."""
    cfg.check_image(images.shape[2])
    torch.manual_seed(cfg.seed)
    order = torch.Generator().manual_seed(cfg.seed)
    model = ClassifierNet(images.shape[1:], cfg.widths, cfg.feature_dim, num_classes).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    per_epoch = math.ceil(len(images) / cfg.batch_size)
    total = cfg.epochs * per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / total)))
    x_all, y_all = torch.from_numpy(images), torch.from_numpy(labels)
    with progress_bar(desc="classifier", total=total, unit="step", enabled=progress) as bar:
        model.train()
        start, step, epoch_losses = time.perf_counter(), 0, []
        for _ in range(cfg.epochs):
            permutation, summed = torch.randperm(len(images), generator=order), 0.0
            for first in range(0, len(images), cfg.batch_size):
                idx = permutation[first:first + cfg.batch_size]
                x, y = to_model_range(x_all[idx].to(device)), y_all[idx].to(device)
                loss = F.cross_entropy(model(x), y)
                if not torch.isfinite(loss):
                    raise PipelineError(f"classifier training diverged (loss {loss.item()} at step {step}); "
                                        "lower params key `classifier.lr`")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                summed += loss.item() * len(idx)
                step += 1
                bar.update(1)
            epoch_losses.append(summed / len(images))
    return TrainedClassifier(model.eval(), epoch_losses, step, time.perf_counter() - start)
