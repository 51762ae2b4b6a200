"""The MNIST U-Net: shapes for several configs, gradients reach every parameter, config errors name keys."""
import pytest
import torch

from helpers import TINY_UNET, model_cfg, unet_cfg

from diffpipe.core.errors import ConfigError
from diffpipe.nets.builder import build_model
from diffpipe.nets.unet import SelfAttention, UNet, sinusoidal_embedding

REDUCED = unet_cfg()  # the MNIST DDPM source's reported run
FULL = unet_cfg(down_ch=(32, 64, 128, 256), mid_ch=(256, 256, 128), up_ch=(256, 128, 64, 16),
                down_sample=(True, True, False), num_down_layers=2, num_mid_layers=2, num_up_layers=2,
                attn_down=(True, True, True), attn_up=(True, True, True))
TINY_RGB = unet_cfg(**TINY_UNET, attn_down=(False, False), attn_mid=False, attn_up=(False, False))


@pytest.mark.parametrize("cfg, channels, size", [(REDUCED, 1, 28), (FULL, 1, 28), (TINY_RGB, 3, 32), (TINY_RGB, 1, 16)])
def test_output_shape_matches_input(cfg, channels, size):
    torch.manual_seed(0)
    model = UNet(cfg, channels)
    x = torch.randn(2, channels, size, size)
    out = model(x, torch.tensor([0.0, 999.0]))
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_parameter_counts_of_source_configs():
    # Pinned so an accidental architecture change is noticed (the source's blocks, channel lists, layer counts).
    assert sum(p.numel() for p in UNet(REDUCED, 1).parameters()) == 1_596_673
    assert sum(p.numel() for p in UNet(FULL, 1).parameters()) == 10_846_433


def test_every_parameter_gets_a_gradient():
    torch.manual_seed(0)
    model = UNet(REDUCED, 1)
    x = torch.randn(2, 1, 28, 28)
    model(x, torch.tensor([3.0, 500.0])).square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert missing == []


def test_sdpa_and_plain_attention_agree():
    torch.manual_seed(0)
    attn = SelfAttention(32, 8, 4)
    x = torch.randn(2, 32, 7, 7)
    fast = attn(x)
    SelfAttention.use_sdpa = False
    try:
        plain = attn(x)
    finally:
        SelfAttention.use_sdpa = True
    torch.testing.assert_close(fast, plain, atol=1e-5, rtol=1e-4)


def test_time_embedding_formula():
    emb = sinusoidal_embedding(torch.tensor([0.0, 10.0]), 8)
    assert emb.shape == (2, 8)
    torch.testing.assert_close(emb[0], torch.tensor([0.0] * 4 + [1.0] * 4))
    # i = 1 of d = 8: f = 10000^(2/8) = 10
    assert emb[1, 1].item() == pytest.approx(torch.sin(torch.tensor(1.0)).item(), abs=1e-6)


@pytest.mark.parametrize("kwargs, key", [
    ({"up_ch": (128, 32, 16)}, "model.unet.up_ch"),
    ({"down_ch": (32, 64, 124)}, "model.unet.down_ch"),  # not divisible by 8 groups
    ({"down_sample": (True,)}, "model.unet.down_sample"),
    ({"mid_ch": (64, 128)}, "model.unet.mid_ch"),
    ({"attn_up": (True,)}, "model.unet.attn_up"),
    ({"num_mid_layers": 0}, "model.unet.num_mid_layers"),
    ({"num_heads": 3}, "model.unet.num_heads"),
])
def test_bad_network_params_name_the_key(kwargs, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        unet_cfg(**kwargs)


def test_image_size_not_divisible_by_downsampling():
    with pytest.raises(ConfigError, match=r"model\.unet\.down_sample.*30"):
        build_model(model_cfg(), 1, 30)


def test_attention_is_initialised_as_multihead_attention():
    """The source's nn.MultiheadAttention: xavier-uniform over the stacked (3C, C) input projection, zero biases."""
    torch.manual_seed(0)
    attn = SelfAttention(64, groups=8, heads=4)
    mha = torch.nn.MultiheadAttention(64, 4)
    assert attn.qkv.weight.shape == mha.in_proj_weight.shape
    bound = (6.0 / (64 + 3 * 64)) ** 0.5  # xavier-uniform bound for fan_in 64, fan_out 192
    assert attn.qkv.weight.abs().max().item() <= bound and attn.qkv.weight.abs().max().item() > 0.9 * bound
    assert mha.in_proj_weight.abs().max().item() <= bound  # the same bound as torch's own module
    assert attn.qkv.bias.abs().max().item() == 0.0 and attn.proj.bias.abs().max().item() == 0.0
    assert abs(attn.qkv.weight.std().item() - mha.in_proj_weight.std().item()) < 0.1 * mha.in_proj_weight.std().item()
