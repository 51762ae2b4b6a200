"""DistributedDataParallel training under a real torchrun with 2 CPU processes (gloo): it follows the
1-process trajectory, and a 2-process run continued from its saved state ends where an uninterrupted one does."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

WORKER = Path(__file__).resolve().parent / "ddp_worker.py"
LAUNCH = Path(__file__).resolve().parents[1] / "scripts" / "launch.py"


def torchrun(processes: int, out: Path, epochs: int, state: Path) -> dict:
    cmd = [sys.executable, str(LAUNCH), "--processes", str(processes), "--share-cores", str(WORKER), str(out),
           str(epochs), str(state)]  # as the train stage starts: torchrun for 2, in-process for 1
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return torch.load(out, weights_only=False)


def test_two_processes_follow_one_and_resume_exactly(tmp_path):
    one = torchrun(1, tmp_path / "one.pt", 2, tmp_path / "state1")
    two = torchrun(2, tmp_path / "two.pt", 2, tmp_path / "state2")
    assert two["report"]["processes"] == 2 and one["report"]["processes"] == 1
    assert [r["step"] for r in one["step_losses"]] == [r["step"] for r in two["step_losses"]] == list(range(1, 11))
    for a, b in zip(one["step_losses"], two["step_losses"]):  # 2 × batch 4 follows 1 × batch 8
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4)
    assert [e["loss"] for e in two["epoch_losses"]] == pytest.approx([e["loss"] for e in one["epoch_losses"]], rel=1e-4)

    # Resume under DDP: 1 epoch, then the same state continued to 2 epochs, against the uninterrupted run.
    state = tmp_path / "state_resumed"
    torchrun(2, tmp_path / "first.pt", 1, state)
    resumed = torchrun(2, tmp_path / "resumed.pt", 2, state)
    assert resumed["step_losses"] == two["step_losses"]
    assert all(torch.equal(resumed["ema"][k], two["ema"][k]) for k in two["ema"])
    shutil.rmtree(state)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_sampling_matches_cpu_noise_and_shapes():
    """On a GPU: the Philox streams give the CPU's numbers (integer arithmetic; Box–Muller to float round-off),
    and generate() runs the sample stage's path on CUDA."""
    from helpers import TINY_UNET, diffusion_cfg, model_cfg, spec

    from diffpipe.diffusion.generate import generate
    from diffpipe.diffusion.noise import ImageNoise
    from diffpipe.diffusion.schedule import NoiseSchedule
    from diffpipe.nets.builder import build_model

    cpu = ImageNoise(range(1000), (1, 28, 28), "cpu").randn()
    gpu = ImageNoise(range(1000), (1, 28, 28), "cuda").randn().cpu()
    assert torch.allclose(cpu, gpu, atol=1e-5)
    model = build_model(model_cfg(**TINY_UNET), 1, 28).cuda().eval()
    images = generate(model, NoiseSchedule.from_config(diffusion_cfg()).to("cuda"), (1, 28, 28), spec(steps=5), 64, 0,
                      32, progress=False)
    assert images.shape == (64, 1, 28, 28)
