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
