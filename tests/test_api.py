"""The public API (`diffpipe.load(...).sample`, `.info`) and the `diffpipe` command: the sample stage's own code
path, so the same settings and seeds give the sample stage's bytes (compared with the real stage run on the
committed tiny checkpoint); bad input is one line naming it (the command: exit code 2); `import diffpipe` loads
no torch."""
import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from helpers import ROOT
from PIL import Image

import diffpipe
from diffpipe import cli
from diffpipe.core.errors import ConfigError
from diffpipe.data.channel_norm import ChannelNorm
from diffpipe.data.pixel_csv import read_pixel_csv
from diffpipe.diffusion.checkpoint import load_model, make_checkpoint, read_configs, save_checkpoint
from diffpipe.diffusion.export import checkpoint_provenance, write_export
from diffpipe.nets.builder import build_model, count_parameters

FIXTURE = ROOT / "tests" / "fixtures" / "tiny_unet.pt"
# the sample stage's settings for the run compared with: its sampler, seeds from 3, batches of 2
STAGE = dict(sampler="ddim", num_images=5, steps=4, eta=1.0, clip_x0=False, batch_size=2, first_seed=3,
             device="cpu", grid_images=5, process_seeds=1, process_frames=2, strip_columns=2)
CONSOLE_SCRIPT = Path(sys.executable).parent / "diffpipe"


@pytest.fixture(scope="module")
def stage_run(tmp_path_factory):
    """The real sample stage, as dvc.yaml runs it (through the launcher), on the fixture checkpoint."""
    tmp = tmp_path_factory.mktemp("sample_stage")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["sample"].update(STAGE)
    params["evaluate"]["kid_subset_size"] = STAGE["num_images"]
    (tmp / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = {k: tmp / name for k, name in (("out", "samples.npy"), ("labels-out", "labels.npy"), ("grid", "grid.png"),
                                         ("report", "sample.json"), ("cost", "cost.json"),
                                         ("process-gif", "process.gif"), ("process-strip", "strip.png"))}
    cmd = [sys.executable, "scripts/launch.py", "stages/sample.py", "--checkpoint", str(FIXTURE),
           "--params", str(tmp / "params.yaml"), *[a for k, v in out.items() for a in (f"--{k}", str(v))]]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp


@pytest.fixture(scope="module")
def model():
    return diffpipe.load(FIXTURE, device="cpu")


def random_checkpoint(path: Path, channels: int, num_classes: int) -> Path:
    """An untrained model of the fixture's U-Net for `channels`-channel images and `num_classes` classes."""
    config = copy.deepcopy(torch.load(FIXTURE, map_location="cpu", weights_only=True)["config"])
    config["model"]["num_classes"] = num_classes
    config["train"]["normalize"] = False
    diffusion, model_cfg, train_cfg = read_configs(config)
    torch.manual_seed(0)
    net = build_model(model_cfg, channels, 16)
    ckpt = make_checkpoint(net, copy.deepcopy(net), torch.optim.Adam(net.parameters()), 0, 0, 0.0, diffusion,
                           model_cfg, train_cfg, (channels, 16, 16), ChannelNorm.identity(channels))
    save_checkpoint(path, ckpt)
    return path


STAGE_SETTINGS = dict(sampler="ddim", steps=4, eta=1.0, clip_x0=False, seed=3)


def test_model_sample_returns_the_sample_stage_bytes(stage_run, model, tmp_path):
    stage = np.load(stage_run / "samples.npy")  # (N, C, H, W)
    images = model.sample(5, **STAGE_SETTINGS)  # in one batch of 5: images do not depend on the batching
    assert images.shape == (5, 16, 16, 3) and images.dtype == np.uint8
    assert np.array_equal(images, stage.transpose(0, 2, 3, 1))
    # the same from the export of that checkpoint, and image i depends on its seed alone
    loaded = load_model(FIXTURE, torch.device("cpu"))
    write_export(tmp_path / "export", loaded, checkpoint_provenance(FIXTURE, loaded))
    exported = diffpipe.load(tmp_path / "export", device="cpu")
    assert np.array_equal(exported.sample(2, **{**STAGE_SETTINGS, "seed": 6}, batch_size=1), images[3:])
    assert not np.array_equal(model.sample(5, **{**STAGE_SETTINGS, "eta": 0.0}), images)  # the settings matter


def test_the_console_script_writes_the_sample_stage_files(stage_run, tmp_path, capsys):
    assert CONSOLE_SCRIPT.is_file(), "the `diffpipe` console script is not installed (pip install -e .)"
    env = {k: v for k, v in os.environ.items() if k != "MKL_DYNAMIC"}
    proc = subprocess.run([str(CONSOLE_SCRIPT), "sample", str(FIXTURE), "-n", "5", "--sampler", "ddim", "--steps",
                           "4", "--eta", "1", "--no-clip-x0", "--seed", "3", "--out", str(tmp_path / "x.npy")],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "x.npy").read_bytes() == (stage_run / "samples.npy").read_bytes()
    # the grid as the stage draws it (its first sample.grid_images images)
    argv = ["sample", str(FIXTURE), "-n", "5", "--steps", "4", "--eta", "1", "--seed", "3", "--out"]
    assert cli.main(argv + [str(tmp_path / "grid.png")]) == 0
    assert (tmp_path / "grid.png").read_bytes() == (stage_run / "grid.png").read_bytes()
    assert "wrote 5 images" in capsys.readouterr().err


def test_the_command_writes_a_folder_of_pngs_a_csv_or_a_grid(tmp_path):
    ckpt = random_checkpoint(tmp_path / "grey.pt", channels=1, num_classes=3)
    common = ["sample", str(ckpt), "-n", "4", "--steps", "2", "--labels", "0", "2", "--guidance-scale", "2"]
    for out in ("a.npy", "b.csv", "pictures", "d.png"):
        assert cli.main(common + ["--out", str(tmp_path / out)]) == 0, out
    images = np.load(tmp_path / "a.npy")
    assert images.shape == (4, 1, 16, 16)
    expected = diffpipe.load(ckpt, device="cpu").sample(4, steps=2, labels=[0, 2], guidance_scale=2.0)
    assert np.array_equal(images, expected.transpose(0, 3, 1, 2))
    pixels, labels = read_pixel_csv(tmp_path / "b.csv")
    assert np.array_equal(pixels, images) and labels.tolist() == [0, 2, 0, 2]
    pngs = sorted((tmp_path / "pictures").iterdir())
    assert [p.name for p in pngs] == ["000000.png", "000001.png", "000002.png", "000003.png"]
    assert np.array_equal(np.stack([np.asarray(Image.open(p)) for p in pngs]), images[:, 0])
    assert Image.open(tmp_path / "d.png").mode == "L"


@pytest.mark.parametrize("argv, message", [
    (["sample", "missing.pt", "--out", "x.png"], r"missing\.pt: not found"),
    (["sample", "{text}", "--out", "x.png"], r"notes\.txt: not a readable checkpoint"),
    (["sample", "{folder}", "--out", "x.png"], r"empty: not a diffpipe export \(no config\.json"),
    (["sample", "{fixture}", "--sampler", "dpm", "--out", "x.png"],
     r"argument --sampler: invalid choice: 'dpm' \(choose from 'ddpm', 'ddim', 'dpmpp_2m', 'dpmpp_2m_sde', 'heun'\)"),
    (["sample", "{fixture}", "-n", "0", "--out", "x.png"], r"-n must be a whole number >= 1, got 0"),
    (["sample", "{fixture}", "-n", "-2", "--out", "x.png"], r"-n must be a whole number >= 1, got -2"),
    (["sample", "{fixture}", "-n", "two", "--out", "x.png"], r"argument -n/--num-images: invalid int value: 'two'"),
    (["sample", "{fixture}", "--out", "x.jpg"], r"--out x\.jpg: unknown output kind '\.jpg'"),
    (["sample", "{fixture}", "--out", "x.csv"], r"--out x\.csv: the pixel CSV format holds 1-channel images"),
    (["sample", "{fixture}", "--steps", "5000", "--out", "x.png"],
     r"argument `steps` \(5000\) must not exceed the model's number of diffusion steps T = 1000"),
    (["sample", "{fixture}", "--eta", "2", "--out", "x.png"], r"argument `eta` must be in \[0, 1\], got 2\.0"),
    (["sample", "{fixture}", "--labels", "1", "--out", "x.png"],
     r"argument `labels` asks for labels \[1\], but .*tiny_unet\.pt is an unconditional model"),
    (["info", "missing"], r"missing: not found"),
    (["sample", "{fixture}"], r"the following arguments are required: --out"),
    ([], r"the following arguments are required: command"),
], ids=["missing-file", "not-a-model", "not-an-export", "unknown-sampler", "n-zero", "n-negative", "n-not-a-number",
        "unknown-output", "csv-of-rgb", "too-many-steps", "eta-out-of-range", "labels-unconditional",
        "info-missing", "no-out", "no-command"])
def test_bad_input_is_one_line_naming_it_with_exit_code_2(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("not a model")
    (tmp_path / "empty").mkdir()
    names = {"text": str(tmp_path / "notes.txt"), "folder": str(tmp_path / "empty"), "fixture": str(FIXTURE)}
    assert cli.main([a.format(**names) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("diffpipe: error: "), err
    assert __import__("re").search(message, err), err
    assert not (tmp_path / "x.png").exists()


def test_sample_arguments_are_checked_in_one_line_naming_them(model, tmp_path):
    cond = diffpipe.load(random_checkpoint(tmp_path / "cond.pt", channels=3, num_classes=3), device="cpu")
    for call, message in [
        (lambda: model.sample(0), r"^argument `n` must be a whole number >= 1, got 0$"),
        (lambda: model.sample(2, sampler="dpm"), r"^argument `sampler` must be one of \['ddpm', 'ddim', 'dpmpp_2m', 'dpmpp_2m_sde', 'heun'\], got 'dpm'$"),
        (lambda: model.sample(2, steps=0), r"^argument `steps` must be >= 1, got 0$"),
        (lambda: model.sample(2, seed=-1), r"^argument `seed` must be a whole number >= 0, got -1$"),
        (lambda: model.sample(2, guidance_scale=3.0), r"^argument `guidance_scale` \(3\.0\) guides towards a label"),
        (lambda: model.sample(2, precision="fp16"), r"^argument `precision` must be one of \['fp32', 'bf16'\]"),
        (lambda: cond.sample(2, labels=[5]), r"^argument `labels` has class 5, but .*cond\.pt has 3 classes \(0-2\)$"),
        (lambda: diffpipe.load(FIXTURE, device="tpu"), r"^argument `device`"),
    ]:
        with pytest.raises(ConfigError, match=message):
            call()
    # a class-conditional model: one label or several, guided; [] is the null label (unconditional)
    assert cond.num_classes == 3 and model.num_classes == 0
    one, two = cond.sample(2, steps=2, labels=1), cond.sample(2, steps=2, labels=[1, 1], guidance_scale=1.0)
    assert np.array_equal(one, two) and not np.array_equal(one, cond.sample(2, steps=2, labels=[2]))
    assert cond.sample(2, steps=2, labels=[]).shape == (2, 16, 16, 3)


def test_the_samplers_are_the_params_schema_s(model):
    from diffpipe.core.config import from_dict
    from diffpipe.core.params import SamplerSpec

    assert diffpipe.SAMPLERS == ("ddpm", "ddim", "dpmpp_2m", "dpmpp_2m_sde", "heun")
    choices = [a for a in cli.parser()._subparsers._group_actions[0].choices["sample"]._actions
               if a.dest == "sampler"][0].choices
    assert tuple(choices) == diffpipe.SAMPLERS
    for name in diffpipe.SAMPLERS:  # each one the params loader and the API accept
        from_dict(SamplerSpec, dict(sampler=name, steps=3, eta=0.0, clip_x0=False), "sample")
        assert model.settings(sampler=name, steps=3)["sampler"] == name
    assert model.settings(sampler="ddpm")["steps"] == 1000  # DDPM walks all T steps
    assert model.settings() == {"sampler": "ddim", "steps": 50, "eta": 0.0, "clip_x0": False, "seed": 0,
                                "labels": [], "guidance_scale": 1.0}  # a checkpoint records no sampler


def test_info_describes_the_model(model, capsys):
    info = model.info
    assert set(info) == {"source", "format", "rev", "repo", "prediction_type", "image_shape", "data_norm",
                         "diffusion", "model", "train", "num_parameters", "sampling", "provenance"}
    assert info["format"] == "checkpoint" and info["prediction_type"] == "epsilon" and info["sampling"] is None
    assert info["image_shape"] == [3, 16, 16] and info["model"]["unet"]["down_ch"] == [2, 4, 8]
    assert info["num_parameters"] == count_parameters(load_model(FIXTURE, torch.device("cpu")).model) == 6771
    assert info["provenance"]["step"] == 2 and info["provenance"]["data_md5"] is None
    assert repr(model).startswith("<diffpipe.Model") and "6,771 parameters" in repr(model)
    assert cli.main(["info", str(FIXTURE)]) == 0
    assert json.loads(capsys.readouterr().out) == info


def test_import_diffpipe_loads_no_torch_and_the_command_sets_mkl_dynamic_first():
    code = ("import os, sys; os.environ.pop('MKL_DYNAMIC', None)\n"
            "import diffpipe, diffpipe.cli\n"
            "assert 'torch' not in sys.modules and 'numpy' not in sys.modules, 'import diffpipe loaded torch'\n"
            "assert diffpipe.SAMPLERS and 'torch' not in sys.modules\n"
            "import diffpipe.core.launch as launch\n"
            "seen = {}\n"
            "def spy(*a):\n"
            "    seen['torch_loaded'] = 'torch' in sys.modules\n"
            "    return real(*a)\n"
            "real, launch.process_environment = launch.process_environment, spy\n"
            "diffpipe.cli.process_environment = spy\n"
            "code = diffpipe.cli.main(['sample', 'missing.pt', '--out', 'x.png'])\n"
            "print(code, os.environ['MKL_DYNAMIC'], seen['torch_loaded'])\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["2", "FALSE", "False"]


def test_the_readme_snippets_run_as_written(tmp_path, monkeypatch, capsys):
    """The README's "Use the model" code, run in a folder whose models/export is the fixture's export (the
    pipeline's would be MNIST's): the Python block as it is, each `diffpipe` line through the command's main."""
    import re
    import shlex

    section = (ROOT / "README.md").read_text().split("## Use the model")[1].split("\n## ")[0]
    python = re.findall(r"```python\n(.*?)```", section, re.S)
    commands = [ln for block in re.findall(r"```bash\n(.*?)```", section, re.S) for ln in block.splitlines()]
    assert len(python) == 1 and [c.split()[:2] for c in commands] == [["diffpipe", "sample"], ["diffpipe", "info"]]
    loaded = load_model(FIXTURE, torch.device("cpu"))
    write_export(tmp_path / "models" / "export", loaded, checkpoint_provenance(FIXTURE, loaded))
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(python[0], namespace)  # noqa: S102 - the README's own code
    assert namespace["images"].shape == (16, 16, 16, 3) and namespace["images"].dtype == np.uint8
    for command in commands:
        assert cli.main(shlex.split(command, comments=True)[1:]) == 0, command
    assert (tmp_path / "grid.png").is_file() and '"num_parameters": 6771' in capsys.readouterr().out
