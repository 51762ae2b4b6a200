"""DVC's model registry serves the export: `artifacts:` in both dvc.yaml files, versions as annotated git tags.

A scratch git repository holds the two projects as this one does (System A at the root, System B a `dvc init
--subdir` project in systems/emoji_ddim), each with its real `export` stage and `artifacts:` block copied from
this repository's dvc.yaml files, and a copy of the code those stages run. The exports are made by `dvc repro`
from the committed tiny checkpoint, pushed to a local DVC remote and registered with `git tag -a NAME@v0.1.0`
(GTO's convention, which `dvc artifacts get` reads). Then the scratch repository's DVC cache and exports are
deleted, so what comes back comes from the remote, and a second clone fetches them by name with the
documented commands (docs/model.md) and loads them with `diffpipe.load`. The same scratch repository serves the
loading of a model by git revision and by DVC experiment name (`diffpipe.load(..., rev=..., repo=...)`).
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dvc.api
import numpy as np
import pytest
import torch
import yaml
from dvc.exceptions import ArtifactNotFoundError
from helpers import ROOT
from test_checkpoint_fixture import assert_same_images

import diffpipe
from diffpipe.diffusion.checkpoint import save_checkpoint

FIXTURE = ROOT / "tests" / "fixtures" / "tiny_unet.pt"
EXPECTED = ROOT / "tests" / "fixtures" / "tiny_unet_ddim10.npy"  # DDIM 10 steps, eta 1, x0 clamped, seeds 0-3
SUB = "systems/emoji_ddim"
# What the sample stage's report says of the fixture's images: the exports' default sampling.
SAMPLE_REPORT = {"num_images": 4, "sampler": "ddim", "steps": 10, "eta": 1.0, "clip_x0": True, "first_seed": 0,
                 "labels": [], "guidance_scale": None, "pixel_mean": 0.5, "strip_timesteps": []}
METRICS = {"fid": 123.4, "kid_mean": 0.05}


def run(cmd, cwd, env, ok=True):
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if ok:
        assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def export_only(pipeline: Path) -> dict:
    """The dvc.yaml at `pipeline` cut down to its `vars`, its `export` stage and its `artifacts`."""
    doc = yaml.safe_load(pipeline.read_text())
    return {**({"vars": doc["vars"]} if "vars" in doc else {}), "stages": {"export": doc["stages"]["export"]},
            "artifacts": doc["artifacts"]}


def artifact_name(pipeline: Path) -> str:
    (name,) = yaml.safe_load(pipeline.read_text())["artifacts"]
    return name


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    base = tmp_path_factory.mktemp("registry")
    first, remote = base / "first", base / "remote"
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               DVC_NO_ANALYTICS="1", PYTHONDONTWRITEBYTECODE="1", GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    code = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "src", "scripts/launch.py",
                           "stages/export.py", ".dvcignore"], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.split()
    for f in code:
        if (ROOT / f).is_file():
            (first / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, first / f)
    run(["git", "init", "-q"], first, env)
    for project, init in ((first, ["dvc", "init", "-q"]), (first / SUB, ["dvc", "init", "-q", "--subdir"])):
        project.mkdir(parents=True, exist_ok=True)
        run(init, project, env)
        source = ROOT / project.relative_to(first) / "dvc.yaml"
        (project / "dvc.yaml").write_text(yaml.safe_dump(export_only(source), sort_keys=False))
        (project / "models").mkdir()
        shutil.copy2(FIXTURE, project / "models" / "checkpoint.pt")
        for path, content in (("dvclive/evaluate/metrics.json", METRICS), ("reports/sample.json", SAMPLE_REPORT)):
            (project / path).parent.mkdir(parents=True, exist_ok=True)
            (project / path).write_text(json.dumps(content))
        run(["dvc", "remote", "add", "-q", "-d", "store", str(remote)], project, env)
        run(["dvc", "repro", "-q"], project, env)
        run(["dvc", "push", "-q"], project, env)
    run(["git", "add", "-A"], first, env)
    run(["git", "commit", "-qm", "models"], first, env)
    return base, first, env


def tag(repo: Path, env, tag_name: str) -> None:
    run(["git", "tag", "-a", tag_name, "-m", "first registered version"], repo, env)


def test_a_version_is_an_annotated_tag_and_dvc_artifacts_get_fetches_it_from_the_remote(registry):
    base, first, env = registry
    name_a = artifact_name(ROOT / "dvc.yaml")
    name_b = f"{SUB}:{artifact_name(ROOT / SUB / 'dvc.yaml')}"  # a subproject's artifact: `dir:name`
    assert (name_a, name_b) == ("mnist-ddpm", "systems/emoji_ddim:emoji-ddim")  # the names docs/model.md gives
    # declared, but no version registered yet
    with pytest.raises(ArtifactNotFoundError, match="Unable to find artifact 'mnist-ddpm'"):
        dvc.api.artifacts_show(name_a, repo=str(first))
    tag(first, env, f"{name_a}@v0.1.0")
    tag(first, env, f"{SUB}={artifact_name(ROOT / SUB / 'dvc.yaml')}@v0.1.0")  # `:` is `=` in a tag name
    head = run(["git", "rev-parse", "HEAD"], first, env).stdout.strip()
    assert dvc.api.artifacts_show(name_a, repo=str(first)) == {"rev": head, "path": "models/export"}
    assert dvc.api.artifacts_show(name_b, version="v0.1.0", repo=str(first)) == \
        {"rev": head, "path": f"{SUB}/models/export"}

    # Nothing left but the remote: the first repository's caches and exports go.
    for project in (first, first / SUB):
        shutil.rmtree(project / ".dvc" / "cache")
        shutil.rmtree(project / "models" / "export")
    second = base / "second"
    run(["git", "clone", "-q", str(first), str(second)], base, env)
    for name, out in ((name_a, "model_a"), (name_b, "model_b")):
        version = ["--rev", "v0.1.0"] if name == name_b else []  # the latest version, or a given one
        run(["dvc", "artifacts", "get", str(first), name, *version, "-o", out], second, env)
        fetched = second / out
        assert sorted(p.name for p in fetched.iterdir()) == ["config.json", "model.safetensors"]
        model = diffpipe.load(fetched, device="cpu")
        assert model.info["provenance"]["metrics"] == METRICS and model.info["sampling"]["steps"] == 10
        assert_same_images(model.sample(4), np.load(EXPECTED).transpose(0, 2, 3, 1))  # the export's defaults

    # by revision (the tag) through dvc.api, from the remote too, nothing checked out
    shown = dvc.api.artifacts_show(name_b, repo=str(second))
    model = diffpipe.load(shown["path"], rev=shown["rev"], repo=str(second), device="cpu")
    assert model.info["rev"] == head and model.info["num_parameters"] == 6771


def test_load_by_revision_and_by_experiment_name_without_checking_out(registry):
    base, first, env = registry
    head = run(["git", "rev-parse", "HEAD"], first, env).stdout.strip()
    # An experiment with other weights: the EMA weights halved.
    ckpt = torch.load(FIXTURE, map_location="cpu", weights_only=True)
    ckpt["ema"] = {k: v * 0.5 if v.is_floating_point() else v for k, v in ckpt["ema"].items()}
    save_checkpoint(first / "models" / "checkpoint.pt", ckpt)
    run(["dvc", "exp", "run", "-q", "-n", "halved"], first, env)
    run(["git", "checkout", "-q", "--", "models/checkpoint.pt", "dvc.lock"], first, env)
    run(["dvc", "pull", "-q"], first, env)  # the workspace back at HEAD's export (from the remote)

    at_head = diffpipe.load("models/export", rev=head[:10], repo=str(first), device="cpu")
    halved = diffpipe.load("models/export", rev="halved", repo=str(first), device="cpu")
    local = diffpipe.load(first / "models" / "export", device="cpu")
    assert halved.info["provenance"]["checkpoint_md5"] != at_head.info["provenance"]["checkpoint_md5"]
    assert at_head.info["provenance"] == local.info["provenance"]
    images = at_head.sample(2, steps=3)
    assert np.array_equal(images, local.sample(2, steps=3))
    assert not np.array_equal(images, halved.sample(2, steps=3))
    # a training checkpoint by revision too; an unknown revision or path is one line naming it
    assert diffpipe.load("models/checkpoint.pt", rev="halved", repo=str(first), device="cpu").info["format"] == \
        "checkpoint"
    with pytest.raises(diffpipe.PipelineError, match=r"models/export@no-such-rev: cannot open revision") as e:
        diffpipe.load("models/export", rev="no-such-rev", repo=str(first))
    assert "\n" not in str(e.value)
    with pytest.raises(diffpipe.PipelineError, match=r"models/nothing@halved: not found$"):
        diffpipe.load("models/nothing", rev="halved", repo=str(first))
