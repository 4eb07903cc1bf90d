"""A-posteriori evaluation: un-nudged hybrid rollouts scored against the true trajectories.

Definitions (docs/design.md §5), all on the stored frames k = 1 … K of a trajectory (the initial
condition k = 0 is given, never scored):

- relative L2 error e_k = ‖û_k − u_k‖ / ‖u_k‖ over the whole state (every field and grid point),
  and its square (the paper reports the squared one);
- correlation ρ_k between û_k and u_k, **centred**: each field's spatial mean is removed before
  the Pearson correlation over fields and grid points. A state without spatial dimensions (the
  linear toy) has nothing to centre over and uses the uncentred cosine;
- decorrelation time τ_c: time from the start to the first frame with ρ_k < c (c = 0.8, 0.9, 0.95),
  or to the first blown-up frame; a trajectory that never drops is *censored* at the horizon;
- blow-up: a frame that is non-finite or has max|û_k| > bound · max_j |u_j| (its true trajectory);
  the stability horizon is the time of the last frame before the first blow-up (the horizon if
  none). Errors of blown-up frames are not finite and are reported as ``null``;
- spectrum error (systems with an energy spectrum, ``System.spectrum_weight``; ``spectrum.py``):
  the mean |log10| ratio of the hybrid's and the truth's energy spectra, averaged over the frames
  from the report time to the horizon: the statistics a chaotic hybrid can keep after it has
  decorrelated; None when a trajectory blew up;
- distribution shift log10 F(û_k) with F(u) = ‖u − D(E(u))‖² of the frozen autoencoder, beside
  log10 F(u_k) of the truth; the excess shift is max_k [log10 F(û_k) − log10 F(u_k)]. For a
  chaotic system the hybrid decorrelates from the truth, and F of the true frame at the same
  time is that of an unrelated state: on ks it ranges over decades along one trajectory, so a
  single dip of the truth set the maximum (even for the coarse solver alone).
  There the excess shift is max_k log10 F(û_k) − max_j log10 F(u_j): how far the hybrid goes
  beyond the furthest the true trajectory ever is from the manifold; the same-frame value is
  kept as ``excess_shift_same_frame``.

Rollouts run in float64 with the system's own step, vmapped over the trajectories of one
parameter combination; a split with several (ood) is rolled out group by group.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from ml4dynamics.core.validation import parse, require, require_positive
from ml4dynamics.datasets.generation import noisy_references
from ml4dynamics.datasets.pairs import system_groups
from ml4dynamics.evaluation.spectrum import spectrum_error
from ml4dynamics.learning.estimators import reconstruction_error
from ml4dynamics.simulation.hybrid import (
    blown_up,
    hybrid_rollouts,
    network_closure,
    zero_closure,
)
from ml4dynamics.systems import SYSTEMS, system_class

CORRELATION_LEVELS = (0.8, 0.9, 0.95)
BatchFn = Callable[[np.ndarray], np.ndarray]  # (N, *state) -> (N,)


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


def _norm(x: np.ndarray) -> np.ndarray:
    """‖x‖ over every axis after the first two (sample, time)."""
    return np.sqrt(np.sum(x**2, axis=tuple(range(2, x.ndim))))


def correlation(pred: np.ndarray, truth: np.ndarray, spatial_axes: int) -> np.ndarray:
    """ρ per (sample, time): centred over the last ``spatial_axes`` axes if there are any."""
    if spatial_axes:
        axes = tuple(range(pred.ndim - spatial_axes, pred.ndim))
        pred = pred - pred.mean(axis=axes, keepdims=True)
        truth = truth - truth.mean(axis=axes, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        return np.sum(pred * truth, axis=tuple(range(2, pred.ndim))) / (_norm(pred) * _norm(truth))


def _first_time(mask: np.ndarray, elapsed: np.ndarray) -> np.ndarray:
    """Per row: elapsed time of the first True frame, nan if none."""
    first = np.where(mask.any(axis=1), mask.argmax(axis=1), -1)
    return np.where(first >= 0, elapsed[np.maximum(first, 0)], np.nan)


def score_split(
    ds: xr.Dataset,
    pred: np.ndarray,
    bound: float,
    report_time: float,
    log10_f: BatchFn | None = None,
    spatial_axes: int = 0,
    spectrum_weight: int | None = None,
    chaotic: bool = False,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Scores of the hybrid frames ``pred`` against ``ds.u``: (summary, per-frame curves);
    ``spectrum_weight`` (the system's, None: no spectrum) adds the spectrum error; ``chaotic``
    measures the excess shift against the true trajectory's furthest frame (module docstring).

    The summary holds means over the trajectories (``null`` where a value is not finite) and each
    trajectory's blow-up time. Curves, per frame k ≥ 1 with ``time`` relative to the rollout's
    start: the fraction of trajectories still stable, and medians over all trajectories with a
    blown-up one counted as the worst value (a mean of the squared error, until the first
    blow-up) — never an average over a shrinking set.
    """
    truth = ds.u.values
    elapsed = ds.time.values - ds.time.values[0]
    blown = blown_up(pred, truth, bound)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        err = np.where(blown, np.nan, _norm(pred - truth) / _norm(truth))
    corr = np.where(blown, np.nan, correlation(pred, truth, spatial_axes))
    horizon = float(elapsed[-1])
    blowup = _first_time(blown[:, 1:], elapsed[1:])
    stable_time = np.where(np.isnan(blowup), horizon, 0.0)
    for b in np.nonzero(~np.isnan(blowup))[0]:
        k = int(np.argmax(blown[b]))
        stable_time[b] = elapsed[k - 1]
    summary: dict[str, Any] = {
        "trajectories": int(truth.shape[0]),
        "horizon": horizon,
        "stable_fraction": float(np.mean(np.isnan(blowup))),
        "stability_horizon": float(stable_time.min()),
        "error_horizon": _mean(err[:, -1]),
        "error_sq_horizon": _mean(err[:, -1] ** 2),
    }
    reached = np.isclose(elapsed, report_time) | (elapsed > report_time)  # from its frame on
    at = np.nonzero(np.isclose(elapsed, report_time))[0]
    key = report_key(report_time)
    summary[key] = _mean(err[:, at[0]]) if len(at) else None
    summary[f"{key}_sq"] = _mean(err[:, at[0]] ** 2) if len(at) else None
    for level in CORRELATION_LEVELS:
        drop = _first_time((corr[:, 1:] < level) | blown[:, 1:], elapsed[1:])
        name = round(level * 100)
        summary[f"corr_time_{name}"] = float(np.mean(np.where(np.isnan(drop), horizon, drop)))
        summary[f"corr_censored_{name}"] = int(np.isnan(drop).sum())
    summary["blowup_times"] = [_finite(t) for t in blowup]  # null: stable to the horizon
    if spectrum_weight is not None:
        window = reached & (elapsed > 0)
        summary["spectrum_error"] = (
            spectrum_error(pred[:, window], truth[:, window], spatial_axes, spectrum_weight)
            if window.any()
            else None
        )
    later = blown[:, 1:]
    curves = {
        "time": elapsed[1:],
        "stable_fraction": 1.0 - later.mean(axis=0),
        "rel_error": _median_rows(err[:, 1:], later, worst=np.inf),
        "rel_error_sq": _mean_rows(err[:, 1:] ** 2, later),
        "correlation": _median_rows(corr[:, 1:], later, worst=-np.inf),
    }
    if log10_f is not None:
        f_pred = np.where(blown, np.nan, log10_f(pred))
        f_true = log10_f(truth)
        summary["log10_f_hybrid_final"] = _mean(f_pred[:, -1])
        summary["log10_f_true_final"] = _mean(f_true[:, -1])
        same_frame = _max_excess(f_pred[:, 1:] - f_true[:, 1:])
        if chaotic:  # against the furthest true frame of the trajectory
            envelope = np.max(f_true[:, 1:], axis=1, keepdims=True)
            summary["excess_shift"] = _max_excess(f_pred[:, 1:] - envelope)
            summary["excess_shift_same_frame"] = same_frame
        else:
            summary["excess_shift"] = same_frame
        curves["log10_f_hybrid"] = _median_rows(f_pred[:, 1:], later, worst=np.inf)
        curves["log10_f_true"] = np.median(f_true[:, 1:], axis=0)
    return summary, curves


def _max_excess(excess: np.ndarray) -> float | None:
    """The largest excess; None unless every frame has one (a blown-up frame has none)."""
    return _finite(np.max(excess)) if np.isfinite(excess).all() else None


def _median_rows(x: np.ndarray, blown: np.ndarray, worst: float) -> np.ndarray:
    """Per frame, the median over *every* trajectory, a blown-up one counting as ``worst``
    (infinite error): never a statistic of the survivors only, so the curve cannot improve when
    a trajectory blows up; it ends (nan) once half of them have."""
    with np.errstate(invalid="ignore"):
        median = np.median(np.where(blown, worst, x), axis=0)
    return np.where(np.isfinite(median), median, np.nan)


def _mean_rows(x: np.ndarray, blown: np.ndarray) -> np.ndarray:
    """Per frame, the mean over every trajectory; nan from the first blow-up on."""
    return np.where(blown.any(axis=0), np.nan, x.mean(axis=0))


def _finite(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _mean(values: np.ndarray) -> float | None:
    """Mean over trajectories; ``None`` unless every one is finite."""
    return _finite(np.mean(values)) if np.isfinite(values).all() else None


def curve_rows(curves: dict[str, np.ndarray]) -> list[dict[str, float | None]]:
    """Per-frame curves as CSV rows (empty cells for non-finite values)."""
    names = list(curves)
    return [{name: _finite(curves[name][k]) for name in names} for k in range(len(curves["time"]))]


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


#: what the ablation rollout reports (beside the closure's own numbers)
ABLATION_KEYS = ("error_horizon", "stable_fraction", "corr_time_95")


def ablation(
    ds: xr.Dataset,
    sigma: float,
    bound: float,
    report_time: float,
    spatial: int,
    seed: int = 0,
    spectrum_weight: int | None = None,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The paper's ablation: the exact closure plus fresh N(0, σ²) noise at every step, σ the
    closure's own misfit; its rollout error is what a per-step error of that size costs without
    any distribution shift. (Summary, per-frame curves.) The noise is drawn per step, shared by
    the trajectories rolled out together. A system whose exact closure needs more than its state
    (a coarse grid closed by a fine solver) runs its reference trajectories again with the noise
    in their coarse modes (``noisy_references``)."""
    system = system_groups(ds)[0][0]
    if system.has_exact_closure:
        pred = hybrid_rollouts(ds, None, noise=(sigma, seed))
    else:
        pred = noisy_references(ds, sigma, seed)
    summary, curves = score_split(ds, pred, bound, report_time, None, spatial, spectrum_weight)
    keys = (*ABLATION_KEYS, report_key(report_time), "spectrum_error")
    return {"misfit_std": sigma, **{k: summary[k] for k in keys if k in summary}}, curves


#: what the coarse-solver-alone rollout reports (beside the closure's own numbers)
COARSE_ALONE_KEYS = (
    "error_horizon",
    "stable_fraction",
    "corr_time_80",
    "corr_time_95",
    "corr_censored_80",
    "spectrum_error",
)


def coarse_alone(
    ds: xr.Dataset,
    bound: float,
    report_time: float,
    log10_f: BatchFn | None,
    spatial: int,
    spectrum_weight: int | None = None,
    chaotic: bool = False,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The solver the closure corrects, with no closure (``y = 0``): for a coarse grid closed by
    a fine solver, the plain coarse solver. A closure that does not beat it has no use.
    (Summary, per-frame curves.)"""
    pred = hybrid_rollouts(ds, None, closure_of=zero_closure)
    summary, curves = score_split(
        ds, pred, bound, report_time, log10_f, spatial, spectrum_weight, chaotic
    )
    keys = (
        *COARSE_ALONE_KEYS,
        report_key(report_time),
        "excess_shift",
        "excess_shift_same_frame",
    )
    return {k: summary[k] for k in keys if k in summary}, curves


def evaluate_splits(
    datasets: Mapping[str, xr.Dataset],
    closure,
    reconstruct=None,
    bound: float = 10.0,
    report_time: float = 10.0,
    with_ablation: bool = True,
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """Roll the closure network out on every dataset and score it: (summaries, curves, hybrid
    frames), keyed like ``datasets``. With ``reconstruct`` (the frozen autoencoder) the shift
    metrics are included; ``with_ablation`` adds the ablation (``ablation``) of every split and
    the ratio of the closure's error at the horizon to it (``error_vs_ablation``: ≫ 1 where the
    error comes from distribution shift rather than the per-step error), both None for a system
    without an exact closure, which gets the coarse solver alone (``coarse_alone``) instead."""
    first = next(iter(datasets.values()))
    system = system_groups(first)[0][0]
    spatial = len(system.state_dims) - 1
    # the ablation needs the exact closure of any state, or a reference run that can carry the
    # noise (a coarse grid with the correction closure); a coarse grid closed by a fine solver
    # also gets the coarse solver alone, the baseline its closure must beat
    exact = system.has_exact_closure
    ablates = exact or system.has_reference_with_noise
    weight = system.spectrum_weight
    log10_f = log10_reconstruction(reconstruct) if reconstruct is not None else None
    closure_fn = network_closure(closure)
    summaries, curves, frames = {}, {}, {}
    for split, ds in datasets.items():
        frames[split] = hybrid_rollouts(ds, closure_fn)
        summaries[split], curves[split] = score_split(
            ds, frames[split], bound, report_time, log10_f, spatial, weight, system.chaotic
        )
        if with_ablation and not exact:
            base, base_curves = coarse_alone(
                ds, bound, report_time, log10_f, spatial, weight, system.chaotic
            )
            summaries[split]["coarse_alone"] = base
            curves[split]["coarse_alone_rel_error"] = base_curves["rel_error"]
        if with_ablation and not ablates:
            summaries[split]["ablation"] = summaries[split]["error_vs_ablation"] = None
        elif with_ablation:
            sigma = misfit_std(closure, ds)
            noisy, noisy_curves = ablation(
                ds, sigma, bound, report_time, spatial, spectrum_weight=weight
            )
            summaries[split]["ablation"] = noisy
            own, base = summaries[split]["error_horizon"], noisy["error_horizon"]
            summaries[split]["error_vs_ablation"] = (
                _finite(own / base) if own is not None and base else None
            )
            curves[split]["ablation_rel_error"] = noisy_curves["rel_error"]
        for name, groups in swept_groups(ds).items():
            summaries[split][f"by_{name}"] = {
                f"{value:g}": score_split(
                    ds.isel(sample=idx),
                    frames[split][idx],
                    bound,
                    report_time,
                    log10_f,
                    spatial,
                    weight,
                    system.chaotic,
                )[0]
                for value, idx in groups.items()
            }
    return summaries, curves, frames


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


def numeric_metrics(summaries: Mapping[str, Any], prefix: str) -> dict[str, float]:
    """``{prefix.split.name: value}`` for every finite number of the (nested) summaries, for
    MLflow (``eval.test.by_re.300.error_horizon``)."""
    out = {}
    for key, value in summaries.items():
        if isinstance(value, Mapping):
            out.update(numeric_metrics(value, f"{prefix}.{key}"))
        elif isinstance(value, int | float) and math.isfinite(value):
            out[f"{prefix}.{key}"] = float(value)
    return out


def report_key(report_time: float) -> str:
    """The summary key of the error at the report time: ``error_t10`` for t = 10."""
    return f"error_t{report_time:g}"


def score_key(system, report_time: float) -> str:
    """The error promotion scores a closure by: at the horizon, or at the report time for a
    chaotic system (whose hybrids have all decorrelated from the truth by the horizon)."""
    return report_key(report_time) if system.chaotic else "error_horizon"


def split_score(summaries: Sequence[dict[str, Any]], key: str = "error_horizon") -> float | None:
    """The single number promotion compares: mean relative error over splits, at the horizon or
    as ``key`` says (``None`` if any split is not finite — a blown-up closure has no score)."""
    values = [s.get(key) for s in summaries]
    return None if any(v is None for v in values) else float(np.mean(values))


def _significant(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else float(f"{value:.{digits}g}")


def headline(
    summaries: Mapping[str, Mapping[str, Any]],
    report_time: float,
    val_key: str = "error_horizon",
) -> dict[str, Any]:
    """The few numbers a person compares across experiments (``dvc exp show``), rounded to three
    digits: the validation score λ is chosen by (``val_key``, ``score_key``: ``val_err_end`` at
    the horizon, or ``val_err`` at the report time for a chaotic system), the test and ood errors
    at the report time and at the horizon, the smaller stable fraction of test and ood, the
    ood distribution shift and, where the system has one, the test spectrum error (``null``: not
    defined, e.g. after a blow-up). The full detail stays in the evaluation file."""
    test, ood = summaries["test"], summaries["ood"]
    key = report_key(report_time)
    return {
        "val_err_end" if val_key == "error_horizon" else "val_err": _significant(
            summaries.get("val", {}).get(val_key)
        ),
        "test_err": _significant(test.get(key)),
        "test_err_end": _significant(test.get("error_horizon")),
        "ood_err": _significant(ood.get(key)),
        "ood_err_end": _significant(ood.get("error_horizon")),
        "stable": _significant(min(test["stable_fraction"], ood["stable_fraction"])),
        "shift": _significant(ood.get("excess_shift")),
        # a system with an energy spectrum: the test spectrum error (the statistics)
        **({"spec_err": _significant(test["spectrum_error"])} if "spectrum_error" in test else {}),
    }
