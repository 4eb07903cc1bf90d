"""params.yaml ``evaluate``: how hybrid rollouts are scored (the blow-up bound, the report time,
per system where it differs)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from ml4dynamics.core.validation import parse, require, require_positive
from ml4dynamics.systems import SYSTEMS


@dataclasses.dataclass(frozen=True)
class EvaluateConfig:
    """params.yaml ``evaluate``: how hybrid rollouts are scored."""

    bound: float  # a frame with max|û| > bound · max|u| of its true trajectory has blown up
    report_time: float  # the error is also reported this long after the rollout starts
    #: per-system report times overriding ``report_time`` (optional): a system whose rollouts
    #: decorrelate sooner (turbulence within a few time units) is scored earlier
    report_times: Mapping[str, float] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        require(self.bound > 1, "bound", "must be > 1", "e.g. 10 (ten times the true maximum)")
        require_positive(self.report_time, "report_time", "a time after the rollout's start")
        for name, value in self.report_times.items():
            require(
                name in SYSTEMS,
                f"report_times.{name}",
                "is not a system",
                f"use one of: {', '.join(sorted(SYSTEMS))}",
            )
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            require(
                ok and math.isfinite(value) and value > 0,
                f"report_times.{name}",
                f"must be a time > 0, got {value!r}",
                "a time after the rollout's start",
            )

    def as_dict(self) -> dict[str, Any]:
        """As params.yaml writes it (JSON-ready)."""
        return {
            "bound": self.bound,
            "report_time": self.report_time,
            **({"report_times": dict(self.report_times)} if self.report_times else {}),
        }

    def for_system(self, name: str) -> EvaluateConfig:
        """The settings that score ``name``: its own report time where one is set."""
        time = float(self.report_times.get(name, self.report_time))
        return dataclasses.replace(self, report_time=time, report_times={})


def evaluate_config(params, system: str | None = None) -> EvaluateConfig:
    """The ``evaluate`` section of params.yaml, validated; with ``system``, as it scores that
    system (``EvaluateConfig.for_system``)."""
    config = params.parse(lambda raw, key: parse(EvaluateConfig, raw, key), "evaluate")
    return config if system is None else config.for_system(system)


@dataclasses.dataclass(frozen=True)
class EnvelopeConfig:
    """params.yaml ``envelope``: how a closure's validity envelope is scanned (``envelope.py``)."""

    trajectories: int  # fresh reference trajectories per point
    seed: int  # of their initial states (not a seed of the data splits)
    refinements: int  # points the refinement may add
    error_jump: float  # neighbours whose errors differ by this factor are split too
    #: per system, per physical parameter: the number of grid values over its range (the
    #: training value is added); a parameter left out is held at its training value
    points: Mapping[str, Mapping[str, int]] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        require(self.trajectories >= 1, "trajectories", "must be >= 1", "e.g. 2")
        require(self.seed >= 0, "seed", "must be >= 0", "a non-negative integer")
        require(self.refinements >= 0, "refinements", "must be >= 0", "e.g. 4")
        require(self.error_jump > 1, "error_jump", "must be > 1", "e.g. 3 (a factor)")
        for system, grid in self.points.items():
            require(
                system in SYSTEMS,
                f"points.{system}",
                "is not a system",
                f"use one of: {', '.join(sorted(SYSTEMS))}",
            )
            known = SYSTEMS[system].physical_params
            for name, count in grid.items():
                require(
                    name in known,
                    f"points.{system}.{name}",
                    f"is not a physical parameter of {system}",
                    f"use one of: {', '.join(known) or 'none'}",
                )
                require(
                    isinstance(count, int) and count >= 2,
                    f"points.{system}.{name}",
                    f"must be a whole number >= 2, got {count!r}",
                    "e.g. 5 (the range's ends and three between)",
                )


def envelope_config(params) -> EnvelopeConfig:
    """The ``envelope`` section of params.yaml, validated."""
    return params.parse(lambda raw, key: parse(EnvelopeConfig, raw, key), "envelope")
