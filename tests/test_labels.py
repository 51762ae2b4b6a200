"""Class labels: read from a CSV's `label` column or an image folder's first-level subfolders, checked against
`prepare.num_classes`, written by prepare and read back; every bad label is one line naming the file and row."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from helpers import ROOT, root_params

from diffpipe.core.errors import PipelineError
from diffpipe.data.labels import class_frequencies, folder_labels, read_labels
from diffpipe.data.prepare import csv_set, folder_sets

HEADER = "label,pixel0,pixel1,pixel2,pixel3"


def prepare_cfg(num_classes: int, fraction: float = 0.0, **images):
    cfg = root_params().prepare
    image_cfg = dataclasses.replace(cfg.images, image_size=4, channels=1, reference_fraction=fraction, **images)
    return dataclasses.replace(cfg, num_classes=num_classes, images=image_cfg)


def one_line_error(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


# ---- CSV ------------------------------------------------------------------------------------------

def test_csv_labels_in_range_are_kept_as_int64(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text(f"{HEADER}\n9,0,0,0,0\n0,1,1,1,1\n")
    data = csv_set(str(path), 10)
    assert data.labels.dtype == np.int64 and data.labels.tolist() == [9, 0]


def test_csv_label_out_of_range_names_the_file_row_line_and_column(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text(f"pixel0,pixel1,{'label'},pixel2,pixel3\n0,0,3,0,0\n\n0,0,12,0,0\n")  # a blank line before row 2
    with pytest.raises(PipelineError) as excinfo:
        csv_set(str(path), 10)
    assert one_line_error(excinfo) == (f"{path}: row 2 (line 4), column 3 (label): label 12 is outside 0-9 "
                                       "(params key `prepare.num_classes` is 10)")
    assert csv_set(str(path), 13).labels.tolist() == [3, 12]  # the same file with 13 classes is fine


def test_csv_without_labels_is_refused_only_when_labels_are_wanted(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("pixel0,pixel1,pixel2,pixel3\n0,0,0,0\n")
    with pytest.raises(PipelineError, match=r"d\.csv: has no `label` column, but params key `prepare\.num_classes` is 1"):
        csv_set(str(path), 10)
    assert csv_set(str(path), 0).labels is None


# ---- image folders ----------------------------------------------------------------------------------

def draw(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (4, 4), value).save(path)


def test_folder_labels_are_the_sorted_first_level_subfolders(tmp_path):
    root = tmp_path / "imgs"
    for name, value in (("cat", 10), ("ant", 20), ("bee", 30)):
        for i in range(4):
            draw(root / name / ("deeper" if i == 3 else "") / f"{i}.png", value + i)
    train, reference, extra = folder_sets(str(root), None, prepare_cfg(3, fraction=0.25))
    assert extra["class_names"] == ["ant", "bee", "cat"]
    for data in (train, reference):  # each label follows its image through the seeded split
        assert data.labels.dtype == np.int64
        expected = {20: 0, 30: 1, 10: 2}
        assert [expected[int(v) // 10 * 10] for v in data.images[:, 0, 0, 0]] == data.labels.tolist()
    assert len(train.labels) == 9 and len(reference.labels) == 3
    unlabelled, _, extra = folder_sets(str(root), None, prepare_cfg(0, fraction=0.25))
    assert unlabelled.labels is None and "class_names" not in extra
    np.testing.assert_array_equal(unlabelled.images, train.images)  # labels do not change the split


def test_folder_label_errors_name_the_folder_or_file(tmp_path):
    root = tmp_path / "imgs"
    draw(root / "a" / "0.png", 1)
    draw(root / "b" / "0.png", 2)
    with pytest.raises(PipelineError) as excinfo:
        folder_sets(str(root), None, prepare_cfg(3, fraction=0.5))
    assert one_line_error(excinfo) == (f"{root}: 2 class subfolders with images (a, b) but params key "
                                       "`prepare.num_classes` is 3")
    draw(root / "loose.png", 3)
    with pytest.raises(PipelineError, match=rf"^{root}/loose\.png: not in a class subfolder"):
        folder_sets(str(root), None, prepare_cfg(2, fraction=0.5))
    (root / "loose.png").unlink()
    ref = tmp_path / "ref"
    draw(ref / "a" / "1.png", 1)
    draw(ref / "c" / "1.png", 1)
    with pytest.raises(PipelineError, match=rf"^{ref}/c/1\.png: class subfolder 'c' is not one of .*\['a', 'b'\]"):
        folder_sets(str(root), str(ref), prepare_cfg(2))
    labels, names = folder_labels(ref, ["a/1.png"], 2, ["a", "b"])
    assert labels.tolist() == [0] and names == ["a", "b"]


# ---- the label arrays prepare writes ----------------------------------------------------------------

def test_read_labels_checks_type_length_and_range(tmp_path):
    path = tmp_path / "labels.npy"
    np.save(path, np.array([0, 1, 2, 1], dtype=np.int64))
    assert read_labels(path, 4, 3, "why").tolist() == [0, 1, 2, 1]
    with pytest.raises(PipelineError, match=r"4 labels for 5 images"):
        read_labels(path, 5, 3, "why")
    with pytest.raises(PipelineError, match=rf"^{path}: row 3: label 2 is outside 0-1 \(the classifier has 2\)$"):
        read_labels(path, 4, 2, "the classifier has 2")
    np.save(path, np.array([0.0, 1.0]))
    with pytest.raises(PipelineError, match="expected integer labels"):
        read_labels(path, 2, 3, "why")
    path.write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(PipelineError, match="not a readable .npy array"):
        read_labels(path, 2, 3, "why")
    with pytest.raises(PipelineError, match="file not found"):
        read_labels(tmp_path / "absent.npy", 2, 3, "why")


def test_class_frequencies():
    np.testing.assert_allclose(class_frequencies(np.array([0, 0, 2, 2]), 4), [0.5, 0, 0.5, 0])


def run_prepare(tmp_path: Path, csv: Path, num_classes: int, with_labels: bool) -> subprocess.CompletedProcess:
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    data["prepare"].update(num_classes=num_classes, reference_limit=2, preview_count=2)
    if num_classes == 0:
        data["classifier"] = None
    data["evaluate"].update(num_real=2, kid_subset_size=2)
    data["sweep"].update(kid_subset_size=2)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(data))
    out = tmp_path / "out"
    cmd = [sys.executable, "scripts/launch.py", "stages/prepare.py", "--train-csv", str(csv), "--reference-csv", str(csv), "--params",
           str(params), "--out-train", str(out / "train.npy"), "--out-reference", str(out / "ref.npy"),
           "--preview", str(out / "preview.png"), "--report", str(out / "report.json")]
    if with_labels:
        cmd += ["--out-train-labels", str(out / "train_labels.npy"),
                "--out-reference-labels", str(out / "ref_labels.npy")]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)


def test_prepare_stage_writes_labels_only_for_labelled_data(tmp_path):
    csv = tmp_path / "d.csv"
    csv.write_text(f"{HEADER}\n1,0,0,0,0\n7,1,1,1,1\n3,2,2,2,2\n")
    proc = run_prepare(tmp_path, csv, 10, with_labels=True)
    assert proc.returncode == 0, proc.stderr
    assert np.load(tmp_path / "out" / "train_labels.npy").tolist() == [1, 7, 3]
    assert np.load(tmp_path / "out" / "ref_labels.npy").tolist() == [1, 7]
    assert json.loads((tmp_path / "out" / "report.json").read_text())["num_classes"] == 10

    proc = run_prepare(tmp_path, csv, 10, with_labels=False)
    assert proc.returncode == 1 and "--out-train-labels" in proc.stderr
    proc = run_prepare(tmp_path, csv, 0, with_labels=True)
    assert proc.returncode == 1 and "num_classes` is 0" in proc.stderr

    csv.write_text(f"{HEADER}\n1,0,0,0,0\n10,1,1,1,1\n")
    proc = run_prepare(tmp_path, csv, 10, with_labels=True)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1
    assert lines[0] == (f"error: {csv}: row 2 (line 3), column 1 (label): label 10 is outside 0-9 "
                        "(params key `prepare.num_classes` is 10)")
