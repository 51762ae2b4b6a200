"""The classifier network: conv blocks (3x3 conv -> BatchNorm -> ReLU -> 2x2 max-pool), then one hidden layer
(the penultimate features) and a linear head. Input: images in the model range [-1, 1] (data/pixels.py)."""
from __future__ import annotations

import torch
import torch.nn as nn


class ClassifierNet(nn.Module):
    def __init__(self, image_shape: tuple[int, int, int], widths: tuple[int, ...], feature_dim: int, num_classes: int):
        super().__init__()
        channels, size, _ = image_shape
        self.image_shape = tuple(image_shape)  # (C, H, W): classify() checks its inputs against it
        self.num_classes = num_classes
        layers: list[nn.Module] = []
        for width in widths:
            layers += [nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                       nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            channels, size = width, size // 2
        self.blocks = nn.Sequential(*layers)
        self.embed = nn.Sequential(nn.Flatten(), nn.Linear(channels * size * size, feature_dim), nn.ReLU(inplace=True))
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) in [-1, 1] -> (B, feature_dim): the penultimate layer."""
        return self.embed(self.blocks(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) in [-1, 1] -> (B, num_classes) logits."""
        return self.head(self.features(x))
