"""Training loop: a short overfit run lowers the loss; fp32 and bf16 losses agree; checkpoints rebuild the model."""
import json

import numpy as np
import pytest
import torch

from helpers import TINY_UNET, diffusion_cfg, model_cfg, train_cfg

from diffpipe.core.tracking import TrainingLog
from diffpipe.data.pixels import to_model_range, to_uint8
from diffpipe.diffusion.checkpoint import load_model, save_checkpoint
from diffpipe.diffusion.schedule import NoiseSchedule
from diffpipe.diffusion.training import TrainingDiverged, diffusion_loss, min_snr_weight, train
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
    cfg = train_cfg(epochs=40, batch_size=8, lr=3e-3, log_every=5, keep="best", lr_schedule="constant", warmup_steps=0)
    result = train(tiny_images(), diffusion_cfg(num_timesteps=50), TINY, cfg, progress=False)
    losses = [e["loss"] for e in result.epoch_losses]
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:3])
    assert result.summary["best_loss"] == min(losses)
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


def test_resumed_and_continued_runs_equal_uninterrupted_ones(tmp_path):
    """State saved mid-epoch and at epoch ends: stopping anywhere and re-running gives the same bytes; raising
    train.epochs continues the run and ends where a longer run from scratch ends."""
    diffusion = diffusion_cfg(num_timesteps=50)
    full = train(tiny_images(), diffusion, TINY, train_cfg(epochs=3, batch_size=6, checkpoint_every=2), progress=False,
                 history=TrainingLog(tmp_path / "live_full"))

    class Stop(Exception):
        pass

    def stop_after_epoch_1(epoch, *_):
        if epoch == 1:
            raise Stop

    state = tmp_path / "state"
    cfg = train_cfg(epochs=3, batch_size=6, checkpoint_every=2)
    with pytest.raises(Stop):
        train(tiny_images(), diffusion, TINY, cfg, state_dir=state, on_epoch_end=stop_after_epoch_1, progress=False,
              history=TrainingLog(tmp_path / "live"))
    messages = []
    resumed = train(tiny_images(), diffusion, TINY, cfg, state_dir=state, progress=False, log=messages.append,
                    history=TrainingLog(tmp_path / "live"))
    assert messages[0].startswith("train: resuming from step 2 (epoch 1, batch 2)")  # the mid-epoch save at step 2
    for key in ("model", "ema", "step", "epoch", "loss"):
        torch.testing.assert_close(resumed.checkpoint[key], full.checkpoint[key], rtol=0, atol=0)
    assert resumed.step_losses == full.step_losses
    save_checkpoint(tmp_path / "full.pt", full.checkpoint)
    save_checkpoint(tmp_path / "resumed.pt", resumed.checkpoint)
    assert (tmp_path / "full.pt").read_bytes() == (tmp_path / "resumed.pt").read_bytes()  # what DVC hashes
    # DVCLive: the resumed history drops the rows logged after the saved step and continues the curves, so it
    # equals the uninterrupted run's; metrics.json holds quality numbers only (no lr, EMA decay or img/s)
    for name in ("train/loss.tsv", "train/epoch_loss.tsv", "schedule/lr.tsv", "schedule/ema_decay.tsv"):
        history = (tmp_path / "live" / "plots" / "metrics" / name).read_text()
        assert history == (tmp_path / "live_full" / "plots" / "metrics" / name).read_text(), name
    steps = [int(line.split("\t")[0]) for line in history.splitlines()[1:]]
    assert steps == sorted(set(steps)) and steps[-1] == full.checkpoint["step"]
    summary = json.loads((tmp_path / "live" / "metrics.json").read_text())
    assert summary == json.loads((tmp_path / "live_full" / "metrics.json").read_text())
    assert set(summary) == {"step", "train"}
    assert set(summary["train"]) == {"loss", "epoch_loss", "final_loss", "best_loss"}
    assert (tmp_path / "live" / "plots" / "metrics" / "cost" / "img_per_s.tsv").exists()
    # run again on the finished state (what `dvc repro` does after a code change that keeps the state): it
    # trains nothing, and the checkpoint, the curves and metrics.json stay the uninterrupted run's
    again = train(tiny_images(), diffusion, TINY, cfg, state_dir=state, progress=False,
                  history=TrainingLog(tmp_path / "live"))
    torch.testing.assert_close(again.checkpoint["ema"], full.checkpoint["ema"], rtol=0, atol=0)
    # the cost is the whole run's over its invocations: the resumed one timed the rest of epoch 1 (its first
    # part was after the last save, so it is redone) and epochs 2-3; the third trained nothing and adds ~0 s
    assert (full.cost["invocations"], full.cost["epochs_timed"]) == (1, 3)
    assert (resumed.cost["invocations"], resumed.cost["epochs_timed"]) == (2, 3)
    assert resumed.cost["train_time_s"] > resumed.cost["wall_time_s"] > 0
    assert (again.cost["invocations"], again.cost["epoch_img_per_s"]) == (3, resumed.cost["epoch_img_per_s"])
    assert abs(again.cost["train_time_s"] - resumed.cost["train_time_s"]) < 1.0  # trained nothing more
    assert again.cost["train_time_s"] > 10 * again.cost["wall_time_s"]
    assert json.loads((tmp_path / "live" / "metrics.json").read_text()) == summary
    for name in ("train/loss.tsv", "train/epoch_loss.tsv"):
        assert ((tmp_path / "live" / "plots" / "metrics" / name).read_text()
                == (tmp_path / "live_full" / "plots" / "metrics" / name).read_text()), name

    shorter = tmp_path / "shorter"
    train(tiny_images(), diffusion, TINY, train_cfg(epochs=1, batch_size=6, checkpoint_every=2), state_dir=shorter,
          progress=False)
    messages.clear()
    continued = train(tiny_images(), diffusion, TINY, cfg, state_dir=shorter, progress=False, log=messages.append)
    assert messages[0].startswith("train: resuming from step 3 (epoch 2, batch 0)")
    torch.testing.assert_close(continued.checkpoint["ema"], full.checkpoint["ema"], rtol=0, atol=0)

    messages.clear()
    train(tiny_images(), diffusion, TINY, train_cfg(epochs=3, batch_size=6, checkpoint_every=2, lr=2e-3),
          state_dir=shorter, progress=False, log=messages.append)
    assert messages[0].startswith("train: starting fresh: the saved state was made from other data or settings "
                                  "(train.lr 0.001 -> 0.002)")


def test_divergence_stops_at_once_and_keeps_the_last_good_state(tmp_path):
    state = tmp_path / "state"
    cfg = train_cfg(epochs=5, batch_size=4, lr=1.0e30, log_every=1, checkpoint_every=1)
    with pytest.raises(TrainingDiverged, match=r"training diverged at step \d+ \(epoch 1, train\.lr = 1e\+30\): "
                                               r"the (loss is nan|weights are not finite).*last good state"):
        train(tiny_images(), diffusion_cfg(num_timesteps=50), TINY, cfg, state_dir=state, progress=False)
    saved = torch.load(state / "state.pt", weights_only=True)
    assert all(torch.isfinite(v).all() for v in saved["model"].values() if v.is_floating_point())


def test_learning_rate_schedule_warm_up_and_cosine():
    from diffpipe.diffusion.training import lr_at, run_fingerprint

    cfg = train_cfg(lr=1e-3, lr_schedule="cosine", warmup_steps=10)
    assert lr_at(0, 100, cfg) == pytest.approx(1e-4)  # warm-up: (step + 1) / warmup_steps
    assert lr_at(9, 100, cfg) == pytest.approx(1e-3 * 0.5 * (1 + np.cos(np.pi * 9 / 100)))
    assert lr_at(50, 100, cfg) == pytest.approx(0.5e-3) and lr_at(100, 100, cfg) == pytest.approx(0.0)
    constant = train_cfg(lr=1e-3, lr_schedule="constant", warmup_steps=0)
    assert lr_at(0, 100, constant) == lr_at(99, 100, constant) == 1e-3
    # a cosine run depends on its length, so train.epochs is part of what a saved state must match
    images, diffusion = tiny_images(), diffusion_cfg(num_timesteps=50)
    a, b = (run_fingerprint(images, diffusion, TINY, train_cfg(lr_schedule="cosine", epochs=e)) for e in (2, 3))
    assert a != b
    a, b = (run_fingerprint(images, diffusion, TINY, train_cfg(lr_schedule="constant", epochs=e)) for e in (2, 3))
    assert a == b


def test_min_snr_weight_caps_the_signal_to_noise_ratio():
    schedule = NoiseSchedule.from_config(diffusion_cfg())
    t = torch.tensor([0, 50, 500, 999])
    assert min_snr_weight(schedule, t, 0.0) is None
    w = min_snr_weight(schedule, t, 5.0)
    snr = schedule.alpha_bar[t] / (1 - schedule.alpha_bar[t])
    assert snr[0] > 5 > snr[-1]  # the cap binds at small t only
    torch.testing.assert_close(w, torch.where(snr > 5, 5 / snr, torch.ones_like(snr)))
    eps_pred, eps = torch.randn(4, 1, 8, 8), torch.randn(4, 1, 8, 8)
    per_image = (eps_pred - eps).square().flatten(1).mean(1)
    torch.testing.assert_close(diffusion_loss(eps_pred, eps, "mse", w), (per_image * w).mean())
    torch.testing.assert_close(diffusion_loss(eps_pred, eps, "mse", torch.ones(4)), diffusion_loss(eps_pred, eps, "mse"))
    with pytest.raises(Exception, match="train.min_snr_gamma"):
        train_cfg(min_snr_gamma=-1.0)


def test_keep_last_and_repeats():
    """keep: last returns the final weights; repeats: k walks the set k times per epoch, each pass a permutation."""
    data = tiny_images()
    last = train(data, diffusion_cfg(num_timesteps=50), TINY, train_cfg(epochs=3, batch_size=8, keep="last"),
                 progress=False)
    assert last.checkpoint["epoch"] == 3 and last.report["kept_epoch"] == 3 and last.report["keep"] == "last"
    best = train(data, diffusion_cfg(num_timesteps=50), TINY, train_cfg(epochs=3, batch_size=8, keep="best"),
                 progress=False)
    torch.testing.assert_close(last.checkpoint["ema"], train(  # the same run; only the choice differs
        data, diffusion_cfg(num_timesteps=50), TINY, train_cfg(epochs=3, batch_size=8, keep="last"),
        progress=False).checkpoint["ema"])
    losses = [e["loss"] for e in best.epoch_losses]
    assert best.checkpoint["epoch"] == 1 + int(np.argmin(losses))
    assert [e["loss"] for e in last.epoch_losses] == losses
    twice = train(data, diffusion_cfg(num_timesteps=50), TINY, train_cfg(epochs=1, batch_size=8, repeats=2),
                  progress=False)
    assert twice.report["steps"] == 2 * len(data) // 8 and twice.report["images_seen"] == 2 * len(data)
    with pytest.raises(Exception, match="train.repeats"):
        train_cfg(repeats=0)
