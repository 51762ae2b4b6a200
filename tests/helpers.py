"""Config builders for tests: the code has no defaults, so tests start from complete, checked sections.

Each builder takes overrides for a known-good base (the MNIST DDPM source's settings) and runs the params
loader on the result, so a test config is checked exactly as one from params.yaml would be.
"""
from __future__ import annotations

from pathlib import Path

from diffpipe.core.config import from_dict, to_dict
from diffpipe.core.params import (ClassifierConfig, DiffusionConfig, ModelConfig, ResUNetConfig, SamplerSpec,
                                  TrainConfig, UNetConfig, load_params)
from diffpipe.nets.unet import channel_plan

ROOT = Path(__file__).resolve().parents[1]

REDUCED_UNET = dict(down_ch=[32, 64, 128], mid_ch=[128, 128], up_ch=[128, 64, 16], down_sample=[True, True],
                    num_down_layers=1, num_mid_layers=1, num_up_layers=1, t_emb_dim=128, norm_groups=8, num_heads=4,
                    attn_down=[True, True], attn_mid=True, attn_up=[True, True])
RESUNET = dict(widths=[32, 64, 96, 128], block_depth=2, embedding_dims=32, embedding_min_frequency=1.0,
               embedding_max_frequency=1000.0)
DIFFUSION = dict(num_timesteps=1000, schedule="linear", beta_start=1.0e-4, beta_end=0.02, cosine_s=0.008,
                 max_signal_rate=0.95, min_signal_rate=0.02, prediction="eps", zero_terminal_snr=False)


def root_params():
    return load_params(ROOT / "params.yaml")


def diffusion_cfg(**kw) -> DiffusionConfig:
    return from_dict(DiffusionConfig, {**DIFFUSION, **kw}, "diffusion")


def unet_cfg(**kw) -> UNetConfig:
    """Checked also by the U-Net's own channel arithmetic (its up path fits the skips), as build_model checks it."""
    cfg = from_dict(UNetConfig, {**REDUCED_UNET, **kw}, "model.unet")
    channel_plan(cfg)
    return cfg


def resunet_cfg(**kw) -> ResUNetConfig:
    return from_dict(ResUNetConfig, {**RESUNET, **kw}, "model.resunet")


def model_cfg(arch: str = "unet", num_classes: int = 0, **unet_kw) -> ModelConfig:
    return from_dict(ModelConfig, {"arch": arch, "num_classes": num_classes, "unet": {**REDUCED_UNET, **unet_kw},
                                   "resunet": RESUNET}, "model")


TINY_UNET = dict(down_ch=[8, 16, 32], mid_ch=[32, 32], up_ch=[32, 16, 8], t_emb_dim=16)


def train_cfg(**kw) -> TrainConfig:
    # The tiny tests' optimiser is a constant 1e-3 without warm-up, whatever the root default is: the resume tests
    # raise train.epochs, which continues only a constant schedule.
    base = {**to_dict(root_params().train), "device": "cpu", "grid_images": 0, "lr": 1e-3, "lr_schedule": "constant",
            "warmup_steps": 0}
    return from_dict(TrainConfig, {**base, **kw}, "train")


def spec(sampler: str = "ddim", steps: int = 50, eta: float = 0.0, clip_x0: bool = False) -> SamplerSpec:
    return from_dict(SamplerSpec, dict(sampler=sampler, steps=steps, eta=eta, clip_x0=clip_x0), "sample")


def classifier_cfg(**kw) -> ClassifierConfig:
    base = {**to_dict(root_params().classifier), "device": "cpu"}
    return from_dict(ClassifierConfig, {**base, **kw}, "classifier")
