"""The flowers system's residual U-Net: shapes, zero-initialised output, conditioning on the noise variance."""
import math
import pytest
import torch

from helpers import diffusion_cfg, resunet_cfg, RESUNET, REDUCED_UNET

from diffpipe.core.config import from_dict
from diffpipe.core.errors import ConfigError
from diffpipe.core.params import ModelConfig
from diffpipe.diffusion.denoiser import conditioning
from diffpipe.diffusion.schedule import NoiseSchedule
from diffpipe.diffusion.training import ema_update
from diffpipe.nets.builder import build_model
from diffpipe.nets.resunet import ResUNet, noise_embedding


def resunet_model_cfg(**kw) -> ModelConfig:
    return from_dict(ModelConfig, {"arch": "resunet", "num_classes": 0, "unet": REDUCED_UNET, "resunet": {**RESUNET, **kw}}, "model")


@pytest.mark.parametrize("widths, depth, channels, size", [((16, 24, 32), 2, 3, 64), ((8, 16), 1, 1, 28), ((8, 8, 8, 8), 1, 3, 32)])
def test_shapes_and_zero_output_at_init(widths, depth, channels, size):
    model = ResUNet(resunet_cfg(widths=widths, block_depth=depth), channels)
    x = torch.randn(2, channels, size, size)
    out = model(x, torch.tensor([0.1, 0.9]))
    assert out.shape == x.shape
    assert torch.count_nonzero(out) == 0  # zero-initialised 1×1 output conv, as in the source


def test_gradients_reach_the_first_layers_after_one_step():
    torch.manual_seed(0)
    model = ResUNet(resunet_cfg(widths=(8, 16), block_depth=1), 3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, v = torch.randn(4, 3, 8, 8), torch.rand(4)
    for _ in range(2):  # step 1 moves the zero output conv; step 2 reaches every layer
        opt.zero_grad()
        (model(x, v) - x).abs().mean().backward()
        opt.step()
    assert all(p.grad is not None and torch.any(p.grad != 0) for p in model.parameters())


def test_noise_embedding_frequencies():
    e = noise_embedding(torch.tensor([0.0, 0.5]), 32, 1.0, 1000.0)
    assert e.shape == (2, 32)
    torch.testing.assert_close(e[0], torch.tensor([0.0] * 16 + [1.0] * 16))
    # lowest frequency 1: sin(2π · 1 · 0.5) = 0
    assert e[1, 0].item() == pytest.approx(0.0, abs=1e-5)


def test_resunet_is_conditioned_on_noise_variance():
    s = NoiseSchedule.from_config(diffusion_cfg(num_timesteps=100, schedule="angle"))
    model = build_model(resunet_model_cfg(widths=(8, 16), block_depth=1), 3, 8)
    t = torch.tensor([0, 99])
    torch.testing.assert_close(conditioning(model, s, t), 1 - s.alpha_bar[t])


def test_ema_averages_batchnorm_statistics():
    a = ResUNet(resunet_cfg(widths=(8, 16), block_depth=1), 3)
    b = ResUNet(resunet_cfg(widths=(8, 16), block_depth=1), 3)
    a.train()(torch.randn(4, 3, 8, 8) * 3 + 2, torch.rand(4))  # moves a's running stats
    ema_update(b, a, 0.5)
    name = "down.0.0.norm.running_mean"
    torch.testing.assert_close(dict(b.named_buffers())[name], 0.5 * dict(a.named_buffers())[name])


def test_image_size_must_fit_the_pooling():
    with pytest.raises(ConfigError, match=r"model\.resunet\.widths"):
        build_model(resunet_model_cfg(widths=(8, 16, 32)), 3, 30)


def test_keras_initialisation_glorot_uniform_zero_bias():
    """As Keras's Conv2D: glorot-uniform kernels (std sqrt(2 / (fan_in + fan_out))), zero biases."""
    torch.manual_seed(0)
    net = ResUNet(resunet_cfg(widths=[32, 64, 96, 128], block_depth=2), 3)
    conv = net.down[0][1].conv1  # 32 -> 32, 3x3
    expected = math.sqrt(2.0 / (32 * 9 + 32 * 9))
    assert conv.weight.std().item() == pytest.approx(expected, rel=0.05)  # 0.039 (PyTorch's default: 0.068)
    bound = math.sqrt(6.0 / (32 * 9 + 32 * 9))
    assert conv.weight.abs().max().item() <= bound
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(torch.count_nonzero(m.bias) == 0 for m in convs)
    assert torch.count_nonzero(net.conv_out.weight) == 0
