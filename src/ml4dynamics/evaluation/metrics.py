"""What a hybrid rollout is measured by, frame by frame, against its true trajectory.

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

Arrays are ``(sample, time, *state)``; the functions here are numpy only (``scoring.py`` applies
them to a split, ``rollouts.py`` runs the rollouts).
"""

from __future__ import annotations

import math

import numpy as np

CORRELATION_LEVELS = (0.8, 0.9, 0.95)


def norm(x: np.ndarray) -> np.ndarray:
    """‖x‖ over every axis after the first two (sample, time)."""
    return np.sqrt(np.sum(x**2, axis=tuple(range(2, x.ndim))))


def relative_error(pred: np.ndarray, truth: np.ndarray, blown: np.ndarray) -> np.ndarray:
    """e per (sample, time); nan at blown-up frames."""
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        return np.where(blown, np.nan, norm(pred - truth) / norm(truth))


def correlation(pred: np.ndarray, truth: np.ndarray, spatial_axes: int) -> np.ndarray:
    """ρ per (sample, time): centred over the last ``spatial_axes`` axes if there are any."""
    if spatial_axes:
        axes = tuple(range(pred.ndim - spatial_axes, pred.ndim))
        pred = pred - pred.mean(axis=axes, keepdims=True)
        truth = truth - truth.mean(axis=axes, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        return np.sum(pred * truth, axis=tuple(range(2, pred.ndim))) / (norm(pred) * norm(truth))


def first_time(mask: np.ndarray, elapsed: np.ndarray) -> np.ndarray:
    """Per row: elapsed time of the first True frame, nan if none."""
    first = np.where(mask.any(axis=1), mask.argmax(axis=1), -1)
    return np.where(first >= 0, elapsed[np.maximum(first, 0)], np.nan)


def max_excess(excess: np.ndarray) -> float | None:
    """The largest excess; None unless every frame has one (a blown-up frame has none)."""
    return finite(np.max(excess)) if np.isfinite(excess).all() else None


def median_rows(x: np.ndarray, blown: np.ndarray, worst: float) -> np.ndarray:
    """Per frame, the median over *every* trajectory, a blown-up one counting as ``worst``
    (infinite error): never a statistic of the survivors only, so the curve cannot improve when
    a trajectory blows up; it ends (nan) once half of them have."""
    with np.errstate(invalid="ignore"):
        median = np.median(np.where(blown, worst, x), axis=0)
    return np.where(np.isfinite(median), median, np.nan)


def mean_rows(x: np.ndarray, blown: np.ndarray) -> np.ndarray:
    """Per frame, the mean over every trajectory; nan from the first blow-up on."""
    return np.where(blown.any(axis=0), np.nan, x.mean(axis=0))


def finite(value: float) -> float | None:
    """``value`` as a float, None if it is not finite (JSON ``null``)."""
    value = float(value)
    return value if math.isfinite(value) else None


def mean(values: np.ndarray) -> float | None:
    """Mean over trajectories; ``None`` unless every one is finite."""
    return finite(np.mean(values)) if np.isfinite(values).all() else None


def curve_rows(curves: dict[str, np.ndarray]) -> list[dict[str, float | None]]:
    """Per-frame curves as CSV rows (empty cells for non-finite values)."""
    names = list(curves)
    return [{name: finite(curves[name][k]) for name in names} for k in range(len(curves["time"]))]
