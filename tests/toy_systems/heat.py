"""1D periodic heat equation with a learned source: a complete system in one file.

    ∂u/∂t = κ ∂²u/∂x² + f(u),   f(u) = r (u − u³)   (the cubic Allen–Cahn source)

on [0, L) with periodic boundaries. The source f is the closure y. One step treats diffusion by
Crank–Nicolson and the source explicitly:

    (I − Δt/2 κ D_h) u_{k+1} = (I + Δt/2 κ D_h) u_k + Δt y_k .

D_h is the 3-point finite-difference second derivative (``fd2``, second order in space) or the
spectral one (``spectral``). On a periodic grid both are diagonal in the discrete Fourier basis, so
the implicit solve is exact (one rfft/irfft pair per step), as in ``reaction_diffusion``. The
source drives u towards the stable states ±1; explicit Euler keeps them stable while
Δt · |f'(±1)| = 2 r Δt ≤ 2.

Not part of the package: ``tests/test_toy_system.py`` drops this file, unchanged, into a copy of
``ml4dynamics/systems`` to show that a new system is one file (discovery registers it, ``ml4d
generate`` writes its data and the conformance suite passes for it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import ClassVar, Literal

import jax
import jax.numpy as jnp
import numpy as np

from ml4dynamics.core.validation import require, require_non_negative, require_positive
from ml4dynamics.systems.base import ExactClosure, SystemConfig

LAPLACIANS = ("fd2", "spectral")


@dataclasses.dataclass(frozen=True)
class HeatConfig(SystemConfig):
    """A smooth random initial state: ``ic_modes`` Fourier modes with pointwise std ``ic_std``."""

    dt: float = 0.01
    n: int = 64
    length: float = 10.0
    kappa: float = 0.1
    rate: float = 1.0
    laplacian: Literal["fd2", "spectral"] = "fd2"
    ic_modes: int = 4
    ic_std: float = 0.5

    def __post_init__(self) -> None:
        require_positive(self.dt, "dt", "the time step")
        require(self.n >= 4, "n", f"must be >= 4 grid points, got {self.n}", "use e.g. 64")
        require_positive(self.length, "length", "the period of the domain")
        require_non_negative(self.kappa, "kappa", "the diffusivity")
        require_non_negative(self.rate, "rate", "r of the source r (u - u^3)")
        require(
            self.laplacian in LAPLACIANS,
            "laplacian",
            f"unknown Laplacian {self.laplacian!r}",
            f"use one of: {', '.join(LAPLACIANS)}",
        )
        require(
            1 <= self.ic_modes <= self.n // 2,
            "ic_modes",
            f"must be between 1 and n // 2 = {self.n // 2}, got {self.ic_modes}",
            "use a few modes, e.g. 4",
        )
        require_positive(self.ic_std, "ic_std", "the spread of the random initial state")
        require(  # f'(±1) = −2 r: explicit Euler is stable there while 2 r Δt <= 2
            self.rate * self.dt <= 1,
            "dt",
            f"explicit Euler on the source is unstable at u = ±1: rate·dt = "
            f"{self.rate * self.dt:.3g} > 1",
            f"lower dt to <= {1 / self.rate:g}",
        )

    @property
    def h(self) -> float:
        return self.length / self.n


def second_derivative_symbol(n: int, length: float, kind: str) -> np.ndarray:
    """Eigenvalues of the periodic D_h on the rfft grid, shape ``(n // 2 + 1,)``:
    ``fd2`` −(4/h²) sin²(k h/2), ``spectral`` −k²."""
    h = length / n
    k = 2 * np.pi * np.fft.rfftfreq(n, d=h)
    return -(4 / h**2) * np.sin(k * h / 2) ** 2 if kind == "fd2" else -(k**2)


class Heat(ExactClosure):
    name: ClassVar[str] = "heat"
    config_class: ClassVar[type[SystemConfig]] = HeatConfig
    config: HeatConfig

    def __init__(self, config: HeatConfig):
        super().__init__(config)
        lam = second_derivative_symbol(config.n, config.length, config.laplacian)
        half = 0.5 * config.dt * config.kappa * lam
        # Crank–Nicolson multipliers, computed once: û⁺ = explicit · û + forcing · ŷ
        self._explicit = jnp.asarray((1 + half) / (1 - half))
        self._forcing = jnp.asarray(config.dt / (1 - half))

    @property
    def state_dims(self) -> tuple[str, ...]:
        return ("field", "x1")

    @property
    def state_shape(self) -> tuple[int, ...]:
        return (1, self.config.n)

    @property
    def closure_dims(self) -> tuple[str, ...]:
        return ("field", "x1")  # the source of the u equation, on the same grid

    @property
    def closure_shape(self) -> tuple[int, ...]:
        return self.state_shape

    def coords(self) -> Mapping[str, np.ndarray]:
        return {
            "field": np.array(["u"], dtype=object),
            "x1": np.arange(self.config.n) * self.config.h,
        }

    def initial_state(self, key: jax.Array) -> jax.Array:
        """Σ_{m=1..M} a_m cos(2πm x/L) + b_m sin(2πm x/L), a_m, b_m ~ N(0, ic_std²/M)."""
        c = self.config
        m = jnp.arange(1, c.ic_modes + 1)[:, None]
        phase = 2 * jnp.pi * m * jnp.asarray(self.coords()["x1"])[None] / c.length
        a, b = jax.random.normal(key, (2, c.ic_modes, 1), dtype=jnp.float64)
        u = c.ic_std / jnp.sqrt(c.ic_modes) * jnp.sum(a * jnp.cos(phase) + b * jnp.sin(phase), 0)
        return u[None]

    def closure(self, u: jax.Array, t: jax.Array) -> jax.Array:
        return self.config.rate * (u - u**3)

    def step(self, u: jax.Array, y: jax.Array, t: jax.Array) -> jax.Array:
        u_hat = jnp.fft.rfft(u)
        y_hat = jnp.fft.rfft(y)
        return jnp.fft.irfft(self._explicit * u_hat + self._forcing * y_hat, n=self.config.n)

    @property
    def scheme(self) -> str:
        kind = {"fd2": "3-point finite-difference", "spectral": "spectral"}[self.config.laplacian]
        return (
            f"Crank-Nicolson diffusion with the {kind} second derivative, solved exactly by FFT "
            "diagonalisation; source closure added explicitly (forward Euler)"
        )

    @property
    def boundary(self) -> str:
        return "periodic"
