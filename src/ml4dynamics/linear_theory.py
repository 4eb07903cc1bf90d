"""The paper's linear experiment: closed-form estimators and their hybrid terminal error.

For the linear system u_{k+1} = A u_k + B y, y = C u (+ noise), data on V, per-sample losses
averaged over the data (Σ = E[uuᵀ], Γ = E[yuᵀ], P⊥ = I − P_V, V_Ĉ(u) = (A + BĈ − I)u/Δt):

- OLS:  Ĉ = Γ Σ⁺                                   (minimum norm: zero on V⊥)
- mOLS: Ĉ = Γ (Σ + wd I)⁻¹                          (= Ĉ_OLS Σ(Σ + wd I)⁻¹ on data in V)
- TR (projector form with D∘E = P_V): (I + λ' BᵀP⊥B) Ĉ Σ = Γ − λ' BᵀP⊥(A − I)Σ, λ' = λ/Δt²,
  so Ĉ = (I + λ' BᵀP⊥B)⁻¹ (Γ − λ' BᵀP⊥(A − I)Σ) Σ⁺; with Δt = 1 and P⊥Σ = 0 this is
  DESIGN §2's (I + λBᵀP⊥B)⁻¹(Ĉ_OLS − λBᵀP⊥A P_V).

These are what gradient descent from a zero start converges to with our loss functions
(tests/test_estimators_linear.py checks it to 1e-6).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ml4dynamics.rollout import rollout
from ml4dynamics.systems import Linear


def moments(u: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Σ = mean u uᵀ and Γ = mean y uᵀ over samples ``u (N, d)``, ``y (N, m)``."""
    return u.T @ u / u.shape[0], y.T @ u / u.shape[0]


def subspace_projector(basis: np.ndarray) -> np.ndarray:
    q, _ = np.linalg.qr(np.atleast_2d(basis).T)
    return q @ q.T


def ols(sigma: np.ndarray, gamma: np.ndarray) -> np.ndarray:
    return gamma @ np.linalg.pinv(sigma)


def mols(sigma: np.ndarray, gamma: np.ndarray, wd: float) -> np.ndarray:
    return gamma @ np.linalg.inv(sigma + wd * np.eye(sigma.shape[0]))


def tr_projector(
    system: Linear, sigma: np.ndarray, gamma: np.ndarray, p_v: np.ndarray, lam: float
) -> np.ndarray:
    a, b = np.asarray(system.A), np.asarray(system.B)
    p_perp = np.eye(a.shape[0]) - p_v
    lam_ = lam / system.dt**2
    m = np.eye(b.shape[1]) + lam_ * b.T @ p_perp @ b
    rhs = gamma - lam_ * b.T @ p_perp @ (a - np.eye(a.shape[0])) @ sigma
    return np.linalg.solve(m, rhs) @ np.linalg.pinv(sigma)


@partial(jax.jit, static_argnames=("system", "horizon"))
def _hybrid_final_states(system: Linear, c_hat: jax.Array, u0: jax.Array, horizon: int):
    def one(u):
        return rollout(system, lambda v, t: c_hat @ v, u, 0.0, horizon)[-1]

    return jax.vmap(one)(u0)


def terminal_errors(
    system: Linear, c_hat: np.ndarray, u_true: np.ndarray, horizon: int
) -> np.ndarray:
    """‖u_T − û_T‖ per trajectory, û rolled out by the hybrid (the system's own step with
    y = Ĉ u) from ``u_true[:, 0]``; ``u_true (samples, > horizon, d)``."""
    final = _hybrid_final_states(system, jnp.asarray(c_hat), jnp.asarray(u_true[:, 0]), horizon)
    return np.linalg.norm(np.asarray(final) - u_true[:, horizon], axis=-1)
