"""2D Kolmogorov flow (system ``kolmogorov``): the nonlinear term and an exact solution against
closed forms, the integrator's observed order on the PDE, agreement with exponax's stepper, the
2D spectral restriction, the two closure kinds (the correction's oracle to round-off, the
filter's sub-grid flux), and the turbulence diagnostics (energy spectrum, vorticity
correlation). (The protocol checks every system passes: tests/test_conformance.py.)"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ml4dynamics.core.errors import ConfigError
from ml4dynamics.systems.kolmogorov import Kolmogorov, KolmogorovConfig, SpectralKolmogorov
from ml4dynamics.systems.spectral import restrict, restrict2
from ml4dynamics.systems.vorticity import energy_spectrum, velocity, vorticity_correlation

# A small system for the closures: 128² -> 32², one coarse step = 4 fine steps of 0.005
SMALL = KolmogorovConfig(n_fine=128, coarsening=4)


def grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.arange(n) * (2 * np.pi / n)
    return x[:, None], x[None, :]  # x1 along the first axis, x2 along the last


def observed_orders(errors: list[float]) -> np.ndarray:
    """log2 of successive error ratios when the step halves."""
    errors = np.asarray(errors)
    return np.log2(errors[:-1] / errors[1:])


def iterate(step, steps: int):
    """``steps`` applications of ``step`` in one compiled loop."""
    return jax.jit(lambda u: jax.lax.fori_loop(0, steps, lambda _, w: step(w), u))


def test_the_advection_of_two_waves_has_its_closed_form():
    """ω = cos x1 + cos 2x2: ψ = cos x1 + ¼ cos 2x2, u = (−½ sin 2x2, sin x1), so
    −u·∇ω = 3/2 sin x1 sin 2x2 (the sign of the velocity included); the forcing adds
    −4 cos 4x2."""
    n = 32
    x1, x2 = grid(n)
    solver = SpectralKolmogorov(n, 0.01, 1e-3, 0.1, 4)
    omega = np.cos(x1) + np.cos(2 * x2)
    rate = jnp.fft.irfft2(solver.nonlinear(jnp.fft.rfft2(omega), solver._forcing), s=(n, n))
    expected = 1.5 * np.sin(x1) * np.sin(2 * x2) - 4 * np.cos(4 * x2)
    np.testing.assert_allclose(np.asarray(rate), expected, atol=1e-12)
    np.testing.assert_allclose(
        np.asarray(velocity(jnp.asarray(omega))),
        np.stack(
            [np.broadcast_to(-0.5 * np.sin(2 * x2), (n, n)), np.broadcast_to(np.sin(x1), (n, n))]
        ),
        atol=1e-13,
    )


def test_waves_at_the_forcing_wavenumber_relax_exactly_to_the_laminar_flow():
    """Every field of waves with |k| = k_f has u·∇ω = 0 (ψ = ω/k_f²), so
    ω(t) = ω_∞ + (ω(0) − ω_∞) e^{−(ν k_f² + α) t} with the laminar Kolmogorov flow
    ω_∞ = −k_f cos(k_f x2)/(ν k_f² + α), i.e. u1 = sin(k_f x2)/(ν k_f² + α). Over t = 3 with
    a strong drag (the field moves 95 % of the way): these flows are unstable at Re = 1000, and
    the round-off the advection leaves grows (with α = 0.1, 2e-15 at t = 2, 1e-12 at t = 5)."""
    n, kf, nu, drag, dt, steps = 32, 4, 1e-3, 1.0, 0.05, 60
    x1, x2 = grid(n)
    rate = nu * kf**2 + drag
    laminar = -kf * np.cos(kf * x2) / rate
    omega0 = 3 * np.cos(kf * x1 + 1.0) + 2 * np.sin(kf * x2) + 0 * x1
    solver = SpectralKolmogorov(n, dt, nu, drag, kf)
    omega = np.asarray(iterate(solver.step, steps)(jnp.asarray(omega0)))
    exact = laminar + (omega0 - laminar) * np.exp(-rate * dt * steps)
    error = np.abs(omega - exact).max() / np.abs(exact).max()
    assert error < 1e-12, error  # measured 2e-15


def test_the_fine_solver_converges_at_fourth_order_in_time():
    """Self-convergence on the PDE at 64² from a turbulent state (t = 5 after a random one),
    against Δt = 1/3200 as the reference, over half a time unit. The linear part is not stiff
    here (ν|k|²Δt ≤ 0.02), so ETDRK4 shows its full order once Δt is well inside the advective
    limit (at Δt = 0.02 the padded step, which advects up to |k| = 31, is not yet)."""
    config = KolmogorovConfig(n_fine=64, coarsening=2, dt=0.01, fine_substeps=1)
    system = Kolmogorov(config)
    omega0 = iterate(system.fine_step, 500)(system.fine_initial_state(jax.random.key(0)))
    horizon = 0.5

    def solve(dt: float) -> np.ndarray:
        solver = SpectralKolmogorov(64, dt, config.viscosity, config.drag, 4)
        return np.asarray(iterate(solver.step, round(horizon / dt))(omega0))

    reference = solve(horizon / 1600)
    dts = (horizon / 50, horizon / 100, horizon / 200, horizon / 400)
    errors = [np.linalg.norm(solve(dt) - reference) / np.linalg.norm(reference) for dt in dts]
    # measured: errors 4.4e-4, 2.9e-5, 1.8e-6, 1.1e-7; orders 3.93, 4.00, 4.00
    orders = observed_orders(errors)
    assert np.all(orders > 3.7) and np.all(orders < 4.3), (errors, orders)
    assert orders[-1] > orders[0] and orders[-1] > 3.9, orders
    assert errors[-1] < 3e-7, errors


def test_the_fine_step_agrees_with_exponax():
    """Our solver under the 2/3 rule and exponax's KolmogorovFlowVorticity (ETDRK4, same grid,
    Δt, ν, drag, forcing, dealiasing, contour points, float64) from one turbulent state over one time unit.
    exponax's field is our vorticity with the opposite sign (see ``exponax_kolmogorov_step``);
    at 96² (3 divides n) both 2/3 rules keep the same modes. (jax-cfd, whose convention is ours,
    differs by its scheme and its 2/3 filter: 6e-3 after t = 0.5 at 96² with Δt = 0.002,
    measured once.)"""
    from ml4dynamics.studies.solver_bench import exponax_kolmogorov_step

    n, dt = 96, 0.01
    config = KolmogorovConfig(n_fine=n, coarsening=2, dt=dt, fine_substeps=1)
    system = Kolmogorov(config)
    ours = jax.jit(system.plain_step(n, "two_thirds"))  # the fine grid under exponax's rule
    omega = iterate(system.fine_step, 200)(system.fine_initial_state(jax.random.key(3)))
    theirs = jax.jit(exponax_kolmogorov_step(n, dt, config.viscosity, config.drag, 4))
    a, b = omega, omega
    worst = 0.0
    for _ in range(100):
        a, b = ours(a), theirs(b)
        worst = max(worst, float(jnp.linalg.norm(a - b) / jnp.linalg.norm(a)))
    assert worst < 1e-9, worst  # measured 6e-15 (at 64², where the rules differ by |k| = 21: 0.3)


def test_restriction_samples_a_band_limited_field_exactly():
    fine, coarse = 48, 16
    rng = np.random.default_rng(0)
    waves = [(k1, k2, *rng.normal(size=2)) for k1 in range(-7, 8) for k2 in range(0, 8)]

    def field(n: int) -> np.ndarray:  # waves |k1|, |k2| <= 7 < 16/2: held by the coarse grid
        y1, y2 = grid(n)
        return sum(
            a * np.cos(k1 * y1 + k2 * y2) + b * np.sin(k1 * y1 + k2 * y2) for k1, k2, a, b in waves
        )

    restricted = np.asarray(restrict2(jnp.asarray(field(fine)), coarse))
    np.testing.assert_allclose(restricted, field(coarse), atol=1e-12)
    # on any field, the 2D restriction is the 1D one along each axis (the Nyquist dropped)
    u = jnp.asarray(rng.normal(size=(3, fine, fine)))
    along_both = jnp.swapaxes(restrict(jnp.swapaxes(restrict(u, coarse), -1, -2), coarse), -1, -2)
    np.testing.assert_allclose(np.asarray(restrict2(u, coarse)), np.asarray(along_both), atol=1e-14)
    # any even grid up to the fine one (the speed-up ladder's rungs need not divide n)
    np.testing.assert_allclose(
        np.asarray(restrict2(u, 20)),
        np.asarray(restrict(jnp.swapaxes(restrict(u, 20), -1, -2), 20).swapaxes(-1, -2)),
        atol=1e-14,
    )
    with pytest.raises(ValueError, match="even"):
        restrict2(jnp.zeros((48, 48)), 21)


def test_the_correction_oracle_reproduces_the_fine_trajectory_to_round_off():
    """128² -> 32²: the coarse step plus the stored correction is the restricted fine
    trajectory; without it, the coarse solver leaves the data."""
    system = Kolmogorov(SMALL)
    generate = jax.jit(lambda key: system.reference_trajectory(key, {}, 100, 40, 1))
    states, labels = generate(jax.random.key(5))
    assert states.shape == labels.shape == (41, 1, 32, 32)

    def replay(labels: jax.Array) -> np.ndarray:
        def advance(u, y):
            u = system.step(u, y, 0.0)
            return u, u

        _, frames = jax.lax.scan(advance, states[0], labels[:-1])
        return np.asarray(frames)

    scale = float(jnp.linalg.norm(states[1:]))
    replayed = np.linalg.norm(replay(labels) - np.asarray(states[1:])) / scale
    assert replayed < 1e-12, replayed  # measured 1.6e-15
    # the exact correction is mean-free (both solvers conserve the mean), and the step removes
    # the mean of any other: a biased closure replays the same trajectory, the mean stays put
    spatial = tuple(range(1, labels.ndim))
    assert float(jnp.max(jnp.abs(jnp.mean(labels, axis=spatial)))) < 1e-12 * float(jnp.std(labels))
    biased = np.linalg.norm(replay(labels + 0.05) - np.asarray(states[1:])) / scale
    assert biased < 1e-12, biased
    blind = np.linalg.norm(replay(jnp.zeros_like(labels)) - np.asarray(states[1:])) / scale
    assert blind > 1e-2, blind  # the coarse solver alone drifts off (measured 0.30)


def test_the_plain_solver_ladder_runs_from_the_coarse_solver_to_the_fine_one():
    """``plain_step(n)`` (``ml4d speedup``'s ladder) is the coarse solver without a closure at
    n_coarse and the fine step at n_fine; between, it takes the substeps a CFL-limited step needs
    (96²: 2 of 0.01) and follows the fine solution, restricted, more closely than the coarse
    solver does."""
    system = Kolmogorov(SMALL)  # 128² (4 steps of 0.005) -> 32² (one of 0.02)
    omega = iterate(system.fine_step, 250)(system.fine_initial_state(jax.random.key(4)))
    coarse = system.restrict(omega)
    np.testing.assert_allclose(
        system.plain_step(32)(coarse[0]), system.step(coarse, 0 * coarse, 0.0)[0], atol=1e-12
    )
    np.testing.assert_allclose(system.plain_step(128)(omega), system.fine_step(omega), atol=1e-12)
    truth = system.restrict(iterate(system.fine_step, 10)(omega))[0]
    errors = {
        n: float(
            jnp.linalg.norm(
                system.resample(iterate(system.plain_step(n), 10)(system.resample(omega, n)), 32)
                - truth
            )
        )
        for n in (32, 96)
    }
    # measured, relative to the truth after 10 steps: 0.25 at 32², 0.13 at 48², 0.028 at 64²,
    # 0.0058 at 96², 7e-16 at 128²
    assert errors[96] < 0.1 * errors[32], errors


@pytest.mark.parametrize("kind", ["correction", "filter"])
def test_stored_frames_and_labels_are_the_fine_solvers_with_one_fine_step_per_step(kind):
    """``reference_trajectory`` (store_every 3) stores the restricted fine states and the same
    labels as ``label`` computes from them: reusing each stride's first fine step for the
    correction changes nothing."""
    system = Kolmogorov(KolmogorovConfig(n_fine=32, coarsening=2, closure_kind=kind))
    states, labels = jax.jit(lambda key: system.reference_trajectory(key, {}, 10, 6, 3))(
        jax.random.key(2)
    )
    assert labels.shape == (3, *system.closure_shape)
    omega = iterate(system.fine_step, 10)(system.fine_initial_state(jax.random.key(2)))
    stride, restricted, label = (
        iterate(system.fine_step, 3),
        jax.jit(system.restrict),
        jax.jit(system.label),
    )
    for frame in range(3):
        np.testing.assert_allclose(states[frame], restricted(omega), rtol=0, atol=1e-12)
        np.testing.assert_allclose(labels[frame], label(omega), rtol=0, atol=1e-9)
        omega = stride(omega)


def test_the_filter_closure_leaves_only_the_error_of_freezing_it_over_a_step():
    """With the exact sub-grid flux the coarse step misses the restricted fine step by O(Δt²)
    (the flux held fixed), far less than the coarse solver alone, which misses by O(Δt)."""
    base = Kolmogorov(SMALL)
    omega = iterate(base.fine_step, 250)(base.fine_initial_state(jax.random.key(1)))  # t = 5
    with_flux, without = [], []
    for dt in (0.02, 0.01, 0.005, 0.0025):
        config = dataclasses.replace(SMALL, dt=dt, fine_substeps=round(dt / 0.00125))
        system = Kolmogorov(dataclasses.replace(config, closure_kind="filter"))
        omega_bar, tau = system.restrict(omega), system.label(omega)
        assert tau.shape == (2, 32, 32)
        truth = system.restrict(system.fine_step(omega))
        with_flux.append(float(jnp.linalg.norm(system.step(omega_bar, tau, 0.0) - truth)))
        without.append(float(jnp.linalg.norm(system.step(omega_bar, 0 * tau, 0.0) - truth)))
    # measured, relative to the fine step's change of R ω: 0.070, 0.035, 0.018, 0.0088 with the
    # flux, 0.71 without at every Δt (the coarse grid's own advection misses most of the
    # change): the flux cuts the one-step error 10x at Δt = 0.02, 81x at 0.0025
    factors = np.asarray(without) / np.asarray(with_flux)
    assert factors[0] > 8 and np.all(np.diff(factors) > 0), (with_flux, without)
    orders = observed_orders(with_flux)
    assert np.all(orders > 1.8), orders  # measured 1.995, 1.998, 1.999
    assert np.all(observed_orders(without) < 1.2)  # the missing term is O(Δt) (measured 1.00)


def test_a_filter_dataset_stores_both_components_of_the_flux(tmp_path):
    """The filter kind through the library's generator and store: labels ``(2, n, n)`` on the
    axis ``closure_field`` (tau1, tau2), states ``(1, n, n)`` on ``field``, read back valid."""
    from ml4dynamics.config import parse_params
    from ml4dynamics.datasets import generate_split, open_dataset, write_datasets
    from tests.conftest import small_params

    section = small_params()["kolmogorov"]
    section["system"]["closure_kind"] = "filter"
    setup = parse_params({"kolmogorov": section}).setup("kolmogorov")
    ds = generate_split(setup, "val", {"ml4dynamics_version": "test", "git_revision": "test"})
    assert ds.u.dims == ("sample", "time", "field", "x1", "x2") and ds.u.shape[2:] == (1, 16, 16)
    assert ds.y.dims == ("sample", "time", "closure_field", "x1", "x2")
    assert ds.y.shape[2:] == (2, 16, 16)
    assert list(ds.closure_field.values) == ["tau1", "tau2"] and list(ds.field.values) == ["omega"]
    (path,) = write_datasets({"val": ds}, tmp_path / "data")
    back = open_dataset(path)
    np.testing.assert_array_equal(back.y.values, ds.y.values)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"dt": 0.0}, "dt"),
        ({"n_fine": 15}, "n_fine"),
        ({"coarsening": 3}, "coarsening"),
        ({"coarsening": 64}, "coarsening"),
        ({"fine_substeps": 0}, "fine_substeps"),
        ({"viscosity": -1e-3}, "viscosity"),
        ({"drag": -0.1}, "drag"),
        ({"forcing_wavenumber": 40}, "forcing_wavenumber"),
        ({"closure_kind": "spectral"}, "closure_kind"),
        ({"ic_modes": 0}, "ic_modes"),
        ({"ic_std": 0.0}, "ic_std"),
    ],
)
def test_a_bad_configuration_names_its_field(change, field):
    with pytest.raises(ConfigError, match=f"^{field}: "):
        KolmogorovConfig(**change)


def test_the_energy_spectrum_of_one_wave_and_parseval():
    n = 32
    x1, x2 = grid(n)
    wave = 2.0 * np.cos(3 * x1 + 4 * x2)  # |k| = 5: E(5) = A²/(4|k|²) = 0.04, nothing else
    k, spectrum = energy_spectrum(jnp.asarray(wave))
    expected = np.zeros_like(k)
    expected[5] = 4.0 / (4 * 25)
    np.testing.assert_allclose(np.asarray(spectrum), expected, atol=1e-15)
    # Parseval, per frame of a batch: Σ E = ½⟨|u|²⟩ of the velocity of the same field
    fields = jnp.asarray(np.random.default_rng(1).normal(size=(2, 3, n, n)))
    _, spectra = energy_spectrum(fields)
    energy = 0.5 * jnp.mean(jnp.sum(velocity(fields) ** 2, axis=-3), axis=(-2, -1))
    assert spectra.shape == (2, 3, k.size)
    np.testing.assert_allclose(np.asarray(spectra.sum(-1)), np.asarray(energy), rtol=1e-12)


def test_the_vorticity_correlation_is_pearsons_per_frame():
    rng = np.random.default_rng(2)
    a = jnp.asarray(rng.normal(size=(4, 16, 16)))
    b = jnp.asarray(rng.normal(size=(4, 16, 16)))
    np.testing.assert_allclose(np.asarray(vorticity_correlation(a, 2 * a + 3)), 1.0, rtol=1e-14)
    np.testing.assert_allclose(np.asarray(vorticity_correlation(a, -a)), -1.0, rtol=1e-14)
    x1, x2 = grid(16)
    assert abs(float(vorticity_correlation(jnp.cos(x1 + 0 * x2), jnp.sin(x1 + 0 * x2)))) < 1e-14
    rho = np.asarray(vorticity_correlation(a, b))
    expected = [np.corrcoef(np.ravel(a[i]), np.ravel(b[i]))[0, 1] for i in range(4)]
    np.testing.assert_allclose(rho, expected, rtol=1e-12)
