"""Pseudo-spectral building blocks on periodic grids: wavenumbers, Orszag's 2/3 dealiasing, the
spectral restriction of a fine grid to a coarse one, and the fourth-order exponential time
differencing Runge–Kutta scheme (ETDRK4, Cox & Matthews 2002) with its coefficients evaluated by
contour integrals (Kassam & Trefethen 2005).

Everything acts on the last axis of real fields through ``rfft``, or on the last two (a square
grid, the ``2`` variants) through ``rfft2``; the coefficients are computed once, in
float64/complex128 with NumPy, when a system is built.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np


def wavenumbers(n: int, length: float) -> np.ndarray:
    """Angular wavenumbers 2πk/L of ``rfft`` on ``n`` points of a period ``length``."""
    return 2 * np.pi * np.fft.rfftfreq(n, d=length / n)


def dealias_mask(n: int) -> np.ndarray:
    """Orszag's 2/3 rule on ``rfft`` modes: keep |k| < n/3 (the product of two fields holding
    only these modes aliases nothing onto them)."""
    return np.arange(n // 2 + 1) < n / 3


def restrict(u: jax.Array, n_coarse: int) -> jax.Array:
    """Spectral restriction along the last axis: the coarse grid's samples of the fine field's
    Fourier modes |k| < n_coarse/2 (the coarse Nyquist mode, which a real coarse field cannot hold
    as a travelling wave, is dropped). Exact for fields with no finer modes. Any even
    ``n_coarse`` up to ``n`` works (the speed-up ladder uses grids that do not divide ``n``)."""
    n = u.shape[-1]
    if n_coarse > n or n_coarse % 2:
        raise ValueError(
            f"cannot restrict {n} points to {n_coarse}: it must be an even number <= {n}"
        )
    u_hat = jnp.fft.rfft(u)[..., : n_coarse // 2 + 1] * (n_coarse / n)
    u_hat = u_hat.at[..., n_coarse // 2].set(0.0)
    return jnp.fft.irfft(u_hat, n=n_coarse)


def prolong(u: jax.Array, n: int) -> jax.Array:
    """The inverse of ``restrict`` along the last axis: the field on ``n`` points holding the
    coarse field's Fourier modes |k| < n_coarse/2 (its Nyquist mode dropped) and no others, so
    ``restrict(prolong(u, n), n_coarse)`` is ``u`` less its Nyquist mode; a trigonometric
    polynomial of those modes is interpolated exactly."""
    m = u.shape[-1]
    if n < m or m % 2:
        raise ValueError(f"cannot prolong {m} points to {n}: it needs an even {m} <= {n}")
    u_hat = jnp.fft.rfft(u).at[..., m // 2].set(0.0) * (n / m)
    pad = [(0, 0)] * (u.ndim - 1) + [(0, n // 2 - m // 2)]
    return jnp.fft.irfft(jnp.pad(u_hat, pad), n=n)


def wavenumbers2(n: int, length: float) -> tuple[np.ndarray, np.ndarray]:
    """Angular wavenumbers ``(k1, k2)`` of ``rfft2`` on an ``n × n`` grid of period ``length``
    along both axes, each of shape ``(n, n//2 + 1)``: ``k1`` along the first axis (both signs),
    ``k2`` along the last (the ``rfft`` half)."""
    k1 = 2 * np.pi * np.fft.fftfreq(n, d=length / n)
    k1, k2 = np.meshgrid(k1, wavenumbers(n, length), indexing="ij")
    return k1, k2


def dealias_mask2(n: int) -> np.ndarray:
    """The 2/3 rule on the ``rfft2`` modes of an ``n × n`` grid, axis by axis (a square of kept
    modes): |k1| < n/3 and |k2| < n/3, shape ``(n, n//2 + 1)``."""
    k1 = np.abs(np.fft.fftfreq(n, d=1 / n))
    return (k1 < n / 3)[:, None] & dealias_mask(n)[None, :]


def restrict2_hat(v: jax.Array, n_coarse: int) -> jax.Array:
    """The ``rfft2`` coefficients of the spectral restriction of a square field to ``n_coarse²``
    points, from its own ``rfft2`` coefficients ``v`` (last two axes ``(n, n//2 + 1)``): the
    modes with |k1|, |k2| < n_coarse/2, rescaled to the coarse grid's transform; the coarse
    Nyquist row and column are zero. Any even ``n_coarse`` up to ``n``, as ``restrict``."""
    n = v.shape[-2]
    if v.shape[-1] != n // 2 + 1 or n_coarse > n or n_coarse % 2:
        raise ValueError(
            f"cannot restrict a {n}-point square grid to {n_coarse}: it must be an even number "
            f"<= {n}"
        )
    h = n_coarse // 2
    kept = v[..., :, :h]  # the columns k2 = 0 .. h-1; the coarse Nyquist column h is zero
    rows = [kept[..., :h, :], jnp.zeros_like(kept[..., :1, :]), kept[..., n - h + 1 :, :]]
    coarse = jnp.concatenate(rows, axis=-2)  # k1 = 0 .. h-1, the Nyquist row, -(h-1) .. -1
    coarse = jnp.concatenate([coarse, jnp.zeros_like(coarse[..., :1])], axis=-1)
    return coarse * (n_coarse / n) ** 2


def prolong2_hat(v: jax.Array, n: int) -> jax.Array:
    """The inverse of ``restrict2_hat``: the ``rfft2`` coefficients ``(n, n//2 + 1)`` of the
    field on ``n²`` points holding the modes |k1|, |k2| < m/2 of the coarse coefficients ``v``
    (``(m, m//2 + 1)``; their Nyquist row and column dropped) and no others."""
    m = v.shape[-2]
    if v.shape[-1] != m // 2 + 1 or n < m or m % 2:
        raise ValueError(f"cannot prolong a {m}-point square grid to {n}: it needs {m} <= {n}")
    h = m // 2
    out = jnp.zeros((*v.shape[:-2], n, n // 2 + 1), dtype=v.dtype)
    scaled = v * (n / m) ** 2
    out = out.at[..., :h, :h].set(scaled[..., :h, :h])  # k1 = 0 .. h-1
    return out.at[..., n - h + 1 :, :h].set(scaled[..., m - h + 1 :, :h])  # k1 = -(h-1) .. -1


def restrict2(u: jax.Array, n_coarse: int) -> jax.Array:
    """Spectral restriction of a square field (the last two axes) to ``n_coarse × n_coarse``
    points: ``restrict`` along both axes (modes |k1|, |k2| < n_coarse/2). Exact for fields with no
    finer modes."""
    n = u.shape[-1]
    if u.shape[-2] != n:
        raise ValueError(f"restrict2 needs a square grid, got {u.shape[-2:]}")
    coarse = restrict2_hat(jnp.fft.rfft2(u), n_coarse)
    return jnp.fft.irfft2(coarse, s=(n_coarse, n_coarse))


@dataclasses.dataclass(frozen=True)
class ETDRK4:
    """The ETDRK4 coefficients of a diagonal linear operator ``lin`` (its symbol on the ``rfft``
    modes) and time step ``dt``: ``E = e^{dt L}``, ``E2 = e^{dt L/2}`` and the φ-function
    combinations Q, f1, f2, f3 of Kassam & Trefethen (2005), each evaluated as the mean over
    ``points`` points of a circle of radius 1 around every ``dt L``, which avoids the cancellation
    of the closed forms for small |dt L|."""

    e: np.ndarray
    e2: np.ndarray
    q: np.ndarray
    f1: np.ndarray
    f2: np.ndarray
    f3: np.ndarray

    @classmethod
    def build(cls, lin: np.ndarray, dt: float, points: int = 64) -> ETDRK4:
        real = np.isrealobj(lin) or bool(np.all(np.imag(lin) == 0))
        z = dt * np.asarray(lin, dtype=np.complex128)
        roots = np.exp(1j * np.pi * (np.arange(1, points + 1) - 0.5) / points)
        r = z[..., None] + roots  # the contour around each dt·L
        er, er2 = np.exp(r), np.exp(r / 2)

        def mean(values: np.ndarray) -> np.ndarray:
            out = dt * values.mean(axis=-1)
            return out.real if real else out  # a real operator has real coefficients

        return cls(
            e=np.exp(z).real if real else np.exp(z),
            e2=np.exp(z / 2).real if real else np.exp(z / 2),
            q=mean((er2 - 1) / r),
            f1=mean((-4 - r + er * (4 - 3 * r + r**2)) / r**3),
            f2=mean((2 + r + er * (r - 2)) / r**3),
            f3=mean((-4 - 3 * r - r**2 + er * (4 - r)) / r**3),
        )

    def as_jax(self) -> ETDRK4:
        """The same coefficients as JAX arrays (built once, outside any trace)."""
        return ETDRK4(
            **{f.name: jnp.asarray(getattr(self, f.name)) for f in dataclasses.fields(self)}
        )

    def step(self, v: jax.Array, nonlinear: Callable[[jax.Array], jax.Array]) -> jax.Array:
        """One step of ``v' = L v + N(v)`` for Fourier coefficients ``v`` (``nonlinear`` maps
        coefficients to coefficients)."""
        e, e2, q = self.e, self.e2, self.q
        nv = nonlinear(v)
        a = e2 * v + q * nv
        na = nonlinear(a)
        b = e2 * v + q * na
        nb = nonlinear(b)
        c = e2 * a + q * (2 * nb - nv)
        nc = nonlinear(c)
        return e * v + self.f1 * nv + 2 * self.f2 * (na + nb) + self.f3 * nc
