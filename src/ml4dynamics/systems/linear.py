"""The linear toy of the paper's theory (docs/design.md §1).

    u_{k+1} = A u_k + B y_k,    y_k = C u_k   (exact closure)

With A = diag(0.95, 1.2) and B = I the data live on V = span(e1), the stable direction; e2 is
unstable for the resolved part alone, so a closure that lets the hybrid leave V is punished by
1.2^k growth. This is the cheapest system with closed-form estimators and closed-form rollouts
(``u_k = (A + B C)^k u_0``), hence the regression test for everything downstream.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from ml4dynamics.core.validation import require, require_positive
from ml4dynamics.systems.base import ExactClosure, SystemConfig

Matrix = tuple[tuple[float, ...], ...]


@dataclasses.dataclass(frozen=True)
class LinearConfig(SystemConfig):
    """Matrices are row lists. Initial states are ``z * ic_direction`` with ``z ~ N(0, ic_std^2)``.

    ``C`` is ours: the paper does not print its matrix. Our default keeps V invariant
    (C[1][0] = 0) and makes the true dynamics A + B C = diag(0.9, 0.9) stable in both
    directions, while a closure fitted on V alone (C P_V) leaves e2 at the unstable 1.2.
    """

    dt: float = 1.0
    A: Matrix = ((0.95, 0.0), (0.0, 1.2))
    B: Matrix = ((1.0, 0.0), (0.0, 1.0))
    C: Matrix = ((-0.05, 0.0), (0.0, -0.3))
    ic_direction: tuple[float, ...] = (1.0, 0.0)
    ic_std: float = 1.0

    def __post_init__(self) -> None:
        require_positive(self.dt, "dt", "the time step")
        require_positive(self.ic_std, "ic_std", "the spread of initial states")
        for name in ("A", "B", "C"):
            rows = getattr(self, name)
            require(
                len(rows) > 0 and len({len(r) for r in rows}) == 1 and len(rows[0]) > 0,
                name,
                "must be a non-empty matrix with rows of equal length",
                "write it as a list of rows, e.g. [[1.0, 0.0], [0.0, 1.0]]",
            )
        a, b, c = (np.asarray(m) for m in (self.A, self.B, self.C))
        d = a.shape[0]
        require(a.shape == (d, d), "A", f"must be square, got {a.shape}", "give d rows of d")
        require(b.shape[0] == d, "B", f"must have {d} rows like A, got {b.shape}", "fix B")
        require(
            c.shape == (b.shape[1], d),
            "C",
            f"must be {b.shape[1]}x{d} so that B C is {d}x{d}, got {c.shape}",
            "fix C",
        )
        v = np.asarray(self.ic_direction)
        require(
            v.shape == (d,) and np.linalg.norm(v) > 0,
            "ic_direction",
            f"must be a non-zero vector of length {d}",
            "give the direction spanning the data subspace V",
        )
        w = (a + b @ c) @ v
        off = w - v * (v @ w) / (v @ v)
        require(
            np.linalg.norm(off) <= 1e-12 * max(1.0, np.linalg.norm(w)),
            "C",
            "A + B C must map ic_direction into its own span (the data must stay on V)",
            "choose C so that (A + B C) ic_direction is parallel to ic_direction",
        )


class Linear(ExactClosure):
    name: ClassVar[str] = "linear"
    config_class: ClassVar[type[SystemConfig]] = LinearConfig
    config: LinearConfig

    def __init__(self, config: LinearConfig):
        super().__init__(config)
        self.A = jnp.asarray(config.A, dtype=jnp.float64)
        self.B = jnp.asarray(config.B, dtype=jnp.float64)
        self.C = jnp.asarray(config.C, dtype=jnp.float64)
        v = np.asarray(config.ic_direction, dtype=np.float64)
        self.direction = jnp.asarray(v / np.linalg.norm(v))

    @property
    def state_dims(self) -> tuple[str, ...]:
        return ("component",)

    @property
    def state_shape(self) -> tuple[int, ...]:
        return (self.A.shape[0],)

    @property
    def closure_dims(self) -> tuple[str, ...]:
        return ("closure_component",)

    @property
    def closure_shape(self) -> tuple[int, ...]:
        return (self.B.shape[1],)

    def coords(self) -> Mapping[str, np.ndarray]:
        return {
            "component": np.arange(self.state_shape[0]),
            "closure_component": np.arange(self.closure_shape[0]),
        }

    def initial_state(self, key: jax.Array) -> jax.Array:
        z = jax.random.normal(key, (), dtype=jnp.float64)
        return self.config.ic_std * z * self.direction

    def closure(self, u: jax.Array, t: jax.Array) -> jax.Array:
        return self.C @ u

    def step(self, u: jax.Array, y: jax.Array, t: jax.Array) -> jax.Array:
        return self.A @ u + self.B @ y

    @property
    def scheme(self) -> str:
        return "discrete linear map u_{k+1} = A u_k + B y_k"

    @property
    def boundary(self) -> str:
        return "none (finite-dimensional)"

    def exact_solution(self, u0: np.ndarray, k: int) -> np.ndarray:
        """Closed form ``(A + B C)^k u0`` with the exact closure, computed in NumPy."""
        m = np.asarray(self.config.A) + np.asarray(self.config.B) @ np.asarray(self.config.C)
        return np.linalg.matrix_power(m, k) @ np.asarray(u0)
