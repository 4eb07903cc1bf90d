"""params.yaml ``manifold.<system>`` and ``train.<system>``: a network and its optimisation."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from ml4dynamics.config import known_system
from ml4dynamics.core.validation import parse, parse_tagged, require
from ml4dynamics.learning.training import OptimConfig
from ml4dynamics.models import CLOSURE_KINDS, MANIFOLD_KINDS, ClosureConfig, ManifoldConfig
from ml4dynamics.systems import SYSTEMS

#: the sections holding one network per system, and the model kinds each accepts
SECTIONS = {"manifold": MANIFOLD_KINDS, "train": CLOSURE_KINDS}


@dataclasses.dataclass(frozen=True)
class NetworkStage:
    """``manifold.<system>`` (the autoencoder) or ``train.<system>`` (the closure network)."""

    model: ClosureConfig | ManifoldConfig
    optim: OptimConfig


def parse_network_stage(raw: Any, key: str, section: str) -> NetworkStage:
    require(
        isinstance(raw, Mapping) and set(raw) == {"model", "optim"},
        key,
        "must have exactly the keys 'model' and 'optim'",
        "see params.yaml",
    )
    return NetworkStage(
        model=parse_tagged(SECTIONS[section], raw["model"], f"{key}.model"),
        optim=parse(OptimConfig, raw["optim"], f"{key}.optim"),
    )


def network_stage(params, section: str, system: str) -> NetworkStage:
    """``section.system`` of params.yaml (section ``manifold`` or ``train``), validated."""
    known_system(system)
    if not params.has(section) or system not in (params.raw[section] or {}):
        raise params.missing_sections(system)
    return params.parse(lambda raw, key: parse_network_stage(raw, key, section), section, system)


def all_network_stages(params, section: str) -> dict[str, NetworkStage]:
    """Every system's entry of ``section`` (for ``ml4d params``); a system configured in the
    file without one is refused, naming every section it lacks."""
    raw = params.raw.get(section) or {}
    require(
        isinstance(raw, Mapping),
        section,
        "must be a mapping from system to settings",
        "see params.yaml in the repository",
    )
    for name in raw:
        require(
            name in SYSTEMS,
            f"{section}.{name}",
            "not a known system",
            f"use one of: {', '.join(SYSTEMS)}",
        )
    for name in params.systems:
        if name not in raw:
            raise params.missing_sections(name)
    return {name: network_stage(params, section, name) for name in raw}
