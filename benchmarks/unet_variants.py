"""Training throughput of System A U-Net variants on this machine, for the ablation in docs/ablation.md.

Each variant is the default network of params.yaml with some `model.unet` keys overridden; every row is the
project's training step (eps_fn + diffusion_loss + foreach Adam + EMA lerp) at the default batch size, timed
in one process, one after another, so rows compare as ratios. Quality is not measured here (that needs a
full run per variant: docs/ablation.md says which variants got one).

    python benchmarks/unet_variants.py            # writes benchmarks/results/unet-variants-<date>.md
"""
from __future__ import annotations

import datetime as dt
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from diffpipe.core.config import from_dict, to_dict  # noqa: E402
from diffpipe.core.params import ModelConfig, load_params  # noqa: E402
from diffpipe.diffusion.denoiser import make_eps_fn  # noqa: E402
from diffpipe.diffusion.schedule import NoiseSchedule  # noqa: E402
from diffpipe.diffusion.training import diffusion_loss, ema_update  # noqa: E402
from diffpipe.nets.builder import build_model  # noqa: E402

VARIANTS = {  # name: (model.unet overrides, channels_last)
    "default, contiguous layout": ({}, False),
    "default": ({}, True),
    "no attention": ({"attn_mid": False}, True),
    "attention also at 14x14": ({"attn_down": [True, False], "attn_up": [False, True]}, True),
    "2 layers per down/up block": ({"num_down_layers": 2, "num_up_layers": 2}, True),
    "2 middle layers": ({"num_mid_layers": 2}, True),
    "widths [32, 64, 64]": ({"down_ch": [32, 64, 64], "mid_ch": [64, 128], "up_ch": [128, 64, 32]}, True),
    "widths [32, 64, 128]": ({"down_ch": [32, 64, 128], "mid_ch": [128, 128], "up_ch": [128, 64, 32]}, True),
}


def img_per_s(model_cfg: ModelConfig, schedule: NoiseSchedule, batch: int, channels_last: bool,
              warmup: int = 5, steps: int = 25) -> tuple[float, int]:
    torch.manual_seed(0)
    model = build_model(model_cfg, 1, 28)
    ema = build_model(model_cfg, 1, 28).requires_grad_(False)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, foreach=True)
    eps_fn = make_eps_fn(model, schedule, None)
    x0 = (torch.rand(batch, 1, 28, 28) * 2 - 1).contiguous(memory_format=fmt)

    def step():
        t = torch.randint(0, schedule.num_timesteps, (batch,))
        eps = torch.randn_like(x0)
        loss = diffusion_loss(eps_fn(schedule.q_sample(x0, t, eps), t), eps, "mse")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema_update(ema, model, 0.999)

    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return batch * steps / (time.perf_counter() - start), sum(p.numel() for p in model.parameters())


def main() -> None:
    params = load_params(ROOT / "params.yaml")
    schedule = NoiseSchedule.from_config(params.diffusion)
    base = to_dict(params.model)
    batch = params.train.batch_size
    lines = [f"## {dt.date.today()}: training img/s of U-Net variants (batch {batch}, fp32, 28x28x1)", "",
             f"torch {torch.__version__}, Python {platform.python_version()}, threads {torch.get_num_threads()}, "
             f"{platform.processor() or platform.machine()}", "",
             "| variant | parameters | train img/s | vs default |", "|---|---|---|---|"]
    rows = []
    for name, (overrides, channels_last) in VARIANTS.items():
        cfg = from_dict(ModelConfig, {**base, "unet": {**base["unet"], **overrides}}, "model")
        speed, n = img_per_s(cfg, schedule, batch, channels_last)
        rows.append((name, n, speed))
        print(f"{name}: {speed:.0f} img/s", flush=True)
    default = dict((r[0], r[2]) for r in rows)["default"]
    lines += [f"| {name} | {n / 1e6:.2f} M | {speed:.0f} | {speed / default:.2f}× |" for name, n, speed in rows]
    out = ROOT / "benchmarks" / "results" / f"unet-variants-{dt.date.today()}.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
