"""The public Python API: use a trained model outside the pipeline (docs/model.md).

    import diffpipe
    model = diffpipe.load("models/export")             # an export folder, or a training checkpoint (.pt)
    images = model.sample(16, sampler="ddim", steps=50, eta=1.0, seed=0)   # uint8 (16, H, W, C)
    model.info                                          # configs, parameter count, data md5, metrics

`diffpipe.load(path, rev="a-e5")` (any git revision, tag or DVC experiment) or `repo=URL` reads the model
through `dvc.api` (DVC's file system) without checking anything out: from the git tree, the DVC cache or the
project's DVC remote.

`Model.sample` is the sample stage's own code path (diffusion/inference.py `draw`): with the stage's sampler,
seeds and labels it returns the stage's bytes, transposed to (N, H, W, C) as diffusers and Pillow expect.

This module imports only the params schema at import time; torch loads on the first `load`, so that
`import diffpipe` stays cheap.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence, Union, get_args, get_type_hints

from .core.config import from_dict
from .core.errors import ConfigError, PipelineError
from .core.params import Device, Precision, SamplerSpec

if TYPE_CHECKING:
    import numpy as np

    from .diffusion.checkpoint import LoadedModel

# The sampler names: those of the params schema's `SamplerSpec.sampler`, wherever a sampler is named.
SAMPLERS: tuple[str, ...] = get_args(get_type_hints(SamplerSpec)["sampler"])
# What `sample` uses where neither the caller nor the model (an export's `sampling`) says: diffusers' DDIM
# pipeline defaults (50 steps, eta 0), unclamped, seeds from 0, unconditional.
FALLBACK_SAMPLING = {"sampler": "ddim", "steps": 50, "eta": 0.0, "clip_x0": False, "seed": 0, "labels": [],
                     "guidance_scale": 1.0}
PRECISIONS: tuple[str, ...] = get_args(Precision)
DEVICES: tuple[str, ...] = get_args(Device)


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def _as_argument(e: ConfigError) -> ConfigError:
    """A schema error worded for an argument: "params key `steps` …" -> "argument `steps` …"."""
    return ConfigError(str(e).replace("params key `", "argument `"))


class Model:
    """A trained diffusion model: its EMA network, schedule and data normalisation, and what is known of it.

    Made by `diffpipe.load`. `info` is a dict: the source, its format, the image shape (C, H, W), the params
    sections it was trained with, the parameter count, the prediction type, the default sampling and the
    provenance (git revision, checkpoint and training data md5, step / epoch / loss, evaluation metrics)."""

    def __init__(self, loaded: "LoadedModel", info: dict):
        self._loaded = loaded
        self.info = info

    @property
    def name(self) -> str:
        return self.info["source"]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        return tuple(self._loaded.image_shape)

    @property
    def num_classes(self) -> int:
        """0 for an unconditional model; K for one trained with K classes (labels 0 … K-1)."""
        return self._loaded.model_cfg.num_classes

    @property
    def device(self) -> str:
        return str(next(self._loaded.model.parameters()).device)

    def __repr__(self) -> str:
        c, h, w = self.image_shape
        return (f"<diffpipe.Model {self.name!r}: {self.info['model']['arch']}, {self.info['num_parameters']:,} "
                f"parameters, {c}x{h}x{w} images, T = {self.info['diffusion']['num_timesteps']}>")

    def settings(self, *, sampler: Optional[str] = None, steps: Optional[int] = None, eta: Optional[float] = None,
                 clip_x0: Optional[bool] = None, seed: Optional[int] = None,
                 labels: Union[int, Sequence[int], None] = None, guidance_scale: Optional[float] = None) -> dict:
        """The sampling settings `sample` uses for these arguments (each None takes the model's default),
        checked: a dict with the keys sampler, steps, eta, clip_x0, seed, labels, guidance_scale. A bad value is a
        one-line ConfigError naming the argument."""
        from .core.params import check_labels

        default = self.info["sampling"] or FALLBACK_SAMPLING
        given = dict(sampler=sampler, steps=steps, eta=eta, clip_x0=clip_x0, seed=seed, labels=labels,
                     guidance_scale=guidance_scale)
        args = {k: default[k] if v is None else v for k, v in given.items()}
        T = self._loaded.diffusion.num_timesteps
        if steps is None and args["sampler"] != default["sampler"]:  # another sampler than the default's
            args["steps"] = T if args["sampler"] == "ddpm" else min(FALLBACK_SAMPLING["steps"], T)
        try:
            spec = from_dict(SamplerSpec, {k: args[k] for k in ("sampler", "steps", "eta", "clip_x0")}, "")
        except ConfigError as e:
            raise _as_argument(e) from None
        if spec.steps > T:
            raise ConfigError(f"argument `steps` ({spec.steps}) must not exceed the model's number of diffusion "
                              f"steps T = {T}")
        if isinstance(args["seed"], bool) or not isinstance(args["seed"], int) or args["seed"] < 0:
            raise ConfigError(f"argument `seed` must be a whole number >= 0, got {args['seed']!r}")
        classes = [args["labels"]] if isinstance(args["labels"], int) else args["labels"]
        if isinstance(classes, (str, bytes)) or not all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in classes):
            raise ConfigError(f"argument `labels` must be class numbers >= 0, got {args['labels']!r}")
        try:
            check_labels(tuple(classes), self.num_classes, self.name, "labels")
        except ConfigError as e:
            raise _as_argument(e) from None
        w = args["guidance_scale"]
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not w >= 0:
            raise ConfigError(f"argument `guidance_scale` must be a number >= 0, got {w!r}")
        if not classes and w != 1.0:
            raise ConfigError(f"argument `guidance_scale` ({w}) guides towards a label: give `labels`, or keep 1.0 "
                              "for unlabelled samples")
        return {"sampler": spec.sampler, "steps": spec.steps, "eta": spec.eta, "clip_x0": spec.clip_x0,
                "seed": args["seed"], "labels": [int(v) for v in classes], "guidance_scale": float(w)}

    def sample(self, n: int, *, sampler: Optional[str] = None, steps: Optional[int] = None,
               eta: Optional[float] = None, clip_x0: Optional[bool] = None, seed: Optional[int] = None,
               labels: Union[int, Sequence[int], None] = None, guidance_scale: Optional[float] = None,
               batch_size: int = 64, precision: str = "fp32", progress: bool = False) -> "np.ndarray":
        """`n` new images, uint8 (N, H, W, C).

        sampler: one of SAMPLERS ('ddpm' walks all T steps; 'ddim' walks `steps` of them with noise `eta`,
        0 = deterministic, 1 = DDPM-like); clip_x0 clamps each step's x0 prediction to the data range.
        seed: image i uses seed + i (it depends on nothing else: not on n, the batching or the device count).
        labels: for a class-conditional model, the class of each image (repeated over the images: image i gets
        labels[i % len(labels)]); [] = unconditional; guidance_scale is classifier-free guidance's w.
        Each argument left None takes the model's default: the sample stage's setting for an export made by
        the pipeline (info["sampling"]), else FALLBACK_SAMPLING (see `settings`). Bad arguments raise a
        one-line ConfigError naming the argument.
        """
        from .diffusion.inference import draw

        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"argument `n` must be a whole number >= 1, got {n!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"argument `batch_size` must be a whole number >= 1, got {batch_size!r}")
        if precision not in PRECISIONS:
            raise ConfigError(f"argument `precision` must be one of {list(PRECISIONS)}, got {precision!r}")
        use = self.settings(sampler=sampler, steps=steps, eta=eta, clip_x0=clip_x0, seed=seed, labels=labels,
                            guidance_scale=guidance_scale)
        spec = SamplerSpec(use["sampler"], use["steps"], use["eta"], use["clip_x0"])
        images, _, _ = draw(self._loaded, spec, n, use["seed"], batch_size, use["labels"], use["guidance_scale"],
                            precision, progress=progress)
        return images.transpose(0, 2, 3, 1).copy()

    def save(self, folder: Union[str, os.PathLike]) -> None:
        """Write this model as an export folder (model.safetensors + config.json), its provenance and default
        sampling kept: `diffpipe.load(folder)` gives the same images."""
        from .diffusion.export import write_export

        write_export(folder, self._loaded, self.info["provenance"], self.info["sampling"])


def _load_local(path: Path, name: str, device) -> Model:
    from .diffusion.checkpoint import load_model
    from .diffusion.export import checkpoint_provenance, export_config, is_export, read_export

    if path.is_dir() or path.name == "config.json" or path.suffix == ".safetensors":
        folder = path if path.is_dir() else path.parent
        if not is_export(folder):
            raise PipelineError(f"{name}: not a diffpipe export (no config.json in the folder) nor a checkpoint")
        loaded, config = read_export(folder, device, name if path.is_dir() else str(Path(name).parent))
        fmt = "export"
    elif path.is_file():
        loaded = load_model(path, device, name=name)
        config = export_config(loaded, checkpoint_provenance(path, loaded))
        fmt = "checkpoint"
    else:
        raise PipelineError(f"{name}: not found (expected an export folder or a checkpoint file)")
    info = {"source": name, "format": fmt, "rev": None, "repo": None,
            **{k: v for k, v in config.items() if k not in ("format", "format_version", "weights")}}
    return Model(loaded, info)


def load(path: Union[str, os.PathLike], *, rev: Optional[str] = None, repo: Optional[str] = None,
         device: str = "auto") -> Model:
    """The model at `path`: an export folder (config.json + model.safetensors; read without pickle) or a
    training checkpoint file (models/checkpoint.pt).

    rev: a git revision, tag or DVC experiment name (`dvc exp show`) to read `path` at; repo: a DVC project's
    path or git URL (default: the project around the working directory). With either, the files are read
    through dvc.api's DVCFileSystem: from git, the DVC cache or the DVC remote, nothing checked out.
    `path` is then relative to that project's root. device: 'auto' (CUDA when present), 'cpu' or 'cuda'.
    Raises a one-line PipelineError naming the file when it is missing or not a model."""
    from .core.devices import resolve_device

    if device not in DEVICES:
        raise ConfigError(f"argument `device` must be one of {list(DEVICES)}, got {device!r}")
    try:
        dev = resolve_device(device, "device")
    except ConfigError as e:
        raise _as_argument(e) from None
    path = Path(path)
    if rev is None and repo is None:
        return _load_local(path, str(path), dev)
    return _load_revision(path, rev, repo, dev)


def _load_revision(path: Path, rev: Optional[str], repo: Optional[str], device) -> Model:
    from dvc.api import DVCFileSystem

    where = f"{path.as_posix()}@{rev}" if rev else path.as_posix()
    name = f"{repo}:{where}" if repo else where
    target = path.as_posix()
    fs = None
    try:
        try:
            fs = DVCFileSystem(repo, rev=rev, subrepos=True)
            is_dir = fs.isdir(target)  # opens the revision: an unknown one raises here
        except Exception as e:  # noqa: BLE001 - an unknown revision or repository is a user-facing error
            what = f"revision {rev!r}" if rev else "the repository"
            raise PipelineError(f"{name}: cannot open {what} ({type(e).__name__}: {_first_line(e)})") from None
        if not is_dir and not fs.isfile(target):
            raise PipelineError(f"{name}: not found")
        with tempfile.TemporaryDirectory(prefix="diffpipe-") as tmp:
            local = Path(tmp) / path.name
            if is_dir:
                fs.get(target, str(local), recursive=True)
            else:
                fs.get_file(target, str(local))
            model = _load_local(local, name, device)
    except PipelineError:
        raise
    except FileNotFoundError as e:  # DVC-tracked data neither in the DVC cache nor on a remote
        raise PipelineError(f"{name}: its data are in neither the DVC cache nor a DVC remote (was it pushed? "
                            f"FileNotFoundError: {_first_line(e)})") from None
    except Exception as e:  # noqa: BLE001 - any other failure to read is a user-facing error
        raise PipelineError(f"{name}: cannot be read ({type(e).__name__}: {_first_line(e)})") from None
    finally:
        if fs is not None:
            fs.close()
    model.info["rev"], model.info["repo"] = rev, repo
    return model


__all__ = ["Model", "SAMPLERS", "load"]
