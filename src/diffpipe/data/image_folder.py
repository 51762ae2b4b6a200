"""A folder of image files -> uint8 (N, C, S, S) arrays, as the flowers DDIM system prepares its photos.

The flowers DDIM system: each photo is center-cropped to a square and resized with antialiasing to S×S. Here
that is done with Pillow only (torchvision.io is unavailable with the CPU torch here), for any file
Pillow reads in the common formats (PNG, JPEG, WebP, BMP, GIF) and any of their pixel modes:
EXIF orientation is applied first, transparency is composited onto a fixed background colour,
16-bit grey is rescaled to 8 bits (not clipped), animations contribute their first frame.

Files that are not images, or do not decode, are skipped and listed with a one-line reason, so one
bad file in thousands does not stop a run but is still reported.
"""
from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from ..core.errors import PipelineError
from ..core.params import ImageFolderConfig

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")
NOT_AN_IMAGE = "not an image file (extension)"

# Modes whose pixels carry an alpha channel; "P", "L" and "RGB" images may instead carry a
# transparent colour in `info["transparency"]` (PNG tRNS, GIF transparent index).
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_MODES_16BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")

# What Pillow raises on broken or hostile files (truncated data, bad chunks, bad headers, bombs).
_DECODE_ERRORS = (
    OSError,  # includes UnidentifiedImageError and "image file is truncated"
    SyntaxError,  # Pillow's plugins signal malformed headers/chunks with SyntaxError
    ValueError,
    EOFError,
    IndexError,
    KeyError,
    struct.error,
    zlib.error,
    Image.DecompressionBombError,
)


class ImageDecodeError(PipelineError):
    """One file could not be read as an image; `reason` is a one-line description."""

    def __init__(self, path: str | os.PathLike, reason: str):
        super().__init__(f"{path}: {reason}")
        self.reason = reason


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or "no message"
    return f"{type(e).__name__}: {text}"


def _gray16_to_l(im: Image.Image) -> Image.Image:
    """16-bit grey ("I;16*", or "I" as older Pillow reads 16-bit PNG) -> 8-bit "L", v -> round(v * 255 / 65535)."""
    v = np.asarray(im).astype(np.int64)
    v = np.clip(v, 0, 65535)  # "I" is 32-bit signed; 16-bit sources only fill 0..65535
    return Image.fromarray(((v * 255 + 32767) // 65535).astype(np.uint8), mode="L")


def _to_rgb_or_l(im: Image.Image, background: tuple[int, ...]) -> Image.Image:
    """Any Pillow mode -> "L" (grey sources without alpha) or "RGB", alpha composited on `background`."""
    if im.mode in _MODES_16BIT:
        return _gray16_to_l(im)
    if im.mode == "1":
        return im.convert("L")
    if im.mode in _ALPHA_MODES or "transparency" in im.info:
        rgba = im.convert("RGBA")
        out = Image.new("RGB", rgba.size, background)
        out.paste(rgba, mask=rgba.getchannel("A"))  # out = a * image + (1 - a) * background
        return out
    if im.mode in ("L", "RGB"):
        return im
    return im.convert("RGB")  # P, CMYK, YCbCr, LAB, HSV, F (CMYK by Pillow's plain formula, no ICC profile)


def _decode(path: Path, cfg: ImageFolderConfig) -> np.ndarray:
    size = cfg.image_size
    with Image.open(path) as im:
        if im.format == "JPEG":
            # Large photos: let libjpeg decode at 1/2 .. 1/8 scale (DCT scaling) while both sides stay
            # >= 8S. Lanczos still does the final >= 8x reduction, and rounding the crop to whole pixels
            # of the reduced image moves it by at most 1/8 of an output pixel. Small files decode fully.
            im.draft(im.mode, (8 * size, 8 * size))
        im.seek(0)  # first frame of animated GIF/WebP/PNG
        im.load()  # decode now, inside the try of the caller: truncated data raises here
        im = ImageOps.exif_transpose(im)  # EXIF orientation 2-8 -> upright pixels
        im = _to_rgb_or_l(im, cfg.background)
    # Center-crop to a square, then resize. Cropping first (rather than `resize(box=...)`) keeps pixels
    # outside the square out of the filter at its edges. Pillow's LANCZOS support widens with the
    # reduction factor, so downscaling is antialiased.
    w, h = im.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    im = im.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.LANCZOS)
    im = im.convert("L" if cfg.channels == 1 else "RGB")
    arr = np.asarray(im, dtype=np.uint8)
    return arr[None] if cfg.channels == 1 else arr.transpose(2, 0, 1)  # (H, W[, C]) -> (C, S, S)


def load_image(path: str | os.PathLike, cfg: ImageFolderConfig) -> np.ndarray:
    """One image file -> uint8 (C, S, S); raises ImageDecodeError (a PipelineError) if it does not decode."""
    try:
        return _decode(Path(path), cfg)
    except _DECODE_ERRORS as e:
        raise ImageDecodeError(path, _one_line(e)) from None


def list_files(root: Path) -> list[Path]:
    """Every regular file under `root` (recursively), sorted by relative POSIX path: the same order on any OS."""
    files = (p for p in root.rglob("*") if p.is_file())
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def scan_folder(root: str | os.PathLike, cfg: ImageFolderConfig) -> tuple[np.ndarray, list[str], list[dict]]:
    """Load every image under `root` -> (images uint8 (N, C, S, S), paths, skipped).

    `paths[i]` is image i's path relative to `root` (POSIX), in sorted order; `skipped` lists
    {"path", "reason"} for files with another extension or that do not decode. No usable image
    at all is an error.
    """
    root = Path(root)
    if not root.is_dir():
        raise PipelineError(f"{root}: image folder not found (or not a folder)")
    files = list_files(root)
    candidates, skipped = [], []
    for p in files:
        rel = p.relative_to(root).as_posix()
        if p.suffix.lower() in IMAGE_EXTENSIONS:
            candidates.append((p, rel))
        else:
            skipped.append({"path": rel, "reason": NOT_AN_IMAGE})
    # Preallocate for all candidates and fill in place: one copy of the data in memory, not a list + stack.
    out = np.empty((len(candidates), cfg.channels, cfg.image_size, cfg.image_size), dtype=np.uint8)
    paths: list[str] = []
    for p, rel in candidates:
        try:
            out[len(paths)] = load_image(p, cfg)
        except ImageDecodeError as e:
            skipped.append({"path": rel, "reason": e.reason})
            continue
        paths.append(rel)
    skipped.sort(key=lambda s: s["path"])
    if not paths:
        first = f"; first: {skipped[0]['path']} ({skipped[0]['reason']})" if skipped else ""
        raise PipelineError(f"{root}: no usable images ({len(files)} files, {len(skipped)} skipped){first}")
    images = out if len(paths) == len(out) else out[: len(paths)].copy()
    return images, paths, skipped


def split_indices(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of range(n) -> (train indices, reference indices), both in the permuted order.

    The permuted order makes "the first N" (row limits, preview grids) a random sample rather than
    the alphabetically first files. The reference set has round(n * fraction) images; both sets must
    be non-empty (reference may be empty only when fraction is 0).
    """
    n_ref = int(round(n * fraction))
    if n_ref >= n:
        raise PipelineError(f"reference_fraction {fraction} of {n} images leaves no training images")
    if fraction > 0 and n_ref == 0:
        raise PipelineError(f"reference_fraction {fraction} of {n} images gives an empty reference set")
    perm = np.random.default_rng(seed).permutation(n)
    return perm[n_ref:], perm[:n_ref]


def split_reference(images: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, C, S, S) -> (train, reference): a seeded random `fraction` held out for evaluation."""
    train_idx, ref_idx = split_indices(len(images), fraction, seed)
    return images[train_idx], images[ref_idx]
