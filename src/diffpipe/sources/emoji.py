"""A small RGBA image-folder data set: Google's Noto emoji at 64×64, from a pinned npm package.

The machines here reach only the PyPI, npm and Debian registries, so the photo data of the flowers DDIM system
(Oxford Flowers) is out of reach; `emoji-datasource-google@16.0.0` (iamcal/emoji-data) ships 3,786
emoji as 64×64 RGBA PNGs under `img/google/64/`. The package code is MIT; the Google emoji images are
Noto Emoji, Apache License 2.0.

The tarball comes from `npm pack` (no install, no scripts) and is checked against its pinned sha512
before anything is read from it. Only regular files named `package/img/google/64/<name>.png` are
taken, each written under its bare file name after a name check, so a hostile tarball cannot write
outside the output folder. The folder is built beside the target and swapped into place at the end (core.files.atomic_dir).
"""
from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from PIL import Image

from ..core.errors import PipelineError
from ..core.files import atomic_dir

PACKAGE = "emoji-datasource-google@16.0.0"
# npm's `dist.integrity` for the tarball (`npm view emoji-datasource-google@16.0.0 dist.integrity`).
INTEGRITY = "sha512-ZRexfzs7MVoLnmzZmNsO4TKhnAJp5D++Vm6PpUpH/jEQQlemp3l88CjZ+DoZ2faM9R4QxZkOPJCoT8DlPhfQ3A=="
PREFIX = "package/img/google/64/"
EXPECTED_COUNT = 3786
SIDE = 64
LICENSE_FILE = "LICENSE.txt"  # not .png: image_folder.scan_folder lists it as skipped, never as an image

LICENSE_NOTE = f"""\
Emoji images: Google Noto Emoji, 64x64 PNG, Apache License 2.0
(https://github.com/googlefonts/noto-emoji, https://www.apache.org/licenses/LICENSE-2.0).

Taken unchanged from the npm package {PACKAGE} (iamcal/emoji-data,
https://github.com/iamcal/emoji-data; package code MIT), directory img/google/64/,
tarball integrity {INTEGRITY}.
{EXPECTED_COUNT} files, named by their Unicode code points (e.g. 1f600.png).
"""

_SAFE_NAME = re.compile(r"[0-9A-Za-z][0-9A-Za-z._-]*\.png")


def npm_pack(spec: str, dest: Path) -> Path:
    """`npm pack SPEC` in `dest` (downloads the registry tarball; installs and runs nothing) -> the .tgz."""
    cmd = ["npm", "pack", spec, "--ignore-scripts", "--loglevel=error", "--pack-destination", str(dest)]
    try:
        proc = subprocess.run(cmd, cwd=dest, capture_output=True, text=True)
    except FileNotFoundError:
        raise PipelineError(f"npm not found: it is needed to download {spec} (install Node.js/npm)") from None
    if proc.returncode != 0:
        raise PipelineError(f"`npm pack {spec}` failed (exit {proc.returncode}): {npm_error_line(proc.stderr)}")
    tarballs = sorted(dest.glob("*.tgz"))
    if len(tarballs) != 1:
        raise PipelineError(f"`npm pack {spec}` produced {len(tarballs)} tarballs in {dest}, expected 1")
    return tarballs[0]


def npm_error_line(stderr: str) -> str:
    """The informative line of npm's error output ("npm error notarget No matching version ...")."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("npm error") and not ln.startswith(("npm error code", "npm error A complete log"))]
    return (errors or lines or ["no output"])[0]


def verify_integrity(tarball: Path, integrity: str) -> None:
    """Check an npm `sha512-<base64>` integrity string against the file."""
    algorithm, _, expected = integrity.partition("-")
    h = hashlib.new(algorithm)
    with open(tarball, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    actual = base64.b64encode(h.digest()).decode()
    if actual != expected:
        raise PipelineError(f"{tarball.name}: {algorithm} is {actual}, expected {expected} (pinned for {PACKAGE})")


def member_file_name(member: tarfile.TarInfo, prefix: str) -> str | None:
    """The bare file name to write for `member`, or None if it is not one of the wanted PNGs.

    Members under `prefix` that are not plain files, or whose names could escape the output
    folder, are an error rather than silently skipped: the pinned tarball has none.
    """
    name = member.name
    if not name.startswith(prefix):
        return None
    rest = name[len(prefix):]
    if name.startswith("/") or ".." in name.split("/") or "/" in rest or "\\" in rest:
        raise PipelineError(f"unsafe member name in tarball: {name!r}")
    if not rest.lower().endswith(".png"):
        return None
    if not member.isfile():
        raise PipelineError(f"tarball member {name!r} is not a regular file (link or device)")
    if not _SAFE_NAME.fullmatch(rest):
        raise PipelineError(f"unexpected file name in tarball: {name!r}")
    return rest


def extract_pngs(tarball: Path, prefix: str, dest: Path) -> list[str]:
    """Write the PNGs directly under `prefix` in `tarball` into `dest` (flat) -> sorted file names."""
    names = []
    with tarfile.open(tarball, "r:gz") as tf:
        for member in tf:
            name = member_file_name(member, prefix)
            if name is None:
                continue
            if name in names:
                raise PipelineError(f"tarball member {member.name!r} appears twice")
            src = tf.extractfile(member)
            with open(dest / name, "xb") as f:  # "x": never overwrite, never follow a planted link
                shutil.copyfileobj(src, f)
            names.append(name)
    return sorted(names)


def check_pngs(folder: Path, names: list[str], side: int) -> None:
    """Every file is a PNG of side×side pixels (reads headers only)."""
    for name in names:
        try:
            with Image.open(folder / name) as im:
                ok = im.format == "PNG" and im.size == (side, side)
                found = f"{im.format} {im.size[0]}x{im.size[1]}"
        except (OSError, SyntaxError) as e:
            raise PipelineError(f"{name} from {PACKAGE} is not a readable image ({e})") from None
        if not ok:
            raise PipelineError(f"{name} from {PACKAGE} is {found}, expected PNG {side}x{side}")


def fetch(out_dir: str | os.PathLike, expected_count: int = EXPECTED_COUNT) -> int:
    """Download the pinned package and write its 64×64 emoji PNGs + a license note to `out_dir`.

    Returns the number of images. `out_dir` is replaced only once everything is checked.
    """
    with tempfile.TemporaryDirectory(prefix="npm-pack-") as dl:
        tarball = npm_pack(PACKAGE, Path(dl))
        verify_integrity(tarball, INTEGRITY)
        with atomic_dir(out_dir) as staging:
            names = extract_pngs(tarball, PREFIX, staging)
            if len(names) != expected_count:
                raise PipelineError(f"{PACKAGE} has {len(names)} PNGs under {PREFIX}, expected {expected_count}")
            check_pngs(staging, names, SIDE)
            (staging / LICENSE_FILE).write_text(LICENSE_NOTE)
    return len(names)
