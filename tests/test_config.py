"""The params loader: unknown keys, strings for numbers (YAML's 1e-4), bools for ints, choices."""
import pytest
import yaml

from pathlib import Path

from diffpipe.config import ConfigError, from_dict, load_params, section
from diffpipe.fid import EvalConfig
from diffpipe.prepare import PrepareConfig
from diffpipe.sample import SampleConfig
from diffpipe.sweep import SweepConfig
from diffpipe.timestep_loss import TimestepLossConfig
from diffpipe.models import ModelConfig
from diffpipe.schedule import DiffusionConfig
from diffpipe.train import TrainConfig

ROOT = Path(__file__).resolve().parents[1]


def test_yaml_exponent_without_dot_is_rejected_with_hint():
    data = yaml.safe_load("lr: 1e-4")
    assert data["lr"] == "1e-4"  # the PyYAML trap itself
    with pytest.raises(ConfigError, match=r"train\.lr.*1\.0e-4"):
        from_dict(TrainConfig, data, "train")


def test_unknown_key_is_rejected():
    with pytest.raises(ConfigError, match=r"train.*unknown key.*epoch"):
        from_dict(TrainConfig, {"epoch": 3}, "train")


def test_bool_is_not_an_int_and_choices_are_checked():
    with pytest.raises(ConfigError, match=r"train\.epochs"):
        from_dict(TrainConfig, {"epochs": True}, "train")
    with pytest.raises(ConfigError, match=r"diffusion\.schedule"):
        from_dict(DiffusionConfig, {"schedule": "quadratic"}, "diffusion")


def test_nested_section_keys_are_named_in_full():
    with pytest.raises(ConfigError, match=r"model\.unet\.down_ch\[1\]"):
        from_dict(ModelConfig, {"unet": {"down_ch": [32, "64", 128]}}, "model")


SECTIONS = {"prepare": PrepareConfig, "diffusion": DiffusionConfig, "model": ModelConfig, "train": TrainConfig,
            "sample": SampleConfig, "evaluate": EvalConfig, "timestep_loss": TimestepLossConfig, "sweep": SweepConfig}


@pytest.mark.parametrize("path", [ROOT / "params.yaml", *sorted((ROOT / "systems").glob("*/params.yaml"))],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_committed_params_load(path):
    params = load_params(path)
    assert set(params) <= set(SECTIONS), f"unknown sections {set(params) - set(SECTIONS)}"
    for name in params:
        section(params, name, SECTIONS[name])


def test_broken_yaml_is_one_line_error(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="params.yaml: not valid YAML"):
        load_params(p)
