"""Small helpers for dataclass configs: JSON round trip with errors that name the bad field."""
from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any, Type, TypeVar

T = TypeVar("T")


def to_dict(cfg) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def from_dict(cls: Type[T], data: dict[str, Any], where: str = "config") -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys and wrong types raise ValueError naming the key."""
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {unknown} for {cls.__name__}; valid fields: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        hint = hints.get(key)
        sub = _dataclass_in(hint)
        if sub is not None and isinstance(value, dict):
            value = from_dict(sub, value, f"{where}.{key}")
        elif isinstance(value, list) and _is_tuple(hint):
            value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: {exc}") from exc


def replace(cfg: T, **overrides) -> T:
    """``dataclasses.replace`` that accepts dotted keys for nested configs: ``replace(c, **{"train.epochs": 3})``."""
    flat, nested = {}, {}
    for key, value in overrides.items():
        head, _, rest = key.partition(".")
        if rest:
            nested.setdefault(head, {})[rest] = value
        else:
            flat[head] = value
    for head, sub in nested.items():
        flat[head] = replace(getattr(cfg, head), **sub)
    names = {f.name for f in dataclasses.fields(cfg)}
    bad = sorted(set(flat) - names)
    if bad:
        raise ValueError(f"unknown config field(s) {bad} for {type(cfg).__name__}; valid: {sorted(names)}")
    return dataclasses.replace(cfg, **flat)


def load_json(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise ValueError(f"{path}: config file not found") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a valid UTF-8 JSON file ({exc})") from None


def _dataclass_in(hint):
    if dataclasses.is_dataclass(hint):
        return hint
    for arg in typing.get_args(hint) or ():
        if dataclasses.is_dataclass(arg):
            return arg
    return None


def _is_tuple(hint) -> bool:
    return hint is tuple or typing.get_origin(hint) is tuple
