"""The flowers DDIM system's network (docs/systems/flowers-ddim.md): the residual U-Net of the Keras DDIM example, in PyTorch.

Reference: A. Béres, "Denoising Diffusion Implicit Models" (keras.io example, 2022), as used by the
flowers workshop notebook. Faithful points: residual blocks of BatchNorm without scale/centre → 3×3 conv
with swish → 3×3 conv, plus a 1×1 projection where widths differ; DownBlock = `block_depth` residual
blocks, each output kept as a skip, then 2×2 average pooling; UpBlock = bilinear ×2 then per block concat
a skip and a residual block; no attention; the noise variance enters as a 32-d sinusoidal embedding with
frequencies log-spaced from 1 to 1000, broadcast over the image and concatenated to the first features;
the output 1×1 conv starts at zero. Keras BatchNormalization defaults (momentum 0.99, eps 1e-3) are kept, and so
is Keras's initialisation: every other convolution starts glorot-uniform (Keras's default kernel initializer,
`nn.init.xavier_uniform_`) with zero biases, where PyTorch's default would start a 3×3 conv with 1.7× the
weight spread (std 0.068 against 0.039 for 32 → 32 channels) and random biases.
The network knows nothing of the schedule: its conditioning input is whatever float per image it is given
(the diffusion code passes the noise variance 1 - alpha_bar_t, as the source does).
"""
from __future__ import annotations

import math
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..core.params import ResUNetConfig
from .labels import check_unlabelled, make_label_embedding


def noise_embedding(noise_variance: torch.Tensor, dims: int, f_min: float, f_max: float) -> torch.Tensor:
    """Keras example: ω = 2π · exp(linspace(log f_min, log f_max, dims/2)); [sin(ω v), cos(ω v)]. (B,) -> (B, dims)."""
    freqs = torch.exp(torch.linspace(math.log(f_min), math.log(f_max), dims // 2, device=noise_variance.device))
    angles = 2.0 * math.pi * freqs[None, :] * noise_variance.float()[:, None]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


class ResidualBlock(nn.Module):
    def __init__(self, in_ch: int, width: int):
        super().__init__()
        self.residual = nn.Identity() if in_ch == width else nn.Conv2d(in_ch, width, 1)
        self.norm = nn.BatchNorm2d(in_ch, eps=1e-3, momentum=0.01, affine=False)
        self.conv1 = nn.Conv2d(in_ch, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)

    def forward(self, x):
        return self.conv2(F.silu(self.conv1(self.norm(x)))) + self.residual(x)


class ResUNet(nn.Module):
    conditioning = "noise_variance"

    def __init__(self, cfg: ResUNetConfig, image_channels: int, num_classes: int = 0):
        super().__init__()
        self.cfg = cfg
        w, depth = cfg.widths, cfg.block_depth
        self.conv_in = nn.Conv2d(image_channels, w[0], 1)
        ch = w[0] + cfg.embedding_dims
        self.down, skip_ch = nn.ModuleList(), []
        for width in w[:-1]:
            blocks = nn.ModuleList()
            for _ in range(depth):
                blocks.append(ResidualBlock(ch, width))
                ch = width
                skip_ch.append(ch)
            self.down.append(blocks)
        self.mid = nn.ModuleList()
        for _ in range(depth):
            self.mid.append(ResidualBlock(ch, w[-1]))
            ch = w[-1]
        self.up = nn.ModuleList()
        for width in reversed(w[:-1]):
            blocks = nn.ModuleList()
            for _ in range(depth):
                blocks.append(ResidualBlock(ch + skip_ch.pop(), width))
                ch = width
            self.up.append(blocks)
        self.conv_out = nn.Conv2d(ch, image_channels, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):  # Keras Conv2D: glorot_uniform kernel, zero bias
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.zeros_(self.conv_out.weight)  # the source's kernel_initializer="zeros"
        # Built last, so the other weights start as the unconditional network's for the same seed.
        self.label_emb = make_label_embedding(num_classes, cfg.embedding_dims)

    def forward(self, x: torch.Tensor, noise_variance: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """labels (B,) class numbers with -1 = none (conditional networks only): their vector is added to the
        noise embedding before it is broadcast over the image."""
        b, _, h, w = x.shape
        cfg = self.cfg
        e = noise_embedding(noise_variance, cfg.embedding_dims, cfg.embedding_min_frequency, cfg.embedding_max_frequency)
        if self.label_emb is None:
            check_unlabelled(labels)
        else:
            e = e + self.label_emb(labels, b, x.device)
        x = torch.cat([self.conv_in(x), e[:, :, None, None].expand(b, -1, h, w).to(x.dtype)], dim=1)
        skips = []
        for blocks in self.down:
            for block in blocks:
                x = block(x)
                skips.append(x)
            x = F.avg_pool2d(x, 2)
        for block in self.mid:
            x = block(x)
        for blocks in self.up:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
            for block in blocks:
                x = block(torch.cat([x, skips.pop()], dim=1))
        return self.conv_out(x)
