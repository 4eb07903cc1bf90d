"""Energy spectra and the spectrum error, against closed forms (Parseval, single Fourier modes),
and the time window evaluation averages them over."""

from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr

from ml4dynamics.evaluation.result import UNMEASURED
from ml4dynamics.evaluation.scoring import score_split
from ml4dynamics.evaluation.spectrum import BANDS, band_shares, energy_spectrum, spectrum_error


def grid2(n: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.arange(n) * (2 * np.pi / n)
    return np.meshgrid(x, x, indexing="ij")


def test_a_velocity_spectrum_sums_to_the_mean_energy():
    u = np.random.default_rng(0).normal(size=(3, 2, 1, 64))  # (sample, time, field, x)
    spectrum = energy_spectrum(u, spatial_axes=1)
    assert spectrum.shape == (3, 2, 33)  # shells 0 … 32
    np.testing.assert_allclose(spectrum.sum(axis=-1), 0.5 * np.mean(u**2, axis=(2, 3)), rtol=1e-12)


@pytest.mark.parametrize(("k1", "k2", "shell", "energy"), [(3, 0, 3, 1 / 36), (3, 4, 5, 1 / 100)])
def test_a_vorticity_mode_has_the_kinetic_energy_of_its_velocity(k1, k2, shell, energy):
    """ω = cos(k·x) on [0, 2π)²: ψ = ω/|k|², |u|² = |∇ψ|² = sin²(k·x)/|k|², so the mean kinetic
    energy ½ mean |u|² = 1/(4|k|²), all of it in the shell round(|k|)."""
    x1, x2 = grid2(32)
    omega = np.cos(k1 * x1 + k2 * x2)[None]
    spectrum = energy_spectrum(omega, spatial_axes=2, weight_power=-2)
    assert spectrum[shell] == pytest.approx(energy, rel=1e-12)
    assert np.sum(np.delete(spectrum, shell)) < 1e-28
    assert spectrum.shape == (round(math.hypot(16, 16)) + 1,)  # up to the grid's corner


def test_the_spectrum_error_is_the_mean_log_ratio_over_the_resolved_shells():
    rng = np.random.default_rng(1)
    truth = rng.normal(size=(2, 5, 1, 48, 48))
    assert spectrum_error(truth, truth.copy(), 2, -2) == 0.0
    assert spectrum_error(2 * truth, truth, 2, -2) == pytest.approx(math.log10(4), rel=1e-12)
    # a change beyond the compared shells (|k| >= 48/2: the corners and the Nyquist shell) is not
    # seen; one between n/3 and n/2 is, since the solvers advect those modes too
    x1, x2 = grid2(48)
    corner = truth + 5.0 * np.cos(20 * x1 + 20 * x2)  # |k| = 28.3
    assert spectrum_error(corner, truth, 2, -2) == pytest.approx(0.0, abs=1e-12)
    assert spectrum_error(truth + 5.0 * np.cos(20 * x1), truth, 2, -2) > 0.01
    blown = truth.copy()
    blown[0, 3, 0, 0, 0] = np.inf
    assert spectrum_error(blown, truth, 2, -2) is None
    with pytest.raises(ValueError, match="differ"):
        spectrum_error(truth[:1], truth, 2, -2)


def test_evaluation_averages_the_spectrum_over_the_frames_from_the_report_time():
    rng = np.random.default_rng(2)
    u = rng.normal(size=(2, 11, 1, 32))  # frames at t = 0, 1, …, 10
    ds = xr.Dataset({"u": (("sample", "time", "field", "x"), u)}, coords={"time": np.arange(11.0)})
    early = u.copy()
    early[:, 1:4] *= 3.0  # off before the report time (t = 4) only: not in the window
    summary, _ = score_split(ds, early, 100.0, 4.0, spatial_axes=1, spectrum_weight=0)
    assert summary.spectrum_error == pytest.approx(0.0, abs=1e-12)
    late = u.copy()
    late[:, 4:] *= 3.0  # off from the report time on: every window frame's energy x 9
    summary, _ = score_split(ds, late, 100.0, 4.0, spatial_axes=1, spectrum_weight=0)
    assert summary.spectrum_error == pytest.approx(math.log10(9), rel=1e-12)
    # no spectrum for a system without one, and none when the window is empty
    plain, _ = score_split(ds, late, 100.0, 4.0, spatial_axes=1)
    assert plain.spectrum_error is UNMEASURED
    beyond, _ = score_split(ds, late, 100.0, 20.0, spatial_axes=1, spectrum_weight=0)
    assert beyond.spectrum_error is None


def test_band_shares_split_the_energy_at_the_two_thirds_cut_off_and_the_nyquist_wavenumber():
    x1, x2 = grid2(48)  # n/3 = 16, n/2 = 24
    low, gap, corner = np.cos(5 * x1), 2.0 * np.cos(20 * x2), 3.0 * np.cos(20 * x1 + 20 * x2)
    shares = band_shares(np.stack([low, gap + corner])[None], spatial_axes=2)  # two fields
    assert list(shares) == list(BANDS)
    np.testing.assert_allclose(list(shares.values()), np.array([1.0, 4.0, 9.0]) / 14.0, rtol=1e-12)
