"""Which network, built from the `model` params section.

`model.arch` picks the architecture; each has its own sub-section (`model.unet`: the MNIST DDPM system's
U-Net; `model.resunet`: the flowers DDIM system's residual U-Net). Each network class says, in its
`conditioning` attribute, what float per image it expects as its second input (the diffusion code turns
integer timesteps into it): "timestep" or "noise_variance". With `model.num_classes` > 0 both take a third
input, the class labels (nets/labels.py).
"""
from __future__ import annotations

import torch.nn as nn

from ..core.errors import ConfigError
from ..core.params import ModelConfig
from .resunet import ResUNet
from .unet import UNet, check_unet


def check_model(cfg: ModelConfig, image_channels: int, image_size: int) -> None:
    """The chosen network's own arithmetic, for images of `image_size` px: a one-line ConfigError naming the
    key if its channels do not fit together or the image size does not fit its down-sampling. build_model runs
    it; a stage may run it earlier, before reading anything else."""
    if cfg.arch == "unet":
        check_unet(cfg.unet, image_size)
        return
    widths = cfg.resunet.widths
    f = 2 ** (len(widths) - 1)
    if image_size % f != 0:
        raise ConfigError(f"params key `model.resunet.widths` down-samples by {f} in total "
                          f"({len(widths) - 1} pooling steps), which does not divide the image size {image_size}")


def build_model(cfg: ModelConfig, image_channels: int, image_size: int) -> nn.Module:
    check_model(cfg, image_channels, image_size)
    if cfg.arch == "unet":
        return UNet(cfg.unet, image_channels, cfg.num_classes)
    return ResUNet(cfg.resunet, image_channels, cfg.num_classes)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
