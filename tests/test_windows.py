"""k-step windows of stored trajectories: shapes, order, sample parameters and physics."""

from __future__ import annotations

import jax
import numpy as np
import pytest
import xarray as xr

from ml4dynamics.core.errors import DatasetError
from ml4dynamics.datasets import open_dataset
from ml4dynamics.datasets.pairs import as_pairs, as_windows, steps_per_frame, system_of
from ml4dynamics.systems.rollout import rollout

SYSTEMS = ["linear", "rd"]


def expected_windows(a: np.ndarray, k: int) -> np.ndarray:
    """Independent construction: loop over trajectories, then start frames."""
    samples, frames = a.shape[:2]
    return np.stack([a[i, j : j + k] for i in range(samples) for j in range(frames - k + 1)])


@pytest.mark.parametrize("name", SYSTEMS)
def test_windows_hold_consecutive_frames_sample_major(generated, name):
    ds = open_dataset(generated / name / "train.zarr")
    samples, frames = ds.sizes["sample"], ds.sizes["time"]
    times = np.broadcast_to(ds.time.values, (samples, frames))
    for k in (1, 3, frames):  # single frames, a short window, the whole trajectory
        w = as_windows(ds, k)
        n = samples * (frames - k + 1)
        assert w["u"].shape == (n, k, *ds.u.shape[2:])
        assert w["y"].shape == (n, k, *ds.y.shape[2:])
        assert w["t"].shape == (n, k)
        assert w["u"].dtype == w["y"].dtype == w["t"].dtype == np.float64
        np.testing.assert_array_equal(w["u"], expected_windows(ds.u.values, k))
        np.testing.assert_array_equal(w["y"], expected_windows(ds.y.values, k))
        np.testing.assert_array_equal(w["t"], expected_windows(times, k))
        assert w["q"] == {}  # neither system has sample parameters


def test_windows_carry_the_sample_parameters_of_their_trajectory():
    """A system with sample parameters (ns_channel: re, y0), on a tiny hand-made dataset: the
    windows only read the arrays, the time axis and the per-sample coordinates."""
    samples, frames, k = 3, 5, 2  # 3 trajectories of 5 frames → 4 windows each
    u = np.arange(samples * frames * 2, dtype=np.float64).reshape(samples, frames, 2)
    ds = xr.Dataset(
        {"u": (("sample", "time", "c"), u), "y": (("sample", "time", "c"), -u)},
        coords={
            "time": np.arange(frames) * 0.1,
            "re": ("sample", [100.0, 200.0, 300.0]),
            "y0": ("sample", [0.3, 0.5, 0.7]),
        },
        attrs={"system": "ns_channel", "split": "train"},
    )
    w = as_windows(ds, k)
    starts = frames - k + 1
    assert sorted(w["q"]) == ["re", "y0"]
    np.testing.assert_array_equal(w["q"]["re"], np.repeat([100.0, 200.0, 300.0], starts))
    np.testing.assert_array_equal(w["q"]["y0"], np.repeat([0.3, 0.5, 0.7], starts))
    # window 5 is trajectory 1 (Re 200), start frame 1
    np.testing.assert_array_equal(w["u"][5], u[1, 1:3])
    assert float(w["q"]["re"][5]) == 200.0


@pytest.mark.parametrize("name", SYSTEMS)
def test_single_frame_windows_are_the_pairs(generated, name):
    ds = open_dataset(generated / name / "train.zarr")
    pairs, w = as_pairs(ds), as_windows(ds, 1)
    # as_pairs as it was before windows existed: a plain reshape of the stored arrays
    n = ds.sizes["sample"] * ds.sizes["time"]
    reshaped = {
        "u": ds.u.values.reshape(n, *ds.u.shape[2:]),
        "y": ds.y.values.reshape(n, *ds.y.shape[2:]),
        "t": np.broadcast_to(ds.time.values, ds.u.shape[:2]).reshape(n),
    }
    assert list(pairs) == ["u", "y", "t", "q"]
    for key, expected in reshaped.items():
        assert isinstance(pairs[key], jax.Array)
        assert pairs[key].dtype == expected.dtype and pairs[key].shape == expected.shape
        np.testing.assert_array_equal(pairs[key], expected)
        np.testing.assert_array_equal(w[key][:, 0], pairs[key])
    assert pairs["q"] == w["q"] == {}


def test_frames_of_a_window_are_linked_by_the_solver(generated):
    """Rolling the exact system ``steps_per_frame`` steps from frame 0 of each window gives
    frame 1. The data were made by this same S (docs/design.md §1) from the same stored float64 states,
    so only round-off separates the two: at most a few ulp per step, far below 1e-12 relative
    (the oracle test's bound over whole trajectories)."""
    ds = open_dataset(generated / "rd" / "train.zarr")
    steps = steps_per_frame(ds)
    assert steps == 10  # SMALL_PARAMS rd store_every
    system = system_of(ds)
    w = as_windows(ds, 2)
    advance = jax.vmap(lambda u0, t0: rollout(system, None, u0, t0, steps, steps)[-1])
    pred = np.asarray(advance(w["u"][:, 0], w["t"][:, 0]))
    true = np.asarray(w["u"][:, 1])
    axes = tuple(range(1, true.ndim))
    relative = np.sqrt(((pred - true) ** 2).sum(axes) / (true**2).sum(axes))
    print(f"worst relative error over {len(true)} windows: {relative.max():.1e}")
    assert relative.max() <= 1e-12
    # and the window's times are steps_per_frame steps apart
    np.testing.assert_allclose(w["t"][:, 1] - w["t"][:, 0], steps * system.dt, rtol=1e-12)


def test_steps_per_frame_is_the_datasets_store_every(generated):
    assert steps_per_frame(open_dataset(generated / "linear" / "train.zarr")) == 1  # SMALL_PARAMS


@pytest.mark.parametrize("k", [0, 52])  # linear train: 50 steps stored every step → 51 frames
def test_a_window_longer_than_the_trajectory_is_refused(generated, k):
    ds = open_dataset(generated / "linear" / "train.zarr")
    with pytest.raises(DatasetError, match=r"^window length k=\d+ is outside 1\.\.51 ") as err:
        as_windows(ds, k)
    assert "\n" not in str(err.value)
