"""The params loader and schema: unknown/missing keys, YAML's 1e-4, bools for ints, choices, non-finite
numbers, and the rules across sections, each a one-line error naming the key."""
from pathlib import Path

import pytest
import yaml
from helpers import ROOT

from diffpipe.core.config import from_dict, to_dict
from diffpipe.core.errors import ConfigError
from diffpipe.core.params import DiffusionConfig, ModelConfig, Params, TrainConfig, load_params

PARAM_FILES = [ROOT / "params.yaml", *sorted((ROOT / "systems").glob("*/params.yaml"))]


def base() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def load_edited(tmp_path: Path, edit) -> Params:
    data = base()
    edit(data)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_params(path)


@pytest.mark.parametrize("path", PARAM_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_committed_params_load_whole(path):
    params = load_params(path)
    assert isinstance(params, Params)


@pytest.mark.parametrize("path", PARAM_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_params_file_holds_every_key_the_code_reads(path):
    """to_dict of the loaded file is the file itself: no key is filled in by the code."""
    data = yaml.safe_load(path.read_text())
    assert to_dict(load_params(path)) == data


def test_yaml_exponent_without_dot_is_rejected_with_hint(tmp_path):
    assert yaml.safe_load("lr: 1e-4")["lr"] == "1e-4"  # the PyYAML trap itself
    with pytest.raises(ConfigError, match=r"train\.lr.*1\.0e-4"):
        load_edited(tmp_path, lambda d: d["train"].update(lr="1e-4"))


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_non_finite_numbers_are_rejected(tmp_path, value):
    with pytest.raises(ConfigError, match=r"`train\.lr` must be a finite number"):
        load_edited(tmp_path, lambda d: d["train"].update(lr=value))


def test_missing_key_is_an_error_not_a_default(tmp_path):
    with pytest.raises(ConfigError, match=r"^params key `train\.lr` is missing$"):
        load_edited(tmp_path, lambda d: d["train"].pop("lr"))
    with pytest.raises(ConfigError, match=r"`sample` is missing"):
        load_edited(tmp_path, lambda d: d.pop("sample"))


def test_unknown_key_is_rejected(tmp_path):
    with pytest.raises(ConfigError, match=r"train.*unknown key.*epoch"):
        load_edited(tmp_path, lambda d: d["train"].update(epoch=3))


def test_bool_is_not_an_int_and_choices_are_checked(tmp_path):
    with pytest.raises(ConfigError, match=r"train\.epochs"):
        load_edited(tmp_path, lambda d: d["train"].update(epochs=True))
    with pytest.raises(ConfigError, match=r"diffusion\.schedule"):
        load_edited(tmp_path, lambda d: d["diffusion"].update(schedule="quadratic"))


def test_nested_keys_are_named_in_full(tmp_path):
    with pytest.raises(ConfigError, match=r"model\.unet\.down_ch\[1\]"):
        load_edited(tmp_path, lambda d: d["model"]["unet"].update(down_ch=[16, "32", 64]))
    with pytest.raises(ConfigError, match=r"sweep\.points\.ddim10_eta1\.eta"):
        load_edited(tmp_path, lambda d: d["sweep"]["points"]["ddim10_eta1"].update(eta=2.0))


@pytest.mark.parametrize("edit, key", [
    (lambda d: d["sample"].update(steps=5000), "sample.steps"),
    (lambda d: d["sweep"]["points"]["ddim10_eta1"].update(steps=1001), "sweep.points.ddim10_eta1.steps"),
    (lambda d: d["train"].update(grid_steps=2000), "train.grid_steps"),
    (lambda d: d["evaluate"].update(kid_subset_size=501, num_real=600), "evaluate.kid_subset_size"),
    (lambda d: d["prepare"].update(reference_limit=100), "evaluate.num_real"),
    (lambda d: d["sweep"].update(num_images=600, kid_subset_size=550), "sweep.kid_subset_size"),
    (lambda d: d["prepare"].update(num_classes=0), "prepare.num_classes"),  # a classifier needs labels
])
def test_rules_across_sections_name_the_key(tmp_path, edit, key):
    with pytest.raises(ConfigError, match=rf"`{key}`"):
        load_edited(tmp_path, edit)


@pytest.mark.parametrize("edit, key", [
    (lambda d: d["prepare"].update(num_classes=1), "prepare.num_classes"),
    (lambda d: d["prepare"].update(num_classes=-1), "prepare.num_classes"),
    (lambda d: d["classifier"].update(widths=[]), "classifier.widths"),
    (lambda d: d["classifier"].update(widths=[8, 0]), "classifier.widths"),
    (lambda d: d["classifier"].update(feature_dim=0), "classifier.feature_dim"),
    (lambda d: d["classifier"].update(lr=0.0), "classifier.lr"),
    (lambda d: d["classifier"].update(device="tpu"), "classifier.device"),
    (lambda d: d["evaluate"].update(confidence=0.0), "evaluate.confidence"),
    (lambda d: d["evaluate"].update(confidence=1.5), "evaluate.confidence"),
])
def test_labels_classifier_and_confidence_keys_are_checked(tmp_path, edit, key):
    with pytest.raises(ConfigError, match=rf"`{key}`"):
        load_edited(tmp_path, edit)


@pytest.mark.parametrize("name, low", [("num_images", 1), ("batch_size", 1), ("first_seed", 0), ("grid_images", 1),
                                       ("processes", 1), ("process_seeds", 1), ("process_frames", 2),
                                       ("strip_columns", 2)])
def test_sample_counts_have_lower_bounds(tmp_path, name, low):
    with pytest.raises(ConfigError, match=rf"`sample.{name}` must be >= {low}, got {low - 1}"):
        load_edited(tmp_path, lambda d: d["sample"].update({name: low - 1}))
    # the bound itself is allowed (as far as this key goes: num_images below kid_subset_size is another rule)
    if name != "num_images":
        assert getattr(load_edited(tmp_path, lambda d: d["sample"].update({name: low})).sample, name) == low


def test_unlabelled_data_go_with_a_null_classifier(tmp_path):
    params = load_edited(tmp_path, lambda d: d.update(classifier=None) or d["prepare"].update(num_classes=0))
    assert params.classifier is None and params.prepare.num_classes == 0
    assert load_edited(tmp_path, lambda d: d.update(classifier=None)).prepare.num_classes == 10  # labels, no classifier
    with pytest.raises(ConfigError, match=r"`classifier.widths` has 5 blocks.*28 px images allow at most 4"):
        load_edited(tmp_path, lambda d: d["classifier"].update(widths=[4] * 5)).classifier.check_image(28)


def test_a_section_alone_is_checked_by_its_own_rules():
    with pytest.raises(ConfigError, match=r"diffusion\.beta_end"):
        from_dict(DiffusionConfig, {**base()["diffusion"], "beta_end": 1e-5}, "diffusion")
    with pytest.raises(ConfigError, match=r"model\.arch"):
        from_dict(ModelConfig, {**base()["model"], "arch": "transformer"}, "model")
    assert from_dict(TrainConfig, base()["train"], "train").lr == 4e-3  # the committed default


def test_broken_yaml_is_one_line_error(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="params.yaml: not valid YAML"):
        load_params(p)
