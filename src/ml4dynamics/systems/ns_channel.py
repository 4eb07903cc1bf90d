"""2D incompressible channel flow by the projection method on a MAC grid (the paper's second
experiment); the closure is the pressure.

    ∂u/∂t + (u·∇)u = −∇p + (1/Re) Δu,   ∇·u = 0   on [0, L] × [0, H] (default [0, 4] × [0, 1])

Grid: ``nx × ny`` square cells of side h. The x-velocity u lives on the vertical faces
(x = i·h, i = 0 … nx), the y-velocity v on the horizontal faces (y = j·h, j = 0 … ny), the
pressure p at the cell centres ``(ny, nx)``.

Boundary conditions:

- walls y = 0 and y = H: no slip (v = 0 on the wall faces; u's ghost row is minus the first row);
- inlet x = 0: u = exp(−w (y − y0)²) on the inlet faces, and a transverse part
  v = a · exp(−w (y − y0)²) · sin(ω t) imposed through v's ghost column;
- outlet x = L: zero gradient (u and v ghosts copy the last interior values);
- pressure: ∂p/∂n = 0 on the walls and at the inlet, p = 0 on the outlet face.

One step S(u, p, t) = u* − Δt ∇_h p: the predictor u* integrates advection (non-conservative,
second-order central differences) and diffusion (5-point Laplacian) over Δt with SSP-RK3, with the
boundary values of each stage's time; the projection subtracts the face gradient of the closure
p. The exact closure is the p that makes u* − Δt∇_h p discretely divergence-free,
Δ_h p = ∇_h·u*/Δt, solved exactly by ``ChannelPoisson`` (Δ_h = ∇_h·∇_h with the boundary
conditions above, so the divergence vanishes to round-off).

Order in time: **first**, although the predictor is SSP-RK3. The RK stages are not projected, so
one step differs from RK3 on the projected dynamics by O(Δt²) (the walls and the inlet make the
projection and the advection fail to commute); measured 0.94 → 0.99 under halving Δt, and 3.0
when every stage is projected (tests/test_ns_channel.py).

The state is the ``(2, ny, nx)`` array [u on faces i = 1 … nx (the inlet face is known),
v on faces j = 0 … ny − 1 (row 0 is the wall, always 0; the top wall is not stored)]: every
unknown face exactly once, as an image the networks can read.

Sample parameters (one compiled step for every trajectory of a split): the Reynolds number
``re`` (swept by the splits) and the inflow centre ``y0`` ~ U[y0_low, y0_high] drawn per
trajectory.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from ml4dynamics.core.validation import require, require_non_negative, require_positive
from ml4dynamics.systems.base import ExactClosure, Physical, SystemConfig
from ml4dynamics.systems.poisson import ChannelPoisson


@dataclasses.dataclass(frozen=True)
class ChannelFlowConfig(SystemConfig):
    """Defaults are the paper's: [0, 4] × [0, 1], 128 × 32, Δt = 0.01, inflow exp(−50(y − y0)²),
    y0 ~ U[0.3, 0.7]."""

    dt: float = 0.01
    nx: int = 128
    ny: int = 32
    length: float = 4.0
    height: float = 1.0
    re: float = 100.0
    y0_low: float = 0.3
    y0_high: float = 0.7
    inflow_width: float = 50.0  # w in exp(−w (y − y0)²)
    transverse: float = 0.1  # amplitude a of the oscillating transverse inflow
    frequency: float = 1.0  # ω in sin(ω t)

    def __post_init__(self) -> None:
        require_positive(self.dt, "dt", "the time step")
        require(self.nx >= 4 and self.ny >= 4, "nx", "need nx, ny >= 4", "use e.g. 128 x 32")
        require_positive(self.length, "length", "the channel's length")
        require_positive(self.height, "height", "the channel's height")
        require(
            abs(self.length / self.nx - self.height / self.ny) <= 1e-12 * self.h,
            "nx",
            f"cells must be square: length/nx = {self.length / self.nx:g} but "
            f"height/ny = {self.height / self.ny:g}",
            "keep nx / ny = length / height (e.g. 128 x 32 or 256 x 64 for [0, 4] x [0, 1])",
        )
        require_positive(self.re, "re", "the Reynolds number")
        require(
            0 <= self.y0_low <= self.y0_high <= self.height,
            "y0_low",
            f"need 0 <= y0_low <= y0_high <= height, got [{self.y0_low}, {self.y0_high}]",
            "the inflow centre lies inside the channel, e.g. [0.3, 0.7]",
        )
        require_positive(self.inflow_width, "inflow_width", "w of the Gaussian inflow")
        require_non_negative(self.transverse, "transverse", "the transverse inflow's amplitude")
        require_non_negative(self.frequency, "frequency", "the transverse inflow's frequency")
        # explicit predictor: advective CFL (unit inflow speed) plus the diffusion number must
        # keep the scheme inside SSP-RK3's stability region with margin
        number = self.dt * (1 + self.transverse) / self.h + 4 * self.dt / (self.re * self.h**2)
        require(
            number <= 1.0,
            "dt",
            f"the explicit predictor is unstable: dt·(1 + a)/h + 4·dt/(Re·h²) = {number:.3g} > 1 "
            f"(h = {self.h:g}, Re = {self.re:g})",
            f"lower dt to <= {_round_down(self.dt / number)} or raise Re",
        )

    @property
    def h(self) -> float:
        return self.length / self.nx


def _round_down(x: float, digits: int = 3) -> float:
    """``x`` to ``digits`` significant digits, never above ``x`` (a limit to suggest)."""
    scale = 10 ** (digits - 1 - math.floor(math.log10(x)))
    return math.floor(x * scale) / scale


class ChannelFlow(ExactClosure):
    name: ClassVar[str] = "ns_channel"
    physical_params: ClassVar[Mapping[str, Physical]] = {
        "re": Physical(50.0, 1000.0, log=True, description="the Reynolds number"),
    }
    config_class: ClassVar[type[SystemConfig]] = ChannelFlowConfig
    sample_params: ClassVar[tuple[str, ...]] = ("re", "y0")
    config: ChannelFlowConfig

    def __init__(self, config: ChannelFlowConfig):
        super().__init__(config)
        self.poisson = ChannelPoisson(config.nx, config.ny, config.h)
        h = config.h
        self._y_cells = jnp.asarray((np.arange(config.ny) + 0.5) * h)  # rows of u and p
        self._y_faces = jnp.asarray(np.arange(config.ny + 1) * h)  # rows of v

    def draw_params(self, key: jax.Array) -> dict[str, jax.Array]:
        c = self.config
        return {"y0": jax.random.uniform(key, (), jnp.float64, c.y0_low, c.y0_high)}

    # -- shapes and coordinates ---------------------------------------------------------------
    @property
    def state_dims(self) -> tuple[str, ...]:
        return ("field", "x2", "x1")  # image layout: rows are y (x2), columns are x (x1)

    @property
    def state_shape(self) -> tuple[int, ...]:
        return (2, self.config.ny, self.config.nx)

    @property
    def closure_dims(self) -> tuple[str, ...]:
        return ("closure_field", "x2", "x1")

    @property
    def closure_shape(self) -> tuple[int, ...]:
        return (1, self.config.ny, self.config.nx)

    def coords(self) -> Mapping[str, np.ndarray]:
        # index positions: u sits on the east face of cell (j, i), v on its south face, p at
        # its centre; x1/x2 are the cell centres (the face offsets are in the scheme attribute)
        c = self.config
        return {
            "field": np.array(["u", "v"], dtype=object),
            "closure_field": np.array(["p"], dtype=object),
            "x1": (np.arange(c.nx) + 0.5) * c.h,
            "x2": (np.arange(c.ny) + 0.5) * c.h,
        }

    # -- boundary data --------------------------------------------------------------------------
    def _profile(self, y: jax.Array) -> jax.Array:
        return jnp.exp(-self.config.inflow_width * (y - self.param("y0")) ** 2)

    def inflow_u(self) -> jax.Array:
        """u on the inlet faces (rows at the cell centres), shape (ny,)."""
        return self._profile(self._y_cells)

    def inflow_v(self, t: jax.Array) -> jax.Array:
        """The transverse inflow v at x = 0 on the horizontal faces, shape (ny + 1,)."""
        c = self.config
        return c.transverse * self._profile(self._y_faces) * jnp.sin(c.frequency * t)

    # -- MAC fields -------------------------------------------------------------------------------
    def faces(self, u: jax.Array) -> tuple[jax.Array, jax.Array]:
        """State → full face arrays: u (ny, nx + 1) with the inlet, v (ny + 1, nx) with walls."""
        uf = jnp.concatenate([self.inflow_u()[:, None], u[0]], axis=1)
        zero = jnp.zeros((1, self.config.nx), u.dtype)
        vf = jnp.concatenate([zero, u[1, 1:], zero], axis=0)
        return uf, vf

    def divergence(self, u: jax.Array) -> jax.Array:
        """∇_h·u per cell, shape (ny, nx), with the inflow and the walls."""
        uf, vf = self.faces(u)
        return (uf[:, 1:] - uf[:, :-1] + vf[1:] - vf[:-1]) / self.config.h

    def gradient(self, p: jax.Array) -> jax.Array:
        """∇_h p on the state's faces, shape (2, ny, nx): zero on the walls and the inlet (not
        stored or Neumann), ghost −p beyond the outlet (p = 0 on the outlet face)."""
        h = self.config.h
        east = jnp.concatenate([p[:, 1:], -p[:, -1:]], axis=1)
        gx = (east - p) / h
        south = jnp.concatenate([p[:1], p[:-1]], axis=0)  # row 0: wall face, gradient 0
        gy = (p - south) / h
        return jnp.stack([gx, gy])

    def _tendency(self, u: jax.Array, t: jax.Array) -> jax.Array:
        """Advection and diffusion of the state's faces, (2, ny, nx) (row 0 of v: 0)."""
        h, nu = self.config.h, 1.0 / self.param("re")
        uf, vf = self.faces(u)
        # u on faces i = 1 … nx: ghost column beyond the outlet copies the last (zero gradient),
        # ghost rows beyond the walls are minus the first (no slip on the wall)
        ux = jnp.concatenate([uf, uf[:, -1:]], axis=1)
        uy = jnp.concatenate([-uf[:1], uf, -uf[-1:]], axis=0)
        uc = uf[:, 1:]
        du_dx = (ux[:, 2:] - ux[:, :-2]) / (2 * h)
        du_dy = (uy[2:, 1:] - uy[:-2, 1:]) / (2 * h)
        lap_u = (ux[:, 2:] + ux[:, :-2] + uy[2:, 1:] + uy[:-2, 1:] - 4 * uc) / h**2
        vx = jnp.concatenate([vf, vf[:, -1:]], axis=1)  # v beside the outlet face
        v_at_u = 0.25 * (vx[:-1, :-1] + vx[:-1, 1:] + vx[1:, :-1] + vx[1:, 1:])
        ru = -(uc * du_dx + v_at_u * du_dy) + nu * lap_u

        # v on the interior faces j = 1 … ny − 1: ghost column before the inlet makes the face
        # value the transverse inflow, the one beyond the outlet copies the last
        vc = vf[1:-1]
        v_in = self.inflow_v(t)[1:-1, None]
        vxx = jnp.concatenate([2 * v_in - vc[:, :1], vc, vc[:, -1:]], axis=1)
        dv_dx = (vxx[:, 2:] - vxx[:, :-2]) / (2 * h)
        dv_dy = (vf[2:] - vf[:-2]) / (2 * h)
        lap_v = (vxx[:, 2:] + vxx[:, :-2] + vf[2:] + vf[:-2] - 4 * vc) / h**2
        u_at_v = 0.25 * (uf[:-1, :-1] + uf[:-1, 1:] + uf[1:, :-1] + uf[1:, 1:])
        rv = -(u_at_v * dv_dx + vc * dv_dy) + nu * lap_v
        rv = jnp.concatenate([jnp.zeros((1, self.config.nx), u.dtype), rv], axis=0)
        return jnp.stack([ru, rv])

    def predictor(self, u: jax.Array, t: jax.Array) -> jax.Array:
        """u*: advection and diffusion over one step by SSP-RK3 (no pressure)."""
        dt = self.config.dt
        u1 = u + dt * self._tendency(u, t)
        u2 = 0.75 * u + 0.25 * (u1 + dt * self._tendency(u1, t + dt))
        return u / 3 + (2 / 3) * (u2 + dt * self._tendency(u2, t + 0.5 * dt))

    # -- the protocol -------------------------------------------------------------------------
    def initial_state(self, key: jax.Array) -> jax.Array:
        """The inflow jet carried unchanged down the channel (divergence-free, v = 0); the
        trajectory's randomness is its inflow centre y0 (a sample parameter)."""
        c = self.config
        u = jnp.broadcast_to(self.inflow_u()[:, None], (c.ny, c.nx))
        return jnp.stack([u, jnp.zeros_like(u)])

    def closure(self, u: jax.Array, t: jax.Array) -> jax.Array:
        """The exact pressure: Δ_h p = ∇_h·u*/Δt (the projection's Poisson equation)."""
        u_star = self.predictor(u, t)
        return self.poisson.solve(self.divergence(u_star) / self.config.dt)[None]

    def step(self, u: jax.Array, y: jax.Array, t: jax.Array) -> jax.Array:
        return self.predictor(u, t) - self.config.dt * self.gradient(y[0])

    @property
    def scheme(self) -> str:
        return (
            "MAC grid (u on vertical faces, v on horizontal faces, p at cell centres); "
            "predictor: central-difference advection and 5-point diffusion by SSP-RK3; "
            "projection u = u* - dt grad p with the exact pressure Poisson solve "
            "(separable DCT-IV/DCT-II eigenbases)"
        )

    @property
    def boundary(self) -> str:
        return (
            "not periodic: no-slip walls at y = 0 and y = height; Gaussian inflow "
            "u = exp(-w (y - y0)^2), v = a exp(-w (y - y0)^2) sin(omega t) at x = 0; "
            "zero-gradient outflow at x = length; pressure Neumann on walls and inlet, "
            "p = 0 on the outlet face"
        )
