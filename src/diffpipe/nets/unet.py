"""The MNIST DDPM system's U-Net noise predictor (docs/systems/mnist-ddpm.md), built only from `model` params.

Blocks follow the source one to one (NormActConv, TimeEmbedding, SelfAttention, Downsample, Upsample,
the "resnet block", DownC / MidC / UpC). Two deliberate departures, both numerically equivalent:
- attention uses `F.scaled_dot_product_attention` over a fused qkv projection (same parameters and math as
  `nn.MultiheadAttention`, ~3x faster on CPU); `SelfAttention.use_sdpa = False` gives the plain softmax
  path for benchmarks;
- DownC applies its Downsample after the layers (the source defined it but forgot to call it; its diagram says
  apply it).
The network knows nothing about diffusion: it maps (x, t) -> a tensor shaped like x, where t is a float
per image fed to a sinusoidal embedding (the sampler decides what t means).
"""
from __future__ import annotations

import math
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..core.errors import ConfigError
from ..core.params import UNetConfig
from .labels import check_unlabelled, make_label_embedding


# ---- channel arithmetic (checked before any training: nets/builder.py `check_model`) ----------------------

def total_downsampling(cfg: UNetConfig) -> int:
    """The factor by which the down path shrinks the image: 2 per `down_sample` flag that is set."""
    return 2 ** sum(cfg.down_sample)


def channel_plan(cfg: UNetConfig) -> list[tuple[int, int, bool]]:
    """Per UpC block: (channels entering its first resnet block, out channels, up flag).

    The source's arithmetic: Upsample halves the incoming channels, then the skip (the input of the
    matching DownC) is concatenated; the sum must equal up_ch[i], the block's declared width. A config whose up
    path does not fit the skips raises a one-line ConfigError naming `model.unet.up_ch`.
    """
    skips = list(cfg.down_ch[:-1])
    x_ch = cfg.mid_ch[-1]
    plan = []
    for i, up in enumerate(reversed(cfg.down_sample)):
        in_ch, out_ch = cfg.up_ch[i], cfg.up_ch[i + 1]
        if up and x_ch != in_ch:
            raise ConfigError(
                f"params key `model.unet.up_ch` entry {i} ({in_ch}) must equal the channels reaching that up "
                f"block ({x_ch}, from model.unet.mid_ch / the previous up block) because it is up-sampled")
        concat = (x_ch // 2 if up else x_ch) + skips.pop()
        if concat != in_ch:
            raise ConfigError(
                f"params key `model.unet.up_ch` entry {i} ({in_ch}) must equal the up-sampled channels plus "
                f"the skip channels ({concat}); adjust model.unet.up_ch or model.unet.down_ch")
        plan.append((concat, out_ch, up))
        x_ch = out_ch
    return plan


def check_unet(cfg: UNetConfig, image_size: int) -> None:
    """Fail before training if the up path does not fit the skips, or the image size the down-sampling."""
    channel_plan(cfg)
    f = total_downsampling(cfg)
    if image_size % f != 0:
        raise ConfigError(f"params key `model.unet.down_sample` down-samples by {f} in total, which does not "
                          f"divide the image size {image_size}")


def sinusoidal_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """The source's embedding: f_i = 10000^(2i/d), i < d/2; emb = [sin(t / f), cos(t / f)]. t: (B,) -> (B, d)."""
    i = torch.arange(dim // 2, device=t.device, dtype=torch.float32)
    freqs = 10000.0 ** (2 * i / dim)
    args = t.float()[:, None] / freqs[None, :]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


class NormActConv(nn.Sequential):
    def __init__(self, in_ch: int, out_ch: int, groups: int):
        super().__init__(nn.GroupNorm(groups, in_ch), nn.SiLU(), nn.Conv2d(in_ch, out_ch, 3, padding=1))


class TimeEmbedding(nn.Sequential):
    def __init__(self, out_ch: int, t_emb_dim: int):
        super().__init__(nn.SiLU(), nn.Linear(t_emb_dim, out_ch))


class SelfAttention(nn.Module):
    """GroupNorm, then multi-head self-attention over the H·W tokens. The caller adds the residual."""

    use_sdpa = True  # class switch: False = explicit softmax(QKᵀ/√d)V, the plain eager baseline

    def __init__(self, channels: int, groups: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = nn.Linear(channels, channels)
        # As the source's nn.MultiheadAttention initialises itself: xavier-uniform over the stacked (3C, C)
        # input projection, zero input and output biases (the output weight keeps nn.Linear's default).
        nn.init.xavier_uniform_(self.qkv.weight)
        nn.init.zeros_(self.qkv.bias)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = self.norm(x.reshape(b, c, h * w)).transpose(1, 2)  # (B, HW, C)
        q, k, v = self.qkv(tokens).reshape(b, h * w, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        if self.use_sdpa:
            out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, HW, C/heads)
        else:
            weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(c // self.heads), dim=-1)
            out = weights @ v
        out = self.proj(out.transpose(1, 2).reshape(b, h * w, c))
        return out.transpose(1, 2).reshape(b, c, h, w)


class Downsample(nn.Module):
    """Concat of [1×1 conv → 4×4 stride-2 conv] and [max-pool 2 → 1×1 conv], each giving out/2 channels."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(in_ch, in_ch, 1), nn.Conv2d(in_ch, out_ch // 2, 4, stride=2, padding=1))
        self.pool = nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(in_ch, out_ch // 2, 1))

    def forward(self, x):
        return torch.cat([self.conv(x), self.pool(x)], dim=1)


class Upsample(nn.Module):
    """Concat of [4×4 stride-2 transposed conv → 1×1 conv] and [bilinear ×2 → 1×1 conv], out/2 each."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv = nn.Sequential(nn.ConvTranspose2d(in_ch, out_ch // 2, 4, stride=2, padding=1),
                                  nn.Conv2d(out_ch // 2, out_ch // 2, 1))
        self.interp = nn.Conv2d(in_ch, out_ch // 2, 1)

    def forward(self, x):
        up = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        return torch.cat([self.conv(x), self.interp(up)], dim=1)


class ResnetBlock(nn.Module):
    """h = conv1(x) + temb(t); h = conv2(h); h + Conv1×1(x)."""

    def __init__(self, in_ch: int, out_ch: int, t_emb_dim: int, groups: int):
        super().__init__()
        self.conv1 = NormActConv(in_ch, out_ch, groups)
        self.temb = TimeEmbedding(out_ch, t_emb_dim)
        self.conv2 = NormActConv(out_ch, out_ch, groups)
        self.skip = nn.Conv2d(in_ch, out_ch, 1)

    def forward(self, x, t_emb):
        h = self.conv1(x) + self.temb(t_emb)[:, :, None, None]
        return self.conv2(h) + self.skip(x)


class _Layers(nn.Module):
    """A stack of (resnet block, optional attention with residual)."""

    def __init__(self, in_ch, out_ch, layers, attn, cfg: UNetConfig):
        super().__init__()
        self.resnets = nn.ModuleList(
            ResnetBlock(in_ch if i == 0 else out_ch, out_ch, cfg.t_emb_dim, cfg.norm_groups) for i in range(layers))
        self.attns = nn.ModuleList(
            SelfAttention(out_ch, cfg.norm_groups, cfg.num_heads) if attn else nn.Identity() for _ in range(layers))
        self.attn = attn

    def forward(self, x, t_emb):
        for resnet, attention in zip(self.resnets, self.attns):
            x = resnet(x, t_emb)
            if self.attn:
                x = x + attention(x)
        return x


class DownC(nn.Module):
    def __init__(self, in_ch, out_ch, down: bool, attn: bool, cfg: UNetConfig):
        super().__init__()
        self.layers = _Layers(in_ch, out_ch, cfg.num_down_layers, attn, cfg)
        self.down = Downsample(out_ch, out_ch) if down else nn.Identity()

    def forward(self, x, t_emb):
        return self.down(self.layers(x, t_emb))


class MidC(nn.Module):
    """One resnet block, then `layers` × (attention, resnet block)."""

    def __init__(self, in_ch, out_ch, attn: bool, cfg: UNetConfig):
        super().__init__()
        g, d = cfg.norm_groups, cfg.t_emb_dim
        self.first = ResnetBlock(in_ch, out_ch, d, g)
        self.attns = nn.ModuleList(
            SelfAttention(out_ch, g, cfg.num_heads) if attn else nn.Identity() for _ in range(cfg.num_mid_layers))
        self.resnets = nn.ModuleList(ResnetBlock(out_ch, out_ch, d, g) for _ in range(cfg.num_mid_layers))
        self.attn = attn

    def forward(self, x, t_emb):
        x = self.first(x, t_emb)
        for attention, resnet in zip(self.attns, self.resnets):
            if self.attn:
                x = x + attention(x)
            x = resnet(x, t_emb)
        return x


class UpC(nn.Module):
    def __init__(self, x_ch, concat_ch, out_ch, up: bool, attn: bool, cfg: UNetConfig):
        super().__init__()
        self.up = Upsample(x_ch, x_ch // 2) if up else nn.Identity()  # the source: Upsample(in, in/2)
        self.layers = _Layers(concat_ch, out_ch, cfg.num_up_layers, attn, cfg)

    def forward(self, x, skip, t_emb):
        return self.layers(torch.cat([self.up(x), skip], dim=1), t_emb)


class UNet(nn.Module):
    conditioning = "timestep"

    def __init__(self, cfg: UNetConfig, image_channels: int, num_classes: int = 0):
        super().__init__()
        self.cfg, self.image_channels = cfg, image_channels
        d = cfg.t_emb_dim
        self.t_proj = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.conv_in = nn.Conv2d(image_channels, cfg.down_ch[0], 3, padding=1)
        self.downs = nn.ModuleList(
            DownC(cfg.down_ch[i], cfg.down_ch[i + 1], cfg.down_sample[i], cfg.attn_down[i], cfg)
            for i in range(len(cfg.down_ch) - 1))
        self.mids = nn.ModuleList(
            MidC(cfg.mid_ch[i], cfg.mid_ch[i + 1], cfg.attn_mid, cfg) for i in range(len(cfg.mid_ch) - 1))
        ups, x_ch = [], cfg.mid_ch[-1]
        for i, (concat_ch, out_ch, up) in enumerate(channel_plan(cfg)):
            ups.append(UpC(x_ch, concat_ch, out_ch, up, cfg.attn_up[i], cfg))
            x_ch = out_ch
        self.ups = nn.ModuleList(ups)
        self.norm_out = nn.GroupNorm(cfg.norm_groups, cfg.up_ch[-1])
        self.conv_out = nn.Conv2d(cfg.up_ch[-1], image_channels, 3, padding=1)
        # Built last, so the other weights start as the unconditional network's for the same seed.
        self.label_emb = make_label_embedding(num_classes, d)

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, C, H, W), t (B,) floats, labels (B,) class numbers with -1 = none (conditional networks only)."""
        t_emb = self.t_proj(sinusoidal_embedding(t, self.cfg.t_emb_dim))  # (B, d)
        if self.label_emb is None:
            check_unlabelled(labels)
        else:
            t_emb = t_emb + self.label_emb(labels, x.shape[0], x.device)
        x = self.conv_in(x)  # (B, down_ch[0], H, W)
        skips = []
        for down in self.downs:
            skips.append(x)
            x = down(x, t_emb)
        for mid in self.mids:
            x = mid(x, t_emb)
        for up in self.ups:
            x = up(x, skips.pop(), t_emb)
        return self.conv_out(self.norm_out(x))  # (B, C, H, W)

