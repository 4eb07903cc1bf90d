"""Pseudo-spectral building blocks on periodic grids: wavenumbers, dealiased products (3/2 zero
padding, or Orszag's 2/3 rule), the
spectral restriction of a fine grid to a coarse one and its inverse, random smooth fields, the
fourth-order exponential time differencing Runge–Kutta scheme (ETDRK4, Cox & Matthews 2002) with
its coefficients evaluated by contour integrals (Kassam & Trefethen 2005), and the solver a PDE
becomes when it names its linear symbol and its nonlinear term (``SpectralSolver``).

Everything acts on the last axis of real fields through ``rfft``, or on the last two (a square
grid, the ``2`` variants) through ``rfft2``; ``PeriodicGrid`` picks the one its dimension needs.
The coefficients are computed once, in float64/complex128 with NumPy, when a solver is built.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

#: how a solver computes the products of its nonlinear term without aliasing:
#: ``padded`` (the default) evaluates them on ``padded_size(n)`` points per axis from the
#: zero-padded coefficients, so every mode the grid carries (|k| < n/2) is advected exactly;
#: ``two_thirds`` applies Orszag's rule, which keeps only |k| < n/3 in and out of the product and
#: leaves the top third of the carried modes unadvected (kept to show that difference)
Dealiasing = Literal["padded", "two_thirds"]
DEALIASING: tuple[str, ...] = ("padded", "two_thirds")


def padded_size(n: int) -> int:
    """The even number of points ≥ 3n/2 on which a quadratic product of two fields with modes
    |k| < n/2 aliases nothing onto those modes (its aliases land at |k| ≥ n/2 + 2)."""
    return 2 * -(-3 * n // 4)


def wavenumbers(n: int, length: float) -> np.ndarray:
    """Angular wavenumbers 2πk/L of ``rfft`` on ``n`` points of a period ``length``."""
    return 2 * np.pi * np.fft.rfftfreq(n, d=length / n)


def dealias_mask(n: int) -> np.ndarray:
    """Orszag's 2/3 rule on ``rfft`` modes: keep |k| < n/3 (the product of two fields holding
    only these modes aliases nothing onto them)."""
    return np.arange(n // 2 + 1) < n / 3


def restrict_hat(v: jax.Array, n_coarse: int, n: int) -> jax.Array:
    """The ``rfft`` coefficients of the spectral restriction of a field on ``n`` points to
    ``n_coarse``, from its own coefficients ``v`` (last axis ``n//2 + 1``): the modes
    |k| < n_coarse/2, rescaled to the coarse grid's transform; the coarse Nyquist mode, which a
    real coarse field cannot hold as a travelling wave, is zero. Any even ``n_coarse`` up to
    ``n`` (the speed-up ladder uses grids that do not divide ``n``)."""
    if n_coarse > n or n_coarse % 2:
        raise ValueError(
            f"cannot restrict {n} points to {n_coarse}: it must be an even number <= {n}"
        )
    v = v[..., : n_coarse // 2 + 1] * (n_coarse / n)
    return v.at[..., n_coarse // 2].set(0.0)


def restrict(u: jax.Array, n_coarse: int) -> jax.Array:
    """Spectral restriction along the last axis: the coarse grid's samples of the fine field's
    Fourier modes |k| < n_coarse/2 (``restrict_hat``). Exact for fields with no finer modes."""
    return jnp.fft.irfft(restrict_hat(jnp.fft.rfft(u), n_coarse, u.shape[-1]), n=n_coarse)


def prolong_hat(v: jax.Array, n: int) -> jax.Array:
    """The inverse of ``restrict_hat``: the ``rfft`` coefficients ``(n//2 + 1,)`` of the field on
    ``n`` points holding the modes |k| < m/2 of the coefficients ``v`` of a field on ``m``
    points (its Nyquist mode dropped) and no others."""
    m = 2 * (v.shape[-1] - 1)
    if n < m:
        raise ValueError(f"cannot prolong {m} points to {n}: it needs an even {m} <= {n}")
    v = v.at[..., m // 2].set(0.0) * (n / m)
    pad = [(0, 0)] * (v.ndim - 1) + [(0, n // 2 - m // 2)]
    return jnp.pad(v, pad)


def prolong(u: jax.Array, n: int) -> jax.Array:
    """The inverse of ``restrict`` along the last axis: the field on ``n`` points holding the
    coarse field's Fourier modes |k| < n_coarse/2 (its Nyquist mode dropped) and no others, so
    ``restrict(prolong(u, n), n_coarse)`` is ``u`` less its Nyquist mode; a trigonometric
    polynomial of those modes is interpolated exactly."""
    m = u.shape[-1]
    if n < m or m % 2:
        raise ValueError(f"cannot prolong {m} points to {n}: it needs an even {m} <= {n}")
    return jnp.fft.irfft(prolong_hat(jnp.fft.rfft(u), n), n=n)


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


@dataclasses.dataclass(frozen=True)
class PeriodicGrid:
    """``n`` points per axis on [0, length)^dims, dims 1 or 2 (a square), its real transforms
    (``rfft``/``irfft`` along the last axis, ``rfft2``/``irfft2`` along the last two) and the
    grid its products are taken on (``dealiasing``: ``to_product``, ``from_product``)."""

    n: int
    length: float
    dims: int = 1
    dealiasing: Dealiasing = "padded"

    def __post_init__(self) -> None:
        if self.dealiasing not in DEALIASING:
            raise ValueError(
                f"dealiasing must be one of {', '.join(DEALIASING)}, got {self.dealiasing!r}"
            )

    def to_product(self, v: jax.Array) -> jax.Array:
        """The field with coefficients ``v`` sampled where products are taken: on
        ``padded_size(n)`` points per axis from its modes |k| < n/2 (``padded``), or on this
        grid from its modes |k| < n/3 (``two_thirds``)."""
        if self.dealiasing == "two_thirds":
            return self.irfft(v * self.dealias_mask())
        m = padded_size(self.n)
        if self.dims == 1:
            return jnp.fft.irfft(prolong_hat(v, m), n=m)
        return jnp.fft.irfft2(prolong2_hat(v, m), s=(m, m))

    def from_product(self, f: jax.Array) -> jax.Array:
        """This grid's coefficients of a product sampled by ``to_product``, dealiased: its modes
        |k| < n/2, the Nyquist mode zero (``padded``), or |k| < n/3 (``two_thirds``)."""
        if self.dealiasing == "two_thirds":
            return self.rfft(f) * self.dealias_mask()
        if self.dims == 1:
            return restrict_hat(jnp.fft.rfft(f), self.n, f.shape[-1])
        return restrict2_hat(jnp.fft.rfft2(f), self.n)

    def points(self) -> np.ndarray:
        """The positions along one axis."""
        return np.arange(self.n) * (self.length / self.n)

    def wavenumbers(self) -> tuple[np.ndarray, ...]:
        """Angular wavenumbers of the transform's modes, one array per axis."""
        if self.dims == 1:
            return (wavenumbers(self.n, self.length),)
        return wavenumbers2(self.n, self.length)

    def dealias_mask(self) -> np.ndarray:
        """The 2/3 rule on the transform's modes (axis by axis in 2D)."""
        return dealias_mask(self.n) if self.dims == 1 else dealias_mask2(self.n)

    def rfft(self, u: jax.Array) -> jax.Array:
        return jnp.fft.rfft(u) if self.dims == 1 else jnp.fft.rfft2(u)

    def irfft(self, v: jax.Array) -> jax.Array:
        if self.dims == 1:
            return jnp.fft.irfft(v, n=self.n)
        return jnp.fft.irfft2(v, s=(self.n, self.n))

    def restrict_hat(self, v: jax.Array, n_coarse: int) -> jax.Array:
        """Coefficients of this grid's field restricted to ``n_coarse`` points per axis."""
        if self.dims == 1:
            return restrict_hat(v, n_coarse, self.n)
        return restrict2_hat(v, n_coarse)

    def prolong_hat(self, v: jax.Array, n: int) -> jax.Array:
        """Coefficients on ``n`` points per axis of this grid's field with coefficients ``v``."""
        return prolong_hat(v, n) if self.dims == 1 else prolong2_hat(v, n)

    def restrict(self, u: jax.Array, n_coarse: int) -> jax.Array:
        """A field on this grid, restricted spectrally to ``n_coarse`` points per axis."""
        return restrict(u, n_coarse) if self.dims == 1 else restrict2(u, n_coarse)


def smooth_random_field(key: jax.Array, grid: PeriodicGrid, modes: int, std: float) -> jax.Array:
    """A random smooth mean-free field on ``grid``: the waves with wavenumber index 1 … ``modes``
    (in 2D: |k1|, |k2| ≤ ``modes``, the mean left out) with independent normal coefficients,
    scaled to standard deviation ``std``. The draw does not depend on the grid's size."""
    n = grid.n
    if grid.dims == 1:
        parts = jax.random.normal(key, (2, modes), dtype=jnp.float64)
        coeffs = jnp.zeros(n // 2 + 1, dtype=jnp.complex128)
        coeffs = coeffs.at[1 : modes + 1].set(parts[0] + 1j * parts[1])
        u = jnp.fft.irfft(coeffs, n=n)
        return std * u / jnp.std(u)
    m = modes
    parts = jax.random.normal(key, (2, 2 * m + 1, m + 1), dtype=jnp.float64)
    low = (parts[0] + 1j * parts[1]).at[m, 0].set(0.0)  # rows k1 = -m .. m; no mean
    coeffs = jnp.zeros((n, n // 2 + 1), dtype=jnp.complex128)
    coeffs = coeffs.at[: m + 1, : m + 1].set(low[m:]).at[n - m :, : m + 1].set(low[:m])
    u = jnp.fft.irfft2(coeffs, s=(n, n))
    return std * u / jnp.std(u)


class SpectralSolver(abc.ABC):
    """A PDE ``v' = L v + N(v)`` on a periodic grid, stepped by ETDRK4 of ``dt`` on the Fourier
    coefficients ``v``: the PDE names its linear symbol ``L`` (``linear_symbol``, diagonal on
    the grid's modes, integrated exactly; coefficients computed once here) and its nonlinear
    term ``N`` (``nonlinear``). The filter closure enters as a flux ``(dims, *grid)`` added to
    the PDE's own dealiased one (``flux_hat``), held fixed over the step (``source``)."""

    def __init__(self, grid: PeriodicGrid, dt: float) -> None:
        self.grid = grid
        self.n = grid.n
        self.coefficients = ETDRK4.build(self.linear_symbol(), dt).as_jax()

    @abc.abstractmethod
    def linear_symbol(self) -> np.ndarray:
        """``L`` on the transform's modes of ``self.grid`` (NumPy, float64 or complex128)."""

    @abc.abstractmethod
    def nonlinear(self, v: jax.Array, source: jax.Array | float) -> jax.Array:
        """``N(v)`` with ``source`` (from ``source``) in Fourier space."""

    @abc.abstractmethod
    def source(self, extra: jax.Array | None) -> jax.Array | float:
        """The part of the nonlinear term held fixed over a step: any forcing, and the extra flux
        with coefficients ``extra`` ``(dims, *modes)`` (None: no extra flux)."""

    @abc.abstractmethod
    def flux_hat(self, v: jax.Array) -> jax.Array:
        """The coefficients ``(dims, *modes)`` of the dealiased flux whose divergence is the
        nonlinear term (what the filter closure's sub-grid part adds to)."""

    def step_hat(self, v: jax.Array, extra: jax.Array | None = None) -> jax.Array:
        """One step of the coefficients ``v``; ``extra``: coefficients of an added flux."""
        source = self.source(extra)
        return self.coefficients.step(v, lambda w: self.nonlinear(w, source))

    def step(self, u: jax.Array, flux: jax.Array | None = None) -> jax.Array:
        """One step of a field ``(*grid)``; ``flux`` ``(dims, *grid)`` or None."""
        extra = None if flux is None else self.grid.rfft(flux)
        return self.grid.irfft(self.step_hat(self.grid.rfft(u), extra))


class Convection1D(SpectralSolver):
    """``u_t = L u − ½ (u²)_x`` on [0, length), periodic (the conservative form of u u_x):
    the nonlinear term −½ ik FFT(u²) with u² dealiased (``dealiasing``: zero-padded to 3/2 by
    default, or the 2/3 rule); the flux of the filter closure is added to u². A PDE of this form
    (Burgers, Kuramoto–Sivashinsky) names only its symbol ``L(k)`` (``symbol``)."""

    def __init__(self, n: int, length: float, dt: float, dealiasing: Dealiasing = "padded"):
        super().__init__(PeriodicGrid(n, length, dealiasing=dealiasing), dt)
        self._derivative = jnp.asarray(-0.5j * self.grid.wavenumbers()[0])

    @abc.abstractmethod
    def symbol(self, k: np.ndarray) -> np.ndarray:
        """``L`` at the angular wavenumbers ``k``."""

    def linear_symbol(self) -> np.ndarray:
        return self.symbol(self.grid.wavenumbers()[0])

    def square_hat(self, v: jax.Array) -> jax.Array:
        """The coefficients of the dealiased product u² of the field with coefficients ``v``."""
        u = self.grid.to_product(v)
        return self.grid.from_product(u * u)

    def flux_hat(self, v: jax.Array) -> jax.Array:
        return self.square_hat(v)[None]

    def source(self, extra: jax.Array | None) -> jax.Array | float:
        return 0.0 if extra is None else extra[0]

    def nonlinear(self, v: jax.Array, source: jax.Array | float = 0.0) -> jax.Array:
        return self._derivative * (self.square_hat(v) + source)
