"""Estimators of the closure as a registry: every ``Estimator`` subclass in this package, by kind.

params.yaml names the estimators trained side by side (``estimators: {<name>: {kind, ...its own
keys}}``); a kind's shared keys (TR's ``lam`` and ``eps``) come from its shared section, one per
system (``reg.<system>``: the penalty's natural scale differs by orders of magnitude between
systems). ``reg.lam``, optional, multiplies every system's weight: ``dvc exp run -S reg.lam=3``
triples each system's λ at once (and reruns exactly the models that read ``reg``), while
``reg.<system>.lam`` sets one system's. ``estimator(params, name, system)`` parses and validates
one entry into a ready ``Estimator`` for that system, its λ the product.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from ml4dynamics.core.discovery import concrete_subclasses
from ml4dynamics.core.errors import ConfigError, ML4DError
from ml4dynamics.core.validation import parse, require
from ml4dynamics.learning.estimators.base import (
    Estimator,
    data_misfit,
    reconstruction_error,
    squared_norm,
)

#: every estimator kind by the ``kind`` used in params.yaml
ESTIMATORS: dict[str, type[Estimator]] = concrete_subclasses(
    "ml4dynamics.learning.estimators", Estimator, "kind"
)


def parse_estimator(
    entry: Any, key: str, shared: Mapping[str, Any] | None = None, system: str | None = None
) -> Estimator:
    """One ``estimators.<name>`` entry (``key`` names it in messages); ``shared`` maps a shared
    section's name to its raw mapping: the keys themselves (``{"reg": {"lam": ..., ...}}``), or,
    with ``system``, one such mapping per system (``{"reg": {"rd": {"lam": ..., ...}}}``)."""
    require(
        isinstance(entry, Mapping) and entry.get("kind") in ESTIMATORS,
        f"{key}.kind",
        "missing or unknown",
        f"use one of: {', '.join(ESTIMATORS)}",
    )
    cls = ESTIMATORS[entry["kind"]]
    own = {f for f in cls.config_class.__dataclass_fields__ if f not in cls.shared_keys}
    if set(entry) != own:
        elsewhere = sorted(
            {
                f"{k} lives in `{other.shared_section}.<system>`"
                for other in ESTIMATORS.values()
                for k in other.shared_keys
                if k in entry
            }
        )
        require(
            False,
            key,
            f"an estimator of kind {entry['kind']!r} has exactly the keys {sorted(own)}",
            "remove the others" + (f" ({'; '.join(elsewhere)})" if elsewhere else ""),
        )
    if cls.shared_section is None:
        return cls(parse(cls.config_class, dict(entry), key))
    name = cls.shared_section
    keys = _section_keys(name)  # every key some kind reads there; this kind takes its own
    section = (shared or {}).get(name)
    if system is not None:
        require(
            isinstance(section, Mapping) and isinstance(section.get(system), Mapping),
            f"{name}.{system}",
            f"missing (estimators of kind {cls.kind!r} read their "
            f"{', '.join(cls.shared_keys)} there, one section per system)",
            f"write {name}: {{{system}: {{{', '.join(f'{k}: ...' for k in keys)}}}}}",
        )
        section, name = section[system], f"{name}.{system}"
    require(
        isinstance(section, Mapping) and set(section) == set(keys),
        name,
        f"must have exactly the keys {keys} (estimators of kind "
        f"{cls.kind!r} read {', '.join(cls.shared_keys)} there)",
        f"write {name}: {{{', '.join(f'{k}: ...' for k in keys)}}}",
    )
    try:
        own_shared = {k: section[k] for k in cls.shared_keys}
        return cls(parse(cls.config_class, {**entry, **own_shared}, "@"))
    except ConfigError as err:  # name the section each key was read from
        field = err.key.split(".", 1)[1]
        where = name if field.split(".")[0] in cls.shared_keys else key
        raise ConfigError(f"{where}.{field}", err.problem, err.fix) from None


def estimator(params, name: str, system: str) -> Estimator:
    """The estimator called ``name`` under ``estimators`` in params.yaml for ``system`` (its
    shared keys from ``reg.<system>``), validated."""
    known = params.section("estimators")
    if not isinstance(known, Mapping) or name not in known:
        names = ", ".join(known) if isinstance(known, Mapping) else "none"
        raise ML4DError(
            f"params.yaml has no estimator {name!r} under 'estimators' (known: {names}); "
            "add it or use a known name"
        )
    shared = {s: params.raw[s] for s in _shared_sections() if s in params.raw}
    parsed = params.parse(
        lambda raw, key: parse_estimator(raw, key, shared, system), "estimators", name
    )
    if parsed.shared_section != "reg" or "lam" not in parsed.shared_keys:
        return parsed
    factor = lam_multiplier(params)
    if factor == 1.0:
        return parsed
    return type(parsed)(dataclasses.replace(parsed.config, lam=parsed.config.lam * factor))


#: the keys of ``reg`` that are not systems: the factor on every system's λ
REG_GLOBALS = ("lam",)


def lam_multiplier(params) -> float:
    """``reg.lam``: the factor every system's TR weight ``reg.<system>.lam`` is multiplied by
    (1 where params.yaml does not set it), checked."""
    reg = params.raw.get("reg")
    value = reg.get("lam", 1.0) if isinstance(reg, Mapping) else 1.0
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    try:
        require(
            ok and value >= 0,
            "reg.lam",
            f"must be a number >= 0, got {value!r} (it multiplies every system's reg.<system>.lam)",
            "write e.g. reg: {lam: 1.0, ...} (1: each system's own weight)",
        )
    except ConfigError as err:
        err.args = (f"{params.path}: {err.args[0]}",)
        raise
    return float(value)


def configured(params, system: str) -> dict[str, Estimator]:
    """Every estimator of params.yaml for ``system``, by name, validated."""
    section = params.section("estimators")
    require(
        isinstance(section, Mapping) and len(section) > 0,
        "estimators",
        "must map estimator names to settings",
        "e.g. {ols: {kind: ols}, tr-projector: {kind: tr, normal: projector}}",
    )
    return {str(name): estimator(params, name, system) for name in section}


def _shared_sections() -> set[str]:
    return {cls.shared_section for cls in ESTIMATORS.values() if cls.shared_section}


def _section_keys(section: str) -> list[str]:
    """The keys of a shared section: those of every kind that reads there (TR: ``lam`` and
    ``eps``; ``ols-field``: ``lam``), in the order the kinds declare them."""
    keys = [k for c in ESTIMATORS.values() if c.shared_section == section for k in c.shared_keys]
    return list(dict.fromkeys(keys))


__all__ = [
    "ESTIMATORS",
    "Estimator",
    "configured",
    "data_misfit",
    "estimator",
    "lam_multiplier",
    "parse_estimator",
    "reconstruction_error",
    "squared_norm",
]
