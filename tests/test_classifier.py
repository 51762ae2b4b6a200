"""The digit classifier (a small CNN), its self-describing checkpoint, `classify`, its stage, and the
in-domain metrics evaluate computes with it (Frechet distance in its features, class histogram, confidence)."""
from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
import torch
import yaml

from helpers import ROOT, classifier_cfg

from diffpipe.classifier.checkpoint import load_classifier, save_classifier
from diffpipe.classifier.predict import accuracy, classify
from diffpipe.classifier.training import train_classifier
from diffpipe.core.errors import PipelineError
from diffpipe.metrics import classes

TINY = dict(widths=[8, 16], feature_dim=16, epochs=2, batch_size=32, lr=1.0e-2, seed=0)


def toy_set(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Three separable classes of noisy 8x8 images: a bright top, bottom or left half."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    images = rng.integers(0, 60, (n, 1, 8, 8))
    for i, c in enumerate(labels):
        rows, cols = {0: (slice(0, 4), slice(None)), 1: (slice(4, 8), slice(None)), 2: (slice(None), slice(0, 4))}[c]
        images[i, 0, rows, cols] += 150
    return images.astype(np.uint8), labels.astype(np.int64)


@pytest.fixture(scope="module")
def toy():
    train_x, train_y = toy_set(300, 0)
    test_x, test_y = toy_set(120, 1)
    result = train_classifier(train_x, train_y, 3, classifier_cfg(**TINY), torch.device("cpu"))
    return result, (train_x, train_y), (test_x, test_y)


def test_the_classifier_learns_a_separable_toy_task(toy):
    result, _, (test_x, test_y) = toy
    held_out, per_class = accuracy(result.model, test_x, test_y, 50)
    assert held_out >= 0.95, held_out
    assert len(per_class) == 3 and min(per_class) >= 0.9
    assert result.steps == 2 * math.ceil(300 / 32) and result.epoch_losses[1] < result.epoch_losses[0]


def test_training_is_deterministic_given_the_seed(toy):
    result, (x, y), _ = toy
    again = train_classifier(x, y, 3, classifier_cfg(**TINY), torch.device("cpu"))
    for (name, a), b in zip(result.model.state_dict().items(), again.model.state_dict().values()):
        assert torch.equal(a, b), name
    other = train_classifier(x, y, 3, classifier_cfg(**{**TINY, "seed": 1}), torch.device("cpu"))
    assert not torch.equal(other.model.head.weight, result.model.head.weight)


def test_classify_gives_probabilities_and_penultimate_features(toy):
    result, _, (x, _) = toy
    probs, features = classify(result.model, x, 7)  # batches of 7: the last one short
    assert probs.shape == (120, 3) and features.shape == (120, 16) and probs.dtype == np.float64
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-9)
    whole, _ = classify(result.model, x, 120)
    np.testing.assert_allclose(probs, whole, atol=1e-6)
    with pytest.raises(PipelineError, match=r"trained on \(C, H, W\) = \(1, 8, 8\) images, got \(1, 9, 9\)"):
        classify(result.model, np.zeros((2, 1, 9, 9), np.uint8), 2)


def test_checkpoint_is_self_describing_and_refuses_corrupt_files(toy, tmp_path):
    result, _, (x, _) = toy
    path = tmp_path / "classifier.pt"
    save_classifier(path, result.model, (8, 16), 0.97)
    raw = torch.load(path, weights_only=True)
    assert raw["widths"] == [8, 16] and raw["num_classes"] == 3 and raw["image_shape"] == [1, 8, 8]
    loaded = load_classifier(path, "cpu")
    assert loaded.accuracy == 0.97 and loaded.num_classes == 3 and loaded.image_shape == (1, 8, 8)
    np.testing.assert_array_equal(classify(loaded.model, x, 50)[0], classify(result.model, x, 50)[0])
    save_classifier(tmp_path / "again.pt", result.model, (8, 16), 0.97)
    assert (tmp_path / "again.pt").read_bytes() == path.read_bytes()  # same model, same bytes (DVC cache)

    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[:1000])
    for bad, message in ((truncated, "not a readable classifier"), (tmp_path / "absent.pt", "classifier not found")):
        with pytest.raises(PipelineError, match=message) as excinfo:
            load_classifier(bad, "cpu")
        assert "\n" not in str(excinfo.value) and str(excinfo.value).startswith(str(bad))
    torch.save({"format": "something else"}, tmp_path / "foreign.pt")
    with pytest.raises(PipelineError, match="not a diffpipe classifier"):
        load_classifier(tmp_path / "foreign.pt", "cpu")
    torch.save({**raw, "widths": [8, 32]}, tmp_path / "mismatch.pt")
    with pytest.raises(PipelineError, match="not a usable classifier") as excinfo:
        load_classifier(tmp_path / "mismatch.pt", "cpu")
    assert "\n" not in str(excinfo.value)
    raw["state"]["head.bias"][0] = float("nan")
    torch.save(raw, tmp_path / "nan.pt")
    with pytest.raises(PipelineError, match="not finite"):
        load_classifier(tmp_path / "nan.pt", "cpu")


def test_image_too_small_for_the_blocks_is_a_config_error():
    with pytest.raises(PipelineError, match=r"`classifier.widths` has 4 blocks"):
        train_classifier(*toy_set(10, 0), 3, classifier_cfg(**{**TINY, "widths": [4, 4, 4, 4]}), torch.device("cpu"))


# ---- in-domain metrics --------------------------------------------------------------------------------

def test_frechet_distance_in_classifier_features(toy):
    result, (train_x, _), (test_x, _) = toy
    _, a = classify(result.model, test_x, 60)
    _, b = classify(result.model, train_x[:120], 60)
    _, shifted = classify(result.model, 255 - test_x, 60)  # inverted images: far from the data
    assert abs(classes.fd_classifier(a, a)) < 1e-6
    same_data = classes.fd_classifier(a, b)
    assert classes.fd_classifier(a, shifted) > 10 * same_data > 0


def test_class_metrics_of_a_known_histogram():
    # 10 samples over 4 classes, predicted 0,0,0,0,0,1,1,1,2,2 (none of class 3); top probabilities 0.97 or 0.6
    probs = np.zeros((10, 4))
    for i, c in enumerate([0, 0, 0, 0, 0, 1, 1, 1, 2, 2]):
        top = 0.6 if i % 2 else 0.97
        probs[i] = (1 - top) / 3
        probs[i, c] = top
    found = classes.class_metrics(probs, np.full(4, 0.25), confidence=0.9)
    assert found["class_max_deviation"] == pytest.approx(0.25)  # |0.5 - 0.25| and |0 - 0.25|
    expected = -(0.5 * math.log(0.5) + 0.3 * math.log(0.3) + 0.2 * math.log(0.2))
    assert found["class_entropy"] == pytest.approx(expected)
    assert found["class_entropy_data"] == pytest.approx(math.log(4))
    assert found["confident_fraction"] == pytest.approx(0.5)
    assert found["histogram"]["3"] == {"generated": 0.0, "data": 0.25}
    assert classes.entropy_nats(np.array([1.0, 0.0])) == 0.0


# ---- the stages ---------------------------------------------------------------------------------------

def tiny_params(tmp_path, **evaluate):
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    data["prepare"]["num_classes"] = 3
    data["classifier"].update(TINY, epochs=1, device="cpu")
    data["evaluate"].update(num_real=12, batch_size=12, kid_subset_size=6, kid_subsets=5, device="cpu", **evaluate)
    data["sample"]["num_images"] = 12
    data["sweep"].update(kid_subset_size=2)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def stage_run(tmp_path_factory):
    """The classifier stage as dvc runs it, on 300 toy training images and 60 held-out ones."""
    tmp = tmp_path_factory.mktemp("classifier_stage")
    (train_x, train_y), (ref_x, ref_y) = toy_set(300, 0), toy_set(60, 1)
    for name, array in (("train", train_x), ("train_labels", train_y), ("ref", ref_x), ("ref_labels", ref_y)):
        np.save(tmp / f"{name}.npy", array)
    cmd = [sys.executable, "scripts/launch.py", "stages/classifier.py", "--train", tmp / "train.npy",
           "--train-labels", tmp / "train_labels.npy", "--reference", tmp / "ref.npy", "--reference-labels", tmp / "ref_labels.npy", "--params", tiny_params(tmp),
           "--out", tmp / "out" / "classifier.pt", "--metrics", tmp / "out" / "metrics.json",
           "--report", tmp / "out" / "report.json", "--cost", tmp / "out" / "cost.json"]
    proc = subprocess.run([str(c) for c in cmd], cwd=ROOT, capture_output=True, text=True)
    return tmp, cmd, proc


def test_classifier_stage_writes_its_outputs_and_accuracy(stage_run):
    tmp, _, proc = stage_run
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((tmp / "out" / "metrics.json").read_text())
    assert list(metrics) == ["accuracy"] and 0.0 <= metrics["accuracy"] <= 1.0
    report = json.loads((tmp / "out" / "report.json").read_text())
    assert report["num_train"] == 300 and report["num_classes"] == 3 and report["steps"] == math.ceil(300 / 32)
    assert load_classifier(tmp / "out" / "classifier.pt", "cpu").accuracy == metrics["accuracy"]
    assert json.loads((tmp / "out" / "cost.json").read_text())["train_s"] > 0


def test_classifier_stage_refuses_a_bad_label_in_one_line(stage_run):
    tmp, cmd, _ = stage_run
    labels = np.load(tmp / "train_labels.npy")
    labels[41] = 3  # prepare.num_classes is 3
    np.save(tmp / "bad_labels.npy", labels)
    cmd = [str(c) for c in cmd]
    cmd[cmd.index("--train-labels") + 1] = str(tmp / "bad_labels.npy")
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"error: {tmp / 'bad_labels.npy'}: row 42: label 3 is outside 0-2 (params key `prepare.num_classes` is 3)"]


def load_evaluate_stage():
    spec = importlib.util.spec_from_file_location("evaluate_stage", ROOT / "stages" / "evaluate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("inputs", ["classifier", "images", "none"], ids=["with classifier", "images only", "without"])
def test_evaluate_with_and_without_the_classifier(stage_run, monkeypatch, tmp_path, inputs):
    """The evaluate stage's own main(), Inception replaced by random features and its FID by a cheap stand-in
    (a 2048-d FID costs seconds; tests/test_inception.py checks the real one); the in-domain part and the
    data-copying check are real (in the classifier's features, or in pixels with the images alone)."""
    stage_dir = stage_run[0]
    evaluate = load_evaluate_stage()
    rng = np.random.default_rng(0)
    monkeypatch.setattr(evaluate.features, "extract_features",
                        lambda images, *a, **k: rng.normal(size=(len(images), 2048)))
    monkeypatch.setattr(evaluate.scores, "fid_from_features", lambda a, b: float(((a.mean(0) - b.mean(0)) ** 2).sum()))
    for name in ("ref_features", "train_features"):
        np.save(tmp_path / f"{name}.npy", rng.normal(size=(12, 2048)))
    samples, _ = toy_set(12, 2)
    np.save(tmp_path / "samples.npy", samples)
    argv = ["evaluate.py", "--samples", tmp_path / "samples.npy", "--reference-features", tmp_path / "ref_features.npy",
            "--train-features", tmp_path / "train_features.npy", "--weights", "unused.pth",
            "--params", tiny_params(tmp_path), "--live", tmp_path / "live", "--report", tmp_path / "report.json",
            "--cost", tmp_path / "cost.json"]
    if inputs != "none":
        argv += ["--reference-images", stage_dir / "ref.npy", "--train-images", stage_dir / "train.npy",
                 "--copies", tmp_path / "copies.png"]
    if inputs == "classifier":
        argv += ["--classifier", stage_dir / "out" / "classifier.pt", "--train-labels", stage_dir / "train_labels.npy"]
    monkeypatch.setattr(sys, "argv", [str(a) for a in argv])
    evaluate.main()

    metrics = json.loads((tmp_path / "live" / "metrics.json").read_text())
    report = json.loads((tmp_path / "report.json").read_text())
    inception = ["fid", "kid_mean", "kid_std", "fid_floor", "kid_floor_mean", "kid_floor_std", "precision", "recall"]
    copies = ["copy_ct", "copy_close_share", "copy_close_share_held_out"]
    if inputs == "none":
        assert list(metrics) == inception and report["classifier"] is None and report["data_copying"] is None
        assert not (tmp_path / "copies.png").exists()
        return
    assert report["data_copying"]["training_images"] == 300 and report["data_copying"]["cells"] == 1
    assert report["data_copying"]["embedding"] == ("pixels scaled to [0, 1]" if inputs == "images" else
                                                   "the classifier's penultimate features")
    assert 0 <= metrics["copy_close_share"] <= 1 and np.isfinite(metrics["copy_ct"])
    with Image.open(tmp_path / "copies.png") as picture:  # 12 samples above their nearest training images
        assert picture.size == ((12 * 10 + 2) * 7, (2 * 10 + 2) * 7)  # 8-px images, 2-px gaps, x7
    if inputs == "images":
        assert list(metrics) == inception + copies and report["classifier"] is None
        return
    in_domain = ["fd_classifier", "fd_classifier_floor", "class_max_deviation", "class_entropy", "confident_fraction"]
    assert list(metrics) == inception + in_domain + copies
    assert metrics["fd_classifier"] >= 0 and metrics["fd_classifier_floor"] >= 0
    assert 0 <= metrics["class_max_deviation"] <= 1 and 0 <= metrics["confident_fraction"] <= 1
    assert 0 <= metrics["class_entropy"] <= math.log(3) + 1e-9
    assert report["classifier"]["entropy_units"] == "nats" and set(report["classifier"]["histogram"]) == {"0", "1", "2"}
    data_shares = [report["classifier"]["histogram"][c]["data"] for c in "012"]
    np.testing.assert_allclose(data_shares, np.bincount(np.load(stage_dir / "train_labels.npy"), minlength=3) / 300)


def test_evaluate_needs_all_classifier_inputs_together(stage_run, monkeypatch, tmp_path):
    evaluate = load_evaluate_stage()
    np.save(tmp_path / "samples.npy", toy_set(12, 2)[0])
    for name in ("ref_features", "train_features"):
        np.save(tmp_path / f"{name}.npy", np.zeros((12, 2048)))
    argv = ["evaluate.py", "--samples", tmp_path / "samples.npy", "--reference-features", tmp_path / "ref_features.npy",
            "--train-features", tmp_path / "train_features.npy", "--weights", "unused.pth",
            "--params", tiny_params(tmp_path), "--live", tmp_path / "live", "--report", tmp_path / "report.json",
            "--cost", tmp_path / "cost.json", "--classifier", stage_run[0] / "out" / "classifier.pt"]
    monkeypatch.setattr(sys, "argv", [str(a) for a in argv])
    with pytest.raises(PipelineError, match="missing: --reference-images, --train-images, --train-labels"):
        evaluate.main()
