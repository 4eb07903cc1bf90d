"""1D Kuramoto–Sivashinsky on a coarse grid, closed by a fine solver.

    u_t + u u_x + u_xx + u_xxxx = 0   on [0, L), periodic,

in the conservative form u_t = −u_xx − u_xxxx − ½ (u²)_x. Both solvers are pseudo-spectral with
the 2/3 rule on the nonlinear term and ETDRK4 in time (``systems/spectral.py``), float64: the
linear part k² − k⁴ is integrated exactly, its coefficients computed once.

The *fine* solver (``n_fine`` points, ``fine_substeps`` steps of Δt/substeps per step) is the truth;
the *state* is the coarse field ``R u`` on ``n_fine / coarsening`` points, ``R`` the spectral
restriction (Fourier modes below the coarse Nyquist). The closure ``y`` is what the coarse solver
misses, in one of two forms (``closure_kind``):

- ``correction``: y = (R F(u) − S_c(R u)) / Δt, with F the fine step and S_c the coarse step; the
  hybrid step is S(ū, y) = S_c(ū) + Δt (y − ⟨y⟩), so stepping with the stored labels reproduces
  the restricted fine trajectory to round-off (the oracle). Both solvers conserve the mean of u
  (the nonlinear term is a derivative), so the exact y is mean-free (|⟨y⟩| ~ 1e-16) and the step
  removes the mean ⟨y⟩ of a learned one: without it, a closure's small bias drifted the
  conserved mean, which the shift metric counts as leaving the data manifold (every training
  state has mean 0).
- ``filter``: the sub-grid stress τ = R(u²) − (R u)², entering the coarse equation as −½ ∂_x τ
  (held fixed over the step, inside the ETDRK4 stages). Both products are the solvers' own
  dealiased ones, so −½ ∂_x((Ru)² + τ) is exactly the restricted fine nonlinear term, on every
  coarse mode: τ also carries the coarse modes above the 2/3 cut-off that the coarse product
  drops. The coarse equation with the exact τ is
  the filtered equation, but τ frozen over a step is first order in Δt: stepping with the stored
  labels stays near the data without reproducing it to round-off.

There is no exact closure of the coarse state (the sub-grid modes are gone): the labels come from
``reference_trajectory``, which runs the fine solver after a warm-up onto the attractor.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import ClassVar, Literal

import jax
import jax.numpy as jnp
import numpy as np

from ml4dynamics.core.validation import require, require_positive
from ml4dynamics.systems.base import System, SystemConfig
from ml4dynamics.systems.coarse_grid import FineReference, FineRun, check_grids, mean_free
from ml4dynamics.systems.spectral import ETDRK4, dealias_mask, prolong, restrict, wavenumbers


@dataclasses.dataclass(frozen=True)
class KuramotoSivashinskyConfig(SystemConfig):
    """Defaults: L = 128, a fine grid of 512 points and a coarse one of 128 (4× coarser), Δt = 0.25
    (one fine step per coarse step), initial states of the 16 longest waves with standard
    deviation 1, the ``correction`` closure."""

    dt: float = 0.25
    length: float = 128.0
    n_fine: int = 512
    coarsening: int = 4
    fine_substeps: int = 1
    closure_kind: Literal["correction", "filter"] = "correction"
    ic_modes: int = 16
    ic_std: float = 1.0

    def __post_init__(self) -> None:
        require_positive(self.dt, "dt", "the time step of the coarse solver")
        require_positive(self.length, "length", "the period of the domain")
        check_grids(self, example_fine=512)
        require(
            1 <= self.ic_modes < self.n_fine // (2 * self.coarsening),
            "ic_modes",
            f"must be between 1 and the coarse grid's {self.n_fine // (2 * self.coarsening) - 1} "
            f"resolved waves, got {self.ic_modes}",
            "use e.g. 16",
        )
        require_positive(self.ic_std, "ic_std", "the spread of the random initial state")

    @property
    def n_coarse(self) -> int:
        return self.n_fine // self.coarsening


class SpectralKS:
    """The KS solver on ``n`` points: ETDRK4 steps of ``dt`` on Fourier coefficients; the
    nonlinear term −½ ik FFT(u²) with the 2/3 rule applied to u before the product and to the
    product after it; ``forcing`` (a field whose −½ ∂_x is added to the nonlinear term, held fixed
    over the step) carries the filter closure."""

    def __init__(self, n: int, length: float, dt: float):
        self.n = n
        k = wavenumbers(n, length)
        self.coefficients = ETDRK4.build(k**2 - k**4, dt).as_jax()
        self._mask = jnp.asarray(dealias_mask(n), dtype=jnp.float64)
        self._derivative = jnp.asarray(-0.5j * k)

    def square_hat(self, v: jax.Array) -> jax.Array:
        """The coefficients of the dealiased product u² of the field with coefficients ``v``: the
        2/3 rule applied to u before the product and to the product after it."""
        u = jnp.fft.irfft(v * self._mask, n=self.n)
        return jnp.fft.rfft(u * u) * self._mask

    def nonlinear(self, v: jax.Array, extra: jax.Array | float = 0.0) -> jax.Array:
        return self._derivative * (self.square_hat(v) + extra)

    def step_hat(self, v: jax.Array, extra: jax.Array | float = 0.0) -> jax.Array:
        return self.coefficients.step(v, lambda w: self.nonlinear(w, extra))

    def step(self, u: jax.Array, forcing: jax.Array | None = None) -> jax.Array:
        extra = 0.0 if forcing is None else jnp.fft.rfft(forcing)
        return jnp.fft.irfft(self.step_hat(jnp.fft.rfft(u), extra), n=self.n)


class KuramotoSivashinsky(FineReference, System):
    name: ClassVar[str] = "ks"
    config_class: ClassVar[type[SystemConfig]] = KuramotoSivashinskyConfig
    chaotic: ClassVar[bool] = True  # spatio-temporal chaos at L = 128
    spectrum_weight: ClassVar[int | None] = 0  # u is the velocity
    config: KuramotoSivashinskyConfig

    def __init__(self, config: KuramotoSivashinskyConfig):
        super().__init__(config)
        self.fine = SpectralKS(config.n_fine, config.length, config.dt / config.fine_substeps)
        self.coarse = SpectralKS(config.n_coarse, config.length, config.dt)

    @property
    def state_dims(self) -> tuple[str, ...]:
        return ("field", "x1")

    @property
    def state_shape(self) -> tuple[int, ...]:
        return (1, self.config.n_coarse)

    @property
    def closure_dims(self) -> tuple[str, ...]:
        return ("field", "x1")

    @property
    def closure_shape(self) -> tuple[int, ...]:
        return self.state_shape

    def coords(self) -> Mapping[str, np.ndarray]:
        c = self.config
        return {
            "field": np.array(["u"], dtype=object),
            "x1": np.arange(c.n_coarse) * (c.length / c.n_coarse),
        }

    # -- the fine solver --------------------------------------------------------------------------
    def fine_initial_state(self, key: jax.Array) -> jax.Array:
        """A random smooth mean-free field on the fine grid: the ``ic_modes`` longest waves with
        independent normal coefficients, scaled to standard deviation ``ic_std``."""
        c = self.config
        parts = jax.random.normal(key, (2, c.ic_modes), dtype=jnp.float64)
        coeffs = jnp.zeros(c.n_fine // 2 + 1, dtype=jnp.complex128)
        coeffs = coeffs.at[1 : c.ic_modes + 1].set(parts[0] + 1j * parts[1])
        u = jnp.fft.irfft(coeffs, n=c.n_fine)
        return c.ic_std * u / jnp.std(u)

    def fine_step(self, u: jax.Array) -> jax.Array:
        """One step Δt of the fine solver (``fine_substeps`` ETDRK4 steps) on the fine grid."""
        v = jnp.fft.rfft(u)
        v = jax.lax.fori_loop(0, self.config.fine_substeps, lambda _, w: self.fine.step_hat(w), v)
        return jnp.fft.irfft(v, n=self.config.n_fine)

    def plain_step(self, n: int) -> Callable[[jax.Array], jax.Array]:
        """One ETDRK4 step Δt of the KS solver on ``n`` points, no closure."""
        return SpectralKS(n, self.config.length, self.dt).step

    def resample(self, u: jax.Array, n: int) -> jax.Array:
        return restrict(u, n)

    def restrict(self, u: jax.Array) -> jax.Array:
        """The coarse state ``R u`` of a fine field, shape ``state_shape``."""
        return restrict(u, self.config.n_coarse)[None]

    def label(self, u: jax.Array, fine_next: jax.Array | None = None) -> jax.Array:
        """The closure of the coarse state R u, from the fine field ``u`` (and, for the
        ``correction`` kind, its fine step ``fine_next`` when the caller has it already)."""
        c = self.config
        ubar = restrict(u, c.n_coarse)
        if c.closure_kind == "filter":
            fine_square = jnp.fft.irfft(self.fine.square_hat(jnp.fft.rfft(u)), n=c.n_fine)
            coarse_square = jnp.fft.irfft(self.coarse.square_hat(jnp.fft.rfft(ubar)), n=c.n_coarse)
            return (restrict(fine_square, c.n_coarse) - coarse_square)[None]
        if fine_next is None:
            fine_next = self.fine_step(u)
        target = restrict(fine_next, c.n_coarse)
        return ((target - self.coarse.step(ubar)) / self.dt)[None]

    # -- the protocol ------------------------------------------------------------------------------
    def initial_state(self, key: jax.Array) -> jax.Array:
        return self.restrict(self.fine_initial_state(key))

    def step(self, u: jax.Array, y: jax.Array, t: jax.Array) -> jax.Array:
        if self.config.closure_kind == "filter":
            return self.coarse.step(u[0], forcing=y[0])[None]
        return self.coarse.step(u[0])[None] + self.dt * mean_free(y)

    def fine_run(self) -> FineRun:
        """The fine solver on fields (``coarse_grid.FineReference``)."""
        n_fine = self.config.n_fine
        return FineRun(
            step=self.fine_step,
            restrict=self.restrict,
            label=self.label,
            add_coarse=lambda u, x: u + prolong(x[0], n_fine),
            start=self.fine_initial_state,
        )

    @property
    def label_description(self) -> str:
        if self.config.closure_kind == "filter":
            return "sub-grid stress R(u^2) - (R u)^2 of the fine solution"
        return "(R(fine step) - coarse step of R u) / dt: the coarse solver's one-step error"

    @property
    def scheme(self) -> str:
        c = self.config
        return (
            f"pseudo-spectral, 2/3-rule dealiasing, ETDRK4 (contour-integral coefficients); fine "
            f"grid {c.n_fine} points with {c.fine_substeps} step(s) per dt, restricted "
            f"spectrally to {c.n_coarse} points"
        )

    @property
    def boundary(self) -> str:
        return "periodic"
