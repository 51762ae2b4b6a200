"""Atomic outputs: a failed write keeps the old file or folder, temp names are cleaned up and git-ignored; a write
that fails for want of room or permission is one line naming the file."""
import subprocess
import sys

import pytest
from helpers import ROOT

from diffpipe.core.errors import PipelineError
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


FULL_DISK = """import resource, signal, sys
from pathlib import Path
import numpy as np, torch
from diffpipe.core.errors import PipelineError
from diffpipe.core.files import atomic_dir, write_json, write_npy
from diffpipe.diffusion.checkpoint import save_checkpoint

folder = Path(sys.argv[1])
writers = {"samples.npy": lambda p: write_npy(p, np.zeros(100_000, np.uint8)),
           "checkpoint.pt": lambda p: save_checkpoint(p, {"weights": torch.zeros(10_000)}),
           "report.json": lambda p: write_json(p, {"text": "x" * 10_000})}
for name in writers:
    (folder / name).write_text("previous")
(folder / "export").mkdir()
# from here on the kernel refuses to grow a file past 4 KiB (EFBIG), as a full disk refuses it (ENOSPC)
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
for name, write in writers.items():
    try:
        write(folder / name)
    except PipelineError as e:
        print(e)
try:
    with atomic_dir(folder / "export") as tmp:
        (tmp / "weights.bin").write_bytes(bytes(10_000))
except PipelineError as e:
    print(e)
"""


def test_a_write_past_the_disks_room_is_one_line_naming_the_file_and_keeps_the_old_one(tmp_path):
    """torch.save wraps the OSError in a RuntimeError and np.save's fast path drops its errno: both still say why."""
    proc = subprocess.run([sys.executable, "-c", FULL_DISK, str(tmp_path)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    names = ["samples.npy", "checkpoint.pt", "report.json", "export"]
    assert proc.stdout.splitlines() == [f"{tmp_path / name}: could not write (File too large)" for name in names]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)  # no temp file or folder left
    assert all((tmp_path / name).read_text() == "previous" for name in names[:3])
    assert list((tmp_path / "export").iterdir()) == []


def test_an_unwritable_place_is_one_line_naming_the_file(tmp_path):
    (tmp_path / "a_file").write_text("")
    target = tmp_path / "a_file" / "reports" / "out.json"
    with pytest.raises(PipelineError) as e:
        write_text(target, "x")
    assert str(e.value) == f"{target}: could not write (Not a directory)"
    with pytest.raises(PipelineError, match=r"a_file/plots/grids: could not write \(Not a directory\)$"):
        with atomic_dir(tmp_path / "a_file" / "plots" / "grids"):
            pass


def test_other_failures_in_a_writer_are_raised_as_they_are(tmp_path):
    with pytest.raises(FileNotFoundError):  # an OSError about another file: not a failure to write the target
        with atomic_path(tmp_path / "out.npy"):
            open(tmp_path / "missing_input.npy")
    with pytest.raises(ValueError):
        with atomic_path(tmp_path / "out.npy"):
            raise ValueError("bad data")
    assert list(tmp_path.iterdir()) == []
