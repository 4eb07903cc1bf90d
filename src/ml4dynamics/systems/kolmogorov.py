"""2D Kolmogorov flow on a coarse grid, closed by a fine solver.

    ω_t + u·∇ω = ν Δω − α ω − k_f cos(k_f x2)   on [0, 2π)², periodic,

the vorticity form of forced incompressible Navier–Stokes: ω = ∂₁u2 − ∂₂u1 of the velocity
u = (∂₂ψ, −∂₁ψ), ω = −Δψ (conventions of ``systems/vorticity.py``); the forcing is the curl of
the body force sin(k_f x2) along x1 (Kolmogorov forcing). Defaults as Kochkov et al. (2021):
ν = 1e-3, i.e. Re = 1/ν = 1000 for a unit forcing on [0, 2π)² (Chandler & Kerswell 2013),
k_f = 4, and a linear drag α = 0.1 that removes the energy the inverse cascade piles up in the
largest scales. x1 and x2 are the first and last axes of a field.

Both solvers are pseudo-spectral and float64: u·∇ω = ∇·(uω) (u is divergence-free) is evaluated
from the flux F = uω, with the 2/3 rule (square, axis by axis: ``dealias_mask2``) applied to ω
before the product and to the product after it, as ``SpectralKS``; the linear part −ν|k|² − α is
integrated exactly by ETDRK4 (``systems/spectral.py``), the forcing (constant) with the
nonlinear term, which ETDRK4 treats exactly too.

The *fine* solver (``n_fine²`` points, ``fine_substeps`` steps of Δt/substeps per step) is the
truth; the *state* is the coarse field ``R ω`` on ``(n_fine / coarsening)²`` points, ``R`` the
spectral restriction (Fourier modes |k1|, |k2| below the coarse Nyquist). The closure ``y`` is
what the coarse solver misses, in one of two forms (``closure_kind``), as for ``ks``:

- ``correction``: y = (R F(ω) − S_c(R ω)) / Δt, F the fine step and S_c the coarse step; the
  hybrid step is S(ω̄, y) = S_c(ω̄) + Δt (y − ⟨y⟩), so the stored labels reproduce the
  restricted fine trajectory to round-off (the oracle). The mean vorticity is conserved (it is
  0: the forcing and the drag keep it there), the exact y is mean-free, and the step removes the
  mean of a learned one so that it cannot drift, as for ``ks``.
- ``filter``: the sub-grid vorticity flux τ = R(uω) − (Ru)(Rω), a 2-vector per point (closure
  axis ``closure_field``: its x1 and x2 components), entering the coarse equation as −∇·τ, held
  fixed over the step. Both products are the solvers' own dealiased fluxes and τ is not masked,
  so −∇·((Ru)(Rω) + τ) is exactly the restricted fine advection on every coarse mode, also
  those above the coarse 2/3 cut-off that the coarse product drops. τ frozen over a step is
  first order in Δt: the stored labels keep the coarse step near the data, not on it.

Time step (``dt``, the coarse step): 0.02, with 4 fine steps of 0.005 at 256². ETDRK4 is stable
for explicit advection while Δt |u|_max k_max ≲ 2.8 (k_max = n/3 after dealiasing); on the
attractor |u|_max is 3 to 4.5 and the vorticity's standard deviation 4 to 5 (measured at 256²
over t = 30), so Δt ≲ 0.0073 at 256² and ≲ 0.029 at 64². Measured: the fine solver at 256²
blows up within t = 6 at Δt = 0.01 and holds at 0.0067 (to t = 10); the coarse one holds at 64²
up to Δt = 0.04 (to t = 20). The defaults leave a margin of ~1.4× (fine) and 2× (coarse). 256²
is the CPU-sized truth: Kochkov et al. resolve Re = 1000 on 2048² with finite volumes.

There is no exact closure of the coarse state: the labels come from ``reference_trajectory``,
which runs the fine solver after a warm-up onto the attractor. Initial states are random smooth
vorticity fields: the Fourier modes with |k1|, |k2| ≤ ``ic_modes`` (but the mean), independent
normal coefficients, scaled to standard deviation ``ic_std``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import ClassVar, Literal

import jax
import jax.numpy as jnp
import numpy as np

from ml4dynamics.core.validation import require, require_non_negative, require_positive
from ml4dynamics.systems.base import System, SystemConfig
from ml4dynamics.systems.coarse_grid import FineReference, FineRun, check_grids, mean_free
from ml4dynamics.systems.spectral import (
    ETDRK4,
    dealias_mask2,
    prolong2_hat,
    restrict2,
    restrict2_hat,
    wavenumbers2,
)

LENGTH = 2 * np.pi


@dataclasses.dataclass(frozen=True)
class KolmogorovConfig(SystemConfig):
    """Defaults: a fine grid of 256² and a coarse one of 64² (4× coarser), Δt = 0.02 with 4 fine
    steps per coarse step, Re = 1000 (ν = 1e-3), drag 0.1, forcing at k_f = 4 (Kochkov et al.
    2021), initial states of the waves |k1|, |k2| ≤ 4 with standard deviation 4, the
    ``correction`` closure."""

    dt: float = 0.02
    n_fine: int = 256
    coarsening: int = 4
    fine_substeps: int = 4
    viscosity: float = 1.0e-3
    drag: float = 0.1
    forcing_wavenumber: int = 4
    closure_kind: Literal["correction", "filter"] = "correction"
    ic_modes: int = 4
    ic_std: float = 4.0

    def __post_init__(self) -> None:
        require_positive(self.dt, "dt", "the time step of the coarse solver")
        check_grids(self, example_fine=256)
        n_coarse = self.n_coarse
        require_positive(self.viscosity, "viscosity", "the kinematic viscosity ν = 1/Re")
        require_non_negative(self.drag, "drag", "the linear drag α")
        require(
            1 <= self.forcing_wavenumber < n_coarse / 3,
            "forcing_wavenumber",
            f"must be between 1 and the coarse solver's dealiased band |k| < {n_coarse / 3:.4g}, "
            f"got {self.forcing_wavenumber}",
            "use e.g. 4",
        )
        require(
            1 <= self.ic_modes < n_coarse / 3,
            "ic_modes",
            f"must be between 1 and the coarse solver's dealiased band |k| < {n_coarse / 3:.4g}, "
            f"got {self.ic_modes}",
            "use e.g. 4",
        )
        require_positive(self.ic_std, "ic_std", "the spread of the random initial vorticity")

    @property
    def n_coarse(self) -> int:
        return self.n_fine // self.coarsening


class SpectralKolmogorov:
    """The vorticity solver on ``n × n`` points of [0, 2π)²: ETDRK4 steps of ``dt`` on ``rfft2``
    coefficients ``(n, n//2 + 1)``; the nonlinear term −∇·F + f with the dealiased flux
    F = (u1 ω, u2 ω) and the forcing f; ``flux`` (a field ``(2, n, n)`` added to F, held fixed
    over the step, not masked) carries the filter closure."""

    def __init__(
        self, n: int, dt: float, viscosity: float, drag: float, forcing_wavenumber: int
    ) -> None:
        self.n = n
        k1, k2 = wavenumbers2(n, LENGTH)
        k_squared = k1**2 + k2**2
        self.coefficients = ETDRK4.build(-viscosity * k_squared - drag, dt).as_jax()
        mask = dealias_mask2(n)
        inverse = np.divide(1.0, k_squared, out=np.zeros_like(k_squared), where=k_squared > 0)
        # ω̂ → û1, û2, ω̂ of the 2/3-masked vorticity: (i k2, −i k1, 1) ω̂/|k|²
        self._u1 = jnp.asarray(1j * k2 * inverse * mask)
        self._u2 = jnp.asarray(-1j * k1 * inverse * mask)
        self._omega = jnp.asarray(mask, dtype=jnp.float64)
        # F̂ → −(∇·F)^, of the masked product and of an unmasked extra flux
        self._divergence = (jnp.asarray(-1j * k1 * mask), jnp.asarray(-1j * k2 * mask))
        self._divergence_all = jnp.asarray(np.stack([-1j * k1, -1j * k2]))
        forcing = np.zeros(k1.shape, dtype=np.complex128)
        forcing[0, forcing_wavenumber] = -forcing_wavenumber * n * n / 2  # −k_f cos(k_f x2)
        self._forcing = jnp.asarray(forcing)

    def _products(self, v: jax.Array) -> tuple[jax.Array, jax.Array]:
        """u1 ω and u2 ω on the grid, from the 2/3-masked vorticity with coefficients ``v``.
        (Three separate transforms: XLA runs them faster than one of the three stacked.)"""
        shape = (self.n, self.n)
        omega = jnp.fft.irfft2(self._omega * v, s=shape)
        u1 = jnp.fft.irfft2(self._u1 * v, s=shape)
        u2 = jnp.fft.irfft2(self._u2 * v, s=shape)
        return u1 * omega, u2 * omega

    def flux_hat(self, v: jax.Array) -> jax.Array:
        """The coefficients ``(2, n, n//2 + 1)`` of the dealiased flux (u1 ω, u2 ω) of the
        vorticity with coefficients ``v``: 2/3 rule before the product and after it."""
        return jnp.stack([jnp.fft.rfft2(f) for f in self._products(v)]) * self._omega

    def nonlinear(self, v: jax.Array, source: jax.Array) -> jax.Array:
        """−∇·F(v) + ``source`` in Fourier space, F the dealiased flux."""
        f1, f2 = self._products(v)
        d1, d2 = self._divergence
        return d1 * jnp.fft.rfft2(f1) + d2 * jnp.fft.rfft2(f2) + source

    def step_hat(self, v: jax.Array, extra: jax.Array | None = None) -> jax.Array:
        """One step of coefficients ``v``; ``extra``: coefficients ``(2, n, n//2 + 1)`` of a
        flux added to F (all modes), or None."""
        source = self._forcing
        if extra is not None:
            source = source + jnp.sum(self._divergence_all * extra, axis=0)
        return self.coefficients.step(v, lambda w: self.nonlinear(w, source))

    def step(self, omega: jax.Array, flux: jax.Array | None = None) -> jax.Array:
        """One step of a vorticity field ``(n, n)``; ``flux`` ``(2, n, n)`` or None."""
        extra = None if flux is None else jnp.fft.rfft2(flux)
        return jnp.fft.irfft2(self.step_hat(jnp.fft.rfft2(omega), extra), s=(self.n, self.n))


class Kolmogorov(FineReference, System):
    name: ClassVar[str] = "kolmogorov"
    config_class: ClassVar[type[SystemConfig]] = KolmogorovConfig
    chaotic: ClassVar[bool] = True  # turbulence: two solvers decorrelate within a few time units
    spectrum_weight: ClassVar[int | None] = -2  # the state is the vorticity: E = |w_k|^2/|k|^2
    config: KolmogorovConfig

    def __init__(self, config: KolmogorovConfig):
        super().__init__(config)
        c = config
        physics = (c.viscosity, c.drag, c.forcing_wavenumber)
        self.fine = SpectralKolmogorov(c.n_fine, c.dt / c.fine_substeps, *physics)
        self.coarse = SpectralKolmogorov(c.n_coarse, c.dt, *physics)

    @property
    def state_dims(self) -> tuple[str, ...]:
        return ("field", "x1", "x2")

    @property
    def state_shape(self) -> tuple[int, ...]:
        return (1, self.config.n_coarse, self.config.n_coarse)

    @property
    def closure_dims(self) -> tuple[str, ...]:
        if self.config.closure_kind == "filter":
            return ("closure_field", "x1", "x2")
        return self.state_dims

    @property
    def closure_shape(self) -> tuple[int, ...]:
        if self.config.closure_kind == "filter":
            return (2, self.config.n_coarse, self.config.n_coarse)
        return self.state_shape

    def coords(self) -> Mapping[str, np.ndarray]:
        n = self.config.n_coarse
        grid = np.arange(n) * (LENGTH / n)
        coords = {"field": np.array(["omega"], dtype=object), "x1": grid, "x2": grid}
        if self.config.closure_kind == "filter":  # the x1 and x2 components of τ
            coords["closure_field"] = np.array(["tau1", "tau2"], dtype=object)
        return coords

    # -- the fine solver --------------------------------------------------------------------------
    def fine_initial_state(self, key: jax.Array) -> jax.Array:
        """A random smooth mean-free vorticity field ``(n_fine, n_fine)``: the waves with
        |k1|, |k2| ≤ ``ic_modes`` with independent normal coefficients, scaled to standard
        deviation ``ic_std``. The draw does not depend on the grid."""
        c = self.config
        m, n = c.ic_modes, c.n_fine
        parts = jax.random.normal(key, (2, 2 * m + 1, m + 1), dtype=jnp.float64)
        low = (parts[0] + 1j * parts[1]).at[m, 0].set(0.0)  # rows k1 = -m .. m; no mean
        coeffs = jnp.zeros((n, n // 2 + 1), dtype=jnp.complex128)
        coeffs = coeffs.at[: m + 1, : m + 1].set(low[m:]).at[n - m :, : m + 1].set(low[:m])
        omega = jnp.fft.irfft2(coeffs, s=(n, n))
        return c.ic_std * omega / jnp.std(omega)

    def _fine_step_hat(self, v: jax.Array) -> jax.Array:
        return jax.lax.fori_loop(
            0, self.config.fine_substeps, lambda _, w: self.fine.step_hat(w), v
        )

    def fine_step(self, omega: jax.Array) -> jax.Array:
        """One step Δt of the fine solver (``fine_substeps`` ETDRK4 steps) on the fine grid."""
        n = self.config.n_fine
        return jnp.fft.irfft2(self._fine_step_hat(jnp.fft.rfft2(omega)), s=(n, n))

    def plain_step(self, n: int) -> Callable[[jax.Array], jax.Array]:
        """One step Δt of the solver on ``n × n`` points, no closure: ⌈fine_substeps · n /
        n_fine⌉ ETDRK4 steps, so that Δt per step shrinks with the grid spacing as the CFL
        condition asks (the coarse solver's one step at n_coarse ≤ n_fine / fine_substeps, the
        fine solver's ``fine_substeps`` at n_fine)."""
        c = self.config
        substeps = max(1, math.ceil(c.fine_substeps * n / c.n_fine))
        solver = SpectralKolmogorov(n, c.dt / substeps, c.viscosity, c.drag, c.forcing_wavenumber)

        def step(omega: jax.Array) -> jax.Array:
            v = jax.lax.fori_loop(
                0, substeps, lambda _, w: solver.step_hat(w), jnp.fft.rfft2(omega)
            )
            return jnp.fft.irfft2(v, s=(n, n))

        return step

    def resample(self, u: jax.Array, n: int) -> jax.Array:
        return restrict2(u, n)

    def _restrict_hat(self, v: jax.Array) -> jax.Array:
        """The coarse state ``R ω`` ``(1, n, n)`` of fine coefficients ``v``."""
        n = self.config.n_coarse
        return jnp.fft.irfft2(restrict2_hat(v, n), s=(n, n))[None]

    def restrict(self, omega: jax.Array) -> jax.Array:
        """The coarse state ``R ω`` of a fine field, shape ``state_shape``."""
        return self._restrict_hat(jnp.fft.rfft2(omega))

    def _label_hat(self, v: jax.Array, v_next: jax.Array | None = None) -> jax.Array:
        """The closure of the coarse state R ω from the fine coefficients ``v`` (and, for the
        ``correction`` kind, those of its fine step ``v_next`` when the caller has them)."""
        c = self.config
        omega_bar = self._restrict_hat(v)[0]
        if c.closure_kind == "filter":
            fine_flux = restrict2_hat(self.fine.flux_hat(v), c.n_coarse)
            coarse_flux = self.coarse.flux_hat(jnp.fft.rfft2(omega_bar))
            return jnp.fft.irfft2(fine_flux - coarse_flux, s=(c.n_coarse, c.n_coarse))
        if v_next is None:
            v_next = self._fine_step_hat(v)
        target = self._restrict_hat(v_next)[0]
        return ((target - self.coarse.step(omega_bar)) / self.dt)[None]

    def label(self, omega: jax.Array, fine_next: jax.Array | None = None) -> jax.Array:
        """The closure of the coarse state R ω, from the fine field ``omega`` (and, for the
        ``correction`` kind, its fine step ``fine_next`` when the caller has it already)."""
        v_next = None if fine_next is None else jnp.fft.rfft2(fine_next)
        return self._label_hat(jnp.fft.rfft2(omega), v_next)

    # -- the protocol ------------------------------------------------------------------------------
    def initial_state(self, key: jax.Array) -> jax.Array:
        return self.restrict(self.fine_initial_state(key))

    def step(self, u: jax.Array, y: jax.Array, t: jax.Array) -> jax.Array:
        if self.config.closure_kind == "filter":
            return self.coarse.step(u[0], flux=y)[None]
        return self.coarse.step(u[0])[None] + self.dt * mean_free(y)

    def fine_run(self) -> FineRun:
        """The fine solver on Fourier coefficients (``coarse_grid.FineReference``): the fine
        states of a reference run stay in Fourier space."""
        n_fine = self.config.n_fine
        return FineRun(
            step=self._fine_step_hat,
            restrict=self._restrict_hat,
            label=self._label_hat,
            add_coarse=lambda v, x: v + prolong2_hat(jnp.fft.rfft2(x[0]), n_fine),
            start=lambda key: jnp.fft.rfft2(self.fine_initial_state(key)),
        )

    @property
    def label_description(self) -> str:
        if self.config.closure_kind == "filter":
            return "sub-grid vorticity flux R(u omega) - (R u)(R omega) of the fine solution"
        return "(R(fine step) - coarse step of R omega) / dt: the coarse solver's one-step error"

    @property
    def scheme(self) -> str:
        c = self.config
        return (
            f"vorticity form, pseudo-spectral, 2/3-rule dealiasing, ETDRK4 (contour-integral "
            f"coefficients); fine grid {c.n_fine}^2 with {c.fine_substeps} step(s) per dt, "
            f"restricted spectrally to {c.n_coarse}^2"
        )

    @property
    def boundary(self) -> str:
        return "periodic"
