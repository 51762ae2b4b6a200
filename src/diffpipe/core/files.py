"""Atomic outputs and checked inputs: the one home for writing files and folders safely.

Every writer goes to a temporary name beside the target and renames it into place at the end, so a crash
or a bad input half-way never leaves a truncated output or destroys the previous one. Temporary names
start with a dot and contain `.tmp-` (folders being replaced are parked under `.old-`); `.gitignore`
ignores both, they are removed on failure, and a folder writer clears the ones a killed run left behind.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import PipelineError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp file path beside `path`; on success rename it onto `path`, else delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-", suffix=path.suffix)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp creates 0600; outputs get normal permissions
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def replace_dir(src: Path, dst: Path) -> None:
    """Move folder `src` onto `dst`. A folder cannot be renamed over a non-empty one, so the old folder is
    renamed aside first and deleted only after the new one is in place: at every instant `dst` is either
    the complete old folder or the complete new one (or, between the two renames, parked beside it)."""
    old = None
    if dst.exists():
        old = Path(tempfile.mkdtemp(dir=dst.parent, prefix=f".{dst.name}.old-"))
        os.replace(dst, old / dst.name)
    os.replace(src, dst)
    if old is not None:
        shutil.rmtree(old)


def _clear_stale(path: Path) -> None:
    """Remove temp folders of `path` left behind by a killed run (never the output itself)."""
    for pattern in (f".{path.name}.tmp-*", f".{path.name}.old-*"):
        for stale in path.parent.glob(pattern):
            shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temp folder beside `path`; on success it replaces `path` as a whole, else it is deleted."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _clear_stale(path)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp-"))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp makes it private
        replace_dir(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def write_json(path: str | os.PathLike, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, array)


def read_json(path: str | os.PathLike):
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise PipelineError(f"{path}: file not found") from None
    except json.JSONDecodeError as e:
        raise PipelineError(f"{path}: not valid JSON ({e})") from None


def read_image_array(path: str | os.PathLike) -> np.ndarray:
    """A prepared/generated image array: uint8 (N, C, H, W) .npy, or a one-line PipelineError."""
    try:
        images = np.load(path)
    except FileNotFoundError:
        raise PipelineError(f"{path}: file not found") from None
    except (OSError, ValueError) as e:
        raise PipelineError(f"{path}: not a readable .npy array ({e})") from None
    if images.dtype != np.uint8 or images.ndim != 4:
        raise PipelineError(f"{path}: expected a uint8 array (N, C, H, W), got {images.dtype} {images.shape}")
    n, c, h, w = images.shape
    if n == 0:
        raise PipelineError(f"{path}: holds no images (shape {images.shape})")
    if c not in (1, 3):
        raise PipelineError(f"{path}: images have {c} channels; expected 1 (grey) or 3 (RGB)")
    if h != w or h == 0:
        raise PipelineError(f"{path}: images are {h}x{w}; expected square images")
    return images
