"""The reaction–diffusion solver, tested as numerics: closed forms and observed orders."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ml4dynamics.systems import ReactionDiffusion, ReactionDiffusionConfig
from ml4dynamics.systems.reaction_diffusion import laplacian_symbol
from ml4dynamics.systems.rollout import rollout

L = 6.4


def mode(n: int, mx: int, my: int) -> tuple[np.ndarray, float, float]:
    """sin(kx x) cos(ky y) on the n×n grid, its fd2 and its exact Laplacian eigenvalue."""
    h = L / n
    x = np.arange(n) * h
    kx, ky = 2 * np.pi * mx / L, 2 * np.pi * my / L
    field = np.sin(kx * x)[:, None] * np.cos(ky * x)[None, :]
    lam_fd2 = -(4 / h**2) * (np.sin(kx * h / 2) ** 2 + np.sin(ky * h / 2) ** 2)
    return field, lam_fd2, -(kx**2 + ky**2)


def run(system: ReactionDiffusion, u0: np.ndarray, n_steps: int, closure) -> np.ndarray:
    return np.asarray(rollout(system, closure, jnp.asarray(u0), 0.0, n_steps, n_steps)[-1])


def zero_closure(u, t):
    return jnp.zeros_like(u)


def observed_orders(errors: list[float]) -> np.ndarray:
    """log2 of successive error ratios when the step (or spacing) is halved each time."""
    return np.log2(np.array(errors[:-1]) / np.array(errors[1:]))


def test_one_step_is_crank_nicolson_exactly():
    """Per Fourier mode, one pure-diffusion step multiplies by (1 + z/2)/(1 − z/2), z = Δt γ λ."""
    for laplacian in ("fd2", "spectral"):
        cfg = ReactionDiffusionConfig(n=16, gamma_u=0.3, laplacian=laplacian, dt=0.05)
        system = ReactionDiffusion(cfg)
        field, lam_fd2, lam_exact = mode(16, 2, 3)
        lam = lam_fd2 if laplacian == "fd2" else lam_exact
        u0 = np.stack([field, field])
        out = np.asarray(system.step(jnp.asarray(u0), jnp.zeros_like(u0), 0.0))
        for c, gamma in enumerate((cfg.gamma_u, cfg.gamma_v)):
            z = cfg.dt * gamma * lam
            # round-off bound: a few ulps of an FFT round trip on O(1) data
            np.testing.assert_allclose(out[c], (1 + z / 2) / (1 - z / 2) * field, atol=1e-14)


def test_diffusion_is_second_order_in_time():
    """Pure diffusion of one mode against exp(γ λ_h t), the exact solution in time of the
    semi-discrete problem: halving Δt divides the error by 4 (Crank–Nicolson)."""
    n, t_end = 32, 1.0
    field, lam, _ = mode(n, 3, 1)
    errors = []
    for dt in (0.1, 0.05, 0.025, 0.0125):
        system = ReactionDiffusion(ReactionDiffusionConfig(n=n, gamma_u=0.5, dt=dt))
        out = run(system, np.stack([field, field]), round(t_end / dt), zero_closure)
        exact = np.stack([np.exp(g * lam * t_end) * field for g in (0.5, 1.0)])
        errors.append(np.abs(out - exact).max())
    orders = observed_orders(errors)
    assert np.all(np.abs(orders - 2.0) < 0.05), (errors, orders)


def test_explicit_closure_makes_the_step_first_order_in_time():
    """With a linear closure y = c u added explicitly, the IMEX step is first order overall;
    exact solution exp((c + γ λ_h) t). Catches a closure applied at the wrong time level."""
    n, t_end, c = 32, 1.0, 0.8
    field, lam, _ = mode(n, 2, 2)
    errors = []
    for dt in (0.02, 0.01, 0.005, 0.0025):
        system = ReactionDiffusion(ReactionDiffusionConfig(n=n, gamma_u=0.1, dt=dt))
        out = run(system, np.stack([field, field]), round(t_end / dt), lambda u, t: c * u)
        exact = np.stack([np.exp((c + g * lam) * t_end) * field for g in (0.1, 0.2)])
        errors.append(np.abs(out - exact).max())
    orders = observed_orders(errors)
    assert np.all(np.abs(orders - 1.0) < 0.05), (errors, orders)


def test_fd2_laplacian_is_second_order_in_space():
    """Against the PDE's exact solution exp(−γ|k|² t) with Δt small enough that the time error
    (~1e-9) is far below the space error (~1e-4): halving h divides the error by 4."""
    t_end, dt, gamma = 0.5, 1e-3, 0.05
    errors = []
    for n in (16, 32, 64, 128):
        field, _, lam_exact = mode(n, 2, 1)
        system = ReactionDiffusion(ReactionDiffusionConfig(n=n, gamma_u=gamma, dt=dt))
        out = run(system, np.stack([field, field]), round(t_end / dt), zero_closure)
        exact = np.exp(gamma * lam_exact * t_end) * field
        errors.append(np.abs(out[0] - exact).max())
    orders = observed_orders(errors)
    assert np.all(np.abs(orders - 2.0) < 0.05), (errors, orders)


def test_spectral_laplacian_has_no_space_error():
    """For a resolved mode the spectral Laplacian is exact: the error against the PDE solution
    is the time error alone, identical on every grid (to round-off)."""
    t_end, dt, gamma = 0.5, 0.01, 0.05
    errors = []
    for n in (16, 32, 64):
        field, _, lam_exact = mode(n, 2, 1)
        system = ReactionDiffusion(
            ReactionDiffusionConfig(n=n, gamma_u=gamma, dt=dt, laplacian="spectral")
        )
        out = run(system, np.stack([field, field]), round(t_end / dt), zero_closure)
        errors.append(np.abs(out[0] - np.exp(gamma * lam_exact * t_end) * field).max())
    assert errors[0] > 1e-10  # there is a (time) error to compare ...
    np.testing.assert_allclose(errors, errors[0], rtol=1e-6)  # ... and it does not depend on h


@pytest.mark.parametrize("laplacian", ["fd2", "spectral"])
def test_pure_diffusion_keeps_the_spatial_mean(laplacian):
    system = ReactionDiffusion(ReactionDiffusionConfig(n=32, gamma_u=0.2, laplacian=laplacian))
    u0 = system.initial_state(jax.random.key(3)) + 0.7  # non-zero mean, rough random field
    out = run(system, np.asarray(u0), 500, zero_closure)
    assert np.abs(out - u0).max() > 0.1  # the field really diffused ...
    # ... but the mean of each field is unchanged to round-off (500 steps of O(1) data)
    np.testing.assert_allclose(out.mean(axis=(1, 2)), np.asarray(u0).mean(axis=(1, 2)), atol=1e-13)


def test_closure_is_the_fitzhugh_nagumo_reaction():
    cfg = ReactionDiffusionConfig(n=8, alpha=0.03, beta=0.7)
    system = ReactionDiffusion(cfg)
    u = np.asarray(system.initial_state(jax.random.key(1)))
    y = np.asarray(system.closure(jnp.asarray(u), 0.0))
    a, b = u
    np.testing.assert_allclose(y[0], a - a**3 - b + 0.03, rtol=1e-15, atol=1e-15)
    np.testing.assert_allclose(y[1], 0.7 * (a - b), rtol=1e-15, atol=1e-15)


def test_batch_by_vmap_equals_one_sample_at_a_time():
    system = ReactionDiffusion(ReactionDiffusionConfig(n=16))
    u = jax.vmap(system.initial_state)(jax.random.split(jax.random.key(0), 3))
    y = jax.vmap(system.closure, in_axes=(0, None))(u, 0.0)
    batched = jax.vmap(system.step, in_axes=(0, 0, None))(u, y, 0.0)
    for i in range(3):
        np.testing.assert_allclose(batched[i], system.step(u[i], y[i], 0.0), rtol=0, atol=1e-15)


def test_laplacian_symbols_vanish_only_on_the_mean_mode():
    for kind in ("fd2", "spectral"):
        lam = laplacian_symbol(16, L, kind)
        assert lam[0, 0] == 0 and np.all(lam.ravel()[1:] < 0)


@pytest.mark.parametrize(
    ("alpha", "gamma_u", "unstable"),
    [
        (0.01, 0.05, 0),
        (0.01, 0.25, 0),
        (0.001, 0.05, 28),
        (0.001, 0.25, 4),
        (-0.001, 0.05, 28),
        (0.004, 0.05, 12),
        (0.005, 0.05, 0),
    ],
)
def test_turing_instability_of_the_uniform_state(alpha, gamma_u, unstable):
    """At |α| = 0.01 (γ_v = 2γ_u) the uniform state is linearly stable for every mode; at
    |α| = 0.001 a band of modes grows (Turing patterns); the band closes between |α| = 0.004
    and 0.005 (at γ_u = 0.05: where rd's validity envelope crosses from spots to decay); the sign
    of α does not matter."""
    system = ReactionDiffusion(ReactionDiffusionConfig(alpha=alpha, gamma_u=gamma_u))
    u_star = system.uniform_state()
    y = np.asarray(system.closure(jnp.full((2, 64, 64), u_star), 0.0))
    assert np.abs(y).max() < 1e-15  # a steady state of the reaction
    rates = system.linear_growth_rates()
    assert rates.shape == (64, 64) and int((rates > 0).sum()) == unstable
    assert rates[0, 0] < 0  # the uniform mode itself is stable


def test_the_fastest_mode_grows_at_the_predicted_rate():
    """A perturbation of the uniform state along the fastest-growing Fourier mode (its unstable
    eigenvector) grows in the solver at the linear-stability rate σ (error O(Δt) from the
    scheme, O(ε) from the nonlinearity)."""
    config = ReactionDiffusionConfig(alpha=0.001, gamma_u=0.05, n=32)
    system = ReactionDiffusion(config)
    rates = system.linear_growth_rates()
    i, j = np.unravel_index(np.argmax(rates), rates.shape)
    sigma = rates[i, j]
    kappa = -laplacian_symbol(config.n, config.length, config.laplacian)[i, min(j, 32 - j)]
    a = 1 - 3 * system.uniform_state() ** 2 - config.gamma_u * kappa
    direction = np.array([1.0, config.beta / (sigma + config.beta + config.gamma_v * kappa)])
    assert np.isclose((a - sigma) * direction[0] - direction[1], 0.0, atol=1e-12)  # eigenvector
    x = np.arange(config.n) * config.h
    k1, k2 = 2 * np.pi * np.fft.fftfreq(32, d=config.h)[[i, j]]
    mode = np.cos(k1 * x[:, None] + k2 * x[None, :])
    eps = 1e-7
    u0 = system.uniform_state() + eps * direction[:, None, None] * mode[None]
    steps = 500  # t = 5
    frames = np.asarray(rollout(system, system.closure, jnp.asarray(u0), 0.0, steps, steps))
    growth = (
        np.abs(frames[-1] - system.uniform_state()).max()
        / np.abs(u0 - system.uniform_state()).max()
    )
    observed = np.log(growth) / (steps * config.dt)
    assert abs(observed - sigma) < 0.01 * sigma + 0.5 * sigma**2 * config.dt
