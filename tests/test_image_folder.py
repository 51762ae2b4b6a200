"""image_folder: every Pillow mode and format a photo/emoji folder may hold, broken files, the split.

Most images are S×S with image_size = S, so no resampling happens and pixel values can be checked
exactly; the crop and antialiasing tests resize on purpose. Also the emoji fetcher's tarball
handling (without the network).
"""
from __future__ import annotations

import base64
import hashlib
import io
import tarfile

import numpy as np
import pytest
from PIL import Image

from diffpipe.core.config import from_dict
from diffpipe.core.errors import ConfigError, PipelineError
from diffpipe.core.params import ImageFolderConfig
from diffpipe.data.image_folder import (
    NOT_AN_IMAGE,
    ImageDecodeError,
    load_image,
    scan_folder,
    split_indices,
    split_reference,
)
from diffpipe.sources import emoji as emoji_source

BG = (10, 20, 200)


def cfg(size=8, channels=3, background=BG, fraction=0.0, seed=0) -> ImageFolderConfig:
    return ImageFolderConfig(image_size=size, channels=channels, background=background,
                             reference_fraction=fraction, split_seed=seed)


def luma(rgb) -> int:
    """Pillow's RGB -> L (ITU-R 601-2), rounded as Pillow rounds."""
    r, g, b = rgb
    return int((r * 299 + g * 587 + b * 114) / 1000 + 0.5)


def rgb_of(path, size=8, channels=3, **kw) -> np.ndarray:
    arr = load_image(path, cfg(size, channels, **kw))
    assert arr.dtype == np.uint8 and arr.shape == (channels, size, size)
    return arr


# ---- config -------------------------------------------------------------------------------------

def test_config_from_params_mapping():
    c = from_dict(ImageFolderConfig, {"image_size": 64, "channels": 3, "background": [255, 255, 255],
                                      "reference_fraction": 0.1, "split_seed": 0}, "prepare.images")
    assert c.background == (255, 255, 255)
    hash(c)


@pytest.mark.parametrize("field, value, key", [
    ("channels", 2, "prepare.images.channels"),
    ("image_size", 0, "prepare.images.image_size"),
    ("background", (255, 255), "prepare.images.background"),
    ("background", (0, 0, 256), "prepare.images.background"),
    ("reference_fraction", 1.0, "prepare.images.reference_fraction"),
    ("reference_fraction", -0.1, "prepare.images.reference_fraction"),
    ("split_seed", -1, "prepare.images.split_seed"),
])
def test_config_rejects_bad_values(field, value, key):
    kwargs = dict(image_size=8, channels=3, background=BG, reference_fraction=0.0, split_seed=0)
    kwargs[field] = value
    with pytest.raises(ConfigError, match=rf"`{key}`"):
        from_dict(ImageFolderConfig, kwargs, "prepare.images")


# ---- modes and formats --------------------------------------------------------------------------

def test_grey_L_png(tmp_path):
    Image.new("L", (8, 8), 100).save(tmp_path / "a.png")
    assert (rgb_of(tmp_path / "a.png") == 100).all()
    assert (rgb_of(tmp_path / "a.png", channels=1) == 100).all()


def test_mode_1_png(tmp_path):
    im = Image.new("1", (8, 8), 0)
    im.paste(1, (0, 0, 4, 8))  # left half white
    im.save(tmp_path / "a.png")
    g = rgb_of(tmp_path / "a.png", channels=1)[0]
    assert (g[:, :4] == 255).all() and (g[:, 4:] == 0).all()


def test_LA_alpha_composited_on_background(tmp_path):
    im = Image.new("LA", (8, 8), (200, 255))
    im.paste((200, 0), (0, 0, 8, 4))  # top half fully transparent
    im.save(tmp_path / "a.png")
    x = rgb_of(tmp_path / "a.png")
    assert (x[:, :4] == np.array(BG)[:, None, None]).all()
    assert (x[:, 4:] == 200).all()
    g = rgb_of(tmp_path / "a.png", channels=1)[0]
    assert (g[:4] == luma(BG)).all() and (g[4:] == 200).all()


def test_RGBA_half_alpha_blends_with_background(tmp_path):
    Image.new("RGBA", (8, 8), (250, 250, 250, 128)).save(tmp_path / "a.png")
    x = rgb_of(tmp_path / "a.png")
    expected = [(250 * 128 + b * 127) / 255 for b in BG]
    np.testing.assert_allclose(x[:, 0, 0], expected, atol=1)
    assert (x == x[:, :1, :1]).all()


def test_background_is_a_parameter(tmp_path):
    Image.new("RGBA", (8, 8), (0, 0, 0, 0)).save(tmp_path / "a.png")
    assert (rgb_of(tmp_path / "a.png", background=(255, 255, 255)) == 255).all()
    assert (rgb_of(tmp_path / "a.png", background=(0, 0, 0)) == 0).all()


def test_RGB_png_exact(tmp_path):
    Image.new("RGB", (8, 8), (1, 2, 3)).save(tmp_path / "a.png")
    assert (rgb_of(tmp_path / "a.png") == np.array([1, 2, 3])[:, None, None]).all()


def palette_image(transparent: bool) -> Image.Image:
    im = Image.new("P", (8, 8), 0)
    im.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (256 - 3) * 3)
    im.paste(1, (0, 0, 8, 4))  # top red, bottom index 0
    if transparent:
        im.info["transparency"] = 0
    return im


def test_P_png_without_transparency(tmp_path):
    palette_image(False).save(tmp_path / "a.png")
    x = rgb_of(tmp_path / "a.png")
    assert (x[:, :4] == np.array([255, 0, 0])[:, None, None]).all()
    assert (x[:, 4:] == 0).all()


def test_P_png_with_transparency(tmp_path):
    palette_image(True).save(tmp_path / "a.png", transparency=0)
    assert Image.open(tmp_path / "a.png").info.get("transparency") == 0
    x = rgb_of(tmp_path / "a.png")
    assert (x[:, :4] == np.array([255, 0, 0])[:, None, None]).all()
    assert (x[:, 4:] == np.array(BG)[:, None, None]).all()


def test_16bit_grey_png_scaled_not_clipped(tmp_path):
    values = np.array([0, 257, 32768, 65535], dtype=np.uint16)  # -> 0, 1, 128, 255
    Image.fromarray(np.repeat(values, 2).reshape(1, 8).repeat(8, axis=0)).save(tmp_path / "a.png")
    assert Image.open(tmp_path / "a.png").mode in ("I;16", "I")
    g = rgb_of(tmp_path / "a.png", channels=1)[0]
    assert g[0].tolist() == [0, 0, 1, 1, 128, 128, 255, 255]
    assert (rgb_of(tmp_path / "a.png")[:, 0, 6:] == 255).all()


def test_cmyk_jpeg(tmp_path):
    Image.new("CMYK", (8, 8), (255, 0, 0, 0)).save(tmp_path / "a.jpg", quality=95)  # pure cyan
    assert Image.open(tmp_path / "a.jpg").mode == "CMYK"
    np.testing.assert_allclose(rgb_of(tmp_path / "a.jpg")[:, 4, 4], [0, 255, 255], atol=3)


def half_white_jpeg(path, orientation: int) -> None:
    im = Image.new("RGB", (16, 16), (0, 0, 0))
    im.paste((255, 255, 255), (0, 0, 8, 16))  # stored: left half white
    exif = Image.Exif()
    exif[0x0112] = orientation
    im.save(path, quality=95, exif=exif)


@pytest.mark.parametrize("orientation, white", [(1, "left"), (6, "top"), (8, "bottom"), (3, "right")])
def test_exif_orientation_applied(tmp_path, orientation, white):
    # Orientation 6 = display rotated 90° clockwise: the stored left edge becomes the top; 8 is the reverse.
    half_white_jpeg(tmp_path / "a.jpg", orientation)
    g = rgb_of(tmp_path / "a.jpg", size=16, channels=1)[0].astype(int)
    halves = {"left": g[:, :8], "right": g[:, 8:], "top": g[:8], "bottom": g[8:]}
    assert halves[white].mean() > 240
    opposite = {"left": "right", "right": "left", "top": "bottom", "bottom": "top"}[white]
    assert halves[opposite].mean() < 15


def test_animated_gif_uses_first_frame(tmp_path):
    frames = [Image.new("RGB", (8, 8), c) for c in [(255, 0, 0), (0, 0, 255), (0, 255, 0)]]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(tmp_path / "a.gif").n_frames == 3
    assert (rgb_of(tmp_path / "a.gif") == np.array([255, 0, 0])[:, None, None]).all()


def test_webp_and_bmp(tmp_path):
    Image.new("RGBA", (8, 8), (5, 6, 7, 255)).save(tmp_path / "a.webp", lossless=True)
    Image.new("RGB", (8, 8), (9, 8, 7)).save(tmp_path / "a.bmp")
    assert (rgb_of(tmp_path / "a.webp") == np.array([5, 6, 7])[:, None, None]).all()
    assert (rgb_of(tmp_path / "a.bmp") == np.array([9, 8, 7])[:, None, None]).all()


@pytest.mark.parametrize("wide", [True, False])
def test_center_crop_of_non_square(tmp_path, wide):
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    im = Image.new("RGB", (30, 10) if wide else (10, 30))
    for i, c in enumerate(colours):
        im.paste(c, (10 * i, 0, 10 * i + 10, 10) if wide else (0, 10 * i, 10, 10 * i + 10))
    im.save(tmp_path / "a.png")
    assert (rgb_of(tmp_path / "a.png", size=10) == np.array([0, 255, 0])[:, None, None]).all()


def test_resize_is_antialiased(tmp_path):
    board = (np.indices((64, 64)).sum(0) % 2 * 255).astype(np.uint8)  # 1-pixel checkerboard, mean 127.5
    Image.fromarray(board).save(tmp_path / "a.png")
    g = rgb_of(tmp_path / "a.png", size=8, channels=1).astype(int)
    assert np.abs(g - 127.5).max() <= 3  # nearest-neighbour would give only 0s or only 255s


def test_large_jpeg_downscaled(tmp_path):
    # 620×420 JPEG: decoded at 1/4 scale (draft, 155×105), cropped to the central square, resized to 8.
    im = Image.new("RGB", (620, 420), (0, 0, 0))
    im.paste((255, 255, 255), (100, 0, 310, 420))  # white on the left half of the central square
    im.save(tmp_path / "a.jpg", quality=95)
    g = rgb_of(tmp_path / "a.jpg", size=8, channels=1).astype(int)[0]
    assert g[:, :3].min() > 240 and g[:, 5:].max() < 15


# ---- folders ------------------------------------------------------------------------------------

def test_scan_folder_skips_broken_and_non_images(tmp_path):
    root = tmp_path / "imgs"
    (root / "sub").mkdir(parents=True)
    Image.new("RGB", (8, 8), (1, 1, 1)).save(root / "b.PNG")
    Image.new("L", (12, 8), 2).save(root / "sub" / "a.JpEg", quality=95)
    Image.new("RGB", (8, 8), (3, 3, 3)).save(root / "a.png")
    good = io.BytesIO()
    Image.new("RGB", (64, 64), (0, 0, 0)).save(good, format="PNG", compress_level=0)
    (root / "truncated.png").write_bytes(good.getvalue()[: len(good.getvalue()) // 2])
    (root / "noise.png").write_bytes(np.random.default_rng(0).bytes(500))
    (root / "notes.txt").write_text("hello")

    images, paths, skipped = scan_folder(root, cfg(size=8))
    assert paths == ["a.png", "b.PNG", "sub/a.JpEg"]
    assert images.shape == (3, 3, 8, 8) and images.dtype == np.uint8
    assert images[0, :, 0, 0].tolist() == [3, 3, 3]
    reasons = {s["path"]: s["reason"] for s in skipped}
    assert set(reasons) == {"truncated.png", "noise.png", "notes.txt"}
    assert reasons["notes.txt"] == NOT_AN_IMAGE
    assert "truncated" in reasons["truncated.png"] or "EOF" in reasons["truncated.png"]
    assert "cannot identify" in reasons["noise.png"]
    assert all("\n" not in r for r in reasons.values())
    assert [s["path"] for s in skipped] == sorted(reasons)


def test_load_image_raises_pipeline_error(tmp_path):
    (tmp_path / "x.png").write_bytes(b"not a png")
    with pytest.raises(PipelineError, match=r"x\.png: UnidentifiedImageError") as e:
        load_image(tmp_path / "x.png", cfg())
    assert isinstance(e.value, ImageDecodeError)


def test_no_usable_images_is_an_error(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    (tmp_path / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(PipelineError, match=rf"{tmp_path}: no usable images \(2 files, 2 skipped\)"):
        scan_folder(tmp_path, cfg())
    with pytest.raises(PipelineError, match="image folder not found"):
        scan_folder(tmp_path / "missing", cfg())


def test_every_mode_loads_to_one_shape(tmp_path):
    Image.new("I;16", (10, 6)).save(tmp_path / "i16.png")
    Image.new("LA", (6, 10)).save(tmp_path / "la.png")
    palette_image(True).save(tmp_path / "p.gif", transparency=0)
    Image.new("CMYK", (7, 9)).save(tmp_path / "cmyk.jpg")
    Image.new("1", (9, 9)).save(tmp_path / "one.bmp")
    Image.new("RGBA", (5, 5)).save(tmp_path / "rgba.webp")
    for channels in (1, 3):
        images, paths, skipped = scan_folder(tmp_path, cfg(size=4, channels=channels))
        assert images.shape == (6, channels, 4, 4) and not skipped


# ---- split --------------------------------------------------------------------------------------

def test_split_is_seeded_and_disjoint():
    images = np.arange(100, dtype=np.uint8).reshape(100, 1, 1, 1)
    train, ref = split_reference(images, 0.2, seed=3)
    assert len(train) == 80 and len(ref) == 20
    assert sorted(train.ravel().tolist() + ref.ravel().tolist()) == list(range(100))
    again_train, again_ref = split_reference(images, 0.2, seed=3)
    np.testing.assert_array_equal(ref, again_ref)
    np.testing.assert_array_equal(train, again_train)
    assert not np.array_equal(ref, split_reference(images, 0.2, seed=4)[1])
    assert np.any(np.diff(train.ravel().astype(int)) < 0)  # permuted: "first N" is a random sample


def test_split_edge_cases():
    train_idx, ref_idx = split_indices(5, 0.0, 0)
    assert sorted(train_idx.tolist()) == [0, 1, 2, 3, 4] and ref_idx.size == 0
    with pytest.raises(PipelineError, match="empty reference set"):
        split_indices(3, 0.1, 0)
    with pytest.raises(PipelineError, match="no training images"):
        split_indices(1, 0.9, 0)


# ---- emoji fetcher: tarball handling without the network ----------------------------------------

def make_tarball(path, members) -> None:
    """members: (name, bytes | None for a symlink)."""
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
                tf.addfile(info)
            else:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))


def png_bytes(side=64) -> bytes:
    buf = io.BytesIO()
    Image.new("RGBA", (side, side)).save(buf, format="PNG")
    return buf.getvalue()


def test_emoji_extract_takes_only_the_64px_pngs(tmp_path):
    prefix = emoji_source.PREFIX
    tgz = tmp_path / "p.tgz"
    make_tarball(tgz, [(prefix + "1f600.png", png_bytes()), (prefix + "0023-fe0f-20e3.png", png_bytes()),
                       ("package/img/google/32/1f600.png", png_bytes(32)), ("package/README.md", b"x")])
    (tmp_path / "out").mkdir()
    names = emoji_source.extract_pngs(tgz, prefix, tmp_path / "out")
    assert names == ["0023-fe0f-20e3.png", "1f600.png"]
    emoji_source.check_pngs(tmp_path / "out", names, 64)
    with pytest.raises(PipelineError, match="expected PNG 32x32"):
        emoji_source.check_pngs(tmp_path / "out", names, 32)


@pytest.mark.parametrize("name, data, match", [
    (emoji_source.PREFIX + "../../../evil.png", b"x", "unsafe member name"),
    (emoji_source.PREFIX + "sub/a.png", b"x", "unsafe member name"),
    (emoji_source.PREFIX + "link.png", None, "not a regular file"),
    (emoji_source.PREFIX + ".hidden.png", b"x", "unexpected file name"),
])
def test_emoji_extract_refuses_hostile_members(tmp_path, name, data, match):
    tgz = tmp_path / "p.tgz"
    make_tarball(tgz, [(name, data)])
    (tmp_path / "out").mkdir()
    with pytest.raises(PipelineError, match=match):
        emoji_source.extract_pngs(tgz, emoji_source.PREFIX, tmp_path / "out")
    assert not (tmp_path / "evil.png").exists()


def test_emoji_integrity(tmp_path):
    f = tmp_path / "t.tgz"
    f.write_bytes(b"abc")
    good = "sha512-" + base64.b64encode(hashlib.sha512(b"abc").digest()).decode()
    emoji_source.verify_integrity(f, good)
    with pytest.raises(PipelineError, match="sha512 is"):
        emoji_source.verify_integrity(f, "sha512-AAAA")


def test_emoji_missing_npm_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PipelineError, match="npm not found"):
        emoji_source.npm_pack(emoji_source.PACKAGE, tmp_path)


def test_emoji_npm_error_line_is_the_informative_one():
    stderr = ("npm warn Unknown user config \"nodedir\".\nnpm error code ETARGET\n"
              "npm error notarget No matching version found for x@9.\nnpm error A complete log of this run ...\n")
    assert emoji_source.npm_error_line(stderr) == "npm error notarget No matching version found for x@9."
    assert emoji_source.npm_error_line("") == "no output"
