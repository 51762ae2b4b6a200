"""Pictures: grids and the reverse-process strip are enlarged so small images stay legible."""
from __future__ import annotations

import numpy as np
from PIL import Image

from diffpipe.pictures.grids import display_scale, grid_image
from diffpipe.pictures.process import save_process


def test_display_scale_enlarges_small_images_more():
    assert [display_scale(s) for s in (16, 24, 28, 32, 64)] == [4, 3, 2, 2, 2]
    assert display_scale(28, minimum=3) == 3


def test_grid_cells_of_16_px_images_are_drawn_at_64_px():
    images = np.full((4, 3, 16, 16), 200, dtype=np.uint8)
    img = grid_image(images, nrow=2, scale=display_scale(16))
    assert img.size == ((2 * (16 + 2) + 2) * 4,) * 2


def test_process_pictures_use_the_display_scale(tmp_path):
    frames = np.zeros((5, 2, 1, 16, 16), dtype=np.uint8)
    ts = save_process(frames, frames, [4, 3, 2, 1, 0], tmp_path / "p.gif", tmp_path / "p.png", strip_columns=3)
    assert ts == [4, 2, 0]
    strip = Image.open(tmp_path / "p.png")
    assert strip.size == ((3 * 18 + 2) * 4, (2 * 18 + 2) * 4)
    assert Image.open(tmp_path / "p.gif").size == ((2 * 18 + 2) * 4, (18 + 2) * 4)
