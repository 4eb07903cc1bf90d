"""Exact pressure Poisson solve on a cell-centred grid of a channel (for ``ns_channel``).

Δ_h p = f on an ``nx × ny`` grid of square cells of side h over [0, nx·h] × [0, ny·h], with the
5-point Laplacian and the channel's pressure boundary conditions imposed through ghost cells:

- ∂p/∂n = 0 on the walls y = 0, ny·h and at the inlet x = 0 (ghost = mirror of the interior);
- p = 0 at the outlet x = nx·h, on the face (ghost = minus the interior).

The operator separates, Δ_h = D_xx ⊗ I + I ⊗ D_yy, and both 1D operators have closed-form
eigenvectors: cos(π(k + ½)(i + ½)/nx) in x (Neumann–Dirichlet, a DCT-IV basis) and
cos(πk(j + ½)/ny) in y (Neumann–Neumann, a DCT-II basis), with eigenvalues
−(4/h²) sin²(π(k + ½)/(2nx)) and −(4/h²) sin²(πk/(2ny)). The solve is two dense basis changes per
axis and a pointwise division: exact to round-off, not an iteration stopped early. The Dirichlet
outlet makes every eigenvalue sum negative, so the problem is nonsingular.

Arrays are ``(ny, nx)`` (y first, like an image of the channel), float64.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np


def _basis(n: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
    """Orthonormal eigenvectors (columns) and eigenvalues of the unit-spacing 1D operator."""
    k = np.arange(n) + shift
    i = np.arange(n) + 0.5
    q = np.cos(np.pi * np.outer(i, k) / n)
    q /= np.linalg.norm(q, axis=0)
    return q, -4.0 * np.sin(np.pi * k / (2 * n)) ** 2


class ChannelPoisson:
    """Δ_h p = f with Neumann walls and inlet and a Dirichlet outlet (see the module docstring)."""

    def __init__(self, nx: int, ny: int, h: float):
        if nx < 2 or ny < 2 or not h > 0:
            raise ValueError(f"need nx, ny >= 2 and h > 0, got nx={nx}, ny={ny}, h={h}")
        self.nx, self.ny, self.h = nx, ny, h
        qx, lx = _basis(nx, 0.5)  # Neumann at x = 0, Dirichlet at x = nx·h
        qy, ly = _basis(ny, 0.0)  # Neumann at both walls
        self._qx, self._qy = jnp.asarray(qx), jnp.asarray(qy)
        self._eig = jnp.asarray((ly[:, None] + lx[None, :]) / h**2)

    def solve(self, f: jnp.ndarray) -> jnp.ndarray:
        """p with Δ_h p = f, shape ``(ny, nx)``."""
        g = self._qy.T @ f @ self._qx
        return self._qy @ (g / self._eig) @ self._qx.T

    def apply(self, p: jnp.ndarray) -> jnp.ndarray:
        """Δ_h p with the boundary conditions (the operator ``solve`` inverts)."""
        left = p[:, :1]  # Neumann inlet: ghost = p
        right = -p[:, -1:]  # Dirichlet outlet on the face: ghost = −p
        padded_x = jnp.concatenate([left, p, right], axis=1)
        padded_y = jnp.concatenate([p[:1], p, p[-1:]], axis=0)  # Neumann walls
        dxx = padded_x[:, 2:] - 2 * p + padded_x[:, :-2]
        dyy = padded_y[2:] - 2 * p + padded_y[:-2]
        return (dxx + dyy) / self.h**2
