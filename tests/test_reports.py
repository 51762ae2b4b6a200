"""Sweep config, loss-by-timestep and reverse-process pictures on a tiny model."""
import numpy as np
import pytest
import torch
from PIL import Image

from helpers import TINY_UNET, diffusion_cfg, model_cfg, spec

from diffpipe.core.config import from_dict
from diffpipe.core.errors import ConfigError
from diffpipe.core.params import SweepConfig, TimestepLossConfig
from diffpipe.diffusion.generate import record_process
from diffpipe.diffusion.samplers import describe_sampler
from diffpipe.diffusion.schedule import NoiseSchedule
from diffpipe.metrics.sweep import markdown_table, metrics_of, point_row, sorted_rows
from diffpipe.metrics.timestep_loss import loss_by_timestep
from diffpipe.nets.builder import build_model
from diffpipe.pictures.process import save_process

TINY = model_cfg(**TINY_UNET, attn_down=(False, False), attn_up=(False, False))
POINT = dict(sampler="ddim", steps=10, eta=0.0, clip_x0=False)
SWEEP = dict(num_images=10, batch_size=10, first_seed=0, kid_subset_size=5, kid_subsets=5, kid_seed=0,
             feature_batch_size=10, device="cpu", labels=[], guidance_scale=1.0, guidance_scales=[], guidance_point="a")


def tiny_model():
    torch.manual_seed(0)
    return build_model(TINY, 1, 8).eval()


def test_sweep_points_are_checked_up_front():
    with pytest.raises(ConfigError, match=r"sweep\.points\.bad\.eta"):
        from_dict(SweepConfig, {**SWEEP, "points": {"bad": {**POINT, "eta": 2.0}}}, "sweep")
    with pytest.raises(ConfigError, match=r"sweep\.kid_subset_size"):
        from_dict(SweepConfig, {**SWEEP, "kid_subset_size": 20, "points": {"a": POINT}}, "sweep")
    with pytest.raises(ConfigError, match=r"sweep\.points\.a\.clip_x0` is missing"):
        from_dict(SweepConfig, {**SWEEP, "points": {"a": {"sampler": "ddim", "steps": 10, "eta": 0.0}}}, "sweep")


def test_sweep_rows_series_order_and_metrics():
    specs = {"ddpm": spec("ddpm", steps=1000), "d50": spec("ddim", steps=50, eta=0.0),
             "d50_eta1": spec("ddim", steps=50, eta=1.0), "d10": spec("ddim", steps=10, eta=0.0),
             "heun5": spec("heun", steps=5, eta=0.0), "dpm10": spec("dpmpp_2m", steps=10),
             "sde10": spec("dpmpp_2m_sde", steps=10)}
    rows = sorted_rows([point_row(name, describe_sampler(s, 1000), fid=1.0, kid_mean=0.001, kid_std=0.0001)
                        for name, s in specs.items()])
    assert [r["point"] for r in rows] == ["d10", "d50", "d50_eta1", "heun5", "dpm10", "sde10", "ddpm"]
    # sampler and eta are told apart: DDPM and DDIM eta 1 share NFE-free series names, never one line
    assert [r["series"] for r in rows] == ["DDIM eta=0", "DDIM eta=0", "DDIM eta=1", "Heun eta=0",
                                           "DPM-Solver++(2M)", "SDE-DPM-Solver++(2M)", "DDPM"]
    # network evaluations per image: Heun's second-order steps count twice (all but the last)
    assert [r["nfe"] for r in rows] == [10, 50, 50, 9, 10, 10, 1000]
    assert metrics_of(rows)["d50"] == {"fid": 1.0, "kid_mean": 0.001, "kid_std": 0.0001}
    assert markdown_table(rows, 100).count("\n| ") == 8  # header + 7 rows
    # classifier-free guidance at a scale other than 0 or 1 doubles every evaluation
    guided_row = point_row("g", describe_sampler(specs["heun5"], 1000), 1.0, 0.001, 0.0001, guidance_scale=3.0)
    assert guided_row["nfe"] == 18
    assert describe_sampler(specs["dpm10"], 1000, network_calls=2)["nfe"] == 20


def test_loss_by_timestep_rows_are_reproducible():
    model, s = tiny_model(), NoiseSchedule.from_config(diffusion_cfg(num_timesteps=100))
    images = np.random.default_rng(0).integers(0, 256, (12, 1, 8, 8), dtype=np.uint8)
    cfg = TimestepLossConfig(buckets=4, num_images=10, batch_size=4, seed=0)
    rows = loss_by_timestep(model, s, images, cfg)
    assert [(r["t_start"], r["t_end"]) for r in rows] == [(0, 25), (25, 50), (50, 75), (75, 100)]
    assert all(r["mse"] > 0 for r in rows)
    assert rows == loss_by_timestep(model, s, images, cfg)


def test_reverse_process_pictures(tmp_path):
    model, s = tiny_model(), NoiseSchedule.from_config(diffusion_cfg(num_timesteps=50))
    frames, x0s, ts = record_process(model, s, (1, 8, 8), range(3), spec("ddim", steps=10), 6)
    ts = save_process(frames, x0s, ts, tmp_path / "p.gif", tmp_path / "s.png", strip_columns=4)
    gif = Image.open(tmp_path / "p.gif")
    assert gif.n_frames == 7  # 6 recorded steps + the final image
    strip = Image.open(tmp_path / "s.png")
    assert strip.size[1] > strip.size[0] / 4 * 2  # 3 rows of 4 columns
    assert ts[0] == 49 and ts[-1] == -1
