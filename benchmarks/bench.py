"""Speed benchmark of the pipeline's own code: training img/s, sampling img/s, noise draws, Inception
features img/s, peak memory, and 1- vs 2-process scaling.

The "pipeline" column times what the stages run: `training.train()` (the train stage's loop, with its
counter-based noise, EMA and logging) on random images, and `generate.generate()` (the sample stage's
batched DDPM / DDIM with per-image Philox noise). For each network (the MNIST DDPM system's reduced and full
U-Nets, the flowers DDIM system's 64 px network, System A's default) the same run measures a plain fp32
eager baseline (explicit softmax attention instead of SDPA, contiguous layout, for-loop Adam, a host sync
every step, as the source notebook did), so every speed-up is a ratio of two numbers taken minutes apart
on one machine. The noise rows compare one Philox draw for 10,000 images with the generator-per-image
scheme it replaced (one `torch.Generator` and one kernel per image). `--processes 1 2` times `train()` under
`torchrun --standalone --nproc_per_node=k` (DDP; gloo on CPU, NCCL on GPU) at the same global batch.
Needs only torch (+ torch-fidelity for the Inception numbers, skipped without it): no DVC, so it runs on a
bare GPU machine.

    python benchmarks/bench.py                           # everything that fits the device
    python benchmarks/bench.py --networks A-default --processes 1 2
    python benchmarks/bench.py --compile                 # torch.compile training and sampling (GPU:
                                                         # mode reduce-overhead, i.e. CUDA graphs)
    python benchmarks/bench.py --precision fp32 --parts train   # the pipeline in fp32, training only
    python benchmarks/bench.py --tiny --no-append --out DIR      # smallest sizes: checks that it runs
Writes benchmarks/results/<device>-<date>.json and .md, and appends the table to benchmarks/RESULTS.md.
A measurement that fails (out of memory, a compiler error) is a `skipped` row with its error, not the end of
the run. benchmarks/device_check.sh runs this on a GPU machine in several invocations (README there).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from diffpipe.core import distributed  # noqa: E402
from diffpipe.core.config import from_dict, read_yaml  # noqa: E402
from diffpipe.core.params import DiffusionConfig, ModelConfig, SamplerSpec, TrainConfig  # noqa: E402
from diffpipe.diffusion.denoiser import make_eps_fn  # noqa: E402
from diffpipe.diffusion.generate import generate  # noqa: E402
from diffpipe.diffusion.noise import ImageNoise  # noqa: E402
from diffpipe.diffusion.samplers import ddim_sample, ddim_timesteps, ddpm_sample  # noqa: E402
from diffpipe.diffusion.schedule import NoiseSchedule  # noqa: E402
from diffpipe.diffusion.training import diffusion_loss, ema_update, train  # noqa: E402
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
    return from_dict(ModelConfig, {"arch": arch, "num_classes": 0, "unet": unet, "resunet": RESUNET}, "model")


def diffusion_config(num_timesteps: int) -> DiffusionConfig:
    return from_dict(DiffusionConfig, dict(num_timesteps=num_timesteps, schedule="linear", beta_start=1.0e-4,
                                           beta_end=0.02, cosine_s=0.008, max_signal_rate=0.95,
                                           min_signal_rate=0.02, prediction="eps", zero_terminal_snr=False),
                     "diffusion")


ROOT_PARAMS = read_yaml(ROOT / "params.yaml")

NETWORKS = {
    # name: (model config, (C, H, W))
    "A-reduced": (model_config("unet", REDUCED), (1, 28, 28)),
    "A-full": (model_config("unet", FULL), (1, 28, 28)),
    "B-64px": (model_config("resunet", REDUCED), (3, 64, 64)),
    "A-default": (from_dict(ModelConfig, ROOT_PARAMS["model"], "model"), (1, 28, 28)),  # params.yaml's
}


def pipeline_train_config(device, batch: int, fast_precision: bool, compile_: bool, processes: int = 1) -> TrainConfig:
    """params.yaml's train section, sized for timing: no grids, no state, the final weights kept."""
    cfg = dict(ROOT_PARAMS["train"], epochs=2, batch_size=batch, device=device.type, keep="last", grid_images=0,
               checkpoint_every=0, log_every=10_000, channels_last=True, compile=compile_, processes=processes,
               precision="bf16" if fast_precision else "fp32", lr_schedule="constant", warmup_steps=0)
    return from_dict(TrainConfig, cfg, "train")


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


PRECISION = "auto"  # --precision: the pipeline path's autocast; auto = bf16 where bf16_ok, else fp32


def fast_bf16(device) -> bool:
    """Whether the pipeline ("fast") path runs under bf16 autocast (--precision)."""
    return bf16_ok(device) if PRECISION == "auto" else PRECISION == "bf16"


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


def pipeline_train_speed(name, device, batch, steps, compile_, processes: int = 1):
    """`train()` itself for two epochs of batch × steps random images; the second epoch is timed (the first
    warms up kernels and the allocator). Under torchrun every rank calls this; rank 0's numbers count."""
    cfg, shape = NETWORKS[name]
    set_mode(True)
    images = np.random.default_rng(0).integers(0, 256, (batch * steps, *shape), dtype=np.uint8)
    tcfg = pipeline_train_config(device, batch, fast_bf16(device), compile_, processes)
    reset_peak(device)
    result = train(images, diffusion_config(1000), cfg, tcfg, progress=False, log=lambda _: None)
    return {"img_per_s": result.cost["epoch_img_per_s"][-1], "peak_mem_mb": peak_memory_mb(device), "batch": batch,
            "timed_steps": steps, "bf16": tcfg.precision == "bf16", "channels_last": True, "compiled": compile_,
            "processes": result.cost["processes"], "code": "diffpipe.diffusion.training.train"}


def train_speed(name, fast, device, batch, steps, warmup, compile_):
    """Baseline: the source's plain loop, optimizer steps per second × batch after `warmup` untimed steps."""
    if fast:
        return pipeline_train_speed(name, device, batch, steps, compile_)
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
    bf16 = fast and fast_bf16(device)
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


def pipeline_sample_speed(name, device, sampler, batch, timed_steps, compile_):
    """`generate()` itself (the sample stage's code: per-image Philox noise, uint8 output) for the full
    DDPM-1000 / DDIM-50 run, from a run of `timed_steps` steps (every step costs the same: DDPM on a
    `timed_steps`-step schedule, DDIM with S = timed_steps), after an untimed warm-up run."""
    cfg, shape = NETWORKS[name]
    set_mode(True)
    torch.manual_seed(0)
    model = build_model(cfg, shape[0], shape[1]).to(device).eval().requires_grad_(False)
    model = model.to(memory_format=torch.channels_last)
    if compile_:
        model = torch.compile(model, mode="reduce-overhead" if device.type == "cuda" else "default")
    total_steps = 1000 if sampler == "ddpm" else 50
    run_steps = min(total_steps, timed_steps)
    T = run_steps if sampler == "ddpm" else 1000
    schedule = NoiseSchedule.from_config(diffusion_config(T)).to(device)
    spec = SamplerSpec(sampler=sampler, steps=run_steps, eta=1.0, clip_x0=False)
    dtype = torch.bfloat16 if fast_bf16(device) else None
    warm = min(batch, 2000)
    generate(model, schedule, shape, spec, warm, 0, warm, dtype, progress=False)  # warm-up (and compile)
    sync(device)
    reset_peak(device)
    start = time.perf_counter()
    generate(model, schedule, shape, spec, batch, 0, batch, dtype, progress=False)
    sync(device)
    seconds = (time.perf_counter() - start) * total_steps / run_steps
    return {"img_per_s": batch / seconds, "seconds_full_run": seconds, "batch": batch, "steps": total_steps,
            "timed_steps": run_steps, "peak_mem_mb": peak_memory_mb(device), "compiled": compile_,
            "bf16": dtype is not None, "code": "diffpipe.diffusion.generate.generate"}


class GeneratorPerImageNoise:
    """The scheme the Philox streams replaced (kept here only to measure against): one torch.Generator per
    image, one randn call (one kernel launch on a GPU) per image per step."""

    def __init__(self, seeds, image_shape, device):
        self.shape, self.device = tuple(image_shape), device
        self.generators = [torch.Generator(device).manual_seed(int(s)) for s in seeds]

    def randn(self):
        return torch.stack([torch.randn(self.shape, generator=g, device=self.device) for g in self.generators])


def noise_speed(device, n: int = 10_000, shape=(1, 28, 28), repeats: int = 5):
    """One sampling step's noise draw for n images: Philox (ImageNoise) against a generator per image. Median
    of `repeats` draws after one warm-up; `ops` counts the operators one draw dispatches (each a kernel on a
    GPU), by torch.profiler."""
    out = {}
    for name, cls in (("philox", ImageNoise), ("generator_per_image", GeneratorPerImageNoise)):
        noise = cls(range(n), shape, device)
        noise.randn()
        times = []
        for _ in range(repeats):
            sync(device)
            start = time.perf_counter()
            noise.randn()
            sync(device)
            times.append(time.perf_counter() - start)
        with torch.profiler.profile() as prof:
            noise.randn()
        ops = sum(e.count for e in prof.key_averages() if e.key.startswith("aten::"))
        out[name] = {"ms_per_draw": 1e3 * float(np.median(times)), "aten_ops_per_draw": int(ops), "images": n}
    return out


def process_scaling(name, device, batch, steps, processes, compile_):
    """train() img/s under `torchrun --standalone --nproc_per_node=k` for each k, same global batch."""
    rows = {}
    for k in processes:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={k}", __file__,
               "--worker-train", name, "--batch", str(batch), "--steps", str(steps)] + (["--compile"] if compile_ else [])
        proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ))
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode != 0 or not lines:
            rows[k] = {"skipped": f"torchrun exited {proc.returncode}: {proc.stderr.strip()[-300:]}"}
        else:
            rows[k] = json.loads(lines[-1])
        print(json.dumps({f"{name} train, {k} processes": rows[k].get("img_per_s")}), flush=True)
    return rows


def worker_train(args) -> None:
    """Entry point of one torchrun process for `process_scaling`: rank 0 prints the result as JSON."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    world = distributed.world_from_env()
    result = pipeline_train_speed(args.worker_train, device, args.batch, args.steps, args.compile, world.size)
    if world.main:
        print(json.dumps(result), flush=True)
    distributed.close(world)


def sample_speed(name, fast, device, sampler, batch, timed_steps, compile_=False):
    """Baseline: the source's sampler loop with explicit attention; img/s for the full DDPM-1000 / DDIM-50
    run, from `timed_steps` timed network steps (the full run's time is steps × the measured step time)."""
    if fast:
        return pipeline_sample_speed(name, device, sampler, batch, timed_steps, compile_)
    cfg, shape = NETWORKS[name]
    set_mode(False)
    torch.manual_seed(0)
    model = build_model(cfg, shape[0], shape[1]).to(device).eval().requires_grad_(False)
    T = 1000
    schedule = NoiseSchedule.from_config(diffusion_config(T)).to(device)
    eps_fn = make_eps_fn(model, schedule)
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


def inception_speed(device, batch, n, random_weights_ok: bool = False):
    """Inception features img/s with the pipeline's extractor. Without the converted weights file and with
    `random_weights_ok` (--inception-random-weights), the same network with random weights is timed (its speed
    does not depend on the weights' values; the row says so)."""
    try:
        from diffpipe.core.fidelity import inception_skeleton
        from diffpipe.metrics.features import load_extractor
    except Exception as e:  # noqa: BLE001 - torch-fidelity absent on a bare GPU machine
        return {"skipped": f"{type(e).__name__}: {e}"}
    weights = ROOT / "models" / "inception" / "pt_inception_fid.pth"
    if weights.exists():
        extractor, kind = load_extractor(weights, device.type), "converted FID weights"
    elif random_weights_ok:
        torch.manual_seed(0)
        extractor = inception_skeleton().eval().to(device=device, memory_format=torch.channels_last)
        kind = "random (timing only: the weights file is absent)"
    else:
        return {"skipped": f"{weights} missing (run `dvc repro inception_weights`)"}
    images = torch.randint(0, 256, (batch, 3, 28, 28), dtype=torch.uint8, device=device)
    with torch.inference_mode():
        extractor(images)
        sync(device)
        start = time.perf_counter()
        for _ in range(max(1, n // batch)):
            extractor(images)
        sync(device)
    seconds = time.perf_counter() - start
    return {"img_per_s": batch * max(1, n // batch) / seconds, "batch": batch, "weights": kind}


def markdown(results: dict) -> str:
    meta = results["meta"]
    lines = [f"### {meta['device_name']} — {meta['date']}",
             "", f"torch {meta['torch']}, Python {meta['python']}, threads {meta['threads']}; "
             f"{'tiny run' if meta.get('tiny') else 'quick run' if meta['quick'] else 'full run'}; pipeline = the "
             f"stages' own `train()` / `generate()`{', torch.compile' if meta.get('compile') else ''}"
             f"{', precision ' + meta['precision'] if meta.get('precision', 'auto') != 'auto' else ''}.", "",
             "| network | measurement | baseline (fp32 eager) | pipeline | speed-up | pipeline peak MB |",
             "|---|---|---|---|---|---|"]
    for net, rows in results["networks"].items():
        for key, pair in rows.items():
            base, fast = pair["baseline"], pair["fast"]
            if "img_per_s" not in fast:
                if "skipped" in fast:
                    lines.append(f"| {net} | {key} | skipped: {fast['skipped']} | | | |")
                continue
            b = base.get("img_per_s")
            lines.append(f"| {net} | {key} img/s | {b:.3g} | {fast['img_per_s']:.3g} | "
                         f"{fast['img_per_s'] / b:.2f}× | {fast.get('peak_mem_mb', 0):.0f} |" if b else
                         f"| {net} | {key} img/s | – | {fast['img_per_s']:.3g} | – | {fast.get('peak_mem_mb', 0):.0f} |")
    noise = results.get("noise")
    if noise:
        ph, gen = noise["philox"], noise["generator_per_image"]
        lines.append(f"| noise, {ph['images']:,} images | one sampling step's draw, ms (operators dispatched) | "
                     f"{gen['ms_per_draw']:.1f} ({gen['aten_ops_per_draw']:,}) generator per image | "
                     f"{ph['ms_per_draw']:.1f} ({ph['aten_ops_per_draw']:,}) Philox | "
                     f"{gen['ms_per_draw'] / ph['ms_per_draw']:.2f}× time, "
                     f"{gen['aten_ops_per_draw'] / ph['aten_ops_per_draw']:.0f}× fewer operators | – |")
    for name, rows in (results.get("processes") or {}).items():
        one = rows.get("1", rows.get(1, {})).get("img_per_s")
        for k, row in rows.items():
            if "img_per_s" in row:
                ratio = f"{row['img_per_s'] / one:.2f}× vs 1" if one else "–"
                lines.append(f"| {name} | train img/s, torchrun {k} process(es), global batch {row['batch']} | – | "
                             f"{row['img_per_s']:.3g} | {ratio} | {row.get('peak_mem_mb', 0):.0f} |")
            else:
                lines.append(f"| {name} | train, {k} processes | skipped: {row['skipped']} | | | |")
    inc = results.get("inception", {})
    if "img_per_s" in inc:
        weights = "" if inc.get("weights", "converted FID weights") == "converted FID weights" else ", random weights"
        lines.append(f"| Inception-v3 | features img/s (batch {inc['batch']}{weights}) | – | {inc['img_per_s']:.3g} "
                     "| – | – |")
    elif inc:
        lines.append(f"| Inception-v3 | features | skipped: {inc['skipped']} | | | |")
    return "\n".join(lines) + "\n"


def measured(fn, *args):
    """One measurement; its failure (out of memory, a compiler error) is recorded as a skipped row."""
    try:
        return fn(*args)
    except Exception as e:  # noqa: BLE001 - the rest of the run still counts
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        first = (str(e).strip().splitlines() or [""])[0][:300]
        print(json.dumps({"failed": f"{fn.__name__}{args[:1]}", "error": f"{type(e).__name__}: {first}"}), flush=True)
        return {"skipped": f"{type(e).__name__}: {first}"}


def main() -> None:
    global PRECISION
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer timed steps")
    ap.add_argument("--tiny", action="store_true", help="the smallest sizes (a dry run's check that it runs)")
    ap.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                    help="the pipeline path's precision (auto: bf16 on CUDA and bf16-capable CPUs)")
    ap.add_argument("--parts", nargs="+", choices=["train", "sample", "noise", "inception"],
                    default=["train", "sample", "noise", "inception"], help="what to measure")
    ap.add_argument("--inception-random-weights", action="store_true",
                    help="time the Inception network with random weights when the weights file is absent")
    ap.add_argument("--no-append", action="store_true", help="do not append the table to benchmarks/RESULTS.md")
    ap.add_argument("--networks", nargs="*", default=None)
    ap.add_argument("--compile", action="store_true", help="torch.compile the fast path (GPU)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--render", metavar="JSON", help="only print the markdown table of a saved results file")
    ap.add_argument("--processes", nargs="*", type=int, default=[],
                    help="also time train() under torchrun with these process counts (e.g. 1 2)")
    ap.add_argument("--noise-images", type=int, default=10_000, help="images in the noise-draw comparison")
    ap.add_argument("--worker-train", metavar="NETWORK", help=argparse.SUPPRESS)  # one torchrun process
    ap.add_argument("--batch", type=int, default=128, help=argparse.SUPPRESS)
    ap.add_argument("--steps", type=int, default=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker_train:
        worker_train(args)
        return
    if args.render:
        print(markdown(json.loads(Path(args.render).read_text())), end="")
        return
    PRECISION = args.precision
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cpu = device.type == "cpu"
    train_batch = 128
    train_steps, warmup = (3, 1) if cpu else (30 if args.quick else 100, 10)
    sample_batch = 128 if cpu else 10000
    sample_steps = 2 if cpu else (50 if args.quick else 1000)
    inception_batch, inception_n = (50, 100) if cpu else (500, 10000)
    if args.tiny:
        train_batch, train_steps, warmup, sample_batch, sample_steps = 8, 2, 1, 8, 2
        inception_batch, inception_n = 2, 2
        args.noise_images = min(args.noise_images, 64)
    results = {"meta": {
        "device_name": torch.cuda.get_device_name() if not cpu else f"CPU ({platform.processor() or platform.machine()})",
        "device": device.type, "torch": torch.__version__, "python": platform.python_version(),
        "threads": torch.get_num_threads(), "date": dt.date.today().isoformat(), "quick": args.quick,
        "compile": args.compile, "cpu_count": os.cpu_count(), "tiny": args.tiny, "precision": args.precision,
        "parts": args.parts, "cuda": torch.version.cuda},
        "networks": {}}
    for net in args.networks or list(NETWORKS):
        rows = {}
        batch = train_batch if net != "B-64px" else min(train_batch, 64)
        if "train" in args.parts:
            rows["train"] = {mode: measured(train_speed, net, mode == "fast", device, batch, train_steps, warmup,
                                            args.compile)
                             for mode in ("baseline", "fast")}
        for sampler in ("ddim50", "ddpm1000") if "sample" in args.parts else ():
            sb = sample_batch if net != "B-64px" else min(sample_batch, 1000)
            rows[f"sample {sampler}"] = {mode: measured(sample_speed, net, mode == "fast", device, sampler[:4], sb,
                                                        sample_steps, args.compile)
                                         for mode in ("baseline", "fast")}
        results["networks"][net] = rows
        print(json.dumps({net: {k: {m: round(v[m].get("img_per_s", 0), 2) for m in v} for k, v in rows.items()}}),
              flush=True)
    if "noise" in args.parts:
        results["noise"] = noise_speed(device, args.noise_images)
        print(json.dumps({"noise": results["noise"]}), flush=True)
    if args.processes:
        net = (args.networks or ["A-default"])[0]
        results["processes"] = {net: process_scaling(net, device, train_batch if net != "B-64px" else 64,
                                                     max(train_steps, 4), args.processes, args.compile)}
    if "inception" in args.parts:
        results["inception"] = measured(inception_speed, device, inception_batch, inception_n,
                                        args.inception_random_weights)
    set_mode(True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{device.type}-{results['meta']['date']}"
    (out / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    table = markdown(results)
    (out / f"{stem}.md").write_text(table)
    if not args.no_append:
        with open(ROOT / "benchmarks" / "RESULTS.md", "a") as f:
            f.write("\n" + table)
    print(table)


if __name__ == "__main__":
    main()
