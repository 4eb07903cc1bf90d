"""One point of a validity envelope: the closure rolled out at other physical parameters against
the system's own reference there, beside the plain solver (``envelope.scan`` calls it).

At the point's parameters the reference solver generates fresh trajectories exactly as the
pipeline generates a test split (random initial states from ``seed``, the training data's
warm-up and frame spacing), up to the report time; the closure is rolled out from their first
frames and scored as evaluation scores it (``evaluate_splits``). Where the system is a coarse
grid closed by a fine solver, the plain coarse solver runs from the same frames
(``coarse_alone``): a closure is of use only where it beats it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ml4dynamics.config import DataConfig, SplitConfig, SystemSetup
from ml4dynamics.datasets.generation import generate_split
from ml4dynamics.evaluation.baselines import coarse_alone
from ml4dynamics.evaluation.rollouts import evaluate_splits, log10_reconstruction
from ml4dynamics.systems import CoarseGridClosure, System


def point_setup(
    system: System,
    values: dict[str, float],
    data: dict[str, Any],
    trajectories: int,
    seed: int,
    report_time: float,
) -> SystemSetup:
    """The reference data of one point: ``trajectories`` trajectories of ``system`` with the
    physical parameters ``values``, ``data``'s warm-up and frame spacing, to ``report_time``."""
    at = system.with_physical(values)
    every = int(data["store_every"])
    steps = every * math.ceil(report_time / (at.dt * every) - 1e-9)
    split = SplitConfig(trajectories=trajectories, steps=steps, seed=seed)
    unused = [SplitConfig(trajectories=1, steps=every, seed=seed + k) for k in (1, 2, 3)]
    config = DataConfig(
        warmup_steps=int(data["warmup_steps"]),
        store_every=every,
        label_noise=0.0,
        train=unused[0],
        val=unused[1],
        test=split,
        ood=unused[2],
    )
    return SystemSetup(name=system.name, system=at.config, data=config)


def score_point(
    closure,
    system: System,
    values: dict[str, float],
    *,
    data: dict[str, Any],
    trajectories: int,
    seed: int,
    report_time: float,
    bound: float,
    reconstruct=None,
) -> dict[str, Any]:
    """The closure's scores at ``values``: whether every rollout stayed bounded, the mean
    relative error and the excess shift at the report time (shift: None without
    ``reconstruct``), and the plain solver's error there (None where the system has no plain
    solver apart from its reference). Where the reference itself does not stay finite (a
    parameter beyond what the system's solver resolves) the point says so
    (``reference_failed``) instead of scoring against it."""
    setup = point_setup(system, values, data, trajectories, seed, report_time)
    ds = generate_split(setup, "test", {})
    if not np.isfinite(ds.u.values).all():  # the system's own solver fails here: no truth
        return {"stable": False, "stable_fraction": 0.0, "error": None, "shift": None,
                "plain_error": None, "reference_failed": True}  # fmt: skip
    summaries, _, _ = evaluate_splits(
        {"envelope": ds}, closure, reconstruct, bound, report_time, with_ablation=False
    )
    s = summaries["envelope"]
    plain = None
    if isinstance(system, CoarseGridClosure):
        spatial = len(system.state_dims) - 1
        log10_f = log10_reconstruction(reconstruct) if reconstruct is not None else None
        base, _ = coarse_alone(
            ds, bound, report_time, log10_f, spatial, system.spectrum_weight, system.chaotic
        )
        plain = base.error_report
    shift = s.excess_shift if reconstruct is not None else None
    return {
        "stable": s.stable_fraction == 1.0,
        "stable_fraction": s.stable_fraction,
        "error": s.error_report,
        "shift": shift if isinstance(shift, float | int) else None,
        "plain_error": plain,
    }
