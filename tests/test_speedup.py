"""The speed-up at matched accuracy (``ml4d speedup``, ``ml4dynamics.studies.speedup``): the placement on
the ladder, the correlation times, a zero closure landing exactly on the coarse rung, and the
command on a registered closure (JSON, figure, MLflow)."""

from __future__ import annotations

import dataclasses
import json

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ml4dynamics.cli import main as cli
from ml4dynamics.core.errors import ML4DError
from ml4dynamics.studies.speedup import (
    check_ladder,
    correlation_times,
    default_ladder,
    place,
    speedup,
)
from ml4dynamics.systems.kuramoto_sivashinsky import (
    KuramotoSivashinsky,
    KuramotoSivashinskyConfig,
)

# the conformance suite's small ks: L = 32, 64 fine points, 16 coarse
SMALL = KuramotoSivashinskyConfig(length=32.0, n_fine=64, coarsening=4, ic_modes=4)
LADDER = [16, 24, 32, 48]


class Zero(nnx.Module):
    """The closure y = 0: the hybrid is the coarse solver alone."""

    def __call__(self, u: jnp.ndarray) -> jnp.ndarray:
        return jnp.zeros_like(u)


def test_a_hybrid_is_placed_by_interpolating_the_ladder():
    acc, n, cost = np.array([10.0, 20.0, 30.0]), np.array([16.0, 24.0, 32.0]), np.array([1, 2, 4.0])
    resolution, equal_cost, where = place(25.0, acc, n, cost)
    assert where == "inside" and resolution == pytest.approx(28.0)
    assert equal_cost == pytest.approx(np.sqrt(2 * 4))  # log-linear between the rungs
    assert place(5.0, acc, n, cost)[::2] == (16.0, "below")  # bounds, marked as such
    assert place(40.0, acc, n, cost)[::2] == (32.0, "above")
    # a finer rung never counts as less accurate than a coarser one (noise in a short run)
    dented = np.array([10.0, 8.0, 30.0])
    assert place(20.0, dented, n, cost)[0] == pytest.approx(28.0)
    # ... and costs no more than a finer rung that is cheaper (an FFT size with a factor 5)
    slow_middle = np.array([1.0, 8.0, 4.0])
    assert place(20.0, acc, n, slow_middle)[1] == pytest.approx(4.0)


def test_correlation_times_are_the_first_drop_or_the_horizon():
    rng = np.random.default_rng(0)
    truth = rng.normal(size=(3, 5, 32))
    frames = truth.copy()
    frames[0, 2:] = -truth[0, 2:]  # anti-correlated from the third frame
    frames[1, 4] = rng.normal(size=32)  # decorrelated in the last frame only
    frames[2, 1] = np.nan  # a blow-up counts as a drop
    times = correlation_times(frames, truth, spacing=0.5, levels=(0.95, 0.8))
    for level in (0.95, 0.8):
        np.testing.assert_allclose(times[level], [1.5, 2.5, 1.0])
    same = correlation_times(truth, truth, spacing=0.5, levels=(0.95,))
    np.testing.assert_allclose(same[0.95], 2.5)  # never drops: censored at the horizon


def test_the_ladder_is_checked_and_defaults_between_the_grids():
    system = KuramotoSivashinsky(KuramotoSivashinskyConfig())  # 64 points closed by 512
    assert default_ladder(system) == [64, 72, 80, 96, 112, 128, 160, 192]
    assert check_ladder(system, [128, 64]) == [64, 128]
    for bad in ([64], [50, 128], [64, 65], [64, 1024]):
        with pytest.raises(ML4DError, match="between the coarse grid"):
            check_ladder(system, bad)


def test_a_zero_closure_lands_on_the_coarse_rung_and_finer_solvers_last_longer(tmp_path):
    """The hybrid with y = 0 is the coarse solver: its correlation times are the coarse rung's
    exactly, so its equivalent resolution is the coarse grid; and on KS a finer plain solver
    stays correlated with the fine one at least as long as the coarse one."""
    from ml4dynamics.reporting import figures

    system = KuramotoSivashinsky(SMALL)
    kwargs = dict(trajectories=4, horizon=30.0, warmup=40, steps=5, repeats=1, resamples=200)
    result = speedup(system, {"zero": Zero()}, ladder=LADDER, **kwargs)
    zero, coarse = result["hybrids"]["zero"], result["solvers"]["solver 16"]
    assert zero["accuracy"] == coarse["accuracy"]
    for level in ("0.95", "0.8"):
        eq = zero["equivalent"][level]
        assert eq["resolution"] == 16.0 and eq["resolution_interval"] == [16.0, 16.0]
        assert eq["where"] == "inside" and eq["speedup"] > 0
        rungs = [result["solvers"][f"solver {n}"]["accuracy"][level]["mean"] for n in LADDER]
        assert rungs[-1] > rungs[0], rungs  # measured: 48 points never decorrelate by t = 30
    assert set(result["solvers"]) == {*(f"solver {n}" for n in LADDER), "fine 64 (the reference)"}
    assert [result["solvers"][f"solver {n}"]["resolution"] for n in LADDER] == LADDER
    png = figures.speedup(tmp_path / "speedup.png", result)
    assert png.stat().st_size > 10_000


def test_the_results_page_lists_the_ladder_from_coarse_to_fine():
    """JSON sorts names ('solver 112' before 'solver 64'): the page orders rungs by grid."""
    from ml4dynamics.reporting.benches import speedup_section

    def rung(n, t):
        acc = {"mean": t, "interval": [t, t], "censored": 0}
        return {"resolution": n, "cost_ms_per_time_unit": n, "accuracy": {"0.8": acc}}

    hybrid = {
        "cost_ms_per_time_unit": 5.0,
        "accuracy": {"0.8": {"mean": 1.0, "interval": [1.0, 1.0], "censored": 0}},
        "equivalent": {
            "0.8": {
                "resolution": 64.0,
                "resolution_interval": [64.0, 64.0],
                "speedup": 0.1,
                "speedup_interval": [0.1, 0.1],
                "where": "below",
            }
        },
    }
    settings = {"trajectories": 2, "warmup_steps": 0, "spacing": 0.1, "horizon": 1.0}
    settings.update(coarse=64, timing="t", backend="cpu")
    record = {
        "settings": settings,
        "solvers": {
            "fine 256 (the reference)": {"resolution": 256, "cost_ms_per_time_unit": 9.0},
            "solver 112": rung(112, 3.0),
            "solver 64": rung(64, 2.0),
        },
        "hybrids": {"ols v1": hybrid},
        "models": {"ols v1": {"uri": "models:/kolmogorov-closure@champion", "version": 1}},
    }
    page = speedup_section("kolmogorov", record)
    assert page.index("| solver 64 |") < page.index("| solver 112 |") < page.index("hybrid ols")
    assert "| hybrid ols v1 (`models:/kolmogorov-closure@champion`) |" in page  # as asked for


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    yield tmp_path


def test_speedup_of_a_registered_closure_writes_json_figure_and_logs_to_its_run(store, capsys):
    from ml4dynamics import registry
    from ml4dynamics.core.tracking import Run
    from ml4dynamics.models import UNetConfig, build_closure
    from ml4dynamics.models.io import export_model

    system = KuramotoSivashinsky(SMALL)
    config = UNetConfig("unet", 2, 1, "float32")
    model = build_closure(config, system.state_field, system.closure_field, seed=0)
    meta = {
        "system": "ks",
        "system_config": dataclasses.asdict(system.config),
        "estimator": "ols",
        "data": {"warmup_steps": 40},
    }
    fields = {"state": system.state_field, "closure": system.closure_field}
    closure_dir = export_model(store / "closure", "closure", model, config, meta, fields)
    run = Run("ks", "train", "ks-ols", {})
    version = registry.log_closure(closure_dir, system, "ks-closure")
    run.end()
    out = store / "bench" / "ks_speedup.json"
    args = ["--ladder", "16,32", "--trajectories", "3", "--horizon", "8", "--steps", "3"]
    code = cli(["speedup", f"models:/ks-closure/{version}", *args, "--repeats", "1"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert f"ols v{version}: correlation >= 0.95: like the alias-free plain solver at" in printed
    result = json.loads(out.read_text())
    assert result["settings"]["warmup_steps"] == 40  # the model's training data's warm-up
    assert result["models"][f"ols v{version}"]["version"] == int(version)
    assert out.with_suffix(".png").is_file()
    logged = registry.client().get_run(run.run_id)
    assert "speedup.rho95" in logged.data.metrics and logged.info.status == "FINISHED"
    names = [a.path for a in registry.client().list_artifacts(run.run_id, "speedup")]
    assert names == ["speedup/ks_speedup.json", "speedup/ks_speedup.png"]


def test_speedup_refuses_a_closure_of_exact_physics_in_one_line(store, capsys, generated):
    """rd's closure replaces an exact reaction term: there is no cheaper solver to compare."""
    from ml4dynamics import registry
    from ml4dynamics.core.tracking import Run
    from ml4dynamics.datasets import open_dataset
    from ml4dynamics.datasets.pairs import system_of
    from ml4dynamics.models import LocalClosureConfig, build_closure
    from ml4dynamics.models.io import export_model

    system = system_of(open_dataset(generated / "rd" / "test.zarr"))
    config = LocalClosureConfig("local", 4, 1, 1)
    model = build_closure(config, system.state_field, system.closure_field, seed=0)
    meta = {"system": "rd", "system_config": dataclasses.asdict(system.config), "estimator": "ols"}
    fields = {"state": system.state_field, "closure": system.closure_field}
    closure_dir = export_model(store / "closure", "closure", model, config, meta, fields)
    run = Run("rd", "train", "rd-ols", {})
    version = registry.log_closure(closure_dir, system, "rd-closure")
    run.end()
    code = cli(["speedup", f"models:/rd-closure/{version}", "--warmup", "0"])
    # (in one process MLflow's own log lines may precede it, when this test creates the store)
    lines = capsys.readouterr().err.splitlines()
    assert code == 2 and [line for line in lines if line.startswith("ml4d")] == lines[-1:]
    assert lines[-1].startswith(
        "ml4d: error: `ml4d speedup` needs a system whose state is a coarse"
    )
    assert "closed by a fine solver; rd is not" in lines[-1]
    assert not (store / "bench").exists()  # nothing written
