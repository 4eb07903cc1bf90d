"""The linear toy against its closed form u_k = (A + B C)^k u_0."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ml4dynamics.core.errors import ConfigError
from ml4dynamics.systems import Linear, LinearConfig
from ml4dynamics.systems.rollout import displacement, rollout


def test_rollout_matches_the_closed_form():
    system = Linear(LinearConfig())
    u0 = jnp.array([0.8, -0.4])  # off V on purpose: the unstable direction is exercised too
    states = np.asarray(rollout(system, system.closure, u0, 0.0, 60))
    for k in (0, 1, 17, 60):
        exact = system.exact_solution(np.asarray(u0), k)
        # 60 products of 2×2 matrices: error of a few ulps relative to |u_k|
        np.testing.assert_allclose(states[k], exact, rtol=1e-13, atol=1e-15)


def test_default_truth_is_diag_09_and_data_stay_on_v():
    system = Linear(LinearConfig())
    m = np.asarray(system.A + system.B @ system.C)
    np.testing.assert_allclose(m, np.diag([0.9, 0.9]), rtol=0, atol=2e-16)  # 0.95 - 0.05 in binary
    u0 = system.initial_state(jax.random.key(5))
    assert u0[1] == 0.0 and u0[0] != 0.0  # initial states on V = span(e1)
    states = rollout(system, system.closure, u0, 0.0, 50)
    assert np.all(np.asarray(states)[:, 1] == 0.0)


def test_displacement_is_the_discrete_vector_field():
    system = Linear(LinearConfig(dt=0.5))
    u = jnp.array([1.0, 2.0])
    y = system.closure(u, 0.0)
    expected = ((system.A + system.B @ system.C) @ u - u) / 0.5
    np.testing.assert_allclose(displacement(system, u, y, 0.0), expected, rtol=1e-15)


def test_a_closure_that_lets_data_leave_v_is_refused():
    with pytest.raises(ConfigError, match="C: A \\+ B C must map ic_direction"):
        LinearConfig(C=((0.0, 0.0), (0.1, 0.0)))


def test_matrix_shapes_are_checked():
    with pytest.raises(ConfigError, match="^C: must be 2x2"):
        LinearConfig(C=((0.0, 0.0, 0.0), (0.0, 0.0, 0.0)))
    with pytest.raises(ConfigError, match="^A: must be square"):
        LinearConfig(A=((1.0, 0.0),))
