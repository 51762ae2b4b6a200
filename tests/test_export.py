"""The export (diffusion/export.py, stages/export.py): the EMA weights as safetensors and a config.json that
rebuild the model with no pickle, made by the real stage from the committed tiny checkpoint; round trips keep the
bytes; an export that does not fit its config, or is not one, is one line naming the file."""
import hashlib
import json
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import ROOT
from safetensors import safe_open
from safetensors.torch import load_file
from test_checkpoint_fixture import assert_same_images

import diffpipe
from diffpipe.core.config import to_dict
from diffpipe.core.errors import PipelineError
from diffpipe.diffusion.checkpoint import load_model, make_checkpoint, read_configs, save_checkpoint
from diffpipe.diffusion.export import checkpoint_provenance, read_export, write_export
from diffpipe.nets.builder import build_model

FIXTURE = ROOT / "tests" / "fixtures" / "tiny_unet.pt"
EXPECTED = ROOT / "tests" / "fixtures" / "tiny_unet_ddim10.npy"  # DDIM 10 steps, eta 1, x0 clamped, seeds 0-3
SAMPLE_REPORT = {"num_images": 4, "sampler": "ddim", "steps": 10, "eta": 1.0, "clip_x0": True, "first_seed": 0,
                 "labels": [], "guidance_scale": None, "pixel_mean": 0.5, "strip_timesteps": [3, -1]}
METRICS = {"fid": 41.5, "kid_mean": 0.02}
CONFIG_KEYS = ["format", "format_version", "weights", "prediction_type", "image_shape", "data_norm", "diffusion",
               "model", "train", "num_parameters", "sampling", "provenance"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The export stage run as dvc.yaml runs it (through the launcher), on the fixture checkpoint."""
    tmp = tmp_path_factory.mktemp("export")
    (tmp / "metrics.json").write_text(json.dumps(METRICS))
    (tmp / "sample.json").write_text(json.dumps(SAMPLE_REPORT))
    proc = subprocess.run([sys.executable, "scripts/launch.py", "stages/export.py", "--checkpoint", str(FIXTURE),
                           "--metrics", str(tmp / "metrics.json"), "--sample-report", str(tmp / "sample.json"),
                           "--out", str(tmp / "export")], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp / "export"


def config_of(folder):
    return json.loads((folder / "config.json").read_text())


def test_the_export_holds_the_ema_weights_and_a_config_that_rebuilds_the_model(exported):
    assert sorted(p.name for p in exported.iterdir()) == ["config.json", "model.safetensors"]
    config = config_of(exported)
    assert list(config) == CONFIG_KEYS
    ckpt = torch.load(FIXTURE, map_location="cpu", weights_only=True)
    assert (config["format"], config["format_version"], config["weights"]) == ("diffpipe-export", 1,
                                                                               "model.safetensors")
    assert config["prediction_type"] == "epsilon"  # diffusion.prediction eps (the fixture's legacy value)
    assert config["image_shape"] == ckpt["image_shape"] == [3, 16, 16] and config["data_norm"] == ckpt["data_norm"]
    assert [to_dict(c) for c in read_configs(config, "")] == [to_dict(c) for c in read_configs(ckpt["config"])]
    assert config["num_parameters"] == 6771
    assert config["sampling"] == {"sampler": "ddim", "steps": 10, "eta": 1.0, "clip_x0": True, "seed": 0,
                                  "labels": [], "guidance_scale": 1.0}
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    assert config["provenance"] == {
        "git_revision": head or None, "checkpoint_md5": hashlib.md5(FIXTURE.read_bytes()).hexdigest(),
        "step": ckpt["step"], "epoch": ckpt["epoch"], "loss": ckpt["loss"],
        "data_md5": None,  # the fixture predates the key
        "metrics": METRICS, "diffpipe_version": diffpipe.__version__,
        "torch_version": torch.__version__.split("+")[0]}
    tensors = load_file(exported / "model.safetensors")
    assert tensors.keys() == ckpt["ema"].keys()  # the EMA weights, not the raw ones nor the optimizer
    assert all(torch.equal(tensors[k], ckpt["ema"][k]) for k in tensors)
    assert not all(torch.equal(ckpt["model"][k], ckpt["ema"][k]) for k in tensors)
    with safe_open(exported / "model.safetensors", "pt") as f:
        assert f.metadata() == {"format": "pt"}


def test_an_export_loads_without_unpickling_and_draws_the_checkpoint_s_images(exported, monkeypatch):
    from_checkpoint = diffpipe.load(FIXTURE, device="cpu").sample(4, sampler="ddim", steps=10, eta=1.0,
                                                                  clip_x0=True, seed=0)

    def refuse(*args, **kwargs):
        raise AssertionError("an export must load without pickle")

    for module, name in ((torch, "load"), (pickle, "load"), (pickle, "loads"), (pickle, "Unpickler")):
        monkeypatch.setattr(module, name, refuse)
    model = diffpipe.load(exported, device="cpu")
    images = model.sample(4)  # the defaults: the sample stage's sampler and seeds, from config.json
    monkeypatch.undo()
    assert images.shape == (4, 16, 16, 3) and images.dtype == np.uint8
    assert np.array_equal(images, from_checkpoint)
    assert_same_images(images, np.load(EXPECTED).transpose(0, 2, 3, 1))  # the committed images of the fixture
    assert model.info["format"] == "export" and model.info["provenance"]["metrics"] == METRICS


def test_loading_and_saving_again_writes_the_same_bytes(exported, tmp_path):
    diffpipe.load(exported, device="cpu").save(tmp_path / "again")
    for name in ("config.json", "model.safetensors"):
        assert (tmp_path / "again" / name).read_bytes() == (exported / name).read_bytes(), name
    diffpipe.load(FIXTURE, device="cpu").save(tmp_path / "from_checkpoint")  # the same weights, other provenance
    assert (tmp_path / "from_checkpoint" / "model.safetensors").read_bytes() == \
        (exported / "model.safetensors").read_bytes()


def edited(exported, tmp_path, config_edit=None, tensors_edit=None):
    folder = tmp_path / "edited"
    shutil.copytree(exported, folder)
    if config_edit is not None:
        config = config_of(folder)
        config_edit(config)
        (folder / "config.json").write_text(json.dumps(config))
    if tensors_edit is not None:
        from safetensors.torch import save_file
        tensors = load_file(folder / "model.safetensors")
        tensors_edit(tensors)
        save_file(tensors, folder / "model.safetensors")
    return folder


def set_key(path, value):
    def edit(config):
        node = config
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value
    return edit


@pytest.mark.parametrize("config_edit, tensors_edit, message", [
    (set_key(("model", "unet", "t_emb_dim"), 16), None,
     r"model\.safetensors: its tensors do not match the network config\.json describes: \d+ of another shape "
     r"\(e\.g\. '[\w.]+': \[\d+(, \d+)*\] in the file, \[\d+(, \d+)*\] in the network\)$"),
    (None, lambda t: t.pop(sorted(t)[0]),
     r"model\.safetensors: its tensors do not match the network config\.json describes: 1 missing \(e\.g\. '"),
    (None, lambda t: t.update(extra=torch.zeros(2)),
     r"model\.safetensors: its tensors do not match the network config\.json describes: 1 unexpected \(e\.g\. "
     r"'extra'\)$"),
    (set_key(("format_version",), 2), None, r"config\.json: format_version 2 is not one this diffpipe 0\.1\.0 reads"),
    (set_key(("prediction_type",), "v_prediction"), None,
     r"config\.json: prediction_type 'v_prediction' does not match diffusion\.prediction 'eps' \(prediction_type "
     r"'epsilon'\)$"),
    (set_key(("model", "arch"), "transformer"), None,
     r"config\.json: params key `model\.arch` must be one of \['unet', 'resunet'\], got 'transformer'$"),
    (set_key(("image_shape",), [3, 16]), None, r"config\.json: image_shape must be \[C, H, W\]"),
    (set_key(("format",), "diffusers"), None, r"config\.json: not a diffpipe export config"),
    (lambda c: c.pop("diffusion"), None, r"config\.json: lacks \['diffusion'\]$"),
], ids=["other-network", "missing-tensor", "extra-tensor", "newer-format", "v-prediction", "unknown-arch",
        "bad-shape", "foreign-format", "missing-section"])
def test_a_bad_export_is_one_line_naming_the_file(exported, tmp_path, config_edit, tensors_edit, message):
    folder = edited(exported, tmp_path, config_edit, tensors_edit)
    with pytest.raises(PipelineError, match=message) as e:
        diffpipe.load(folder, device="cpu")
    assert "\n" not in str(e.value) and str(e.value).startswith(str(folder))


def test_unreadable_or_missing_export_files_are_one_line_naming_them(exported, tmp_path):
    folder = edited(exported, tmp_path)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(PipelineError, match=r"edited/model\.safetensors: not a readable safetensors file"):
        read_export(folder, torch.device("cpu"))
    weights.unlink()
    with pytest.raises(PipelineError, match=r"edited/model\.safetensors: weights file not found$"):
        read_export(folder, torch.device("cpu"))
    (folder / "config.json").write_text("{not json")
    with pytest.raises(PipelineError, match=r"edited/config\.json: not valid JSON"):
        read_export(folder, torch.device("cpu"))
    (folder / "config.json").unlink()
    with pytest.raises(PipelineError, match=r"edited: not a diffpipe export \(no config\.json in the folder\)"):
        diffpipe.load(folder)


def test_the_training_data_md5_goes_from_the_checkpoint_to_the_export(tmp_path):
    """make_checkpoint records the training data's md5 when given it (the training state's fingerprint), and the
    export carries it; a checkpoint made without it keeps the old keys (and bytes) and still loads."""
    old = load_model(FIXTURE, torch.device("cpu"))
    ckpt = old.checkpoint
    torch.manual_seed(0)
    net = build_model(old.model_cfg, 3, 16)
    net.load_state_dict(ckpt["model"])
    optimizer = torch.optim.Adam(net.parameters())
    describe = dict(diffusion=old.diffusion, model_cfg=old.model_cfg, train_cfg=old.train_cfg,
                    image_shape=(3, 16, 16), norm=old.norm)
    md5 = hashlib.md5(b"the training images").hexdigest()
    with_md5 = make_checkpoint(net, old.model, optimizer, 2, 1, 0.5, **describe, data_md5=md5)
    without = make_checkpoint(net, old.model, optimizer, 2, 1, 0.5, **describe)
    assert list(with_md5) == list(without) + ["data_md5"] and list(without) == list(ckpt)
    save_checkpoint(tmp_path / "new.pt", with_md5)
    model = diffpipe.load(tmp_path / "new.pt", device="cpu")
    assert model.info["provenance"]["data_md5"] == md5 and model.info["format"] == "checkpoint"
    loaded = load_model(tmp_path / "new.pt", torch.device("cpu"))
    write_export(tmp_path / "export", loaded, checkpoint_provenance(tmp_path / "new.pt", loaded))
    assert config_of(tmp_path / "export")["provenance"]["data_md5"] == md5
    assert diffpipe.load(FIXTURE).info["provenance"]["data_md5"] is None
