"""The typed loader: YAML mappings -> frozen dataclasses, strictly, every error naming its key.

It checks types only: unknown keys, missing keys (the dataclasses have no defaults: `params.yaml` is the one
home of every value), strings where numbers belong (PyYAML reads `1e-4` as a string; write `1.0e-4`),
non-finite numbers, bools where ints belong, and choices outside a `Literal`. After a dataclass is built,
its `check(key)` method (if any) runs the range and cross-field rules, naming keys under `key`.
"""
from __future__ import annotations

import dataclasses
import math
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin, get_type_hints

import yaml

from .errors import ConfigError

T = TypeVar("T")


def _convert(value: Any, tp: Any, key: str) -> Any:
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
        return _convert(value, args[0], key)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"params key `{key}` must be a list, got {value!r}")
        return tuple(_convert(v, get_args(tp)[0], f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"params key `{key}` must be a mapping, got {value!r}")
        return {k: _convert(v, get_args(tp)[1], f"{key}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, key)
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


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


def from_dict(cls: type[T], data: Any, key: str) -> T:
    """Build dataclass `cls` from mapping `data` (the params at `key`; "" = the whole file), then run its
    `check(key)`."""
    where = f"params section `{key}`" if key else "the params file"
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping, got {type(data).__name__}")
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(f"{where} has unknown key(s) {unknown}; known keys: {sorted(names)}")
    missing = [n for n in names if n not in data]
    if missing:
        raise ConfigError(f"params key `{_join(key, missing[0])}` is missing")
    obj = cls(**{n: _convert(data[n], hints[n], _join(key, n)) for n in names})
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
    """Range/cross-field check helper for `check`: raise ConfigError naming `key` unless `cond`."""
    if not cond:
        raise ConfigError(f"params key `{key}` {message}")
