"""The typed loader: YAML mappings -> frozen dataclasses, strictly, every error naming its key.

A schema field is declared once, with `key(...)`: its type is the annotation, and `key` records a one-line
description, the allowed range (applied here, generically, by `from_dict`) and, for keys added after
checkpoints were written, the `legacy` value that reproduces the older behaviour. docs/params.md is generated
from these declarations (scripts/params_doc.py).

`from_dict` checks, in this order: unknown keys, missing keys (the dataclasses have no defaults:
`params.yaml` is the one home of every value), types (strings where numbers belong: PyYAML reads `1e-4` as a
string, write `1.0e-4`; non-finite numbers; bools where ints belong; choices outside a `Literal`), then each
field's declared range, then the dataclass's `check(key)` method (if any): the rules across fields, naming
keys under `key`.

Checkpoints store their configs as dicts. They are read with `from_dict(..., fill_legacy=True)`: a key that a
checkpoint lacks takes its declared `legacy` value (a key without one is still an error); params.yaml itself
is always read strictly.
"""
from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import MISSING
from pathlib import Path
from typing import Any, Literal, Optional, TypeVar, get_args, get_origin, get_type_hints

import yaml

from .errors import ConfigError

T = TypeVar("T")


# ---- declarations ------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Rule:
    """The allowed values of one key. On a list key the bounds and `even` apply to every entry, and
    `min_len` / `length` to the list (`min_len` also to a mapping's number of entries)."""

    ge: Optional[float] = None  # >=
    gt: Optional[float] = None  # >
    le: Optional[float] = None  # <=
    lt: Optional[float] = None  # <
    even: bool = False
    or_zero: bool = False  # 0 is allowed besides the range (e.g. "0 = unlabelled, or at least 2 classes")
    choices: Optional[tuple] = None  # ((value, label), ...): the allowed values of a key typed int/float/str
    min_len: Optional[int] = None
    length: Optional[int] = None
    when: Optional[tuple[str, Any]] = None  # (sibling key, value): the rule applies only while sibling == value
    why: str = ""  # a few words on the range (not the length), shown after it in errors and in docs/params.md

    def phrase(self) -> str:
        """The range in words, as errors and docs/params.md say it: `in [0, 1)`, `even and >= 2`, …"""
        if self.choices is not None:
            names = [f"{v} ({label})" if label else str(v) for v, label in self.choices]
            return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
        low = ("[", self.ge) if self.ge is not None else ("(", self.gt) if self.gt is not None else None
        high = (self.le, "]") if self.le is not None else (self.lt, ")") if self.lt is not None else None
        if low and high:
            text = f"in {low[0]}{low[1]}, {high[0]}{high[1]}"
        elif low:
            text = f"{'>=' if low[0] == '[' else '>'} {low[1]}"
        elif high:
            text = f"{'<=' if high[1] == ']' else '<'} {high[0]}"
        else:
            text = ""
        if self.even:
            text = f"even and {text}" if text else "even"
        if self.or_zero:
            text = f"0 or {text}"
        return text

    def allows(self, v: Any) -> bool:
        if self.choices is not None:
            return v in [c for c, _ in self.choices]
        if self.or_zero and v == 0:
            return True
        return ((self.ge is None or v >= self.ge) and (self.gt is None or v > self.gt)
                and (self.le is None or v <= self.le) and (self.lt is None or v < self.lt)
                and (not self.even or v % 2 == 0))


def key(doc: str, *, ge: Optional[float] = None, gt: Optional[float] = None, le: Optional[float] = None,
        lt: Optional[float] = None, even: bool = False, or_zero: bool = False, choices: Optional[dict] = None,
        min_len: Optional[int] = None, length: Optional[int] = None, when: Optional[tuple[str, Any]] = None,
        why: str = "", legacy: Any = MISSING) -> Any:
    """Declare a schema field: `name: type = key("one-line description", ge=…, …)`.

    doc: what the key means (docs/params.md's description; required, one line).
    ge/gt/le/lt, even, or_zero, choices (value -> label, "" for none), min_len, length, when: the allowed
    values (see `Rule`), checked by `from_dict`; `why`: a few words on the bound, added to its error.
    legacy: for a key of `model`, `diffusion` or `train` added after checkpoints were written, the value that
    reproduces the behaviour from before the key existed; a checkpoint that lacks the key loads with it.
    The field still has no default: params.yaml must always hold the key.
    """
    if not doc.strip() or "\n" in doc:
        raise ValueError(f"a params key needs a one-line description, got {doc!r}")
    rule = Rule(ge=ge, gt=gt, le=le, lt=lt, even=even, or_zero=or_zero,
                choices=None if choices is None else tuple(choices.items()), min_len=min_len, length=length,
                when=when, why=why)
    return dataclasses.field(metadata={"doc": doc, "rule": rule, "legacy": legacy})


def doc_of(f: dataclasses.Field) -> str:
    return f.metadata.get("doc", "")


def rule_of(f: dataclasses.Field) -> Rule:
    return f.metadata.get("rule", Rule())


def legacy_of(f: dataclasses.Field) -> Any:
    """The declared legacy value of a field, or dataclasses.MISSING."""
    return f.metadata.get("legacy", MISSING)


# ---- loading -----------------------------------------------------------------------------------------------

def _convert(value: Any, tp: Any, key: str, fill_legacy: bool) -> Any:
    origin = get_origin(tp)
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            raise ConfigError(f"params key `{key}` must be one of {list(choices)}, got {value!r}")
        return value
    if origin is typing.Union:  # Optional[X]
        args = [a for a in get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _convert(value, args[0], key, fill_legacy)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"params key `{key}` must be a list, got {value!r}")
        return tuple(_convert(v, get_args(tp)[0], f"{key}[{i}]", fill_legacy) for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"params key `{key}` must be a mapping, got {value!r}")
        return {k: _convert(v, get_args(tp)[1], f"{key}.{k}", fill_legacy) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, key, fill_legacy=fill_legacy)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"params key `{key}` must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"params key `{key}` must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            hint = " (write exponents with a dot, e.g. 1.0e-4: YAML reads 1e-4 as text)" if isinstance(value, str) else ""
            raise ConfigError(f"params key `{key}` must be a number, got {value!r}{hint}")
        if not math.isfinite(value):
            raise ConfigError(f"params key `{key}` must be a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"params key `{key}` must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config field type {tp!r} for {key}")


def _check_rule(value: Any, rule: Rule, key: str, siblings: dict) -> None:
    """Raise ConfigError naming `key` unless `value` is allowed by its declared `rule`."""
    if value is None or (rule.when is not None and siblings[rule.when[0]] != rule.when[1]):
        return
    why = f" ({rule.why})" if rule.why else ""
    if isinstance(value, (tuple, dict)):
        shown = list(value) if isinstance(value, tuple) else sorted(value)
        if rule.length is not None and len(value) != rule.length:
            raise ConfigError(f"params key `{key}` needs exactly {rule.length} entries, got {shown}")
        if rule.min_len is not None and len(value) < rule.min_len:
            entries = "entry" if rule.min_len == 1 else "entries"
            raise ConfigError(f"params key `{key}` needs at least {rule.min_len} {entries}, got {shown}")
        if isinstance(value, tuple) and not all(rule.allows(v) for v in value):
            raise ConfigError(f"params key `{key}` entries must be {rule.phrase()}{why}, got {shown}")
    elif not rule.allows(value):
        raise ConfigError(f"params key `{key}` must be {rule.phrase()}{why}, got {value}")


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


def from_dict(cls: type[T], data: Any, key: str, *, fill_legacy: bool = False) -> T:
    """Build dataclass `cls` from mapping `data` (the params at `key`; "" = the whole file), check each field's
    declared range, then run its `check(key)`.

    fill_legacy: for configs stored in a checkpoint, a missing key that declares a `legacy` value takes it
    (in nested sections too). Never for params.yaml, where every key must be written out."""
    where = f"params section `{key}`" if key else "the params file"
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping, got {type(data).__name__}")
    hints = get_type_hints(cls)
    fields = dataclasses.fields(cls)
    names = [f.name for f in fields]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(f"{where} has unknown key(s) {unknown}; known keys: {sorted(names)}")
    if fill_legacy:
        data = {**{f.name: legacy_of(f) for f in fields if f.name not in data and legacy_of(f) is not MISSING}, **data}
    missing = [n for n in names if n not in data]
    if missing:
        hint = (" (a key added after this checkpoint was written needs a `legacy` value in its declaration)"
                if fill_legacy else "")
        raise ConfigError(f"params key `{_join(key, missing[0])}` is missing{hint}")
    values = {n: _convert(data[n], hints[n], _join(key, n), fill_legacy) for n in names}
    for f in fields:
        _check_rule(values[f.name], rule_of(f), _join(key, f.name), values)
    obj = cls(**values)
    check = getattr(obj, "check", None)
    if check is not None:
        check(key)
    return obj


def to_dict(obj: Any) -> Any:
    """Dataclass -> plain nested dicts with lists (for JSON, checkpoints and metrics)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: params file not found") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must be a mapping of sections")
    return data


def require(cond: bool, key: str, message: str) -> None:
    """Cross-field check helper for `check`: raise ConfigError naming `key` unless `cond`."""
    if not cond:
        raise ConfigError(f"params key `{key}` {message}")
