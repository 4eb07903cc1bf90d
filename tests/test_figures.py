"""Figures tell the truth: a blown-up trajectory shows as a drop of the stable fraction and a
curve that ends, never as an improving average; snapshot colours come from the truth; fields
are drawn in physical units with x1 to the right (the channel horizontal)."""

from __future__ import annotations

import matplotlib.image
import numpy as np
import pytest
import xarray as xr

from ml4dynamics.evaluation.scoring import score_split
from ml4dynamics.reporting import figures, snapshot_panels, trial_figures


def dataset(truth: np.ndarray, dims: tuple[str, str], lengths: tuple[float, float]) -> xr.Dataset:
    """(sample, time, field, *dims) frames at t = 0, 1, ...; cell-centred coordinates."""
    coords = {"time": np.arange(truth.shape[1], dtype=float)}
    for name, n, length in zip(dims, truth.shape[3:], lengths, strict=True):
        coords[name] = (np.arange(n) + 0.5) * length / n
    return xr.Dataset({"u": (("sample", "time", "field", *dims), truth)}, coords=coords)


@pytest.fixture
def rollout():
    """Four trajectories of a 4 × 1 channel stored (x2, x1) = (8, 32); the hybrid has a 10 %
    error everywhere except trajectory 0, which is exact until it blows up at t = 3 (1e57), and
    trajectory 1, which blows up at t = 5."""
    rng = np.random.default_rng(0)
    truth = rng.normal(size=(4, 8, 2, 8, 32)) + 2.0
    pred = truth * 1.1
    pred[0, :3] = truth[0, :3]
    pred[0, 3:] = 1e57
    pred[1, 5:] = np.nan
    return dataset(truth, ("x2", "x1"), (1.0, 4.0)), pred


def test_curves_count_blown_up_trajectories_instead_of_dropping_them(rollout):
    ds, pred = rollout
    summary, curves = score_split(ds, pred, bound=10.0, report_time=1.0, spatial_axes=2)
    np.testing.assert_allclose(curves["stable_fraction"], [1, 1, 0.75, 0.75, 0.5, 0.5, 0.5])
    assert summary.blowup_times == (3.0, 5.0, None, None)
    error = curves["rel_error"]
    # the median of (0, 0.1, 0.1, 0.1) then of (inf, 0.1, 0.1, 0.1): it never drops when the
    # exact trajectory leaves, and it ends once half of them have blown up
    np.testing.assert_allclose(error[:2], 0.1, rtol=1e-12)
    np.testing.assert_allclose(error[2:4], 0.1, rtol=1e-12)
    assert np.isnan(error[4:]).all()
    # the mean of the squares is defined only while every trajectory is stable
    assert (
        np.isfinite(curves["rel_error_sq"][:2]).all() and np.isnan(curves["rel_error_sq"][2:]).all()
    )
    assert (curves["correlation"][:4] > 0.99).all() and np.isnan(curves["correlation"][4:]).all()


def test_the_error_figure_with_blow_ups_renders(rollout, tmp_path):
    ds, pred = rollout
    summary, curves = score_split(ds, pred, bound=10.0, report_time=1.0, spatial_axes=2)
    path = figures.curves(
        tmp_path / "error.png",
        {"test": (curves["time"], curves["rel_error"])},
        "relative L2 error",
        "blow-ups",
        stable={"test": (curves["time"], curves["stable_fraction"], summary.blowup_times)},
    )
    image = matplotlib.image.imread(path)
    assert image.shape[0] > image.shape[1] * 0.8  # the stable-fraction panel below the curves

    # nothing blew up: no flat "still stable" panel, a note says so instead
    calm = figures.curves(
        tmp_path / "calm.png",
        {"test": (curves["time"], curves["rel_error"])},
        "relative L2 error",
        "no blow-ups",
        stable={"test": (curves["time"], np.ones_like(curves["time"]), [None, None])},
    )
    image = matplotlib.image.imread(calm)
    assert image.shape[0] < image.shape[1] * 0.8  # one panel


def test_snapshot_colours_come_from_the_truth_and_the_channel_lies_horizontal(rollout, tmp_path):
    ds, pred = rollout
    truth, hybrid = ds.u.values[0], pred[0]
    rows = {"truth": truth, "hybrid": hybrid, "difference": hybrid - truth}
    limits = snapshot_panels.colour_limits(rows)
    low, high = float(truth[:, 0].min()), float(truth[:, 0].max())
    assert limits["truth"] == limits["hybrid"] == (low, high)  # not (…, 1e57)
    assert limits["difference"] == (-(high - low) / 4, (high - low) / 4)
    axes = figures.spatial_axes(ds)
    assert list(axes) == ["x2", "x1"]
    image, extent = snapshot_panels._image(truth[0, 0], axes)
    assert image.shape == (8, 32) and extent == pytest.approx((0.0, 4.0, 0.0, 1.0))
    # stored the other way round (x1, x2), the same field is drawn the same way
    swapped = snapshot_panels._image(truth[0, 0].T, {"x1": axes["x1"], "x2": axes["x2"]})
    np.testing.assert_array_equal(swapped[0], image)
    times = ds.time.values
    path = figures.snapshots(tmp_path / "snap.png", times, rows, "channel", ["u"], axes)
    height, width = matplotlib.image.imread(path).shape[:2]
    assert width > 1.5 * height  # three rows of four 4 × 1 panels: wider than tall


def test_a_1d_field_is_drawn_as_space_time_with_time_up(tmp_path):
    """(T, field, x1) frames (the ks system): one space-time panel per row, x1 to the right in
    physical units, time up, colours from the truth."""
    times = np.arange(6, dtype=float) * 0.5
    x = np.arange(16) * 2.0
    truth = np.sin(x[None, None] / 5 + times[:, None, None])  # (6, 1, 16)
    hybrid = truth.copy()
    hybrid[4:] = 1e57  # blown up: must not set the colour scale
    image, extent = snapshot_panels._space_time(truth, times, {"x1": x})
    np.testing.assert_array_equal(image[2], truth[2, 0])  # row k is time k (origin lower: up)
    assert extent == pytest.approx((-1.0, 31.0, -0.25, 2.75))
    rows = {"truth": truth, "hybrid": hybrid, "difference": hybrid - truth}
    assert snapshot_panels.colour_limits(rows)["hybrid"] == pytest.approx(
        (truth.min(), truth.max())
    )
    path = figures.snapshots(tmp_path / "ks.png", times, rows, "ks", ["u"], {"x1": x})
    height, width = matplotlib.image.imread(path).shape[:2]
    assert width > 2 * height  # three panels side by side


def _drawn(monkeypatch, draw) -> dict[str, tuple]:
    """The colour of every labelled line or marker of the figure ``draw()`` saves."""
    import matplotlib.colors

    saved = []
    monkeypatch.setattr(figures, "_save", lambda fig, path, dpi: saved.append(fig))
    draw()
    (fig,) = saved
    colours = {}
    for ax in fig.axes:
        for artist in (*ax.lines, *ax.containers):
            line = artist.lines[0] if hasattr(artist, "lines") else artist
            colours[artist.get_label()] = matplotlib.colors.to_rgba(line.get_color())
    return colours


def test_an_estimator_has_one_colour_in_every_figure(monkeypatch, tmp_path):
    """OLS and TR-projector are drawn in their palette colours in the linear experiment and in
    the speed-up figure, whatever their order there."""
    import matplotlib.colors

    rows = [{"lam": lam, "ols": 1.0, "mols": 0.5 / lam, "tr": 0.1 / lam} for lam in (1, 10)]
    linear = _drawn(monkeypatch, lambda: figures.terminal_error_vs_lambda(rows, tmp_path / "l", 5))
    acc = {"0.8": {"mean": 3.0, "interval": [2.0, 4.0]}}
    hybrid = {"cost_ms_per_time_unit": 2.0, "accuracy": acc}
    hybrid["equivalent"] = {"0.8": {"speedup": 0.5, "where": "inside"}}
    result = {
        "system": "ks",
        "settings": {"horizon": 10.0},
        "solvers": {"solver 16": {"cost_ms_per_time_unit": 1.0, "accuracy": acc}},
        "hybrids": {"tr-projector v4": hybrid, "ols v3": hybrid},  # TR first this time
    }
    speed = _drawn(monkeypatch, lambda: figures.speedup(tmp_path / "s.png", result))
    for estimator, label in (("ols", "OLS"), ("tr-projector", "TR (projector, P_V)")):
        expected = matplotlib.colors.to_rgba(figures.ESTIMATOR_COLOURS[estimator])
        assert linear[label] == expected
        (in_speedup,) = [c for name, c in speed.items() if name.startswith(estimator + " v")]
        assert in_speedup == expected
    assert len(set(figures.ESTIMATOR_COLOURS.values())) == len(figures.ESTIMATOR_COLOURS)


def test_trial_curves_pool_every_seed_and_end_an_error_line_at_blow_ups(monkeypatch, tmp_path):
    """The multi-seed figure of `ml4d sweep`: one error line per seed in the estimator's colour
    (a blown-up stretch is a gap, not a survivor's average), the ablation dashed, and the
    stable fraction pooled over every seed's rollouts."""
    import matplotlib.colors

    t = [1.0, 2.0, 3.0]
    ok = {"time": t, "rel_error": [0.1, 0.2, 0.3], "stable_fraction": [1.0, 1.0, 1.0]}
    ok |= {"shift": [0.0, 0.1, 0.2], "ablation_rel_error": [0.01, 0.02, 0.03]}
    blown = ok | {"rel_error": [0.1, None, None], "stable_fraction": [1.0, 0.5, 0.0]}
    saved = []
    monkeypatch.setattr(figures, "_save", lambda fig, path, dpi: saved.append(fig))
    groups = {
        "ols": {"label": "ols", "runs": [ok, blown]},
        "tr-projector": {"label": "tr-projector (λ = 10)", "runs": [ok, ok]},
    }
    trial_figures.trial_curves(tmp_path / "c.png", {"params.yaml": groups}, "rd")
    (fig,) = saved
    err_ax, shift_ax, stable_ax = fig.axes
    solid = [line for line in err_ax.lines if line.get_linestyle() == "-"]
    assert len(solid) == 4  # a line per seed and estimator
    colours = {matplotlib.colors.to_hex(line.get_color()) for line in solid}
    assert colours == {figures.ESTIMATOR_COLOURS["ols"], figures.ESTIMATOR_COLOURS["tr-projector"]}
    assert np.isnan(solid[1].get_ydata()[1:]).all()  # the blown-up seed's line ends
    dashed = [line for line in err_ax.lines if line.get_linestyle() == "--"]
    assert len(dashed) == 2  # the ablation of the first estimator, per seed
    fractions = [line.get_ydata() for line in stable_ax.lines]
    np.testing.assert_allclose(fractions[0], [1.0, 0.75, 0.5])  # of both seeds' rollouts
    np.testing.assert_allclose(fractions[1], [1.0, 1.0, 1.0])
    assert len(shift_ax.lines) == 4 + 1  # a line per seed and estimator, and zero


def test_trials_are_named_by_what_sets_them_apart():
    """A budget comparison's legend: "462 epochs", not the file name of the trial."""
    labels = trial_figures.trial_labels(
        ["ns_channel", "ns_channel_462_epochs", "ns_channel_tr_1848_epochs, re 300"]
    )
    assert labels == {
        "ns_channel": "the defaults",
        "ns_channel_462_epochs": "462 epochs",
        "ns_channel_tr_1848_epochs, re 300": "tr 1848 epochs, re 300",
    }
