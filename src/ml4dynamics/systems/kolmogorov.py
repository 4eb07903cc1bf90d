"""2D Kolmogorov flow on a coarse grid, closed by a fine solver.

    ω_t + u·∇ω = ν Δω − α ω − k_f cos(k_f x2)   on [0, 2π)², periodic,

the vorticity form of forced incompressible Navier–Stokes: ω = ∂₁u2 − ∂₂u1 of the velocity
u = (∂₂ψ, −∂₁ψ), ω = −Δψ (conventions of ``systems/vorticity.py``); the forcing is the curl of
the body force sin(k_f x2) along x1 (Kolmogorov forcing). Defaults as Kochkov et al. (2021):
ν = 1e-3, i.e. Re = 1/ν = 1000 for a unit forcing on [0, 2π)² (Chandler & Kerswell 2013),
k_f = 4, and a linear drag α = 0.1 that removes the energy the inverse cascade piles up in the
largest scales. x1 and x2 are the first and last axes of a field.

Pseudo-spectral and float64: u·∇ω = ∇·(uω) (u is divergence-free) is evaluated from the flux
F = uω, its products taken on a grid zero-padded to 3/2 (``PeriodicGrid.to_product``), so every
mode the grid carries is advected; the linear symbol −ν|k|² − α is integrated exactly by
ETDRK4, the forcing (constant) with the nonlinear term. The grids, the two closure kinds
(``correction``; ``filter``, the sub-grid vorticity flux τ = R(uω) − (Ru)(Rω), a 2-vector per
point on the closure axis ``closure_field``, entering as −∇·τ), the reference run and the solver
ladder are ``SpectralCoarseGrid``'s (``systems/coarse_grid.py``). The mean vorticity is 0 and
stays there (the forcing and the drag keep it), so the exact correction is mean-free.

Grids and time step. ETDRK4 is stable for explicit advection while Δt |u|_max k_max ≲ 2.8, and
the padded products advect up to k_max = n/2 (n/3 under the 2/3 rule, 1.5× more room); on the
attractor |u|_max is 3 to 4.5 and the vorticity's standard deviation 4 to 5 (measured at 256² over
t = 30), so Δt ≲ 0.0097 at 128² and ≲ 0.0049 at 256². Measured: with padding the fine solver at
256² blows up within t = 4 at a fine step of 0.005 (it held under the 2/3 rule) and holds at
0.0025. The defaults: the truth on 128² with 4 fine steps of 0.005 per coarse step of 0.02
(margin ~2×), the state on 16² (stable by a wide margin). 128² suffices as the truth for these
coarse grids: the coarse solvers alone score the same against a 256² truth with steps of 0.0025
to within 0.001 at t = 2 (bench/kolmogorov_resolution_fine256x8.md); Kochkov et al. resolve
Re = 1000 on 2048² with finite volumes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from ml4dynamics.core.validation import require, require_non_negative, require_positive
from ml4dynamics.systems.base import Physical, SystemConfig
from ml4dynamics.systems.coarse_grid import CoarseGridConfig, SpectralCoarseGrid
from ml4dynamics.systems.spectral import Dealiasing, PeriodicGrid, SpectralSolver

LENGTH = 2 * np.pi


@dataclasses.dataclass(frozen=True)
class KolmogorovConfig(CoarseGridConfig):
    """Defaults: a fine grid of 128² and a coarse one of 16² (8× coarser: where the plain solver
    alone fails by the report time and a closure is needed, bench/kolmogorov_resolution.md),
    Δt = 0.02 with 4 fine steps per coarse step, Re = 1000 (ν = 1e-3), drag 0.1, forcing at
    k_f = 4 (Kochkov et al. 2021), initial states of the waves |k1|, |k2| ≤ 4 with standard
    deviation 4, the ``correction`` closure."""

    dt: float = 0.02
    n_fine: int = 128
    coarsening: int = 8
    fine_substeps: int = 4
    ic_std: float = 4.0
    viscosity: float = 1.0e-3
    drag: float = 0.1
    forcing_wavenumber: int = 4

    def __post_init__(self) -> None:
        super().__post_init__()
        require_positive(self.viscosity, "viscosity", "the kinematic viscosity ν = 1/Re")
        require_non_negative(self.drag, "drag", "the linear drag α")
        band = self.n_coarse // 2
        require(
            1 <= self.forcing_wavenumber < band,
            "forcing_wavenumber",
            f"must be between 1 and the coarse grid's band |k| < {band}, "
            f"got {self.forcing_wavenumber}",
            "use e.g. 4",
        )


class SpectralKolmogorov(SpectralSolver):
    """The vorticity solver on ``n × n`` points of [0, 2π)²: ETDRK4 steps of ``dt`` on ``rfft2``
    coefficients ``(n, n//2 + 1)``; the nonlinear term −∇·F + f with the dealiased flux
    F = (u1 ω, u2 ω) and the forcing f; the filter closure's flux ``(2, n, n)`` is added to F
    (not masked)."""

    def __init__(
        self,
        n: int,
        dt: float,
        viscosity: float,
        drag: float,
        forcing_wavenumber: int,
        dealiasing: Dealiasing = "padded",
    ) -> None:
        self.viscosity, self.drag = viscosity, drag
        super().__init__(PeriodicGrid(n, LENGTH, dims=2, dealiasing=dealiasing), dt)
        k1, k2 = self.grid.wavenumbers()
        k_squared = k1**2 + k2**2
        inverse = np.divide(1.0, k_squared, out=np.zeros_like(k_squared), where=k_squared > 0)
        # ω̂ → û1, û2: (i k2, −i k1) ω̂/|k|²
        self._u1 = jnp.asarray(1j * k2 * inverse)
        self._u2 = jnp.asarray(-1j * k1 * inverse)
        # F̂ → −(∇·F)^, of the dealiased product and of an extra flux
        self._divergence = jnp.asarray(np.stack([-1j * k1, -1j * k2]))
        forcing = np.zeros(k1.shape, dtype=np.complex128)
        forcing[0, forcing_wavenumber] = -forcing_wavenumber * n * n / 2  # −k_f cos(k_f x2)
        self._forcing = jnp.asarray(forcing)

    def linear_symbol(self) -> np.ndarray:
        k1, k2 = self.grid.wavenumbers()
        return -self.viscosity * (k1**2 + k2**2) - self.drag

    def _products(self, v: jax.Array) -> tuple[jax.Array, jax.Array]:
        """u1 ω and u2 ω where products are taken (``PeriodicGrid.to_product``), from the
        vorticity with coefficients ``v``. (Three separate transforms: XLA runs them faster than
        one of the three stacked.)"""
        omega = self.grid.to_product(v)
        u1 = self.grid.to_product(self._u1 * v)
        u2 = self.grid.to_product(self._u2 * v)
        return u1 * omega, u2 * omega

    def flux_hat(self, v: jax.Array) -> jax.Array:
        """The coefficients ``(2, n, n//2 + 1)`` of the dealiased flux (u1 ω, u2 ω)."""
        return jnp.stack([self.grid.from_product(f) for f in self._products(v)])

    def source(self, extra: jax.Array | None) -> jax.Array:
        """The forcing, less the divergence of the extra flux (all modes) if any."""
        if extra is None:
            return self._forcing
        return self._forcing + jnp.sum(self._divergence * extra, axis=0)

    def nonlinear(self, v: jax.Array, source: jax.Array) -> jax.Array:
        """−∇·F(v) + ``source`` in Fourier space, F the dealiased flux."""
        f1, f2 = self._products(v)
        d1, d2 = self._divergence
        return d1 * self.grid.from_product(f1) + d2 * self.grid.from_product(f2) + source


class Kolmogorov(SpectralCoarseGrid):
    name: ClassVar[str] = "kolmogorov"
    physical_params: ClassVar[Mapping[str, Physical]] = {
        "viscosity": Physical(2.5e-4, 4e-3, log=True, description="1/Re"),
        "forcing_wavenumber": Physical(2, 6, integer=True, description="of the body force"),
    }
    config_class: ClassVar[type[SystemConfig]] = KolmogorovConfig
    chaotic: ClassVar[bool] = True  # turbulence: two solvers decorrelate within a few time units
    spectrum_weight: ClassVar[int | None] = -2  # the state is the vorticity: E = |w_k|^2/|k|^2
    field_name: ClassVar[str] = "omega"
    flux_description: ClassVar[str] = "vorticity flux R(u omega) - (R u)(R omega)"
    form: ClassVar[str] = "vorticity form"
    config: KolmogorovConfig

    def solver(self, n: int, dt: float, dealiasing: Dealiasing = "padded") -> SpectralKolmogorov:
        c = self.config
        return SpectralKolmogorov(n, dt, c.viscosity, c.drag, c.forcing_wavenumber, dealiasing)
