"""Corrupted or hostile intermediates are one-line errors naming the file, found before any heavy work."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import ROOT, TINY_UNET, diffusion_cfg, model_cfg, train_cfg

from diffpipe.core.errors import PipelineError
from diffpipe.core.fidelity import load_inception
from diffpipe.core.files import read_image_array
from diffpipe.diffusion.checkpoint import load_model, save_checkpoint
from diffpipe.diffusion.training import train
from diffpipe.metrics.features import read_features


def npy(path, array):
    np.save(path, array)
    return path


def test_reference_features_missing_truncated_nan_or_misshapen(tmp_path):
    with pytest.raises(PipelineError, match=r"ref\.npy: file not found; re-run the reference_features stage"):
        read_features(tmp_path / "ref.npy")
    good = npy(tmp_path / "good.npy", np.ones((4, 2048)))
    truncated = tmp_path / "truncated.npy"
    truncated.write_bytes(good.read_bytes()[:5000])
    with pytest.raises(PipelineError, match=r"truncated\.npy: not a readable \.npy array"):
        read_features(truncated)
    with pytest.raises(PipelineError, match=r"nan\.npy: 4 feature rows are not finite"):
        read_features(npy(tmp_path / "nan.npy", np.full((4, 2048), np.nan)))
    with pytest.raises(PipelineError, match=r"small\.npy: expected float \(N, 2048\)"):
        read_features(npy(tmp_path / "small.npy", np.ones((4, 10))))
    with pytest.raises(PipelineError, match=r"good\.npy has 4 feature rows but evaluate\.num_real is 5"):
        read_features(good, rows=5)


def test_image_arrays_with_bad_channels_shape_or_no_images(tmp_path):
    for name, shape, match in (("two.npy", (3, 2, 8, 8), "2 channels"), ("wide.npy", (3, 1, 8, 6), "8x6"),
                               ("empty.npy", (0, 1, 8, 8), "no images")):
        with pytest.raises(PipelineError, match=rf"{name}: .*{match}"):
            read_image_array(npy(tmp_path / name, np.zeros(shape, np.uint8)))


@pytest.fixture(scope="module")
def checkpoint():
    images = np.zeros((4, 1, 8, 8), np.uint8)
    return train(images, diffusion_cfg(num_timesteps=20), model_cfg(**TINY_UNET), train_cfg(epochs=1, batch_size=4),
                 progress=False).checkpoint


def test_checkpoint_missing_keys_wrong_shapes_or_non_finite(tmp_path, checkpoint):
    broken = {k: v for k, v in checkpoint.items() if k != "ema"}
    save_checkpoint(tmp_path / "a.pt", broken)
    with pytest.raises(PipelineError, match=r"a\.pt: checkpoint lacks \['ema'\]"):
        load_model(tmp_path / "a.pt", torch.device("cpu"))
    reshaped = dict(checkpoint, ema={**checkpoint["ema"], "conv_in.weight": torch.zeros(3, 3)})
    save_checkpoint(tmp_path / "b.pt", reshaped)
    with pytest.raises(PipelineError, match=r"b\.pt: not a usable checkpoint \(RuntimeError: Error\(s\) in loading"):
        load_model(tmp_path / "b.pt", torch.device("cpu"))
    nan = dict(checkpoint, ema={k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
                                for k, v in checkpoint["ema"].items()})
    save_checkpoint(tmp_path / "c.pt", nan)
    with pytest.raises(PipelineError, match=r"c\.pt: \d+ weight tensors are not finite"):
        load_model(tmp_path / "c.pt", torch.device("cpu"))
    (tmp_path / "d.pt").write_bytes(b"garbage")
    with pytest.raises(PipelineError, match=r"d\.pt: not a readable checkpoint"):
        load_model(tmp_path / "d.pt", torch.device("cpu"))


class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_inception_weights_truncated_or_crafted_are_refused_without_running_them(tmp_path):
    marker = tmp_path / "pwned"
    crafted = tmp_path / "crafted.pth"
    torch.save({"fc.weight": Payload(marker)}, crafted)
    with pytest.raises(PipelineError, match=r"crafted\.pth: SHA-256 .* is not that of the converted Inception weights"):
        load_inception(crafted)
    assert not marker.exists()
    with pytest.raises(PipelineError, match=r"missing\.pth: Inception weights not found"):
        load_inception(tmp_path / "missing.pth")


def test_a_stage_reports_a_corrupted_input_in_one_line(tmp_path):
    features = tmp_path / "ref.npy"
    features.write_bytes(b"\x93NUMPY truncated")
    samples = npy(tmp_path / "samples.npy", np.zeros((4, 1, 8, 8), np.uint8))
    proc = subprocess.run([sys.executable, str(ROOT / "stages" / "evaluate.py"), "--samples", samples,
                           "--reference-features", features, "--train-features", features, "--weights", tmp_path / "w.pth",
                           "--params", ROOT / "params.yaml", "--live", tmp_path / "live",
                           "--report", tmp_path / "r.json", "--cost", tmp_path / "c.json"], capture_output=True, text=True)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {features}: not a readable .npy array"), proc.stderr


def test_a_garbled_dvclive_history_is_one_error_naming_the_file(tmp_path):
    from diffpipe.core.tracking import truncate_history

    history = tmp_path / "live" / "plots" / "metrics" / "train" / "loss.tsv"
    history.parent.mkdir(parents=True)
    history.write_text("step\tloss\n2\t0.5\n4\t0.4\n6\t0.3\n")
    truncate_history(tmp_path / "live", 4)
    assert history.read_text() == "step\tloss\n2\t0.5\n4\t0.4\n"
    history.write_text("step\tloss\n2\t0.5\nxx\t0.4\n")
    with pytest.raises(PipelineError, match=r"loss\.tsv: line 3 has no integer step"):
        truncate_history(tmp_path / "live", 4)
