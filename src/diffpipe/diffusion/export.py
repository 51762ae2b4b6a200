"""The export: a trained model as a folder that a reader need not trust, in the layout of HuggingFace diffusers.

    models/export/
        model.safetensors   the EMA weights (safetensors: a JSON header and raw tensors, no pickle)
        config.json         everything that rebuilds the network, the schedule and the sampling, plus provenance

The training checkpoint (checkpoint.py) stays the resumable format: weights, EMA, optimizer and RNG in a torch
file. The export holds only what sampling needs, and reading it never calls `torch.load`: `read_export` parses
config.json with `json` and the weights with safetensors, checks every tensor's name and shape against the
network config.json describes (one line naming the file if they differ), then builds the model exactly as a
checkpoint is built (`checkpoint.assemble`), so both give the same images.

config.json (FORMAT_VERSION 1; a reader refuses a newer version in one line):
- `format`, `format_version`, `weights` (the weights file), `prediction_type`: what the network predicts, in
  diffusers' names: "epsilon" (the added noise, DDPM's eps), "v_prediction" (v) or "sample" (x0); the same as
  `diffusion.prediction` (checked on reading), which with `diffusion.zero_terminal_snr` rebuilds the schedule
  and the conversion (an export made before those keys existed loads with their legacy values: eps, false),
- `image_shape` (C, H, W), `data_norm` (the per-channel mean/std the data were normalised with, ChannelNorm),
- `diffusion`, `model`, `train`: the params sections the model was trained with (checked as a checkpoint's
  configs are: a key added to the schema later loads with its declared legacy value),
- `num_parameters`,
- `sampling`: the sample stage's sampler, seeds and labels (from its report), the defaults of
  `diffpipe.load(...).sample` and `diffpipe sample`; null when unknown,
- `provenance`: git revision, checkpoint md5, training data md5, step / epoch / loss, evaluation metrics,
  the diffpipe and torch versions (each null when unknown).
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Optional

import torch

from .. import __version__
from ..core.config import to_dict
from ..core.errors import ConfigError, PipelineError
from ..core.files import atomic_dir
from ..nets.builder import build_model, count_parameters
from .checkpoint import LoadedModel, assemble, cpu_state, read_configs, run_record

FORMAT = "diffpipe-export"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
PREDICTION_TYPES = {"eps": "epsilon", "v": "v_prediction", "x0": "sample"}  # diffusion.prediction -> diffusers
REQUIRED = ("format", "format_version", "weights", "prediction_type", "image_shape", "data_norm", "diffusion",
            "model", "train")
SAMPLING_KEYS = ("sampler", "steps", "eta", "clip_x0", "seed", "labels", "guidance_scale")


# ---- provenance ----------------------------------------------------------------------------------------

def file_md5(path: str | os.PathLike) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def git_revision(cwd: str | os.PathLike | None = None) -> Optional[str]:
    """`git rev-parse HEAD` where the export is made: the commit checked out (None outside a git repository)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    rev = out.stdout.strip()
    return rev if out.returncode == 0 and len(rev) == 40 else None


def sampling_from_report(report: dict, where: str) -> dict:
    """The sample stage's sampler, seeds and labels from its report (reports/sample.json), under SAMPLING_KEYS."""
    try:
        labels = [int(v) for v in report["labels"]]
        sampling = {"sampler": report["sampler"], "steps": int(report["steps"]), "eta": float(report["eta"]),
                    "clip_x0": bool(report["clip_x0"]), "seed": int(report["first_seed"]), "labels": labels,
                    "guidance_scale": float(report["guidance_scale"]) if labels else 1.0}
    except (KeyError, TypeError, ValueError) as e:
        raise PipelineError(f"{where}: not a sample stage report ({type(e).__name__}: {e})") from None
    return sampling


def checkpoint_provenance(path: str | os.PathLike, loaded: LoadedModel, metrics: Optional[dict] = None,
                          revision: Optional[str] = None) -> dict:
    """What is known of the run behind the checkpoint at `path` (loaded as `loaded`)."""
    return {"git_revision": revision, "checkpoint_md5": file_md5(path), **run_record(loaded.checkpoint or {}),
            "metrics": metrics, "diffpipe_version": __version__, "torch_version": torch.__version__.split("+")[0]}


# ---- writing -------------------------------------------------------------------------------------------

def export_config(loaded: LoadedModel, provenance: dict, sampling: Optional[dict] = None) -> dict:
    """config.json's content for `loaded` (the keys' order is kept in the file)."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "weights": WEIGHTS_FILE,
        "prediction_type": PREDICTION_TYPES[loaded.diffusion.prediction],
        "image_shape": list(loaded.image_shape),
        "data_norm": loaded.norm.to_dict(),
        "diffusion": to_dict(loaded.diffusion),
        "model": to_dict(loaded.model_cfg),
        "train": to_dict(loaded.train_cfg),
        "num_parameters": count_parameters(loaded.model),
        "sampling": None if sampling is None else {k: sampling[k] for k in SAMPLING_KEYS},
        "provenance": provenance,
    }


def write_export(folder: str | os.PathLike, loaded: LoadedModel, provenance: dict,
                 sampling: Optional[dict] = None) -> dict:
    """Write the export of `loaded` (its EMA network's weights) to `folder`, replacing it as a whole
    (atomically); the same model writes the same bytes. Returns the config."""
    from safetensors.torch import save

    config = export_config(loaded, provenance, sampling)
    with atomic_dir(folder) as tmp:
        (tmp / WEIGHTS_FILE).write_bytes(save(cpu_state(loaded.model), metadata={"format": "pt"}))
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    return config


# ---- reading -------------------------------------------------------------------------------------------

def is_export(path: str | os.PathLike) -> bool:
    return (Path(path) / CONFIG_FILE).is_file()


def read_config(folder: Path, name: str) -> dict:
    """config.json of the export in `folder`, its format checked; `name` is what errors call the folder."""
    where = f"{name}/{CONFIG_FILE}"
    try:
        config = json.loads((folder / CONFIG_FILE).read_text())
    except FileNotFoundError:
        raise PipelineError(f"{name}: not a diffpipe export (no {CONFIG_FILE})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PipelineError(f"{where}: not valid JSON ({type(e).__name__}: {e})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise PipelineError(f"{where}: not a diffpipe export config (missing format tag {FORMAT!r})")
    version = config.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= FORMAT_VERSION:
        raise PipelineError(f"{where}: format_version {version!r} is not one this diffpipe {__version__} reads "
                            f"(1-{FORMAT_VERSION}); a newer diffpipe wrote it")
    missing = [k for k in REQUIRED if k not in config]
    if missing:
        raise PipelineError(f"{where}: lacks {missing}")
    shape = config["image_shape"]
    if not (isinstance(shape, list) and len(shape) == 3 and all(type(v) is int and v > 0 for v in shape)):
        raise PipelineError(f"{where}: image_shape must be [C, H, W] (positive integers), got {shape!r}")
    norm = config["data_norm"]
    if not (isinstance(norm, dict) and set(norm) == {"mean", "std"}
            and all(isinstance(norm[k], list) and len(norm[k]) == shape[0] for k in norm)):
        raise PipelineError(f"{where}: data_norm must be {{mean: [...], std: [...]}} with {shape[0]} values each "
                            f"(one per channel), got {norm!r}")
    try:
        diffusion, _, _ = read_configs(config, "")
    except ConfigError as e:
        raise PipelineError(f"{where}: {e}") from None
    expected = PREDICTION_TYPES[diffusion.prediction]
    if config["prediction_type"] != expected:
        raise PipelineError(f"{where}: prediction_type {config['prediction_type']!r} does not match "
                            f"diffusion.prediction {diffusion.prediction!r} (prediction_type {expected!r})")
    if not isinstance(config["weights"], str) or Path(config["weights"]).name != config["weights"]:
        raise PipelineError(f"{where}: weights must name a file in the export folder, got {config['weights']!r}")
    return config


def _mismatch(config: dict, tensors: dict) -> Optional[str]:
    """How the tensors differ from the network config.json describes (None if they fit): built on the meta
    device, so nothing is allocated."""
    c, h, _ = config["image_shape"]
    _, model_cfg, _ = read_configs(config, "")
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in build_model(model_cfg, c, h).state_dict().items()}
    missing = sorted(expected.keys() - tensors.keys())
    unexpected = sorted(tensors.keys() - expected.keys())
    shapes = sorted(k for k in expected.keys() & tensors.keys() if tuple(tensors[k].shape) != expected[k])
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing (e.g. {missing[0]!r})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]!r})")
    if shapes:
        k = shapes[0]
        problems.append(f"{len(shapes)} of another shape (e.g. {k!r}: {list(tensors[k].shape)} in the file, "
                        f"{list(expected[k])} in the network)")
    return "; ".join(problems) or None


def read_export(folder: str | os.PathLike, device: torch.device,
                name: Optional[str] = None) -> tuple[LoadedModel, dict]:
    """(the model, its config) from the export in `folder`, on `device`; `name` (default: the folder) is what
    errors call it. Safetensors and JSON only: no pickle, no `torch.load`."""
    from safetensors.torch import load_file

    folder = Path(folder)
    name = name or str(folder)
    config = read_config(folder, name)
    where = f"{name}/{config['weights']}"
    try:
        tensors = load_file(folder / config["weights"], device="cpu")
    except FileNotFoundError:
        raise PipelineError(f"{where}: weights file not found") from None
    except Exception as e:  # noqa: BLE001 - any unreadable file is a user-facing error (SafetensorError, OSError)
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise PipelineError(f"{where}: not a readable safetensors file ({type(e).__name__}: {first})") from None
    problem = _mismatch(config, tensors)
    if problem:
        raise PipelineError(f"{where}: its tensors do not match the network {CONFIG_FILE} describes: {problem}")
    loaded = assemble(where, config, config["image_shape"], config["data_norm"], tensors, device, None, "export")
    return loaded, config
