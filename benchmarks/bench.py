"""Speed benchmark: training img/s, sampling img/s, Inception feature img/s and peak memory.

For each network (the MNIST DDPM system's reduced and full U-Nets, the flowers DDIM system's 64 px network) it measures the project's fast path and,
in the same run, a plain fp32 eager baseline (explicit softmax attention instead of SDPA, contiguous
layout, for-loop Adam, a host sync every step, as the source notebook did), so every speed-up is a ratio
of two numbers taken minutes apart on one machine. Needs only torch (+ torch-fidelity for the Inception
numbers, skipped without it): no DVC, so it runs on a bare GPU machine.

    python benchmarks/bench.py                 # everything that fits the device
    python benchmarks/bench.py --quick         # fewer timed steps (CPU smoke run)
Writes benchmarks/results/<device>-<date>.json and .md, and appends the table to benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import resource
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from diffpipe.core.config import from_dict  # noqa: E402
from diffpipe.core.params import DiffusionConfig, ModelConfig  # noqa: E402
from diffpipe.diffusion.denoiser import make_eps_fn  # noqa: E402
from diffpipe.diffusion.noise import ImageNoise  # noqa: E402
from diffpipe.diffusion.samplers import ddim_sample, ddim_timesteps, ddpm_sample  # noqa: E402
from diffpipe.diffusion.schedule import NoiseSchedule  # noqa: E402
from diffpipe.diffusion.training import diffusion_loss, ema_update  # noqa: E402
from diffpipe.nets.builder import build_model  # noqa: E402
from diffpipe.nets.unet import SelfAttention  # noqa: E402

# The networks measured: the MNIST DDPM source's reduced and full U-Nets, the flowers system's 64 px one.
REDUCED = dict(down_ch=[32, 64, 128], mid_ch=[128, 128], up_ch=[128, 64, 16], down_sample=[True, True],
               num_down_layers=1, num_mid_layers=1, num_up_layers=1, t_emb_dim=128, norm_groups=8, num_heads=4,
               attn_down=[True, True], attn_mid=True, attn_up=[True, True])
FULL = dict(REDUCED, down_ch=[32, 64, 128, 256], mid_ch=[256, 256, 128], up_ch=[256, 128, 64, 16],
            down_sample=[True, True, False], num_down_layers=2, num_mid_layers=2, num_up_layers=2,
            attn_down=[True, True, True], attn_up=[True, True, True])
RESUNET = dict(widths=[32, 64, 96, 128], block_depth=2, embedding_dims=32, embedding_min_frequency=1.0,
               embedding_max_frequency=1000.0)


def model_config(arch: str, unet: dict) -> ModelConfig:
    return from_dict(ModelConfig, {"arch": arch, "unet": unet, "resunet": RESUNET}, "model")


def diffusion_config(num_timesteps: int) -> DiffusionConfig:
    return from_dict(DiffusionConfig, dict(num_timesteps=num_timesteps, schedule="linear", beta_start=1.0e-4,
                                           beta_end=0.02, cosine_s=0.008, max_signal_rate=0.95,
                                           min_signal_rate=0.02), "diffusion")


NETWORKS = {
    # name: (model config, (C, H, W))
    "A-reduced": (model_config("unet", REDUCED), (1, 28, 28)),
    "A-full": (model_config("unet", FULL), (1, 28, 28)),
    "B-64px": (model_config("resunet", REDUCED), (3, 64, 64)),
}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def peak_memory_mb(device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process peak RSS (Linux: KiB)


def reset_peak(device):
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()


def bf16_ok(device) -> bool:
    """bf16 autocast on CUDA, and on CPUs with native bf16 (AVX512-BF16 / AMX) where oneDNN is fast."""
    if device.type == "cuda":
        return True
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def set_mode(fast: bool):
    SelfAttention.use_sdpa = fast


def train_speed(name, fast, device, batch, steps, warmup, compile_):
    """Optimizer steps per second × batch, after `warmup` untimed steps."""
    cfg, shape = NETWORKS[name]
    set_mode(fast)
    torch.manual_seed(0)
    model = build_model(cfg, shape[0], shape[1]).to(device)
    ema = build_model(cfg, shape[0], shape[1]).to(device).requires_grad_(False)
    schedule = NoiseSchedule.from_config(diffusion_config(1000)).to(device)
    channels_last = fast
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, foreach=fast)
    bf16 = fast and bf16_ok(device)
    forward = torch.compile(model) if (fast and compile_) else model
    eps_fn = make_eps_fn(forward, schedule, torch.bfloat16 if bf16 else None)
    data = torch.randint(0, 256, (batch * 4, *shape), dtype=torch.uint8, device=device)

    def step(i):
        x0 = (data[(i % 4) * batch:(i % 4 + 1) * batch].float() / 127.5 - 1).contiguous(memory_format=fmt)
        t = torch.randint(0, 1000, (batch,), device=device)
        eps = torch.randn_like(x0)
        loss = diffusion_loss(eps_fn(schedule.q_sample(x0, t, eps), t), eps, "mse")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if fast:
            ema_update(ema, model, 0.999)
        else:  # the source's habit: a per-parameter EMA loop and reading the loss every step
            with torch.no_grad():
                for pe, p in zip(ema.parameters(), model.parameters()):
                    pe.mul_(0.999).add_(p, alpha=0.001)
            loss.item()

    for i in range(warmup):
        step(i)
    sync(device)
    reset_peak(device)
    start = time.perf_counter()
    for i in range(steps):
        step(i)
    sync(device)
    seconds = time.perf_counter() - start
    return {"img_per_s": batch * steps / seconds, "peak_mem_mb": peak_memory_mb(device), "batch": batch,
            "timed_steps": steps, "bf16": bf16, "channels_last": channels_last, "compiled": bool(fast and compile_)}


def sample_speed(name, fast, device, sampler, batch, timed_steps):
    """Sampler img/s for the full DDPM-1000 / DDIM-50 run, from `timed_steps` timed network steps
    (the steps are identical in cost, so the full run's time is steps × the measured step time)."""
    cfg, shape = NETWORKS[name]
    set_mode(fast)
    torch.manual_seed(0)
    model = build_model(cfg, shape[0], shape[1]).to(device).eval().requires_grad_(False)
    if fast:
        model = model.to(memory_format=torch.channels_last)
    T = 1000
    schedule = NoiseSchedule.from_config(diffusion_config(T)).to(device)
    eps_fn = make_eps_fn(model, schedule, torch.bfloat16 if (fast and bf16_ok(device)) else None)
    total_steps = T if sampler == "ddpm" else 50
    run_steps = min(total_steps, timed_steps)
    if sampler == "ddpm":
        short = NoiseSchedule.from_config(diffusion_config(run_steps)).to(device)
        fn = lambda: ddpm_sample(eps_fn, short, ImageNoise(range(batch), shape, device))  # noqa: E731
    else:
        fn = lambda: ddim_sample(eps_fn, schedule, ImageNoise(range(batch), shape, device), ddim_timesteps(T, run_steps), eta=0.0)  # noqa: E731
    fn() if device.type == "cuda" else None  # warm-up (kernels, allocator)
    sync(device)
    reset_peak(device)
    start = time.perf_counter()
    fn()
    sync(device)
    seconds = (time.perf_counter() - start) * total_steps / run_steps
    return {"img_per_s": batch / seconds, "batch": batch, "steps": total_steps, "timed_steps": run_steps,
            "peak_mem_mb": peak_memory_mb(device)}


def inception_speed(device, batch, n):
    try:
        from diffpipe.metrics.features import load_extractor
    except Exception as e:  # noqa: BLE001 - torch-fidelity absent on a bare GPU machine
        return {"skipped": f"{type(e).__name__}: {e}"}
    weights = ROOT / "models" / "inception" / "pt_inception_fid.pth"
    if not weights.exists():
        return {"skipped": f"{weights} missing (run `dvc repro inception_weights`)"}
    extractor = load_extractor(weights, device.type)
    images = torch.randint(0, 256, (batch, 3, 28, 28), dtype=torch.uint8, device=device)
    with torch.inference_mode():
        extractor(images)
        sync(device)
        start = time.perf_counter()
        for _ in range(max(1, n // batch)):
            extractor(images)
        sync(device)
    seconds = time.perf_counter() - start
    return {"img_per_s": batch * max(1, n // batch) / seconds, "batch": batch}


def markdown(results: dict) -> str:
    meta = results["meta"]
    lines = [f"### {meta['device_name']} — {meta['date']}",
             "", f"torch {meta['torch']}, Python {meta['python']}, threads {meta['threads']}; "
             f"{'quick run' if meta['quick'] else 'full run'}.", "",
             "| network | measurement | baseline (fp32 eager) | fast path | speed-up | fast peak MB |",
             "|---|---|---|---|---|---|"]
    for net, rows in results["networks"].items():
        for key, pair in rows.items():
            base, fast = pair["baseline"], pair["fast"]
            if "img_per_s" not in fast:
                continue
            b = base.get("img_per_s")
            lines.append(f"| {net} | {key} img/s | {b:.3g} | {fast['img_per_s']:.3g} | "
                         f"{fast['img_per_s'] / b:.2f}× | {fast.get('peak_mem_mb', 0):.0f} |" if b else
                         f"| {net} | {key} img/s | – | {fast['img_per_s']:.3g} | – | {fast.get('peak_mem_mb', 0):.0f} |")
    inc = results.get("inception", {})
    if "img_per_s" in inc:
        lines.append(f"| Inception-v3 | features img/s (batch {inc['batch']}) | – | {inc['img_per_s']:.3g} | – | – |")
    elif inc:
        lines.append(f"| Inception-v3 | features | skipped: {inc['skipped']} | | | |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer timed steps")
    ap.add_argument("--networks", nargs="*", default=None)
    ap.add_argument("--compile", action="store_true", help="torch.compile the fast path (GPU)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--render", metavar="JSON", help="only print the markdown table of a saved results file")
    args = ap.parse_args()
    if args.render:
        print(markdown(json.loads(Path(args.render).read_text())), end="")
        return
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cpu = device.type == "cpu"
    train_batch = 128
    train_steps, warmup = (3, 1) if cpu else (30 if args.quick else 100, 10)
    sample_batch = 128 if cpu else 10000
    sample_steps = 2 if cpu else (50 if args.quick else 1000)
    results = {"meta": {
        "device_name": torch.cuda.get_device_name() if not cpu else f"CPU ({platform.processor() or platform.machine()})",
        "device": device.type, "torch": torch.__version__, "python": platform.python_version(),
        "threads": torch.get_num_threads(), "date": dt.date.today().isoformat(), "quick": args.quick},
        "networks": {}}
    for net in args.networks or list(NETWORKS):
        rows = {}
        batch = train_batch if net != "B-64px" else 64
        rows["train"] = {mode: train_speed(net, mode == "fast", device, batch, train_steps, warmup, args.compile)
                         for mode in ("baseline", "fast")}
        for sampler in ("ddim50", "ddpm1000"):
            sb = sample_batch if net != "B-64px" else min(sample_batch, 1000)
            rows[f"sample {sampler}"] = {mode: sample_speed(net, mode == "fast", device, sampler[:4], sb, sample_steps)
                                         for mode in ("baseline", "fast")}
        results["networks"][net] = rows
        print(json.dumps({net: {k: {m: round(v[m].get("img_per_s", 0), 2) for m in v} for k, v in rows.items()}}),
              flush=True)
    results["inception"] = inception_speed(device, 50 if cpu else 500, 100 if cpu else 10000)
    set_mode(True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{device.type}-{results['meta']['date']}"
    (out / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    table = markdown(results)
    (out / f"{stem}.md").write_text(table)
    with open(ROOT / "benchmarks" / "RESULTS.md", "a") as f:
        f.write("\n" + table)
    print(table)


if __name__ == "__main__":
    main()
