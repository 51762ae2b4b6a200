"""The class-label input of a class-conditional network (classifier-free guidance, Ho & Salimans 2021).

A table of K + 1 learned vectors: one per class and a null token (row K) for "no label", which label -1
selects. Training replaces a share of the labels with -1 (`train.cond_drop_prob`), so one network learns the
conditional and the unconditional prediction, and guided sampling combines the two. The vector is added to
the network's time / noise embedding, as guided-diffusion adds its class embedding to the timestep embedding.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn

NO_LABEL = -1


class LabelEmbedding(nn.Module):
    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        self.num_classes = num_classes
        self.table = nn.Embedding(num_classes + 1, dim)  # nn.Embedding's N(0, 1) start, as guided-diffusion's

    def forward(self, labels: Optional[torch.Tensor], batch: int, device: torch.device) -> torch.Tensor:
        """(B, dim) for labels (B,) in {-1, 0 … K-1}; None = every image unlabelled."""
        if labels is None:
            labels = torch.full((batch,), NO_LABEL, dtype=torch.long, device=device)
        if labels.shape != (batch,):
            raise ValueError(f"labels must have shape ({batch},), got {tuple(labels.shape)}")
        return self.table(torch.where(labels < 0, self.num_classes, labels))


def make_label_embedding(num_classes: int, dim: int) -> Optional[LabelEmbedding]:
    """None for an unconditional network (num_classes 0): no parameters, the source systems' network exactly."""
    return LabelEmbedding(num_classes, dim) if num_classes else None


def check_unlabelled(labels: Optional[torch.Tensor]) -> None:
    if labels is not None:
        raise ValueError("labels were given to an unconditional network (model.num_classes = 0)")
