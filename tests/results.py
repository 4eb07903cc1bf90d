"""Evaluation results built by hand, for the readers of one (gates, the report, the shift
correlation): every number a test does not name is a plain, finite one."""

from __future__ import annotations

from typing import Any

from ml4dynamics.config import SCORED_SPLITS
from ml4dynamics.evaluation.result import CoarseAlone, EvaluationResult, SplitSummary

#: a split of two trajectories, stable to its horizon t = 30, scored at t = 10
PLAIN = {
    "trajectories": 2,
    "horizon": 30.0,
    "stable_fraction": 1.0,
    "stability_horizon": 30.0,
    "error_horizon": 0.2,
    "error_sq_horizon": 0.04,
    "report_time": 10.0,
    "error_report": 0.1,
    "error_report_sq": 0.01,
    "corr_time_80": 30.0,
    "corr_censored_80": 2,
    "corr_time_90": 30.0,
    "corr_censored_90": 2,
    "corr_time_95": 30.0,
    "corr_censored_95": 2,
    "blowup_times": (None, None),
    "excess_shift": 0.5,
}


def summary(**values: Any) -> SplitSummary:
    """A split's summary: ``PLAIN`` with ``values`` in place."""
    return SplitSummary(**(PLAIN | values))


def coarse_alone(**values: Any) -> CoarseAlone:
    """The coarse solver alone on such a split: ``PLAIN``'s numbers, ``values`` in place."""
    names = {"error_horizon", "stable_fraction", "corr_time_80", "corr_time_95"}
    names |= {"corr_censored_80", "report_time", "error_report"}
    return CoarseAlone(**({k: v for k, v in PLAIN.items() if k in names} | values))


def result(
    splits: dict[str, SplitSummary],
    chaotic: bool = False,
    system: str = "rd",
    estimator: str = "ols",
    data_fingerprint: str = "data",
) -> EvaluationResult:
    """An evaluation of ``splits``, scored as the evaluate stage scores one."""
    return EvaluationResult.build(
        system=system,
        chaotic=chaotic,
        splits=splits,
        scored=SCORED_SPLITS,
        estimator=estimator,
        closure_fingerprint="closure",
        data_fingerprint=data_fingerprint,
    )
