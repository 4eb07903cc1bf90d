"""Kuramoto–Sivashinsky (system ``ks``): the ETDRK4 integrator's observed order, the spectral
restriction, agreement with exponax's stepper, and the two closure kinds — the correction's
oracle holds to round-off, the filter's sub-grid stress leaves only the error of holding it fixed
over a step. (The protocol checks every system passes: tests/test_conformance.py.)"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ml4dynamics.core.errors import ConfigError
from ml4dynamics.systems.kuramoto_sivashinsky import (
    KuramotoSivashinsky,
    KuramotoSivashinskyConfig,
    SpectralKS,
)
from ml4dynamics.systems.rollout import rollout
from ml4dynamics.systems.spectral import ETDRK4, restrict

DEFAULT = KuramotoSivashinskyConfig()  # L = 128, 512 -> 64 points, dt = 0.25


def observed_orders(errors: list[float]) -> np.ndarray:
    """log2 of successive error ratios when the step halves."""
    errors = np.asarray(errors)
    return np.log2(errors[:-1] / errors[1:])


def test_etdrk4_is_fourth_order_on_a_logistic_equation_with_a_closed_form():
    """u' = λu − u², u(t) = λ u0 e^{λt} / (λ + u0 (e^{λt} − 1)); stiff and unstable λ alike."""
    lam = np.array([-20.0, -1.0, 0.5, 2.0])
    u0, horizon = 0.3, 1.0
    exact = lam * u0 * np.exp(lam * horizon) / (lam + u0 * (np.exp(lam * horizon) - 1))
    errors = []
    for steps in (4, 8, 16, 32):
        coefficients = ETDRK4.build(lam, horizon / steps).as_jax()
        u = jnp.full(lam.shape, u0)
        for _ in range(steps):
            u = coefficients.step(u, lambda v: -(v**2))
        errors.append(np.abs(np.asarray(u) - exact))
    orders = observed_orders(errors)  # (3, 4): per λ
    assert np.all(orders[-1] > 3.9) and np.all(orders[-1] < 4.2), orders
    # measured: 4.002, 4.01, 4.02 (the stiffest λ converges faster, 4.4+: its e^{λΔt} is exact)


def test_the_ks_solver_converges_at_fourth_order_in_time():
    """Self-convergence on the PDE from a smooth state, against Δt = 1/1024 as the reference.
    The stiff problem converges at 3.5 for large steps (Cox–Matthews ETDRK4 loses order on stiff
    problems, Hochbruck & Ostermann 2005) and tends to 4 as the step shrinks."""
    length, n, horizon = 32.0, 64, 2.0
    k = 2 * np.pi / length
    x = np.arange(n) * length / n
    u0 = jnp.asarray(np.cos(k * x) + 0.5 * np.sin(2 * k * x) + 0.2 * np.cos(3 * k * x))

    def solve(dt: float) -> np.ndarray:
        solver = SpectralKS(n, length, dt)
        step = jax.jit(solver.step)
        u = u0
        for _ in range(round(horizon / dt)):
            u = step(u)
        return np.asarray(u)

    reference = solve(1 / 1024)
    errors = [np.linalg.norm(solve(dt) - reference) for dt in (0.25, 0.125, 0.0625, 0.03125)]
    orders = observed_orders(errors)  # measured 3.52, 3.63, 3.78
    assert np.all(orders > 3.4) and np.all(orders < 4.4), (errors, orders)
    assert orders[-1] > orders[0] and orders[-1] > 3.7, orders


def test_restriction_samples_a_band_limited_field_exactly():
    length, fine, coarse = 10.0, 64, 16
    rng = np.random.default_rng(0)
    amplitudes = rng.normal(size=(2, 7))  # waves 1..7 < 16/2: representable on the coarse grid

    def field(n: int) -> np.ndarray:
        x = np.arange(n) * length / n
        w = 2 * np.pi * np.arange(1, 8)[:, None] * x[None] / length
        return (amplitudes[0][:, None] * np.cos(w) + amplitudes[1][:, None] * np.sin(w)).sum(0)

    for n in (coarse, 24, fine):  # 24 does not divide 64: the modes are sampled all the same
        restricted = np.asarray(restrict(jnp.asarray(field(fine)), n))
        np.testing.assert_allclose(restricted, field(n), atol=1e-13)
    for bad in (128, 25):
        with pytest.raises(ValueError, match="must be an even number <= 64"):
            restrict(jnp.zeros(64), bad)


def test_the_fine_step_agrees_with_exponax():
    """Our fine solver under the 2/3 rule and exponax's KuramotoSivashinskyConservative
    (ETDRK4, same N, L, Δt, dealiasing, contour points, float64) from one state on the
    attractor, over 10 time units."""
    from ml4dynamics.studies.solver_bench import exponax_ks_step

    system = KuramotoSivashinsky(DEFAULT)
    ours = jax.jit(system.plain_step(DEFAULT.n_fine, "two_thirds"))  # the fine grid, one step
    u = system.fine_initial_state(jax.random.key(3))
    for _ in range(200):  # onto the attractor (t = 50)
        u = ours(u)
    theirs = jax.jit(exponax_ks_step(DEFAULT.n_fine, DEFAULT.length, DEFAULT.dt))
    a, b = u, u
    worst = 0.0
    for _ in range(40):
        a, b = ours(a), theirs(b)
        worst = max(worst, float(jnp.linalg.norm(a - b) / jnp.linalg.norm(a)))
    # measured 7e-12: the two keep the same modes but for |k| = N/3 exactly (exponax drops it)
    assert worst < 1e-9, worst


def test_the_correction_oracle_reproduces_the_fine_trajectory_to_round_off():
    """At the default size: the coarse step plus the stored correction is the restricted fine
    trajectory; without it, the coarse solver leaves the data."""
    system = KuramotoSivashinsky(DEFAULT)
    generate = jax.jit(lambda key: system.reference_trajectory(key, {}, 100, 40, 1))
    states, labels = generate(jax.random.key(5))
    assert states.shape == labels.shape == (41, 1, 64)

    def replay(labels: jax.Array) -> np.ndarray:
        def advance(u, y):
            u = system.step(u, y, 0.0)
            return u, u

        _, frames = jax.lax.scan(advance, states[0], labels[:-1])
        return np.asarray(frames)

    scale = float(jnp.linalg.norm(states[1:]))
    replayed = np.linalg.norm(replay(labels) - np.asarray(states[1:])) / scale
    assert replayed < 1e-13, replayed  # measured ~1e-15
    # the exact correction is mean-free (both solvers conserve the mean), and the step removes
    # the mean of any other: a biased closure replays the same trajectory, the mean stays put
    spatial = tuple(range(1, labels.ndim))
    assert float(jnp.max(jnp.abs(jnp.mean(labels, axis=spatial)))) < 1e-12 * float(jnp.std(labels))
    biased = np.linalg.norm(replay(labels + 0.05) - np.asarray(states[1:])) / scale
    assert biased < 1e-13, biased
    blind = np.linalg.norm(replay(jnp.zeros_like(labels)) - np.asarray(states[1:])) / scale
    assert blind > 1e-2, blind  # the coarse solver alone drifts off (measured 0.57)


def test_the_filter_closure_leaves_only_the_error_of_freezing_it_over_a_step():
    """With the exact sub-grid stress the coarse step misses the restricted fine step by O(Δt²)
    (the stress held fixed), far less than the coarse solver alone, which misses by O(Δt)."""
    base = KuramotoSivashinsky(DEFAULT)
    u = base.fine_initial_state(jax.random.key(1))
    u = jax.jit(lambda u: jax.lax.fori_loop(0, 400, lambda _, w: base.fine_step(w), u))(u)
    with_stress, without = [], []
    for dt in (0.25, 0.125, 0.0625, 0.03125):
        system = KuramotoSivashinsky(dataclasses.replace(DEFAULT, dt=dt, closure_kind="filter"))
        ubar, tau = system.restrict(u), system.label(u)
        truth = system.restrict(system.fine_step(u))
        with_stress.append(float(jnp.linalg.norm(system.step(ubar, tau, 0.0) - truth)))
        without.append(float(jnp.linalg.norm(system.step(ubar, 0 * tau, 0.0) - truth)))
    assert with_stress[0] < 0.3 * without[0], (with_stress, without)  # measured 0.066
    orders = observed_orders(with_stress)
    assert orders[-1] > 1.9, orders  # measured 1.98, 1.99, 2.00
    assert observed_orders(without)[-1] < 1.0  # the missing term is O(Δt)


def test_a_rollout_through_the_generic_path_uses_the_closure():
    """The library's rollout (what evaluation and simulate use) with a closure function: the
    correction's labels, looked up by time, reproduce the trajectory."""
    system = KuramotoSivashinsky(DEFAULT)
    states, labels = jax.jit(lambda key: system.reference_trajectory(key, {}, 40, 8, 1))(
        jax.random.key(7)
    )
    times = jnp.arange(9) * system.dt

    def closure(u, t):
        return labels[jnp.argmin(jnp.abs(times - t))]

    frames = rollout(system, closure, states[0], 0.0, 8, 1)
    np.testing.assert_allclose(np.asarray(frames), np.asarray(states), atol=1e-12)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"coarsening": 3}, "coarsening"),
        ({"closure_kind": "spectral"}, "closure_kind"),
        ({"ic_modes": 256}, "ic_modes"),  # the fine grid carries |k| < 256
        ({"n_fine": 15}, "n_fine"),
    ],
)
def test_a_bad_configuration_names_its_field(change, field):
    with pytest.raises(ConfigError, match=field):
        KuramotoSivashinskyConfig(**change)


def test_bench_solvers_measures_ours_exponax_and_the_fft_floor_in_one_run(tmp_path, capsys):
    """`ml4d timing solvers` (tiny counts and a 24² grid in 2D): every solver single and
    batched, and the ratios of the same run, written to the JSON it names."""
    import json

    from ml4dynamics.cli import main

    out = tmp_path / "solvers.json"
    args = [
        "timing",
        "solvers",
        "--steps",
        "3",
        "--repeats",
        "1",
        "--batch",
        "2",
        "--out",
        str(out),
    ]
    args += ["--kolmogorov-n", "24", "--kolmogorov-batch", "3", "--kolmogorov-steps", "2"]
    assert main(args) == 0
    report = json.loads(out.read_text())
    assert json.loads(capsys.readouterr().out) == report
    ks = report["ks"]
    times = ks["ms_per_step_median"]
    assert set(times) == {"single", "batch2"}
    for case, row in times.items():
        assert set(row) == {"ours", "exponax", "fft_floor"} and min(row.values()) > 0
        assert ks["ours_over_exponax"][case] == pytest.approx(row["ours"] / row["exponax"])
        assert ks["ours_over_fft_floor"][case] == pytest.approx(row["ours"] / row["fft_floor"])
    assert "512 points" in ks["what"] and "5 rfft+irfft pairs" in ks["what"]
    kolmogorov = report["kolmogorov"]
    times = kolmogorov["ms_per_step_median"]
    assert set(times) == {"single", "batch3"}
    for case, row in times.items():
        assert set(row) == {"ours", "exponax", "jax_cfd", "fft_floor"} and min(row.values()) > 0
        for peer in ("exponax", "jax_cfd", "fft_floor"):
            ratio = kolmogorov[f"ours_over_{peer}"][case]
            assert ratio == pytest.approx(row["ours"] / row[peer])
    assert "24^2 points" in kolmogorov["what"] and "9 rfft2 + 13 irfft2" in kolmogorov["what"]
    assert kolmogorov["transforms_per_step"] == {"ours": 22, "exponax": 22, "jax_cfd": 27}
