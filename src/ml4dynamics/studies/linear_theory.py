"""The paper's linear experiment: closed-form estimators and their hybrid terminal error.

For the linear system u_{k+1} = A u_k + B y, y = C u (+ noise), data on V, per-sample losses
averaged over the data (Σ = E[uuᵀ], Γ = E[yuᵀ], P⊥ = I − P_V, V_Ĉ(u) = (A + BĈ − I)u/Δt):

- OLS:  Ĉ = Γ Σ⁺                                   (minimum norm: zero on V⊥)
- mOLS: Ĉ = Γ (Σ + wd I)⁻¹                          (= Ĉ_OLS Σ(Σ + wd I)⁻¹ on data in V)
- TR (projector form with D∘E = P_V): (I + λ' BᵀP⊥B) Ĉ Σ = Γ − λ' BᵀP⊥(A − I)Σ, λ' = λ/Δt²,
  so Ĉ = (I + λ' BᵀP⊥B)⁻¹ (Γ − λ' BᵀP⊥(A − I)Σ) Σ⁺; with Δt = 1 and P⊥Σ = 0 this is
  docs/design.md §1's (I + λBᵀP⊥B)⁻¹(Ĉ_OLS − λBᵀP⊥A P_V).

These are what gradient descent from a zero start converges to with our loss functions
(tests/test_estimators_linear.py checks it to 1e-6).
"""

from __future__ import annotations

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ml4dynamics.core.validation import parse, require, require_positive
from ml4dynamics.learning.closure_training import train_closure
from ml4dynamics.learning.estimators.least_squares import MOLS, OLS, MOLSConfig, OLSConfig
from ml4dynamics.learning.estimators.tangent_space import TangentConfig, TangentSpace
from ml4dynamics.learning.training import OptimConfig
from ml4dynamics.models import LinearAutoencoder, LinearClosure
from ml4dynamics.systems.linear import Linear
from ml4dynamics.systems.rollout import rollout


@dataclasses.dataclass(frozen=True)
class LinearTheoryConfig:
    """params.yaml ``linear_theory``: terminal error after ``horizon`` steps vs λ."""

    lams: tuple[float, ...]
    horizon: int
    samples: int

    def __post_init__(self) -> None:
        require(len(self.lams) > 0, "lams", "must list at least one λ", "e.g. [1, 2, 4]")
        for i, lam in enumerate(self.lams):
            require_positive(lam, f"lams[{i}]", "a regularisation weight")
        require(self.horizon >= 1, "horizon", "must be >= 1", "the paper uses 50 steps")
        require(self.samples >= 1, "samples", "must be >= 1", "the paper uses 5")


def theory_config(params) -> LinearTheoryConfig:
    """The ``linear_theory`` section of params.yaml, validated."""
    return params.parse(lambda raw, key: parse(LinearTheoryConfig, raw, key), "linear_theory")


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


def trained_closure(
    system: Linear, kind: str, lam: float, data: dict, basis: np.ndarray, epochs: int = 1000
) -> np.ndarray:
    """Ĉ from our training loop: full-batch gradient descent from zero, step 1/L."""
    from flax import nnx

    sigma, _ = moments(np.asarray(data["u"]), np.asarray(data["y"]))
    s_max = np.linalg.eigvalsh(sigma).max()
    b2 = np.linalg.norm(np.asarray(system.B), 2) ** 2
    curvature = 2 * s_max * (1 + (lam * b2 / system.dt**2 if kind == "tr" else 0)) + (
        2 * lam if kind == "mols" else 0
    )
    estimator = {
        "ols": lambda: OLS(OLSConfig("ols")),
        "mols": lambda: MOLS(MOLSConfig("mols", wd=lam)),
        "tr": lambda: TangentSpace(TangentConfig("tr", "projector", lam=lam, eps=1e-12)),
    }[kind]()
    optim = OptimConfig(
        optimizer="sgd",
        lr=1.0 / curvature,
        epochs=epochs,
        batch_size=0,
        seed=0,
        checkpoint_every=epochs,
    )
    model = LinearClosure(system.state_shape[0], system.closure_shape[0], rngs=nnx.Rngs(0))
    ae = LinearAutoencoder.exact_projector(jnp.asarray(basis))
    train_closure(
        system,
        model,
        estimator,
        optim,
        data,
        reconstruct=(lambda u: ae(u[None])[0]) if kind == "tr" else None,
        progress=False,
    )
    return np.asarray(model.C[...])
