"""Atomic file output: every writer goes to a temp file in the target folder, then renames.

A crash or a bad input half-way never leaves a truncated output or destroys the previous one.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np


_UMASK = os.umask(0)
os.umask(_UMASK)


class PipelineError(Exception):
    """An error with a one-line message meant for the user (file/key and what is wrong)."""


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside `path`; on success rename it onto `path`, else delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp" + path.suffix)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp creates 0600; outputs get normal permissions
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


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
    return images
