"""Reading plain YAML mappings into typed, frozen dataclasses, and the checks they use.

``parse(cls, mapping, key)`` builds a dataclass from a mapping, refusing unknown keys, missing keys
and values of the wrong type, and re-raises the dataclass's own physical checks with the full
dotted key (``rd.system.dt``), so every message names exactly what to edit.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar

from ml4dynamics.core.errors import ConfigError

T = TypeVar("T")


def require(ok: bool, key: str, problem: str, fix: str) -> None:
    """Raise ``ConfigError(key, problem, fix)`` unless ``ok``."""
    if not ok:
        raise ConfigError(key, problem, fix)


def require_positive(value: float, key: str, meaning: str) -> None:
    require(value > 0, key, f"must be > 0 ({meaning}), got {value!r}", "set a positive value")


def require_non_negative(value: float, key: str, meaning: str) -> None:
    require(value >= 0, key, f"must be >= 0 ({meaning}), got {value!r}", "set a value >= 0")


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin is tuple:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if origin in (dict, Mapping):
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _wrong_type(key: str, tp: Any, value: Any) -> ConfigError:
    return ConfigError(
        key,
        f"must be {_type_name(tp)}, got {value!r} ({type(value).__name__})",
        "fix the value in params.yaml",
    )


def coerce(tp: Any, value: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert YAML lists to tuples."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return parse(tp, value, key)
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise _wrong_type(key, tp, value)
        return value
    if origin is tuple:
        (inner, _ellipsis) = typing.get_args(tp)
        if not isinstance(value, list | tuple):
            raise _wrong_type(key, tp, value)
        return tuple(coerce(inner, v, f"{key}[{i}]") for i, v in enumerate(value))
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise _wrong_type(key, tp, value)
        return types.MappingProxyType(dict(value))
    if tp is bool:
        if not isinstance(value, bool):
            raise _wrong_type(key, tp, value)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _wrong_type(key, tp, value)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _wrong_type(key, tp, value)
        if not math.isfinite(value):
            raise ConfigError(key, f"must be finite, got {value!r}", "set a finite number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise _wrong_type(key, tp, value)
        return value
    raise TypeError(f"unsupported annotation {tp!r} for {key}")  # a bug in our dataclasses


def parse(cls: type[T], mapping: Any, key: str) -> T:
    """Build the frozen dataclass ``cls`` from a mapping read from YAML.

    Every field must be present (no hidden defaults: DVC tracks only what params.yaml says),
    except fields whose dataclass default is an empty mapping (optional overrides).
    """
    if not isinstance(mapping, Mapping):
        raise _wrong_type(key, cls, mapping)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in mapping if k not in fields]
    if unknown:
        raise ConfigError(
            f"{key}.{unknown[0]}",
            "unknown key",
            f"remove it or use one of: {', '.join(fields)}",
        )
    values: dict[str, Any] = {}
    for name, field in fields.items():
        sub = f"{key}.{name}"
        if name not in mapping:
            if field.default_factory is not dataclasses.MISSING:  # optional mapping
                continue
            hint = (
                f" (default {field.default!r})" if field.default is not dataclasses.MISSING else ""
            )
            raise ConfigError(sub, "missing", f"add it to params.yaml{hint}")
        values[name] = coerce(hints[name], mapping[name], sub)
    try:
        return cls(**values)
    except ConfigError as err:  # re-key the dataclass's own checks under the full path
        raise ConfigError(f"{key}.{err.key}", err.problem, err.fix) from None


def parse_tagged(kinds: Mapping[str, type[T]], mapping: Any, key: str) -> T:
    """Parse a mapping whose ``kind`` selects the dataclass (one config class per model kind)."""
    if not isinstance(mapping, Mapping) or "kind" not in mapping:
        raise ConfigError(
            key, "must be a mapping with a 'kind'", f"set kind to one of: {', '.join(kinds)}"
        )
    kind = mapping["kind"]
    if kind not in kinds:
        raise ConfigError(
            f"{key}.kind", f"unknown kind {kind!r}", f"use one of: {', '.join(kinds)}"
        )
    return parse(kinds[kind], mapping, key)
