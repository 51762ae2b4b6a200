"""Which network, built from the `model` params section.

`model.arch` picks the architecture; each has its own sub-section (`model.unet`: the MNIST DDPM system's
U-Net; `model.resunet`: the flowers DDIM system's residual U-Net). Each network class says, in its
`conditioning` attribute, what float per image it expects as its second input (the diffusion code turns
integer timesteps into it): "timestep" or "noise_variance". With `model.num_classes` > 0 both take a third
input, the class labels (nets/labels.py).
"""
from __future__ import annotations

import torch.nn as nn

from ..core.params import ModelConfig
from .resunet import ResUNet
from .unet import UNet


def build_model(cfg: ModelConfig, image_channels: int, image_size: int) -> nn.Module:
    cfg.check_image(image_channels, image_size)
    if cfg.arch == "unet":
        return UNet(cfg.unet, image_channels, cfg.num_classes)
    return ResUNet(cfg.resunet, image_channels, cfg.num_classes)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
