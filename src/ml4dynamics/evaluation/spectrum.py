"""Energy spectra of periodic states and the spectrum error of a rollout.

A chaotic hybrid decorrelates from the truth however good its closure is (KS on L = 128 by
t ~ 40), and from then on a pointwise error only says that it has. What a closure can still get
right is the statistics: above all how the energy is distributed over scales. A coarse solver
without a closure piles up energy near its cut-off (or loses it, depending on the scheme); a
closure that supplies the missing sub-grid transfer keeps the truth's spectrum.

Definitions, for a state on a periodic grid of ``n1 × … × nd`` points:

- Fourier coefficients û_k = (1/N) Σ_x u(x) e^{−i k·x}, N = n1⋯nd, integer wavenumbers k (the
  grid's own: physical wavenumbers are 2πk/L, a common factor the error below does not see);
- the energy per mode ½ |k|^p |û_k|² summed over the state's fields, with the system's
  ``spectrum_weight`` p: 0 for a velocity state (ks: Parseval gives Σ_k E(k) = ½ mean u²), −2 for
  a 2D vorticity (kolmogorov: |û_velocity|² = |ω̂|²/|k|² for the stream function of −Δψ = ω on
  [0, 2π)², so Σ_k E(k) is the mean kinetic energy);
- the shell spectrum E(k), k = 0, 1, …: the energy of the modes with round(|k|) = k;
- the spectrum error of hybrid frames against true ones over a time window: the mean over the
  shells 1 ≤ k < ⌊min(n)/2⌋ (every shell the grid carries whole: the solvers advect all of
  them, and the restriction leaves the Nyquist shell empty) of |log10 Ē_hybrid(k) − log10
  Ē_true(k)|, Ē the mean spectrum over the window's frames and the trajectories. 0 when the
  spectra agree; log10 2 ≈ 0.3 when every shell is off by a factor 2.
"""

from __future__ import annotations

import numpy as np


def shells(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """For the Fourier modes of a periodic grid of ``shape`` (``numpy.fft.fftn`` order): each
    mode's shell index round(|k|) and |k|, both of ``shape``."""
    axes = [np.fft.fftfreq(n, d=1.0 / n) for n in shape]  # integer wavenumbers
    grids = np.meshgrid(*axes, indexing="ij")
    magnitude = np.sqrt(sum(g**2 for g in grids))
    return np.rint(magnitude).astype(int), magnitude


def energy_spectrum(u: np.ndarray, spatial_axes: int, weight_power: int = 0) -> np.ndarray:
    """E(k) of every state in ``u`` (``(..., field, *grid)``, the last ``spatial_axes`` axes
    periodic): ``(..., n_shells)``, shell k = round(|k|) from 0 to the grid's corner."""
    if spatial_axes < 1:
        raise ValueError("an energy spectrum needs at least one spatial axis")
    grid = u.shape[-spatial_axes:]
    axes = tuple(range(u.ndim - spatial_axes, u.ndim))
    u_hat = np.fft.fftn(u, axes=axes) / np.prod(grid)
    power = np.sum(np.abs(u_hat) ** 2, axis=-spatial_axes - 1)  # summed over fields
    index, magnitude = shells(grid)
    weight = np.ones_like(magnitude)  # p = 0: the mean (k = 0) counts, as in Parseval
    if weight_power != 0:  # (a vorticity's mean carries no velocity)
        safe = np.where(magnitude > 0, magnitude, 1.0)
        weight = np.where(magnitude > 0, safe ** float(weight_power), 0.0)
    flat = (0.5 * power * weight).reshape(*power.shape[: power.ndim - spatial_axes], -1)
    onehot = np.zeros((index.size, int(index.max()) + 1))
    onehot[np.arange(index.size), index.ravel()] = 1.0
    return flat @ onehot


def resolved_shells(grid: tuple[int, ...]) -> slice:
    """The shells the spectrum error compares: 1 … ⌊min(grid)/2⌋ − 1 (below the Nyquist shell)."""
    return slice(1, min(grid) // 2)


def spectrum_error(
    pred: np.ndarray, truth: np.ndarray, spatial_axes: int, weight_power: int = 0
) -> float | None:
    """The spectrum error (module docstring) of hybrid frames ``pred`` against ``truth`` (both
    ``(sample, time, field, *grid)``, the frames of the window); None if a hybrid frame is not
    finite (a blow-up has no spectrum)."""
    if pred.shape != truth.shape:
        raise ValueError(f"hybrid frames {pred.shape} and true frames {truth.shape} differ")
    if not np.isfinite(pred).all():
        return None
    grid = truth.shape[-spatial_axes:]
    keep = resolved_shells(grid)
    with np.errstate(over="ignore"):
        mean_pred = energy_spectrum(pred, spatial_axes, weight_power).mean(axis=(0, 1))[keep]
    mean_true = energy_spectrum(truth, spatial_axes, weight_power).mean(axis=(0, 1))[keep]
    if not (np.isfinite(mean_pred).all() and (mean_pred > 0).all() and (mean_true > 0).all()):
        return None  # (an overflow, or an empty shell: no log ratio)
    return float(np.mean(np.abs(np.log10(mean_pred) - np.log10(mean_true))))


#: the wavenumber bands of ``band_shares``: |k| ≤ n/3 (what the 2/3 rule keeps), up to the
#: Nyquist wavenumber n/2, and beyond it (the corners of a 2D grid)
BANDS = ("|k| <= n/3", "n/3 < |k| <= n/2", "|k| > n/2")


def band_shares(u: np.ndarray, spatial_axes: int) -> dict[str, float]:
    """The share of the Fourier energy Σ|û_k|² of the fields ``u`` (``(..., field, *grid)``) in
    each band of ``BANDS`` (n the smallest side of the grid). For a coarse grid's closure labels
    it says where the correction works: above n/3 a 2/3-rule solver's nonlinear term would not
    reach (the alias-free one reaches every carried mode)."""
    grid = u.shape[-spatial_axes:]
    axes = tuple(range(u.ndim - spatial_axes, u.ndim))
    power = np.abs(np.fft.fftn(u, axes=axes)) ** 2
    power = power.reshape(-1, *grid).sum(axis=0)
    _, magnitude = shells(grid)
    n = min(grid)
    masks = (magnitude <= n / 3, (magnitude > n / 3) & (magnitude <= n / 2), magnitude > n / 2)
    total = float(power.sum())
    shares = (float(power[m].sum()) / total if total else 0.0 for m in masks)
    return dict(zip(BANDS, shares, strict=True))
