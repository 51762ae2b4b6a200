"""Training loop: a short overfit run lowers the loss; fp32 and bf16 losses agree; checkpoints rebuild the model."""
import numpy as np
import pytest
import torch

from helpers import TINY_UNET, diffusion_cfg, model_cfg, train_cfg

from diffpipe.data.pixels import to_model_range, to_uint8
from diffpipe.diffusion.checkpoint import load_model, save_checkpoint
from diffpipe.diffusion.schedule import NoiseSchedule
from diffpipe.diffusion.training import diffusion_loss, train
from diffpipe.nets.builder import build_model

TINY = model_cfg(**TINY_UNET, attn_down=(False, True), attn_up=(True, False))


def tiny_images(n=16, size=8):
    """Two fixed patterns (a bar and its transpose) repeated: a set a tiny model can memorise."""
    bar = np.zeros((1, size, size), np.uint8)
    bar[:, :, size // 2 - 1:size // 2 + 1] = 255
    return np.stack([bar if i % 2 else bar.transpose(0, 2, 1) for i in range(n)])


def test_pixel_scaling_round_trip():
    x = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16)
    y = to_model_range(x)
    assert y.min().item() == -1.0 and y.max().item() == 1.0
    assert torch.equal(to_uint8(y), x)


def test_short_training_run_lowers_the_loss_and_checkpoint_round_trips(tmp_path):
    cfg = train_cfg(epochs=40, batch_size=8, lr=3e-3, log_every=5)
    result = train(tiny_images(), diffusion_cfg(num_timesteps=50), TINY, cfg, progress=False)
    losses = [e["loss"] for e in result.epoch_losses]
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:3])
    assert result.metrics["best_loss"] == min(losses)
    assert result.checkpoint["epoch"] == 1 + int(np.argmin(losses))

    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, result.checkpoint)
    loaded = load_model(path, torch.device("cpu"))
    assert loaded.image_shape == (1, 8, 8) and loaded.diffusion.num_timesteps == 50
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([1.0, 40.0])
    reference = build_model(TINY, 1, 8)
    reference.load_state_dict(result.checkpoint["ema"])
    torch.testing.assert_close(loaded.model(x, t), reference.eval()(x, t))


def test_fp32_and_bf16_losses_agree():
    torch.manual_seed(0)
    model = build_model(TINY, 1, 8)
    s = NoiseSchedule.from_config(diffusion_cfg(num_timesteps=50))
    x0 = to_model_range(torch.from_numpy(tiny_images(32)))
    t = torch.randint(0, 50, (32,))
    eps = torch.randn_like(x0)
    x_t = s.q_sample(x0, t, eps)
    loss32 = diffusion_loss(model(x_t, t.float()), eps, "mse")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss16 = diffusion_loss(model(x_t, t.float()).float(), eps, "mse")
    assert loss16.item() == pytest.approx(loss32.item(), rel=0.02)


def test_training_is_reproducible_from_the_seed():
    cfg = train_cfg(epochs=2, batch_size=8)
    a = train(tiny_images(), diffusion_cfg(num_timesteps=50), TINY, cfg, progress=False)
    b = train(tiny_images(), diffusion_cfg(num_timesteps=50), TINY, cfg, progress=False)
    assert a.epoch_losses[-1]["loss"] == b.epoch_losses[-1]["loss"]
