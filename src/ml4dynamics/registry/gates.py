"""Promotion gates as a registry: named, parameterised checks on evaluation results
(docs/design.md §4).

A gate is one entry here: its name, the thresholds it reads from the params.yaml section
``promote`` (with their meaning), and a check over the evaluation result of one closure (an
``EvaluationResult``, as the evaluate stage wrote it) returning (passed, detail). Adding a gate is
one decorated function here plus its thresholds in params.yaml; the promote stage runs every
registered gate.

- ``finite_and_bounded``: every trajectory of every split stays finite and within the bound to
  its horizon;
- ``error_at_horizon``: the mean relative L2 error at the horizon is ≤ ``max_error`` on every
  split; for a chaotic system (``System.chaotic``), whose hybrids all decorrelate from the truth
  before the horizon, the error at the report time instead (the evaluation's ``score_metric``);
- ``shift``: the excess shift max_k [log10 F(û_k) − log10 F(u_k)] is ≤ ``max_shift`` on every split;
- ``beats_coarse_solver``: for a closure of a coarse solver (a system without an exact closure,
  evaluated beside the coarse solver alone: the alias-free plain solver on the same grid, the
  strongest one there), on every split the hybrid stays correlated with the truth (ρ ≥ 0.8) at
  least as long as the coarse solver alone and its error at the scored time is strictly smaller;
  a closure that does not beat the solver it corrects (one that does nothing included) has no
  use;
- ``not_worse_than_champion``: the score (``evaluation.result.split_score``: the mean over splits
  of the error at the horizon, or at the report time for a chaotic system) is ≤ the current
  champion's on the same data; passes when there is no comparable champion.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ml4dynamics.config import SCORED_SPLITS
from ml4dynamics.core.validation import coerce, require, require_positive
from ml4dynamics.evaluation.result import HORIZON, EvaluationResult, or_none, scored_error

Thresholds = Mapping[str, float]


@dataclasses.dataclass(frozen=True)
class Champion:
    """The current champion's score on the candidate's data, and how to name it (``None``
    score: no comparable champion)."""

    score: float | None = None
    label: str | None = None


@dataclasses.dataclass(frozen=True)
class Gate:
    """The outcome of one gate for one candidate."""

    name: str
    passed: bool
    detail: str


Check = Callable[[EvaluationResult, Thresholds, Champion, Sequence[str]], tuple[bool, str]]


@dataclasses.dataclass(frozen=True)
class GateSpec:
    name: str
    thresholds: Mapping[str, str]  # key in `promote` -> its meaning (for messages)
    check: Check


#: every gate, in the order they run and are reported
GATES: dict[str, GateSpec] = {}


def gate(name: str, **thresholds: str) -> Callable[[Check], Check]:
    """Register ``check`` as the gate ``name`` reading ``thresholds`` (key=meaning)."""

    def register(check: Check) -> Check:
        GATES[name] = GateSpec(name, dict(thresholds), check)
        return check

    return register


def _per_split(values: Mapping[str, float | None], limit: float, what: str) -> tuple[bool, str]:
    """Every split's value (``None``: not finite) ≤ ``limit``?"""
    parts, ok = [], True
    for split, value in values.items():
        if value is None or value > limit:
            ok = False
            shown = "not finite" if value is None else f"{value:.4g}"
            parts.append(f"{split} {what} {shown} > {limit:g}")
        else:
            parts.append(f"{split} {what} {value:.4g} <= {limit:g}")
    return ok, "; ".join(parts)


@gate("finite_and_bounded")
def finite_and_bounded(result, limits, champion, splits):
    summaries = [(s, result.splits[s]) for s in splits]
    unstable = [
        f"{s}: {own.trajectories * (1 - own.stable_fraction):.0f} of "
        f"{own.trajectories} trajectories blow up (first after "
        f"t = {own.stability_horizon:g})"
        for s, own in summaries
        if own.stable_fraction < 1
    ]
    return not unstable, "; ".join(unstable) or "every trajectory finite and bounded to the horizon"


@gate("error_at_horizon", max_error="relative L2 error at the horizon, e.g. 0.5")
def error_at_horizon(result, limits, champion, splits):
    key = result.score_metric
    what = "error at horizon" if key == HORIZON else f"error at t = {key[len('error_t') :]}"
    if result.chaotic:
        what += " (chaotic: the hybrids decorrelate before the horizon)"
    return _per_split({s: result.scored_error(s) for s in splits}, limits["max_error"], what)


@gate("beats_coarse_solver")
def beats_coarse_solver(result, limits, champion, splits):
    if any(or_none(result.splits[s].coarse_alone) is None for s in splits):
        return True, "no coarse solver to beat: the closure replaces exact physics"
    key = result.score_metric
    parts, ok = [], True
    for split in splits:
        own, base = result.splits[split], result.splits[split].coarse_alone
        error, base_error = result.scored_error(split), scored_error(base, result.chaotic)
        longer = own.corr_time_80 >= base.corr_time_80
        smaller = error is not None and (base_error is None or error < base_error)
        ok = ok and longer and smaller
        shown = "not finite" if error is None else f"{error:.3g}"
        base_shown = "not finite" if base_error is None else f"{base_error:.3g}"
        parts.append(
            f"{split} correlated (rho >= 0.8) for {own.corr_time_80:.4g} vs "
            f"{base.corr_time_80:.4g}, {key} {shown} vs {base_shown} (the alias-free coarse "
            "solver alone)"
        )
    return ok, "; ".join(parts)


@gate("shift", max_shift="decades of F above the truth's, e.g. 2")
def shift(result, limits, champion, splits):
    excess = {s: or_none(result.splits[s].excess_shift) for s in splits}
    return _per_split(excess, limits["max_shift"], "shift")


@gate("not_worse_than_champion")
def not_worse_than_champion(result, limits, champion, splits):
    score = result.score
    if champion.score is None:
        return True, champion.label or "no champion yet"
    if score is None:
        return False, "no finite score"
    return (
        score <= champion.score,
        f"score {score:.4g} vs champion {champion.label} {champion.score:.4g}",
    )


def parse_thresholds(raw: Any, key: str = "promote") -> dict[str, float]:
    """The ``promote`` section: exactly the thresholds the registered gates read, each > 0."""
    wanted = {k: meaning for spec in GATES.values() for k, meaning in spec.thresholds.items()}
    require(
        isinstance(raw, Mapping) and set(raw) == set(wanted),
        key,
        f"must have exactly the gate thresholds {sorted(wanted)}",
        "see params.yaml in the repository",
    )
    out = {}
    for name, meaning in wanted.items():
        value = coerce(float, raw[name], f"{key}.{name}")
        require_positive(value, f"{key}.{name}", meaning)
        out[name] = value
    return out


def configured(params) -> dict[str, float]:
    """The thresholds of params.yaml ``promote``, validated."""
    return params.parse(parse_thresholds, "promote")


def check(
    result: EvaluationResult,
    thresholds: Thresholds,
    champion: Champion = Champion(),
    splits: Sequence[str] = SCORED_SPLITS,
) -> list[Gate]:
    """Every registered gate on one evaluation ``result``."""
    return [
        Gate(spec.name, *spec.check(result, thresholds, champion, splits))
        for spec in GATES.values()
    ]


def refusal(gates: Sequence[Gate]) -> str:
    """The reason for a refusal ('' when every gate passed)."""
    return "; ".join(f"{g.name}: {g.detail}" for g in gates if not g.passed)
