"""Diagnostics of 2D incompressible flow in vorticity form on a periodic square [0, L)²: the
velocity of a vorticity field, its isotropic kinetic energy spectrum, and the vorticity
correlation of two fields (the turbulence metrics of Kochkov et al. 2021).

Conventions, shared with the solver (``systems/kolmogorov.py``): a field's last two axes are
(x1, x2) on ``n × n`` points; the velocity (u1, u2) = (∂₂ψ, −∂₁ψ) of the stream function ψ is
divergence-free, and ω = ∂₁u2 − ∂₂u1 = −Δψ. The velocity has zero mean (ω does not determine a
uniform flow), and the derivatives of the Nyquist modes (k = −n/2 along x1, n/2 along x2), which a
real field cannot hold as waves, are taken as zero.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ml4dynamics.systems.spectral import wavenumbers2

TWO_PI = 2 * np.pi


def _derivative_symbols(n: int, length: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``rfft2`` symbols ``i k1``, ``i k2`` (zero on the Nyquist modes) and ``1/|k|²`` (zero
    at k = 0)."""
    k1, k2 = wavenumbers2(n, length)
    nyquist = np.pi * n / length
    k1 = np.where(np.isclose(np.abs(k1), nyquist), 0.0, k1)
    k2 = np.where(np.isclose(k2, nyquist), 0.0, k2)
    k_squared = k1**2 + k2**2
    inverse = np.divide(1.0, k_squared, out=np.zeros_like(k_squared), where=k_squared > 0)
    return 1j * k1, 1j * k2, inverse


def velocity_hat(omega_hat: jax.Array, length: float = TWO_PI) -> jax.Array:
    """The ``rfft2`` coefficients of the velocity (u1, u2) of the vorticity with coefficients
    ``omega_hat`` ``(..., n, n//2 + 1)``; shape ``(..., 2, n, n//2 + 1)``."""
    d1, d2, inverse = _derivative_symbols(omega_hat.shape[-2], length)
    psi_hat = omega_hat * inverse  # ψ = −Δ⁻¹ω
    return jnp.stack([d2 * psi_hat, -d1 * psi_hat], axis=-3)


def velocity(omega: jax.Array, length: float = TWO_PI) -> jax.Array:
    """The velocity (u1, u2) of a vorticity field ``(..., n, n)``; shape ``(..., 2, n, n)``."""
    n = omega.shape[-1]
    return jnp.fft.irfft2(velocity_hat(jnp.fft.rfft2(omega), length), s=(n, n))


def energy_spectrum(omega: jax.Array, length: float = TWO_PI) -> tuple[np.ndarray, jax.Array]:
    """The isotropic kinetic energy spectrum of a vorticity field ``(..., n, n)``: wavenumbers
    ``k_m = 2π m / L`` (m = 0, 1, …) and ``E(k_m) = Σ_{m − ½ ≤ |k| L/2π < m + ½} ½|û(k)|² / n⁴``,
    summed over the shell, shape ``(..., shells)``. By Parseval, Σ_m E(k_m) is the mean kinetic
    energy ½⟨|u|²⟩ of the field's ``velocity``. For one wave ω = A cos(k·x),
    E(|k|) = A² / (4|k|²)."""
    n = omega.shape[-1]
    u_hat = velocity_hat(jnp.fft.rfft2(omega), length)
    density = 0.5 * jnp.sum(jnp.abs(u_hat) ** 2, axis=-3) / n**4
    # the rfft half holds the columns k2 = 1 .. n/2 - 1 for themselves and their mirror images
    weight = np.full(n // 2 + 1, 2.0)
    weight[0] = weight[-1] = 1.0
    k1, k2 = wavenumbers2(n, length)
    shell = np.rint(np.hypot(k1, k2) * length / TWO_PI).astype(int).ravel()
    shells = int(shell.max()) + 1
    batch = density.shape[:-2]
    values = jnp.moveaxis((density * weight).reshape(*batch, -1), -1, 0)
    spectrum = jax.ops.segment_sum(values, jnp.asarray(shell), num_segments=shells)
    return TWO_PI / length * np.arange(shells), jnp.moveaxis(spectrum, 0, -1)


def vorticity_correlation(a: jax.Array, b: jax.Array) -> jax.Array:
    """The Pearson correlation of two fields over their last two axes, centred (each field's
    spatial mean removed), one value per frame: ``ρ = Σ a'b' / √(Σ a'² Σ b'²)`` with
    ``a' = a − ⟨a⟩``; shape ``a.shape[:-2]``. Vorticity on a periodic domain has zero mean, so
    there centring changes nothing."""
    a = a - jnp.mean(a, axis=(-2, -1), keepdims=True)
    b = b - jnp.mean(b, axis=(-2, -1), keepdims=True)
    covariance = jnp.sum(a * b, axis=(-2, -1))
    return covariance / jnp.sqrt(jnp.sum(a * a, axis=(-2, -1)) * jnp.sum(b * b, axis=(-2, -1)))
