"""The params loader and schema: unknown/missing keys, YAML's 1e-4, bools for ints, choices, non-finite
numbers, each key's declared range, and the rules across keys and sections, each a one-line error naming the key."""
import dataclasses
import re
import typing
from pathlib import Path
from typing import get_args, get_origin, get_type_hints

import pytest
import yaml
from helpers import ROOT, root_params

from diffpipe.core.config import Rule, from_dict, rule_of, to_dict
from diffpipe.core.errors import ConfigError
from diffpipe.core.params import DiffusionConfig, ModelConfig, Params, TrainConfig, load_params
from diffpipe.nets.builder import build_model, check_model
from diffpipe.nets.unet import channel_plan, total_downsampling

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


# ---- the declarations: each key's range is declared once, beside the field, and checked by the loader ---------

def declared_keys(cls=Params, path="", values=None):
    """(dotted key, field, type, the root params.yaml's value) of every key with a declared rule."""
    values = base() if values is None else values
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        name, tp, value = f"{path}.{f.name}".lstrip("."), hints[f.name], values[f.name]
        if get_origin(tp) is typing.Union:
            tp = [a for a in get_args(tp) if a is not type(None)][0]
        if dataclasses.is_dataclass(tp):
            yield from declared_keys(tp, name, value)
        elif get_origin(tp) is dict:
            point = sorted(value)[0]
            yield name, f, tp, value
            yield from declared_keys(get_args(tp)[1], f"{name}.{point}", value[point])
        elif rule_of(f) != Rule():
            yield name, f, tp, value


def outside(rule: Rule, like):
    """Values just outside `rule`, of the type of `like`."""
    cast = type(like)
    if rule.choices is not None:
        yield cast(max(c for c, _ in rule.choices) + 1)
        return
    low = rule.ge - 1 if rule.ge is not None else rule.gt
    if low is not None and not (rule.or_zero and low == 0):
        yield cast(low)
    if rule.or_zero:
        yield cast(-1)
    high = rule.le + 1 if rule.le is not None else rule.lt
    if high is not None:
        yield cast(high)
    if rule.even:
        odd = rule.ge + 1 if rule.ge is not None and rule.ge % 2 == 0 else (rule.ge or 1)
        yield cast(odd)


def bad_values(f, tp, value):
    rule = rule_of(f)
    if isinstance(value, dict):
        yield {}  # min_len 1
        return
    if isinstance(value, list):
        if rule.length is not None:
            yield value[: rule.length - 1]
        if rule.min_len is not None:
            yield value[: rule.min_len - 1]
        entry = value[0] if value else (0.0 if get_args(tp)[0] is float else 0)
        for v in outside(rule, entry):
            yield [v, *value[1:]]
        return
    yield from outside(rule, value)


def rule_applies(name: str, f) -> bool:
    """A `when` rule applies to the root params.yaml (e.g. the beta keys: the root's schedule is linear)."""
    when = rule_of(f).when
    if when is None:
        return True
    node = base()
    for part in name.split(".")[:-1]:
        node = node[part]
    return node[when[0]] == when[1]


CASES = [pytest.param(name, bad, id=f"{name}={bad}") for name, f, tp, value in declared_keys() if rule_applies(name, f)
         for bad in bad_values(f, tp, value)]


def test_every_declared_rule_is_tested():
    tested = {name for name, _ in (c.values for c in CASES)}
    assert tested >= {name for name, f, _, _ in declared_keys() if rule_applies(name, f)}
    assert len(CASES) > 60


@pytest.mark.parametrize("name, bad", CASES)
def test_each_declared_range_is_checked_by_the_loader_naming_the_key(tmp_path, name, bad):
    def edit(d):
        *parents, last = name.split(".")
        node = d
        for part in parents:
            node = node[part]
        node[last] = bad

    with pytest.raises(ConfigError, match=rf"^params key `{re.escape(name)}` (must be|entries must be|needs) [^\n]*$"):
        load_edited(tmp_path, edit)


def test_range_messages_name_the_key_and_the_range(tmp_path):
    cases = [(lambda d: d["train"].update(lr=0.0), "params key `train.lr` must be > 0, got 0.0"),
             (lambda d: d["train"].update(ema_decay=1.0), "params key `train.ema_decay` must be in [0, 1), got 1.0"),
             (lambda d: d["model"].update(num_classes=1),
              "params key `model.num_classes` must be 0 or >= 2 (0 = unconditional), got 1"),
             (lambda d: d["model"]["unet"].update(t_emb_dim=127),
              "params key `model.unet.t_emb_dim` must be even and >= 2, got 127"),
             (lambda d: d["prepare"]["images"].update(channels=2),
              "params key `prepare.images.channels` must be 1 (grey) or 3 (RGB), got 2"),
             (lambda d: d["prepare"]["images"].update(background=[0, 0, 256]),
              "params key `prepare.images.background` entries must be in [0, 255] (an RGB colour), got [0, 0, 256]"),
             (lambda d: d["model"]["unet"].update(down_ch=[16]),
              "params key `model.unet.down_ch` needs at least 2 entries, got [16]"),
             (lambda d: d["sweep"].update(points={}), "params key `sweep.points` needs at least 1 entry, got []")]
    for edit, message in cases:
        with pytest.raises(ConfigError) as excinfo:
            load_edited(tmp_path, edit)
        assert str(excinfo.value) == message


def test_a_schedule_checks_only_its_own_keys(tmp_path):
    """All schedules' keys stay in the file (so `-S diffusion.schedule=…` works); each is range-checked only
    while its schedule is the one chosen."""
    with pytest.raises(ConfigError, match=r"^params key `diffusion\.beta_start` must be in \(0, 1\), got 0\.0$"):
        load_edited(tmp_path, lambda d: d["diffusion"].update(beta_start=0.0))
    assert load_edited(tmp_path, lambda d: d["diffusion"].update(schedule="angle", beta_start=0.0)).diffusion
    with pytest.raises(ConfigError, match=r"`diffusion\.min_signal_rate` must be in \(0, 1\)"):
        load_edited(tmp_path, lambda d: d["diffusion"].update(schedule="angle", min_signal_rate=0.0))
    with pytest.raises(ConfigError, match=r"`diffusion\.max_signal_rate` and diffusion\.min_signal_rate must satisfy"):
        load_edited(tmp_path, lambda d: d["diffusion"].update(schedule="angle", min_signal_rate=0.96))


def test_the_unet_channel_arithmetic_is_checked_where_the_network_is_built(tmp_path):
    """The loader checks each key and the rules across keys; whether the U-Net's up path fits its skips is the
    network's own arithmetic (nets/unet.py), checked by build_model before any training, in one line."""
    params = load_edited(tmp_path, lambda d: d["model"]["unet"].update(up_ch=[64, 16, 16]))
    with pytest.raises(ConfigError, match=r"^params key `model\.unet\.up_ch` entry 1 \(16\) must equal the up-sampled "
                                          r"channels plus the skip channels \(24\)"):
        check_model(params.model, 1, 28)
    with pytest.raises(ConfigError, match=r"^params key `model\.unet\.up_ch`"):
        build_model(params.model, 1, 28)
    assert channel_plan(root_params().model.unet) == [(64, 32, True), (32, 16, True)]
    assert total_downsampling(root_params().model.unet) == 4
