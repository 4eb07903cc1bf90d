"""One split's hybrid frames scored against its true trajectories: the split's summary (a
``SplitSummary``) and its per-frame curves (definitions: ``metrics.py``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import xarray as xr

from ml4dynamics.evaluation.metrics import (
    CORRELATION_LEVELS,
    correlation,
    finite,
    first_time,
    max_excess,
    mean,
    mean_rows,
    median_rows,
    relative_error,
)
from ml4dynamics.evaluation.result import SplitSummary
from ml4dynamics.evaluation.spectrum import spectrum_error
from ml4dynamics.simulation.hybrid import blown_up

BatchFn = Callable[[np.ndarray], np.ndarray]  # (N, T, *state) -> (N, T)


def score_split(
    ds: xr.Dataset,
    pred: np.ndarray,
    bound: float,
    report_time: float,
    log10_f: BatchFn | None = None,
    spatial_axes: int = 0,
    spectrum_weight: int | None = None,
    chaotic: bool = False,
) -> tuple[SplitSummary, dict[str, np.ndarray]]:
    """Scores of the hybrid frames ``pred`` against ``ds.u``: (summary, per-frame curves);
    ``log10_f`` (the frozen autoencoder's log10 F) adds the shift, ``spectrum_weight`` (the
    system's, None: no spectrum) the spectrum error; ``chaotic`` measures the excess shift
    against the true trajectory's furthest frame (``metrics.py``).

    The summary holds means over the trajectories (``None`` where a value is not finite) and each
    trajectory's blow-up time. Curves, per frame k ≥ 1 with ``time`` relative to the rollout's
    start: the fraction of trajectories still stable, and medians over all trajectories with a
    blown-up one counted as the worst value (a mean of the squared error, until the first
    blow-up) — never an average over a shrinking set.
    """
    truth = ds.u.values
    elapsed = ds.time.values - ds.time.values[0]
    blown = blown_up(pred, truth, bound)
    err = relative_error(pred, truth, blown)
    corr = np.where(blown, np.nan, correlation(pred, truth, spatial_axes))
    scores = {
        **_stability(blown, elapsed),
        **_errors(err, elapsed, report_time),
        **_correlation_times(corr, blown, elapsed),
    }
    if spectrum_weight is not None:
        reached = np.isclose(elapsed, report_time) | (elapsed > report_time)  # from its frame on
        window = reached & (elapsed > 0)
        scores["spectrum_error"] = (
            spectrum_error(pred[:, window], truth[:, window], spatial_axes, spectrum_weight)
            if window.any()
            else None
        )
    later = blown[:, 1:]
    curves = {
        "time": elapsed[1:],
        "stable_fraction": 1.0 - later.mean(axis=0),
        "rel_error": median_rows(err[:, 1:], later, worst=np.inf),
        "rel_error_sq": mean_rows(err[:, 1:] ** 2, later),
        "correlation": median_rows(corr[:, 1:], later, worst=-np.inf),
    }
    if log10_f is not None:
        shift, shift_curves = _shift(log10_f, pred, truth, blown, chaotic)
        scores |= shift
        curves |= shift_curves
    summary = SplitSummary(trajectories=int(truth.shape[0]), report_time=report_time, **scores)
    return summary, curves


def _stability(blown: np.ndarray, elapsed: np.ndarray) -> dict[str, Any]:
    """How long the trajectories stay bounded: each one's blow-up time, the fraction that never
    blows up, and the last time before the first blow-up (the stability horizon)."""
    horizon = float(elapsed[-1])
    blowup = first_time(blown[:, 1:], elapsed[1:])
    stable_time = np.where(np.isnan(blowup), horizon, 0.0)
    for b in np.nonzero(~np.isnan(blowup))[0]:
        k = int(np.argmax(blown[b]))
        stable_time[b] = elapsed[k - 1]
    return {
        "horizon": horizon,
        "stable_fraction": float(np.mean(np.isnan(blowup))),
        "stability_horizon": float(stable_time.min()),
        "blowup_times": tuple(finite(t) for t in blowup),  # None: stable to the horizon
    }


def _errors(err: np.ndarray, elapsed: np.ndarray, report_time: float) -> dict[str, Any]:
    """The mean error and squared error at the horizon and at the report time (None where the
    split has no frame at the report time)."""
    at = np.nonzero(np.isclose(elapsed, report_time))[0]
    return {
        "error_horizon": mean(err[:, -1]),
        "error_sq_horizon": mean(err[:, -1] ** 2),
        "error_report": mean(err[:, at[0]]) if len(at) else None,
        "error_report_sq": mean(err[:, at[0]] ** 2) if len(at) else None,
    }


def _correlation_times(corr: np.ndarray, blown: np.ndarray, elapsed: np.ndarray) -> dict[str, Any]:
    """Per level c: the mean time until ρ < c or a blow-up (a trajectory that never drops counts
    at the horizon) and how many never dropped."""
    out = {}
    for level in CORRELATION_LEVELS:
        drop = first_time((corr[:, 1:] < level) | blown[:, 1:], elapsed[1:])
        name = round(level * 100)
        out[f"corr_time_{name}"] = float(np.mean(np.where(np.isnan(drop), elapsed[-1], drop)))
        out[f"corr_censored_{name}"] = int(np.isnan(drop).sum())
    return out


def _shift(
    log10_f: BatchFn, pred: np.ndarray, truth: np.ndarray, blown: np.ndarray, chaotic: bool
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The distribution shift: log10 F at the last frame, the excess shift (for a chaotic system
    beyond the truth's furthest frame, the same-frame value beside it), and its curves."""
    f_pred = np.where(blown, np.nan, log10_f(pred))
    f_true = log10_f(truth)
    same_frame = max_excess(f_pred[:, 1:] - f_true[:, 1:])
    scores = {
        "log10_f_hybrid_final": mean(f_pred[:, -1]),
        "log10_f_true_final": mean(f_true[:, -1]),
        "excess_shift": same_frame,
    }
    if chaotic:  # against the furthest true frame of the trajectory
        envelope = np.max(f_true[:, 1:], axis=1, keepdims=True)
        scores["excess_shift"] = max_excess(f_pred[:, 1:] - envelope)
        scores["excess_shift_same_frame"] = same_frame
    later = blown[:, 1:]
    curves = {
        "log10_f_hybrid": median_rows(f_pred[:, 1:], later, worst=np.inf),
        "log10_f_true": np.median(f_true[:, 1:], axis=0),
    }
    return scores, curves
