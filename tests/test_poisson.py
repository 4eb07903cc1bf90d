"""The channel's pressure Poisson solve: exact inverse of its operator, second order in space."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from ml4dynamics.systems.poisson import ChannelPoisson

LX, LY = 4.0, 1.0  # the NS channel's domain


def grid(nx: int, ny: int) -> tuple[np.ndarray, np.ndarray, float]:
    h = LX / nx
    x = (np.arange(nx) + 0.5) * h
    y = (np.arange(ny) + 0.5) * h
    return x[None, :], y[:, None], h


def test_solve_inverts_the_operator_to_round_off():
    solver = ChannelPoisson(128, 32, LX / 128)  # the default ns_channel grid
    f = jnp.asarray(np.random.default_rng(0).normal(size=(32, 128)))
    p = solver.solve(f)
    residual = float(jnp.max(jnp.abs(solver.apply(p) - f)) / jnp.max(jnp.abs(f)))
    assert residual < 1e-11  # float64 round-off, amplified by the operator's condition number


def test_boundary_conditions_of_the_solution():
    """Neumann on walls and inlet (zero one-sided difference through the face) and p = 0 on the
    outlet face (the mean of the last cell and its ghost)."""
    solver = ChannelPoisson(64, 16, LX / 64)
    p = np.asarray(solver.solve(jnp.asarray(np.random.default_rng(1).normal(size=(16, 64)))))
    # with the ghost-cell closure, the operator row at a Neumann boundary has no flux through it:
    # summing Δ_h p over the domain leaves only the outlet flux (discrete divergence theorem)
    h = LX / 64
    total = float(np.sum(np.asarray(solver.apply(jnp.asarray(p)))) * h**2)
    outlet_flux = float(np.sum(-2 * p[:, -1] / h) * h)  # (ghost − p)/h with ghost = −p
    assert total == pytest.approx(outlet_flux, rel=1e-10)


def test_second_order_on_a_manufactured_solution():
    """p = cos(πx/(2L_x)) cos(πy/L_y) satisfies every boundary condition; f = Δp exactly."""
    errors = []
    for nx in (32, 64, 128, 256):
        ny = nx // 4
        x, y, h = grid(nx, ny)
        exact = np.cos(np.pi * x / (2 * LX)) * np.cos(np.pi * y / LY)
        f = -((np.pi / (2 * LX)) ** 2 + (np.pi / LY) ** 2) * exact
        p = np.asarray(ChannelPoisson(nx, ny, h).solve(jnp.asarray(f)))
        errors.append(np.max(np.abs(p - exact)))
    orders = np.log2(np.asarray(errors[:-1]) / np.asarray(errors[1:]))
    np.testing.assert_allclose(orders, 2.0, atol=0.1)  # the 5-point stencil is second order


def test_bad_grid_is_refused():
    with pytest.raises(ValueError, match="need nx, ny >= 2 and h > 0"):
        ChannelPoisson(1, 32, 0.1)
