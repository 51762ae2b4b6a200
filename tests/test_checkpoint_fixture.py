"""Checkpoints outlive the code that wrote them.

A small checkpoint written by an earlier commit's code is committed in tests/fixtures/ (tests/fixtures/
make_checkpoint_fixture.py says how it was made; the tests never rerun it), with the images the sample stage's
path drew from it. Today's loader must still read it and draw the same images. When the schema grows a key in
`model`, `diffusion` or `train`, the key's declaration gives the `legacy` value that reproduces the behaviour
from before it existed, and the checkpoint loader fills it in; without one, `test_the_committed_checkpoint_…`
fails here, naming the key.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import get_args, get_origin, get_type_hints

import numpy as np
import pytest
import torch
from helpers import ROOT

from diffpipe.core.config import MISSING, from_dict, key, legacy_of, to_dict
from diffpipe.core.errors import ConfigError, PipelineError
from diffpipe.core.params import ModelConfig, Params, SamplerSpec, TrainConfig, UNetConfig
from diffpipe.diffusion import checkpoint
from diffpipe.diffusion.checkpoint import load_model, read_configs
from diffpipe.diffusion.generate import generate
from diffpipe.diffusion.schedule import NoiseSchedule

FIXTURES = ROOT / "tests" / "fixtures"
CHECKPOINT = FIXTURES / "tiny_unet.pt"
EXPECTED = FIXTURES / "tiny_unet_ddim10.npy"
STORED = ("diffusion", "model", "train")  # the sections a checkpoint stores (make_checkpoint's `config`)


def sample(loaded) -> np.ndarray:
    """As the sample stage does, with the fixture's sampler: DDIM, 10 steps, eta 1, x0 clamped, seeds 0-3."""
    spec = from_dict(SamplerSpec, dict(sampler="ddim", steps=10, eta=1.0, clip_x0=True), "sample")
    return generate(loaded.model, NoiseSchedule.from_config(loaded.diffusion), loaded.image_shape, spec, 4, 0, 4,
                    progress=False, norm=loaded.norm)


def assert_same_images(images: np.ndarray, expected: np.ndarray) -> None:
    """Equal, up to float round-off between machines: at most 1 % of the values may differ, by at most 1.

    The sampler runs in fp32 on the CPU, where oneDNN picks its convolution and matmul kernels by the CPU's
    instruction set (AVX2, AVX-512, …); their sums round differently in the last bits, and a value that lands
    within that round-off of a uint8 rounding boundary comes out one step apart. Anything else (weights, a
    config key or the data normalisation read differently, a changed sampler or noise) moves most values by far
    more than 1. On the machine that wrote the fixture the images are exactly equal.
    """
    assert images.shape == expected.shape and images.dtype == expected.dtype == np.uint8
    diff = np.abs(images.astype(np.int16) - expected.astype(np.int16))
    assert diff.max() <= 1, f"sampled values differ by up to {diff.max()} from the committed images"
    assert (diff > 0).mean() <= 0.01, f"{(diff > 0).mean():.2%} of the sampled values differ (by 1)"


def test_the_committed_checkpoint_loads_and_samples_the_committed_images():
    loaded = load_model(CHECKPOINT, torch.device("cpu"))
    assert loaded.image_shape == (3, 16, 16) and loaded.model_cfg.unet.down_ch == (2, 4, 8)
    assert loaded.train_cfg.normalize and loaded.norm.mean != (0.0, 0.0, 0.0)  # a real data normalisation
    assert_same_images(sample(loaded), np.load(EXPECTED))


# ---- keys added later: the legacy value ------------------------------------------------------------------

@dataclass(frozen=True)
class GrownUNetConfig(UNetConfig):
    """`model.unet` with a key added after the fixture was written."""

    skip_scale: float = key("hypothetical: factor on the skip connections", gt=0, legacy=1.0)


@dataclass(frozen=True)
class GrownModelConfig(ModelConfig):
    """`model` whose `unet` grew a key."""

    unet: GrownUNetConfig = key("the U-Net (used with arch: unet)")


@dataclass(frozen=True)
class GrownTrainConfig(TrainConfig):
    """`train` with two keys added after the fixture was written."""

    grad_clip: float = key("hypothetical: clip the gradient norm to this; 0 = off", ge=0, legacy=0.0)
    ema_every: int = key("hypothetical: update the EMA every N steps", ge=1, legacy=1)


def stored_config() -> dict:
    return torch.load(CHECKPOINT, map_location="cpu", weights_only=True)["config"]


def test_a_key_added_later_loads_from_an_older_checkpoint_with_its_legacy_value():
    config = stored_config()
    model = from_dict(GrownModelConfig, config["model"], "checkpoint.model", fill_legacy=True)
    train = from_dict(GrownTrainConfig, config["train"], "checkpoint.train", fill_legacy=True)
    assert model.unet.skip_scale == 1.0 and (train.grad_clip, train.ema_every) == (0.0, 1)
    # the stored keys are read as they were, and a stored value of a new key wins over its legacy value
    assert to_dict(model)["unet"] == {**config["model"]["unet"], "skip_scale": 1.0}
    # (keys the real schema added after the fixture was written are filled from their own legacy values too)
    real = to_dict(from_dict(TrainConfig, config["train"], "checkpoint.train", fill_legacy=True))
    assert to_dict(train) == {**real, "grad_clip": 0.0, "ema_every": 1}
    again = from_dict(GrownTrainConfig, {**config["train"], "grad_clip": 2.5}, "checkpoint.train", fill_legacy=True)
    assert again.grad_clip == 2.5 and again.ema_every == 1


def test_params_yaml_never_gets_a_legacy_value():
    """The legacy value is for stored checkpoints only: a params file must still write out every key."""
    config = stored_config()
    with pytest.raises(ConfigError, match=r"^params key `model\.unet\.skip_scale` is missing$"):
        from_dict(GrownModelConfig, config["model"], "model")
    real = to_dict(from_dict(TrainConfig, config["train"], "checkpoint.train", fill_legacy=True))
    with pytest.raises(ConfigError, match=r"^params key `train\.grad_clip` is missing$"):
        from_dict(GrownTrainConfig, real, "train")
    with pytest.raises(ConfigError, match=r"^params key `train\.timesteps` is missing$"):  # a real key added later
        from_dict(TrainConfig, config["train"], "train")


def test_the_checkpoint_loader_fills_legacy_values_and_the_images_stay_the_same(monkeypatch):
    """Through load_model itself, under a schema that grew keys the fixture lacks (its network ignores them)."""
    monkeypatch.setattr(checkpoint, "ModelConfig", GrownModelConfig)
    monkeypatch.setattr(checkpoint, "TrainConfig", GrownTrainConfig)
    loaded = load_model(CHECKPOINT, torch.device("cpu"))
    assert isinstance(loaded.model_cfg, GrownModelConfig) and loaded.model_cfg.unet.skip_scale == 1.0
    assert loaded.train_cfg.grad_clip == 0.0
    assert_same_images(sample(loaded), np.load(EXPECTED))


def test_a_key_added_without_a_legacy_value_makes_older_checkpoints_fail_naming_it(monkeypatch):
    @dataclass(frozen=True)
    class Undeclared(TrainConfig):
        """`train` with a key that forgot its legacy value."""

        grad_clip: float = key("hypothetical: clip the gradient norm to this; 0 = off", ge=0)

    monkeypatch.setattr(checkpoint, "TrainConfig", Undeclared)
    with pytest.raises(PipelineError, match=r"tiny_unet\.pt: not a usable checkpoint \(ConfigError: params key "
                                            r"`checkpoint\.train\.grad_clip` is missing \(a key added after this "
                                            r"checkpoint was written needs a `legacy` value"):
        load_model(CHECKPOINT, torch.device("cpu"))


def test_a_legacy_value_is_checked_like_a_written_one():
    @dataclass(frozen=True)
    class BadLegacy(TrainConfig):
        """`train` whose new key declares a legacy value outside its own range."""

        grad_clip: float = key("hypothetical", gt=0, legacy=0.0)

    with pytest.raises(ConfigError, match=r"`checkpoint\.train\.grad_clip` must be > 0, got 0\.0"):
        from_dict(BadLegacy, stored_config()["train"], "checkpoint.train", fill_legacy=True)


def section_class(tp):
    """The dataclass behind a field type (Optional[X], dict[str, X] or X), or None."""
    if get_origin(tp) is typing.Union:
        tp = [a for a in get_args(tp) if a is not type(None)][0]
    if get_origin(tp) is dict:
        tp = get_args(tp)[1]
    return tp if dataclasses.is_dataclass(tp) else None


def fields_of(cls, path):
    """(dotted key, field) of every key in section `cls` and its sub-sections."""
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        yield f"{path}.{f.name}", f
        if section_class(hints[f.name]) is not None:
            yield from fields_of(section_class(hints[f.name]), f"{path}.{f.name}")


def test_declared_legacy_values_load_and_only_where_checkpoints_store_configs():
    """Each legacy value in today's schema, left out of the committed checkpoint's config, loads as declared;
    legacy values elsewhere would never be used (params.yaml is read strictly), so there are none."""
    hints = get_type_hints(Params)
    for section in dataclasses.fields(Params):
        for name, f in fields_of(section_class(hints[section.name]), section.name):
            if legacy_of(f) is MISSING:
                continue
            assert section.name in STORED, f"`{name}` declares a legacy value, but checkpoints do not store it"
            config = stored_config()
            *parents, last = name.split(".")
            node = config
            for part in parents:
                node = node[part]
            node.pop(last, None)
            read = dict(zip(STORED, read_configs(config)))
            value = read
            for part in name.split("."):
                value = value[part] if isinstance(value, dict) else getattr(value, part)
            assert to_dict(value) == to_dict(legacy_of(f)), name
