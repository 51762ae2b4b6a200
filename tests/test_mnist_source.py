"""mnist_source without the 20 MB download: the safe unpickler, the exact float -> uint8 inversion, checks."""
from __future__ import annotations

import builtins
import gzip
import os
import pickle

import numpy as np
import pytest

from diffpipe.data import pixel_csv as csv_data
from diffpipe.sources import mnist as mnist_source
from diffpipe.data.pixel_csv import read_pixel_csv
from diffpipe.core.errors import PipelineError


class Evil:
    """Unpickling this calls `func(*args)`: what a hostile pickle would do."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def gz_pickle(obj) -> bytes:
    # Protocol 4 stores array buffers as bytes; protocol 2 from Python 3 would need `_codecs.encode`,
    # which the real (Python-2) file does not use and the unpickler rightly refuses.
    return gzip.compress(pickle.dumps(obj, protocol=4))


@pytest.mark.parametrize("func", [os.system, builtins.eval])
def test_unpickler_refuses_other_globals(tmp_path, func):
    marker = tmp_path / "pwned"
    payload = f"touch {marker}" if func is os.system else f"open({str(marker)!r}, 'w')"
    with pytest.raises(PipelineError, match=rf"refusing to unpickle \w+\.{func.__name__}:"):
        mnist_source.unpickle_gz(gz_pickle((np.zeros(3), Evil(func, payload))))
    assert not marker.exists()


def test_unpickler_loads_numpy_arrays():
    x = np.arange(12, dtype=np.float32).reshape(3, 4) / 256
    y = np.array([1, 2, 3], dtype=np.int64)
    loaded_x, loaded_y = mnist_source.unpickle_gz(gz_pickle((x, y)))
    np.testing.assert_array_equal(loaded_x, x)
    np.testing.assert_array_equal(loaded_y, y)
    assert loaded_x.dtype == np.float32


def test_unpickler_rejects_garbage():
    with pytest.raises(PipelineError, match="not a readable gzipped pickle"):
        mnist_source.unpickle_gz(b"not gzip at all")


def test_float_to_uint8_round_trip():
    k = np.arange(256, dtype=np.uint8)
    encoded = (k.astype(np.float32) / 256).reshape(1, 256)  # the pickle's encoding
    np.testing.assert_array_equal(mnist_source.floats_to_uint8(encoded), k.reshape(1, 256))


@pytest.mark.parametrize("value", [0.5 / 256, 1.0, -1 / 256])
def test_float_to_uint8_refuses_other_values(value):
    with pytest.raises(PipelineError, match="k/256"):
        mnist_source.floats_to_uint8(np.array([[0.0, value]], dtype=np.float32))


def tiny_splits(n: int = 3):
    """A (train, valid, test) structure like mnist.pkl.gz, n images each."""
    rng = np.random.default_rng(0)
    return tuple(
        (rng.integers(0, 256, (n, 784)).astype(np.float32) / 256, rng.integers(0, 10, n).astype(np.int64))
        for _ in range(3)
    )


def test_decode_checks_md5():
    with pytest.raises(PipelineError, match="MD5"):
        mnist_source.decode(gz_pickle(tiny_splits()))


def test_decode_checks_structure():
    train, valid, test = tiny_splits()
    with pytest.raises(PipelineError, match="labels"):
        mnist_source.decode(gz_pickle((train, valid, (test[0], test[1] + 10))))
    with pytest.raises(PipelineError, match="expected a"):
        mnist_source.decode(gz_pickle((train, valid)))


def test_csv_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 5)
    path = tmp_path / "digits.csv"
    csv_data.write_pixel_csv(path, images, labels)
    assert path.read_text().startswith("label,pixel0,pixel1,")
    read_images, read_labels = read_pixel_csv(path)
    np.testing.assert_array_equal(read_images[:, 0], images)
    np.testing.assert_array_equal(read_labels, labels)
