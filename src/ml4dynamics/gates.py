"""Promotion gates: named, parameterised checks on evaluation results (DESIGN §5).

Each gate reads the summaries of ``ml4dynamics.evaluation`` for the test and ood splits:

- ``finite_and_bounded``: every trajectory of every split stays finite and within the bound to
  its horizon;
- ``error_at_horizon``: the mean relative L2 error at the horizon is ≤ ``max_error`` on every split;
- ``shift``: the excess shift max_k [log10 F(û_k) − log10 F(u_k)] is ≤ ``max_shift`` on every split;
- ``not_worse_than_champion``: the score (mean over splits of the error at the horizon) is ≤ the
  current champion's on the same data; passes when there is no comparable champion.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from ml4dynamics.config import PromoteConfig

GATES = ("finite_and_bounded", "error_at_horizon", "shift", "not_worse_than_champion")


@dataclasses.dataclass(frozen=True)
class Gate:
    name: str
    passed: bool
    detail: str


def _per_split(
    result: Mapping[str, Any], splits: Sequence[str], key: str, limit: float, what: str
) -> tuple[bool, str]:
    parts, ok = [], True
    for split in splits:
        value = result[split].get(key)
        if value is None or value > limit:
            ok = False
            shown = "not finite" if value is None else f"{value:.4g}"
            parts.append(f"{split} {what} {shown} > {limit:g}")
        else:
            parts.append(f"{split} {what} {value:.4g} <= {limit:g}")
    return ok, "; ".join(parts)


def check(
    result: Mapping[str, Any],
    config: PromoteConfig,
    champion_score: float | None,
    champion_label: str | None,
    splits: Sequence[str] = ("test", "ood"),
) -> list[Gate]:
    """Every gate on one evaluation ``result`` (the JSON of the evaluate stage)."""
    gates = []
    unstable = [
        f"{s}: {result[s]['trajectories'] * (1 - result[s]['stable_fraction']):.0f} of "
        f"{result[s]['trajectories']} trajectories blow up (first after "
        f"t = {result[s]['stability_horizon']:g})"
        for s in splits
        if result[s]["stable_fraction"] < 1
    ]
    gates.append(
        Gate(
            "finite_and_bounded",
            not unstable,
            "; ".join(unstable) or "every trajectory finite and bounded to the horizon",
        )
    )
    gates.append(
        Gate(
            "error_at_horizon",
            *_per_split(result, splits, "error_horizon", config.max_error, "error at horizon"),
        )
    )
    gates.append(
        Gate("shift", *_per_split(result, splits, "excess_shift", config.max_shift, "shift"))
    )
    score = result.get("score")
    if champion_score is None:
        gates.append(Gate("not_worse_than_champion", True, champion_label or "no champion yet"))
    elif score is None:
        gates.append(Gate("not_worse_than_champion", False, "no finite score"))
    else:
        gates.append(
            Gate(
                "not_worse_than_champion",
                score <= champion_score,
                f"score {score:.4g} vs champion {champion_label} {champion_score:.4g}",
            )
        )
    return gates


def refusal(gates: Sequence[Gate]) -> str:
    """The reason for a refusal ('' when every gate passed)."""
    return "; ".join(f"{g.name}: {g.detail}" for g in gates if not g.passed)
