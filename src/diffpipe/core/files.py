"""Atomic outputs and checked inputs: the one home for writing files and folders safely.

Every writer goes to a temporary name beside the target and renames it into place at the end, so a crash
or a bad input half-way never leaves a truncated output or destroys the previous one. Temporary names
start with a dot and contain `.tmp-` (folders being replaced are parked under `.old-`); `.gitignore`
ignores both, they are removed on failure, and a folder writer clears the ones a killed run left behind.
A write that fails for want of room or permission (a full disk, a file-size limit, a read-only folder)
is one PipelineError naming the target and the cause: `models/checkpoint.pt: could not write (No space
left on device)`. A stop signal (core/launch.py) raises in the writer, whose `finally` removes the temp.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from .errors import PipelineError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()


def _could_not_write(path: Path, e: OSError) -> PipelineError:
    return PipelineError(f"{path}: could not write ({e.strerror or e})")


def _write_failure(e: BaseException, path: Path, tmp: Path) -> Optional[PipelineError]:
    """The one-line error when writing `path` through `tmp` failed with `e`: an OSError about the temp (or
    naming no file: a write to an open file), also when another exception wraps it (torch.save raises a
    RuntimeError from the OSError); None for any other failure, which is raised as it is."""
    if isinstance(e, PipelineError):
        return None
    while e is not None:
        if isinstance(e, OSError) and (e.filename is None or str(e.filename).startswith(str(tmp))):
            return _could_not_write(path, e)
        e = e.__cause__ or e.__context__
    return None


def _temp(path: Path, folder: bool = False) -> Path:
    """A new temp file (or folder) beside `path`, its folder made if needed."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if folder:
            return Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp-"))
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-", suffix=path.suffix)
    except OSError as e:
        raise _could_not_write(path, e) from None
    os.close(fd)
    return Path(tmp)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp file path beside `path`; on success rename it onto `path`, else delete it."""
    path = Path(path)
    tmp_path = _temp(path)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp creates 0600; outputs get normal permissions
        os.replace(tmp_path, path)
    except Exception as e:
        failure = _write_failure(e, path, tmp_path)
        if failure is None:
            raise
        raise failure from None
    finally:
        with contextlib.suppress(OSError):
            tmp_path.unlink(missing_ok=True)


def replace_dir(src: Path, dst: Path) -> None:
    """Move folder `src` onto `dst`. A folder cannot be renamed over a non-empty one, so the old folder is
    renamed aside first and deleted only after the new one is in place: at every instant `dst` is either
    the complete old folder or the complete new one (or, between the two renames, parked beside it)."""
    old = None
    if dst.exists():
        old = Path(tempfile.mkdtemp(dir=dst.parent, prefix=f".{dst.name}.old-"))
        os.replace(dst, old / dst.name)
    try:
        os.replace(src, dst)
    except OSError:
        if old is not None:  # put the old folder back
            os.replace(old / dst.name, dst)
            old.rmdir()
        raise
    if old is not None:
        shutil.rmtree(old)


def clear_stale(path: Path) -> None:
    """Remove the temp files and folders of `path` that a killed run left behind (never the output itself)."""
    for pattern in (f".{path.name}.tmp-*", f".{path.name}.old-*"):
        for stale in path.parent.glob(pattern):
            shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temp folder beside `path`; on success it replaces `path` as a whole, else it is deleted."""
    path = Path(path)
    clear_stale(path)
    tmp = _temp(path, folder=True)
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp makes it private
        replace_dir(tmp, path)
    except Exception as e:
        failure = _write_failure(e, path, tmp)
        if failure is None:
            raise
        raise failure from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_json(path: str | os.PathLike, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


class _Writes:
    """A file seen only through `write`: np.save then writes it in chunks, whose errors say why (errno), where
    its fast path for real files (`tofile`) says only how many bytes it wrote."""

    def __init__(self, f):
        self.write = f.write


def write_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(_Writes(f), array)


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
