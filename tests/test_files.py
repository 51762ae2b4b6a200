"""Atomic outputs: a failed write keeps the old file or folder, temp names are cleaned up and git-ignored."""
import subprocess

import pytest
from helpers import ROOT

from diffpipe.core.files import atomic_dir, atomic_path, write_text


def test_failed_file_write_keeps_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "out.json"
    write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_folder_is_replaced_whole_or_not_at_all(tmp_path):
    target = tmp_path / "grids"
    target.mkdir()
    (target / "old.png").write_bytes(b"1")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "new.png").write_bytes(b"2")
            raise RuntimeError("crash")
    assert [p.name for p in target.iterdir()] == ["old.png"]
    assert [p.name for p in tmp_path.iterdir()] == ["grids"]
    with atomic_dir(target) as tmp:
        (tmp / "new.png").write_bytes(b"2")
    assert [p.name for p in target.iterdir()] == ["new.png"]
    assert [p.name for p in tmp_path.iterdir()] == ["grids"]


def test_temp_folders_of_a_killed_run_are_cleared_and_git_ignored(tmp_path):
    stale = tmp_path / ".grids.tmp-abc123"  # what a kill -9 between mkdtemp and the swap leaves
    stale.mkdir()
    (stale / "epoch_001.png").write_bytes(b"1")
    parked = tmp_path / ".grids.old-xyz"
    parked.mkdir()
    with atomic_dir(tmp_path / "grids"):
        pass
    assert [p.name for p in tmp_path.iterdir()] == ["grids"]
    for name in ("plots/train/.grids.tmp-abc123", "plots/train/.grids.old-x", "metrics/.train.json.tmp-1.json"):
        ignored = subprocess.run(["git", "check-ignore", "-q", "--no-index", name], cwd=ROOT)
        assert ignored.returncode == 0, f"{name} is not git-ignored"
