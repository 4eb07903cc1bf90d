"""Alias-free products (3/2 zero padding) and what the 2/3 rule loses; where a closure is needed
(``ml4d resolution``)."""

from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ml4dynamics.cli import main as cli
from ml4dynamics.core.errors import ML4DError
from ml4dynamics.studies.resolution import resolution, table
from ml4dynamics.systems.kolmogorov import Kolmogorov, KolmogorovConfig
from ml4dynamics.systems.kuramoto_sivashinsky import (
    KuramotoSivashinsky,
    KuramotoSivashinskyConfig,
)
from ml4dynamics.systems.spectral import PeriodicGrid, padded_size


def random_coefficients(key: jax.Array, shape: tuple[int, ...], n: int, band: float) -> jax.Array:
    """rfft coefficients (1D: ``(n//2 + 1,)``; 2D: ``(n, n//2 + 1)``) of a real field with random
    modes |k| < band along every axis, none else."""
    re, im = jax.random.normal(key, (2, *shape), dtype=jnp.float64)
    k_last = np.arange(shape[-1])
    keep = k_last < band
    if len(shape) == 2:
        k_first = np.abs(np.fft.fftfreq(n, d=1 / n))
        keep = (k_first < band)[:, None] & keep[None, :]
    v = (re + 1j * im) * keep
    grid = PeriodicGrid(n, 1.0, dims=len(shape))
    return grid.rfft(grid.irfft(v))  # a real field's coefficients (Hermitian where it must be)


def exact_product(grid: PeriodicGrid, a: jax.Array, b: jax.Array) -> jax.Array:
    """The coefficients on ``grid`` of the product of two of its fields, its modes |k| < n/2:
    taken on 4n points per axis, where nothing aliases at all."""
    fine = PeriodicGrid(4 * grid.n, grid.length, grid.dims)
    fa = fine.irfft(grid.prolong_hat(a, fine.n))
    fb = fine.irfft(grid.prolong_hat(b, fine.n))
    return fine.restrict_hat(fine.rfft(fa * fb), grid.n)


@pytest.mark.parametrize("dims", [1, 2])
def test_a_padded_product_is_exact_on_every_carried_mode_and_the_two_thirds_rule_is_not(dims):
    n = 24  # 3/2 · 24 = 36 points: the smallest alias lands at |k| = 36 − 22 = 14 ≥ 12
    assert padded_size(n) == 36 and padded_size(10) == 16  # even, ≥ 3n/2
    shape = (n // 2 + 1,) if dims == 1 else (n, n // 2 + 1)
    ka, kb = jax.random.split(jax.random.key(dims))
    a, b = (random_coefficients(k, shape, n, n / 2) for k in (ka, kb))
    padded = PeriodicGrid(n, 1.0, dims, "padded")
    exact = exact_product(padded, a, b)
    got = padded.from_product(padded.to_product(a) * padded.to_product(b))
    scale = float(jnp.max(jnp.abs(exact)))
    assert float(jnp.max(jnp.abs(got - exact))) < 1e-13 * scale
    # the 2/3 rule leaves the modes n/3 <= |k| < n/2 out of the product, in and out
    rule = PeriodicGrid(n, 1.0, dims, "two_thirds")
    lost = rule.from_product(rule.to_product(a) * rule.to_product(b))
    assert float(jnp.max(jnp.abs(lost - exact))) > 0.1 * scale
    # ... and is exact only for fields within |k| < n/3, on those modes
    a3, b3 = (random_coefficients(k, shape, n, n / 3) for k in (ka, kb))
    mask = rule.dealias_mask()
    exact3 = exact_product(padded, a3, b3) * mask
    got3 = rule.from_product(rule.to_product(a3) * rule.to_product(b3))
    assert float(jnp.max(jnp.abs(got3 - exact3))) < 1e-13 * float(jnp.max(jnp.abs(exact3)))


def test_an_unknown_dealiasing_is_refused():
    with pytest.raises(ValueError, match="dealiasing must be one of padded, two_thirds"):
        PeriodicGrid(16, 1.0, 1, "half")


KS_128 = KuramotoSivashinskyConfig(coarsening=4)  # 512 -> 128 points


@pytest.fixture(scope="module")
def ks_table() -> dict:
    """128 and 64 points, two of ks's test trajectories (seed 43, 800 warm-up steps), to t = 10."""
    system = KuramotoSivashinsky(KS_128)
    return resolution(
        system, [64, 128], seed=43, trajectories=2, warmup=800, horizon=10.0, report_time=10.0
    )


def test_the_padded_ks_step_at_128_points_is_essentially_the_truth_and_the_two_thirds_is_not(
    ks_table,
):
    row = ks_table["sizes"]["128"]
    assert row["padded"]["error_at_report"] <= 1e-3  # measured 2.3e-4 (4 trajectories)
    assert row["two_thirds"]["error_at_report"] > 0.03  # measured 0.08: the unadvected third
    assert row["oracle"]["max_error_to_report"] <= 1e-12
    assert row["needs_closure"] is False  # 128 points resolve ks at L = 128


def test_at_64_points_ks_needs_a_closure_and_the_exact_one_still_holds(ks_table):
    row = ks_table["sizes"]["64"]
    assert row["padded"]["error_at_report"] > 0.5  # measured 1.3: decorrelated by t ~ 7
    assert row["padded"]["time_above_0.8"] < 10.0
    assert row["oracle"]["max_error_to_report"] <= 1e-12  # measured 1.2e-14
    assert row["needs_closure"] is True
    assert list(ks_table["sizes"]) == ["128", "64"]  # largest first
    lines = table(ks_table).splitlines()
    assert len(lines) == 4 and lines[3].startswith("| 64 |") and lines[3].endswith("| yes |")


def test_the_kolmogorov_oracle_holds_on_the_padded_base():
    """The exact correction through the hybrid reproduces the restricted fine run at 32² from a
    128² one (a CPU-sized check; the default grids use the same code)."""
    config = KolmogorovConfig(n_fine=128, coarsening=4, dt=0.02, fine_substeps=4)
    result = resolution(
        Kolmogorov(config), [32], seed=63, trajectories=1, warmup=100, horizon=1.0, report_time=1.0
    )
    assert result["sizes"]["32"]["oracle"]["max_error_to_report"] <= 1e-12


def test_resolution_refuses_what_it_cannot_run():
    with pytest.raises(ML4DError, match="divide the fine grid"):
        resolution(KuramotoSivashinsky(KS_128), [96], seed=0, trajectories=1, warmup=0,
                   horizon=1.0, report_time=1.0)  # fmt: skip
    filtered = KuramotoSivashinsky(dataclasses.replace(KS_128, closure_kind="filter"))
    with pytest.raises(ML4DError, match="correction closure"):
        resolution(filtered, [64], seed=0, trajectories=1, warmup=0, horizon=1.0, report_time=1.0)
    with pytest.raises(ML4DError, match="within the horizon"):
        resolution(KuramotoSivashinsky(KS_128), [64], seed=0, trajectories=1, warmup=0,
                   horizon=1.0, report_time=2.0)  # fmt: skip


def test_ml4d_resolution_writes_the_table_and_refuses_bad_sizes(tmp_path, capsys):
    from tests.conftest import small_params, write_params

    params = write_params(tmp_path / "params.yaml", small_params())
    out = tmp_path / "bench"
    code = cli(["resolution", "ks", "--coarse", "32,16", "--params", str(params),
                "--trajectories", "1", "--horizon", "2", "--out", str(out)])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    written = json.loads((out / "ks_resolution.json").read_text())
    assert set(written["sizes"]) == {"32", "16"}
    assert "| 16 |" in (out / "ks_resolution.md").read_text()
    # another truth, to see that the table does not depend on it: a file of its own
    code = cli(["resolution", "ks", "--coarse", "32,16", "--params", str(params), "--n-fine",
                "128", "--trajectories", "1", "--horizon", "2", "--out", str(out)])  # fmt: skip
    assert code == 0 and (out / "ks_resolution_fine128x1.md").is_file()
    capsys.readouterr()
    assert cli(["resolution", "ks", "--coarse", "32,x", "--params", str(params)]) == 2
    assert "--coarse '32,x': write coarse sizes as 128,64,32" in capsys.readouterr().err
    assert cli(["resolution", "ks", "--coarse", "32", "--params", str(params),
                "--n-fine", "15", "--out", str(tmp_path / "none")]) == 2  # fmt: skip
    assert capsys.readouterr().err.startswith("ml4d: error: n_fine: must be an even number")
    assert not (tmp_path / "none").exists()


def test_the_plain_solver_gate_refuses_a_closure_that_turns_the_solver_into_the_two_thirds_one(
    thresholds,
):
    """A deliberately bad closure: y = (S_2/3(u) − S_padded(u))/Δt, so the hybrid is exactly the
    2/3-rule coarse solver — what the coarse grids were closed against before. On ks at 64
    points it is worse than the alias-free solver alone, and the gate says no; a closure that
    does nothing (the solver alone itself) is refused too, for not beating it."""
    from flax import nnx

    from ml4dynamics.config import parse_params
    from ml4dynamics.datasets import generate_split
    from ml4dynamics.evaluation.config import EvaluateConfig
    from ml4dynamics.evaluation.rollouts import evaluate_closure
    from ml4dynamics.registry.gates import check
    from tests.conftest import small_params

    params = small_params()
    params["ks"]["system"] = dataclasses.asdict(KuramotoSivashinskyConfig())  # 512 -> 64 points
    params["ks"]["data"].update(warmup_steps=800, store_every=1)
    for split in ("test", "ood"):
        params["ks"]["data"][split].update(trajectories=1, steps=48, system={})
    setup = parse_params(params).setup("ks")
    provenance = {"ml4dynamics_version": "t", "git_revision": "t"}
    data = {s: generate_split(setup, s, provenance) for s in ("test", "ood")}
    system = KuramotoSivashinsky(setup.system)
    rule = system.solver(system.config.n_coarse, system.dt, "two_thirds")

    class TwoThirds(nnx.Module):
        def __call__(self, u: jax.Array) -> jax.Array:
            def one(v: jax.Array) -> jax.Array:
                return (rule.step(v[0]) - system.coarse.step(v[0]))[None] / system.dt

            return jax.vmap(one)(u)

    class Nothing(nnx.Module):
        def __call__(self, u: jax.Array) -> jax.Array:
            return jnp.zeros_like(u)

    config = EvaluateConfig(bound=10.0, report_time=10.0)
    outcomes = {}
    for name, closure in (("two_thirds", TwoThirds()), ("nothing", Nothing())):
        result, _, _ = evaluate_closure(data, closure, config)
        outcomes[name] = {g.name: g for g in check(result, thresholds)}["beats_coarse_solver"]
        base = result.splits["test"].coarse_alone
        own = result.scored_error("test")
        if name == "two_thirds":
            assert own > 2 * base.error_report, (own, base.error_report)  # measured 5.1 vs 0.92
    assert not outcomes["two_thirds"].passed
    assert "(the alias-free coarse solver alone)" in outcomes["two_thirds"].detail
    assert not outcomes["nothing"].passed  # equal is not better
