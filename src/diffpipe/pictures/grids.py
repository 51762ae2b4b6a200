"""Image grids as PNG (Pillow; torchvision.io is unavailable with the CPU torch here)."""
from __future__ import annotations

import math
import os

import numpy as np
from PIL import Image

from ..core.files import atomic_path


def display_scale(size: int, minimum: int = 2, cell: int = 56) -> int:
    """The nearest-neighbour enlargement for pictures of `size`-pixel images: at least `minimum`, and enough for a
    cell of about `cell` pixels (28 and 32 px: 2; 16 px: 4), so small images stay legible in the README."""
    return max(minimum, -(-cell // max(1, size)))


def make_grid(images: np.ndarray, nrow: int | None = None, pad: int = 2) -> np.ndarray:
    """(N, C, H, W) uint8 -> (H', W', C) uint8 grid, `nrow` images per row, `pad` black pixels between."""
    n, c, h, w = images.shape
    nrow = nrow or max(1, int(math.ceil(math.sqrt(n))))
    rows = int(math.ceil(n / nrow))
    grid = np.zeros((rows * (h + pad) + pad, nrow * (w + pad) + pad, c), dtype=np.uint8)
    for i in range(n):
        r, col = divmod(i, nrow)
        y, x = pad + r * (h + pad), pad + col * (w + pad)
        grid[y:y + h, x:x + w] = images[i].transpose(1, 2, 0)
    return grid


def grid_image(images: np.ndarray, nrow: int | None = None, scale: int = 1) -> Image.Image:
    """A grid of (N, C, H, W) uint8 images as a Pillow image; `scale` enlarges by nearest."""
    grid = make_grid(np.asarray(images), nrow)
    if grid.shape[2] == 1:
        img = Image.fromarray(grid[:, :, 0], mode="L")
    else:
        img = Image.fromarray(grid, mode="RGB")
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    return img


def save_grid(path: str | os.PathLike, images: np.ndarray, nrow: int | None = None, scale: int = 1) -> None:
    """Write a grid of (N, C, H, W) uint8 images as a PNG (atomically); `scale` enlarges by nearest."""
    img = grid_image(images, nrow, scale)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")


def class_rows(images: np.ndarray, labels: np.ndarray, count: int) -> tuple[np.ndarray, int]:
    """About `count` of (N, C, H, W) `images` arranged one class per row: for each distinct label (ascending),
    its first `count // classes` images (at least 1; black where a class has fewer). -> (images, per row)."""
    classes = np.unique(labels)
    per_row = max(1, count // len(classes))
    rows = []
    for c in classes:
        mine = images[labels == c][:per_row]
        pad = np.zeros((per_row - len(mine), *images.shape[1:]), dtype=images.dtype)
        rows.append(np.concatenate([mine, pad]))
    return np.concatenate(rows), per_row
