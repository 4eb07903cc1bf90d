"""Does distribution shift go with rollout error? (the paper's claim; stage ``shift_correlation``)

Across every evaluated closure of every system, each *unit* is one group of trajectories scored
together: a split, or one value of a parameter the split sweeps (``by_re``, ``by_gamma_u``). For
each unit we take the rollout's excess shift (max over frames of log10 F(û) − log10 F(u)) and its
relative L2 error at the horizon, and compute Spearman's rank correlation over the units where
both are finite. Units that blew up have neither; they are counted, not ranked (a blown-up
rollout is both off the manifold and wrong, so ranking it would only inflate the correlation).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from ml4dynamics.core.errors import ML4DError
from ml4dynamics.evaluation.result import EvaluationResult, or_none

SPLITS = ("test", "ood")


def ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1 … n, ties given their average rank."""
    order = np.argsort(x, kind="stable")
    r = np.empty(len(x))
    r[order] = np.arange(1, len(x) + 1)
    for value in np.unique(x):
        tied = x == value
        r[tied] = r[tied].mean()
    return r


def spearman(x: Iterable[float], y: Iterable[float]) -> float:
    """Spearman's ρ: the Pearson correlation of the ranks."""
    rx, ry = ranks(np.asarray(list(x), float)), ranks(np.asarray(list(y), float))
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = np.sqrt(np.sum(rx**2) * np.sum(ry**2))
    if denom == 0:
        raise ML4DError("the rank correlation needs at least two distinct values of each")
    return float(np.sum(rx * ry) / denom)


def units(result: EvaluationResult, source: str) -> list[dict[str, Any]]:
    """The scored groups of one evaluation (see the module docstring)."""
    out = []
    for split in SPLITS:
        summary = result.splits.get(split)
        if summary is None:
            continue
        members = [
            (f"{split} {name}={value}", s)
            for name, groups in summary.by.items()
            for value, s in groups.items()
        ] or [(split, summary)]
        for label, s in members:
            out.append(
                {
                    "system": result.system,
                    "estimator": result.estimator,
                    "unit": label,
                    "error_horizon": s.error_horizon,
                    "excess_shift": or_none(s.excess_shift),
                    "stable_fraction": s.stable_fraction,
                    "stability_horizon": s.stability_horizon,
                    "source": source,
                }
            )
    return out


def correlate(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Spearman's ρ between excess shift and error over the ranked units, all systems pooled and
    per system, with the counts of ranked and unranked (blown-up) units."""
    finite = [r for r in rows if r["error_horizon"] is not None and r["excess_shift"] is not None]
    result: dict[str, Any] = {
        "units": len(rows),
        "ranked": len(finite),
        "blown_up_or_unscored": len(rows) - len(finite),
    }
    if len(finite) >= 3:
        result["spearman_all"] = spearman(
            [r["excess_shift"] for r in finite], [r["error_horizon"] for r in finite]
        )
    for system in sorted({r["system"] for r in finite}):
        mine = [r for r in finite if r["system"] == system]
        if len(mine) >= 3:
            result[f"spearman_{system}"] = spearman(
                [r["excess_shift"] for r in mine], [r["error_horizon"] for r in mine]
            )
        result[f"ranked_{system}"] = len(mine)
    return result
