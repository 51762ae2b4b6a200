"""The one params loader: `params.yaml` sections -> frozen dataclasses, strictly typed.

Each section's dataclass lives next to the code that uses it (schedule.py, unet.py, ...). This module only
checks types: unknown keys, missing keys, strings where numbers belong (PyYAML reads `1e-4` as a string;
write `1.0e-4`), bools where ints belong, and choices outside a `Literal`. Cross-field checks live in
each dataclass's `__post_init__`, which raises `ConfigError` naming the key.
"""
from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin, get_type_hints

import yaml

from .io import PipelineError

T = TypeVar("T")


class ConfigError(PipelineError):
    """Invalid params: the message names the key (e.g. `diffusion.beta_end`) and what is wrong."""


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
        args = get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"params key `{key}` must be a list, got {value!r}")
        elem = args[0]
        return tuple(_convert(v, elem, f"{key}[{i}]") for i, v in enumerate(value))
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
        return float(value)
    if tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"params key `{key}` must be a mapping, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"params key `{key}` must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config field type {tp!r} for {key}")


def from_dict(cls: type[T], data: Any, section: str) -> T:
    """Build dataclass `cls` from mapping `data`; every error names `section.key`."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"params section `{section}` must be a mapping, got {type(data).__name__}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"params section `{section}` has unknown key(s) {unknown}; known keys: {sorted(fields)}")
    kwargs = {}
    for name, f in fields.items():
        key = f"{section}.{name}"
        if name in data:
            kwargs[name] = _convert(data[name], hints[name], key)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"params key `{key}` is missing")
    return cls(**kwargs)


def to_dict(obj: Any) -> dict:
    """Dataclass -> plain dict with lists (for JSON checkpoints and metrics)."""
    out = {}
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        out[f.name] = list(v) if isinstance(v, tuple) else v
    return out


def load_params(path: str | Path = "params.yaml") -> dict:
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


def section(params: dict, name: str, cls: type[T]) -> T:
    return from_dict(cls, params.get(name), name)


def require(cond: bool, key: str, message: str) -> None:
    """Cross-field check helper for `__post_init__`: raise ConfigError naming `key` unless `cond`."""
    if not cond:
        raise ConfigError(f"params key `{key}` {message}")
