"""A closure evaluated: un-nudged hybrid rollouts of every split, scored against the true
trajectories, beside the ablation and the coarse solver alone — and the one function that turns
that into an ``EvaluationResult`` (``evaluate_closure``: ``ml4d evaluate``, promotion's champion,
the golden benchmark and the sweep all evaluate through it).

Rollouts run in float64 with the system's own step, vmapped over the trajectories of one
parameter combination; a split with several (ood) is rolled out group by group.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from ml4dynamics.config import SCORED_SPLITS
from ml4dynamics.datasets.pairs import system_groups
from ml4dynamics.evaluation.baselines import ablation, coarse_alone, misfit_std
from ml4dynamics.evaluation.config import EvaluateConfig
from ml4dynamics.evaluation.metrics import finite
from ml4dynamics.evaluation.result import EvaluationResult, SplitSummary
from ml4dynamics.evaluation.scoring import BatchFn, score_split
from ml4dynamics.learning.estimators import reconstruction_error
from ml4dynamics.simulation.hybrid import hybrid_rollouts, network_closure
from ml4dynamics.systems import CoarseGridClosure, ExactClosure, system_class

Curves = dict[str, np.ndarray]


def evaluate_closure(
    datasets: Mapping[str, xr.Dataset],
    closure,
    config: EvaluateConfig,
    reconstruct=None,
    with_ablation: bool = True,
    estimator: str | None = None,
    closure_fingerprint: str | None = None,
    data_fingerprint: str | None = None,
) -> tuple[EvaluationResult, dict[str, Curves], dict[str, np.ndarray]]:
    """The closure network rolled out on every dataset and scored with ``config`` as it scores
    the datasets' system (``EvaluateConfig.for_system``): (the result, per-frame curves, hybrid
    frames), keyed like ``datasets`` (``evaluate_splits``). Its score is over the scored splits
    among them (test, ood); the estimator and fingerprints, where given, say what was scored."""
    system = system_groups(next(iter(datasets.values())))[0][0]
    config = config.for_system(system.name)
    summaries, curves, frames = evaluate_splits(
        datasets, closure, reconstruct, config.bound, config.report_time, with_ablation
    )
    result = EvaluationResult.build(
        system=system.name,
        chaotic=system.chaotic,
        splits=summaries,
        scored=SCORED_SPLITS,
        estimator=estimator,
        closure_fingerprint=closure_fingerprint,
        data_fingerprint=data_fingerprint,
    )
    return result, curves, frames


def evaluate_splits(
    datasets: Mapping[str, xr.Dataset],
    closure,
    reconstruct=None,
    bound: float = 10.0,
    report_time: float = 10.0,
    with_ablation: bool = True,
) -> tuple[dict[str, SplitSummary], dict[str, Curves], dict[str, np.ndarray]]:
    """Roll the closure network out on every dataset and score it: (summaries, curves, hybrid
    frames), keyed like ``datasets``. With ``reconstruct`` (the frozen autoencoder) the shift
    metrics are included; ``with_ablation`` adds the ablation (``ablation``) of every split and
    the ratio of the closure's error at the horizon to it (``error_vs_ablation``: ≫ 1 where the
    error comes from distribution shift rather than the per-step error), both None for a system
    that cannot be ablated, and for a system without an exact closure the coarse solver alone
    (``coarse_alone``) beside it. Every split sweeping a system parameter is also scored per
    value of it (``SplitSummary.by``)."""
    system = system_groups(next(iter(datasets.values())))[0][0]
    log10_f = log10_reconstruction(reconstruct) if reconstruct is not None else None
    score = _Scoring(bound, report_time, log10_f, len(system.state_dims) - 1, system)
    closure_fn = network_closure(closure)
    summaries, curves, frames = {}, {}, {}
    for split, ds in datasets.items():
        frames[split] = hybrid_rollouts(ds, closure_fn)
        summary, curves[split] = score(ds, frames[split])
        if with_ablation:
            summary = _beside_baselines(summary, curves[split], ds, closure, score)
        groups = {
            name: {
                f"{value:g}": score(ds.isel(sample=i), frames[split][i])[0]
                for value, i in by.items()
            }
            for name, by in swept_groups(ds).items()
        }
        summaries[split] = dataclasses.replace(summary, by=groups)
    return summaries, curves, frames


@dataclasses.dataclass(frozen=True)
class _Scoring:
    """How every rollout of one evaluation is scored (``score_split``'s settings)."""

    bound: float
    report_time: float
    log10_f: BatchFn | None  # the shift, with the frozen autoencoder
    spatial: int
    system: Any

    def __call__(self, ds: xr.Dataset, pred: np.ndarray) -> tuple[SplitSummary, Curves]:
        weight, chaotic = self.system.spectrum_weight, self.system.chaotic
        return score_split(
            ds, pred, self.bound, self.report_time, self.log10_f, self.spatial, weight, chaotic
        )


def _beside_baselines(
    summary: SplitSummary, curves: Curves, ds: xr.Dataset, closure, score: _Scoring
) -> SplitSummary:
    """``summary`` with the baselines of its split (``curves`` gains their error curves): the
    coarse solver alone where the system has no exact closure; the ablation where it has an
    exact closure of any state, or a reference run that can carry the noise (a coarse grid with
    the correction closure), else None."""
    system, spatial, weight = score.system, score.spatial, score.system.spectrum_weight
    bound, report_time = score.bound, score.report_time
    extra: dict[str, Any] = {}
    exact = isinstance(system, ExactClosure)
    if not exact:
        base, base_curves = coarse_alone(
            ds, bound, report_time, score.log10_f, spatial, weight, system.chaotic
        )
        extra["coarse_alone"] = base
        curves["coarse_alone_rel_error"] = base_curves["rel_error"]
    if not (exact or (isinstance(system, CoarseGridClosure) and system.noisy_reference)):
        return dataclasses.replace(summary, **extra, ablation=None, error_vs_ablation=None)
    sigma = misfit_std(closure, ds)
    noisy, noisy_curves = ablation(ds, sigma, bound, report_time, spatial, spectrum_weight=weight)
    own, base_error = summary.error_horizon, noisy.error_horizon
    extra["ablation"] = noisy
    extra["error_vs_ablation"] = (
        finite(own / base_error) if own is not None and base_error else None
    )
    curves["ablation_rel_error"] = noisy_curves["rel_error"]
    return dataclasses.replace(summary, **extra)


def log10_reconstruction(reconstruct, chunk: int = 64) -> BatchFn:
    """Batch log10 F(u) for the frozen autoencoder ``reconstruct`` (non-finite states → nan)."""
    fn = jax.jit(jax.vmap(lambda u: reconstruction_error(reconstruct, u)))

    def batch(u: np.ndarray) -> np.ndarray:
        flat = u.reshape(-1, *u.shape[2:])
        good = np.isfinite(flat).all(axis=tuple(range(1, flat.ndim)))
        safe = np.where(good.reshape(-1, *([1] * (flat.ndim - 1))), flat, 0.0)
        values = np.concatenate(
            [np.asarray(fn(jnp.asarray(safe[i : i + chunk]))) for i in range(0, len(safe), chunk)]
        )
        with np.errstate(divide="ignore"):
            logs = np.where(good, np.log10(values), np.nan)
        return logs.reshape(u.shape[:2])

    return batch


def swept_groups(ds: xr.Dataset) -> dict[str, dict[float, np.ndarray]]:
    """For every system parameter the split sweeps over its trajectories (a coordinate along
    ``sample`` with several values that is a config field, e.g. ``re``; not a quantity drawn per
    trajectory such as ``y0``): value → sample indices."""
    cls = system_class(ds.attrs["system"])
    fields = typing.get_type_hints(cls.config_class)
    out = {}
    for name in fields:
        if name in ds.coords and ds[name].dims == ("sample",):
            values = ds[name].values
            if values.dtype.kind == "f" and len(np.unique(values)) > 1:
                out[name] = {float(v): np.nonzero(values == v)[0] for v in np.unique(values)}
    return out
