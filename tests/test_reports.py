"""Sweep config, loss-by-timestep and reverse-process pictures on a tiny model."""
import numpy as np
import pytest
import torch
from PIL import Image

from diffpipe.config import ConfigError, from_dict
from diffpipe.models import ModelConfig, build_model
from diffpipe.schedule import DiffusionConfig, NoiseSchedule
from diffpipe.sweep import SweepConfig, markdown_table, summary_rows
from diffpipe.timestep_loss import TimestepLossConfig, loss_by_timestep
from diffpipe.unet import UNetConfig
from diffpipe.visualize import visualize

TINY = ModelConfig(unet=UNetConfig(down_ch=(8, 16, 32), mid_ch=(32, 32), up_ch=(32, 16, 8), t_emb_dim=16,
                                   attn_down=(False, False), attn_up=(False, False)))


def tiny_model():
    torch.manual_seed(0)
    return build_model(TINY, 1, 8).eval()


def test_sweep_points_are_checked_up_front():
    with pytest.raises(ConfigError, match=r"sweep\.points\.bad\.eta"):
        from_dict(SweepConfig, {"num_images": 10, "kid_subset_size": 5, "points": {"bad": {"eta": 2.0}}}, "sweep")
    with pytest.raises(ConfigError, match=r"sweep\.kid_subset_size"):
        from_dict(SweepConfig, {"num_images": 10, "kid_subset_size": 20, "points": {"a": {}}}, "sweep")


def test_sweep_rows_and_table_order():
    results = [{"point": n, "sampler": s, "steps": k, "eta": e, "fid": 1.0, "kid_mean": 0.001, "kid_std": 0.0001,
                "s_per_img": 0.1} for n, s, k, e in
               [("ddpm", "ddpm", 1000, 1.0), ("d50", "ddim", 50, 0.0), ("d10", "ddim", 10, 0.0)]]
    rows = summary_rows(results)
    assert [r["point"] for r in rows] == ["d10", "d50", "ddpm"]
    assert markdown_table(rows, 100).count("\n| ") == 4  # header + 3 rows


def test_loss_by_timestep_rows_are_reproducible():
    model, s = tiny_model(), NoiseSchedule.from_config(DiffusionConfig(num_timesteps=100))
    images = np.random.default_rng(0).integers(0, 256, (12, 1, 8, 8), dtype=np.uint8)
    cfg = TimestepLossConfig(buckets=4, num_images=10, batch_size=4)
    rows = loss_by_timestep(model, s, images, cfg)
    assert [(r["t_start"], r["t_end"]) for r in rows] == [(0, 25), (25, 50), (50, 75), (75, 100)]
    assert all(r["mse"] > 0 for r in rows)
    assert rows == loss_by_timestep(model, s, images, cfg)


def test_visualize_writes_gif_and_strip(tmp_path):
    model, s = tiny_model(), NoiseSchedule.from_config(DiffusionConfig(num_timesteps=50))
    ts = visualize(model, s, (1, 8, 8), range(3), "ddim", 10, 0.0, 6, tmp_path / "p.gif", tmp_path / "s.png",
                   strip_columns=4)
    gif = Image.open(tmp_path / "p.gif")
    assert gif.n_frames == 7  # 6 recorded steps + the final image
    strip = Image.open(tmp_path / "s.png")
    assert strip.size[1] > strip.size[0] / 4 * 2  # 3 rows of 4 columns
    assert ts[0] == 49 and ts[-1] == -1
