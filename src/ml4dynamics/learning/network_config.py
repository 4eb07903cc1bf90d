"""params.yaml ``manifold.<system>`` and ``train.<system>``: a network and its optimisation, and for
``train`` the optional curriculum of the unrolled estimators (``unroll``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from ml4dynamics.config import known_system
from ml4dynamics.core.validation import parse, parse_tagged, require, require_positive
from ml4dynamics.learning.training import OptimConfig
from ml4dynamics.models import CLOSURE_KINDS, MANIFOLD_KINDS, ClosureConfig, ManifoldConfig
from ml4dynamics.systems import SYSTEMS

#: the sections holding one network per system, and the model kinds each accepts
SECTIONS = {"manifold": MANIFOLD_KINDS, "train": CLOSURE_KINDS}


@dataclasses.dataclass(frozen=True)
class UnrollConfig:
    """``train.<system>.unroll``: how the unrolled estimators train that system's closure.

    A curriculum of window lengths: ``epochs[i]`` epochs on windows of ``windows[i]`` hybrid
    frames (increasing; a curriculum that starts at 1 is the warm start from a one-step fit),
    each stage with its own optimiser state and learning-rate schedule (``optim``: lr, batch size,
    seed). ``clip``: the gradients' global norm is clipped to this (errors grow along a window,
    and with them the gradients)."""

    windows: tuple[int, ...]
    epochs: tuple[int, ...]
    clip: float

    def __post_init__(self) -> None:
        require(
            len(self.windows) >= 1 and all(k >= 1 for k in self.windows),
            "windows",
            "must be a non-empty list of window lengths >= 1",
            "e.g. [1, 4, 16]",
        )
        require(
            all(a < b for a, b in zip(self.windows[:-1], self.windows[1:], strict=True)),
            "windows",
            "must increase",
            "list the window lengths from short to long, e.g. [1, 4, 16]",
        )
        require(
            len(self.epochs) == len(self.windows) and all(e >= 1 for e in self.epochs),
            "epochs",
            "must give one number of epochs >= 1 per window length",
            f"e.g. {[10] * len(self.windows)}",
        )
        require_positive(self.clip, "clip", "the gradients' largest global norm")


@dataclasses.dataclass(frozen=True)
class NetworkStage:
    """``manifold.<system>`` (the autoencoder) or ``train.<system>`` (the closure network and,
    where the unrolled estimators train it, their curriculum)."""

    model: ClosureConfig | ManifoldConfig
    optim: OptimConfig
    unroll: UnrollConfig | None = None


def parse_network_stage(raw: Any, key: str, section: str) -> NetworkStage:
    required, optional = {"model", "optim"}, {"unroll"} if section == "train" else set()
    require(
        isinstance(raw, Mapping) and required <= set(raw) <= required | optional,
        key,
        "must have the keys 'model' and 'optim'"
        + (" (and, for the unrolled estimators, 'unroll')" if optional else "")
        + " and no others",
        "see params.yaml",
    )
    unroll = raw.get("unroll")
    return NetworkStage(
        model=parse_tagged(SECTIONS[section], raw["model"], f"{key}.model"),
        optim=parse(OptimConfig, raw["optim"], f"{key}.optim"),
        unroll=None if unroll is None else parse(UnrollConfig, unroll, f"{key}.unroll"),
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
