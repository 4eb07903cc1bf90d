"""What a closure's rollout is compared with: the paper's ablation (the exact closure plus noise
of the closure's own misfit) and, for a closure of a coarse solver, that solver alone."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from ml4dynamics.datasets.generation import noisy_references
from ml4dynamics.datasets.pairs import system_groups
from ml4dynamics.evaluation.result import Ablation, CoarseAlone
from ml4dynamics.evaluation.scoring import BatchFn, score_split
from ml4dynamics.simulation.hybrid import hybrid_rollouts, zero_closure
from ml4dynamics.systems import ExactClosure


def misfit_std(closure, ds: xr.Dataset, chunk: int = 64) -> float:
    """The closure network's a-priori error on ``ds``'s stored pairs as one standard deviation
    per element: sqrt(mean over samples, frames and elements of (y − φ(u))²)."""
    u = ds.u.values.reshape(-1, *ds.u.shape[2:])
    y = ds.y.values.reshape(-1, *ds.y.shape[2:])
    fn = _jitted(closure)
    total = 0.0
    for i in range(0, len(u), chunk):
        part = u[i : i + chunk]
        if len(part) < chunk and len(u) > chunk:  # padded: one compiled shape for every chunk
            part = np.concatenate([part, np.repeat(part[-1:], chunk - len(part), axis=0)])
        predicted = np.asarray(fn(jnp.asarray(part)))[: len(y[i : i + chunk])]
        total += float(np.sum((y[i : i + chunk] - predicted) ** 2))
    return math.sqrt(total / y.size)


_JITTED: list[tuple[Any, Callable]] = []  # the last closure and its jit (one slot)


def _jitted(closure) -> Callable:
    """``jax.jit(closure)`` of the closure evaluated last: the splits of one evaluation share
    its compilations (a fresh wrapper per split compiled everything again: 12 s of rd's 80).
    One slot, so a process that evaluates many closures (``ml4d sweep``) holds none of the
    earlier ones."""
    if not _JITTED or _JITTED[0][0] is not closure:
        _JITTED[:] = [(closure, jax.jit(lambda x: closure(x)))]
    return _JITTED[0][1]


def ablation(
    ds: xr.Dataset,
    sigma: float,
    bound: float,
    report_time: float,
    spatial: int,
    seed: int = 0,
    spectrum_weight: int | None = None,
) -> tuple[Ablation, dict[str, np.ndarray]]:
    """The paper's ablation: the exact closure plus fresh N(0, σ²) noise at every step, σ the
    closure's own misfit; its rollout error is what a per-step error of that size costs without
    any distribution shift. (Summary, per-frame curves.) The noise is drawn per step, shared by
    the trajectories rolled out together. A system whose exact closure needs more than its state
    (a coarse grid closed by a fine solver) runs its reference trajectories again with the noise
    in their coarse modes (``noisy_references``)."""
    system = system_groups(ds)[0][0]
    if isinstance(system, ExactClosure):
        pred = hybrid_rollouts(ds, None, noise=(sigma, seed))
    else:
        pred = noisy_references(ds, sigma, seed)
    summary, curves = score_split(ds, pred, bound, report_time, None, spatial, spectrum_weight)
    noisy = Ablation(
        misfit_std=sigma,
        error_horizon=summary.error_horizon,
        stable_fraction=summary.stable_fraction,
        corr_time_95=summary.corr_time_95,
        report_time=summary.report_time,
        error_report=summary.error_report,
        spectrum_error=summary.spectrum_error,
    )
    return noisy, curves


def coarse_alone(
    ds: xr.Dataset,
    bound: float,
    report_time: float,
    log10_f: BatchFn | None,
    spatial: int,
    spectrum_weight: int | None = None,
    chaotic: bool = False,
) -> tuple[CoarseAlone, dict[str, np.ndarray]]:
    """The solver the closure corrects, with no closure (``y = 0``): for a coarse grid closed by
    a fine solver, the plain coarse solver. A closure that does not beat it has no use.
    (Summary, per-frame curves.)"""
    pred = hybrid_rollouts(ds, None, closure_of=zero_closure)
    summary, curves = score_split(
        ds, pred, bound, report_time, log10_f, spatial, spectrum_weight, chaotic
    )
    base = CoarseAlone(
        error_horizon=summary.error_horizon,
        stable_fraction=summary.stable_fraction,
        corr_time_80=summary.corr_time_80,
        corr_time_95=summary.corr_time_95,
        corr_censored_80=summary.corr_censored_80,
        spectrum_error=summary.spectrum_error,
        report_time=summary.report_time,
        error_report=summary.error_report,
        excess_shift=summary.excess_shift,
        excess_shift_same_frame=summary.excess_shift_same_frame,
    )
    return base, curves
