"""read_pixel_csv: the digit-recognizer layout, and a one-line error naming file/row/column for bad input."""
from __future__ import annotations

import dataclasses

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from helpers import root_params

from diffpipe.core.errors import PipelineError
from diffpipe.data.pixel_csv import read_pixel_csv
from diffpipe.data.prepare import ImageSet, pixel_mean_std, prepare


def PrepareConfig(**kw):
    return dataclasses.replace(root_params().prepare, **kw)

REPO = Path(__file__).resolve().parents[1]
HEADER_2X2 = "label,pixel0,pixel1,pixel2,pixel3"


def write(tmp_path: Path, text: str, name: str = "data.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_reads_labels_and_pixels(tmp_path):
    path = write(tmp_path, f"{HEADER_2X2}\n7,0,1,2,3\n3,255,254,253,252\n")
    images, labels = read_pixel_csv(path)
    assert images.dtype == np.uint8 and images.shape == (2, 1, 2, 2)
    np.testing.assert_array_equal(images[0, 0], [[0, 1], [2, 3]])
    np.testing.assert_array_equal(images[1, 0], [[255, 254], [253, 252]])
    np.testing.assert_array_equal(labels, [7, 3])


def test_no_label_column(tmp_path):
    path = write(tmp_path, "pixel0,pixel1,pixel2,pixel3\n0,1,2,3\n")
    images, labels = read_pixel_csv(path)
    assert labels is None
    np.testing.assert_array_equal(images[0, 0], [[0, 1], [2, 3]])


def test_shuffled_pixel_columns_16_pixels(tmp_path):
    """A 4x4 image with the columns in a random order and the label in the middle: pixels follow i."""
    rng = np.random.default_rng(0)
    order = rng.permutation(16)
    names = [f"pixel{i}" for i in order]
    names.insert(5, "label")
    values = [str(10 * i) for i in order]  # pixel i holds 10 * i
    values.insert(5, "4")
    path = write(tmp_path, ",".join(names) + "\n" + ",".join(values) + "\n")
    images, labels = read_pixel_csv(path)
    assert images.shape == (1, 1, 4, 4)
    np.testing.assert_array_equal(images[0, 0].ravel(), 10 * np.arange(16))
    np.testing.assert_array_equal(labels, [4])


def test_tolerated_variants(tmp_path):
    """Byte-order mark, CRLF line ends, blank lines, no final newline, quoted numbers, leading zeros
    and spaces: all common in exports, and all accepted by numpy.loadtxt."""
    path = tmp_path / "data.csv"
    path.write_bytes(b'\xef\xbb\xbfpixel0,pixel1,pixel2,pixel3\r\n0,"1", 2,003\r\n\r\n4,5,6,7')
    images, _ = read_pixel_csv(path)
    np.testing.assert_array_equal(images.reshape(2, 4), [[0, 1, 2, 3], [4, 5, 6, 7]])


# (file content, text the error must contain besides the file name)
BAD_FILES = {
    "empty file": ("", ["empty file"]),
    "header only": (f"{HEADER_2X2}\n", ["no data rows"]),
    "blank header": ("\n1,2\n", ["header row (line 1) is blank"]),
    "unknown column": ("label,pixel0,colour\n1,2,3\n", ["column 3", "'colour'", "unknown column"]),
    "no pixel columns": ("label\n1\n", ["no pixel columns"]),
    "duplicate label": ("label,pixel0,label\n1,2,3\n", ["column 3", "duplicate `label`"]),
    "duplicate pixel": ("pixel0,pixel1,pixel1,pixel3\n0,0,0,0\n", ["column 3", "duplicate pixel column", "column 2"]),
    "gap in pixels": ("pixel0,pixel1,pixel3,pixel4\n0,0,0,0\n", ["pixel2 is missing"]),
    "non-square": ("pixel0,pixel1,pixel2\n0,0,0\n", ["3 pixel columns", "square"]),
    "non-numeric": (f"{HEADER_2X2}\n1,0,0,0,0\n1,0,abc,0,0\n", ["row 2 (line 3)", "column 3 (pixel1)", "'abc'", "not a number"]),
    "above 255": (f"{HEADER_2X2}\n1,0,0,0,256\n", ["row 1 (line 2)", "column 5 (pixel3)", "'256'", "outside 0-255"]),
    "negative": (f"{HEADER_2X2}\n1,-1,0,0,0\n", ["row 1", "column 2 (pixel0)", "outside 0-255"]),
    "huge": (f"{HEADER_2X2}\n1,0,0,0,99999999999999999999999\n", ["row 1", "column 5", "outside 0-255"]),
    "non-integer": (f"{HEADER_2X2}\n1,0,0.5,0,0\n", ["row 1", "column 3 (pixel1)", "'0.5'", "not an integer"]),
    "bad label": (f"{HEADER_2X2}\n1,0,0,0,0\n300,0,0,0,0\n", ["row 2", "column 1 (label)", "outside 0-255"]),
    "boolean": (f"{HEADER_2X2}\n1,0,True,0,0\n", ["row 1", "column 3 (pixel1)", "'True'", "not a number"]),
    "float notation": (f"{HEADER_2X2}\n1,0,1e2,0,0\n", ["row 1", "column 3 (pixel1)", "'1e2'", "not an integer"]),
    "NaN": (f"{HEADER_2X2}\n1,0,0,NaN,0\n", ["row 1", "column 4 (pixel2)", "'NaN'", "not a number"]),
    "empty cell": (f"{HEADER_2X2}\n1,0,,0,0\n", ["row 1", "column 3 (pixel1)", "empty cell"]),
    "long row": (f"{HEADER_2X2}\n1,0,0,0,0\n1,0,0,0,0,9\n", ["row 2 (line 3)", "6 fields", "5 columns"]),
    "long first row": (f"{HEADER_2X2}\n1,0,0,0,0,9\n", ["row 1 (line 2)", "6 fields"]),
    "short row": (f"{HEADER_2X2}\n1,0,0,0,0\n1,0,0\n1,0,0,0,0\n", ["row 2 (line 3)", "3 fields"]),
    "short row after blank line": (f"{HEADER_2X2}\n\n1,0,0,0,0\n\n1,0\n", ["row 2 (line 5)", "2 fields"]),
    "whitespace-only line": (f"{HEADER_2X2}\n1,0,0,0,0\n   \n", ["row 2 (line 3)", "1 field but"]),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_input_names_file_and_place(tmp_path, case):
    text, expected = BAD_FILES[case]
    path = write(tmp_path, text)
    with pytest.raises(PipelineError) as excinfo:
        read_pixel_csv(path)
    message = str(excinfo.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    for part in expected:
        assert part in message, f"{part!r} not in {message!r}"


def test_missing_file_and_binary_file(tmp_path):
    with pytest.raises(PipelineError, match="file not found"):
        read_pixel_csv(tmp_path / "absent.csv")
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xfe\x00\x81garbage")
    with pytest.raises(PipelineError, match="not a UTF-8 text file"):
        read_pixel_csv(binary)


# --- stage `prepare`: the pure function, then the script as a subprocess ---------------------------

def image_set(n: int, side: int, labels: bool = True) -> ImageSet:
    images = np.arange(n * side * side, dtype=np.uint8).reshape(n, 1, side, side)
    return ImageSet(images, np.arange(n) % 3 if labels else None, f"set{n}x{side}.csv")


def test_prepare_limits_and_report():
    cfg = PrepareConfig(train_limit=4, reference_limit=0, preview_count=2)
    train, reference, report = prepare(image_set(6, 2), image_set(3, 2, labels=False), cfg)
    assert len(train.images) == 4 and len(reference.images) == 3
    assert report["train"]["count"] == 4 and report["train"]["source_rows"] == 6
    assert report["train"]["image_shape"] == [1, 2, 2]
    assert report["train"]["label_counts"] == {"0": 2, "1": 1, "2": 1}
    assert "label_counts" not in report["reference"]


def test_prepare_refuses_shape_mismatch_and_short_files():
    cfg = PrepareConfig(train_limit=0, reference_limit=0, preview_count=1)
    with pytest.raises(PipelineError, match="image shapes differ"):
        prepare(image_set(2, 2), image_set(2, 3), cfg)
    with pytest.raises(PipelineError, match="prepare.train_limit.*only 2 rows"):
        prepare(image_set(2, 2), image_set(2, 2), PrepareConfig(train_limit=5, reference_limit=0, preview_count=1))


def test_pixel_mean_std_matches_numpy():
    images = np.random.default_rng(0).integers(0, 256, (7, 1, 5, 5), dtype=np.uint8)
    mean, std = pixel_mean_std(images)
    assert mean == pytest.approx((images / 255.0).mean(), abs=1e-12)
    assert std == pytest.approx((images / 255.0).std(), abs=1e-12)


def run_prepare(tmp_path: Path, train_csv: Path, reference_csv: Path) -> tuple[subprocess.CompletedProcess, dict]:
    data = yaml.safe_load((REPO / "params.yaml").read_text())  # the whole file: every stage checks it all
    data["prepare"].update(train_limit=0, reference_limit=2, preview_count=4)
    data["evaluate"].update(num_real=2, kid_subset_size=2)
    data["sweep"].update(kid_subset_size=2)
    params = write(tmp_path, yaml.safe_dump(data), "params.yaml")
    outs = {name: tmp_path / "out" / name for name in ("train.npy", "reference.npy", "train_labels.npy",
                                                        "reference_labels.npy", "preview.png", "report.json")}
    cmd = [
        sys.executable, "scripts/launch.py", "stages/prepare.py", "--train-csv", str(train_csv), "--reference-csv", str(reference_csv),
        "--params", str(params), "--out-train", str(outs["train.npy"]), "--out-reference", str(outs["reference.npy"]),
        "--out-train-labels", str(outs["train_labels.npy"]), "--out-reference-labels", str(outs["reference_labels.npy"]),
        "--preview", str(outs["preview.png"]), "--report", str(outs["report.json"]),
    ]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True), outs


def test_prepare_stage_writes_outputs(tmp_path):
    good = write(tmp_path, f"{HEADER_2X2}\n1,0,1,2,3\n2,4,5,6,7\n3,1,1,1,1\n", "good.csv")
    proc, outs = run_prepare(tmp_path, good, good)
    assert proc.returncode == 0, proc.stderr
    assert np.load(outs["train.npy"]).shape == (3, 1, 2, 2)
    assert np.load(outs["reference.npy"]).shape == (2, 1, 2, 2)  # reference_limit: 2
    labels = np.load(outs["train_labels.npy"])
    assert labels.dtype == np.int64 and labels.tolist() == [1, 2, 3]
    assert np.load(outs["reference_labels.npy"]).tolist() == [1, 2]
    assert outs["preview.png"].stat().st_size > 0 and outs["report.json"].exists()


def test_prepare_stage_bad_csv_is_one_line_and_keeps_old_outputs(tmp_path):
    good = write(tmp_path, f"{HEADER_2X2}\n1,0,1,2,3\n2,4,5,6,7\n", "good.csv")
    bad = write(tmp_path, f"{HEADER_2X2}\n1,0,1,2,3\n1,0,x,2,3\n", "bad.csv")
    _, outs = run_prepare(tmp_path, good, good)  # only to learn the output paths
    old = outs["train.npy"]
    old.write_bytes(b"previous output")

    proc, _ = run_prepare(tmp_path, bad, good)

    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert str(bad) in lines[0] and "row 2" in lines[0] and "column 3" in lines[0]
    assert old.read_bytes() == b"previous output"
