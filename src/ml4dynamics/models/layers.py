"""Building blocks shared by the convolutional networks, for fields on a grid of any dimension.

Fields are stored channel-first ``(..., channels, n1, ..., n_d)``; Flax convolutions want
channel-last, so the networks transpose on the way in and out. ``ndim`` is always the number of
spatial dimensions ``d``. Parameters and arithmetic in the network's ``dtype`` (float64 or
float32); the networks take and return float64 fields (the package's dtype policy) and cast at
their boundary, so the solvers and the data never see float32.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

F64 = jnp.float64
#: the dtypes a network may compute in (``dtype`` of a model config in params.yaml)
DTYPES = {"float32": jnp.float32, "float64": jnp.float64}


def padding(periodic: bool) -> str:
    """Circular padding on a periodic domain, zero padding ("SAME") otherwise."""
    return "CIRCULAR" if periodic else "SAME"


def to_channels_last(u: jax.Array, ndim: int) -> jax.Array:
    """``(..., C, n1, ..., n_d)`` → ``(..., n1, ..., n_d, C)``."""
    return jnp.moveaxis(u, -ndim - 1, -1)


def to_channels_first(h: jax.Array, ndim: int) -> jax.Array:
    """``(..., n1, ..., n_d, C)`` → ``(..., C, n1, ..., n_d)``."""
    return jnp.moveaxis(h, -1, -ndim - 1)


def conv(
    a: int, b: int, ndim: int, pad: str, *, rngs: nnx.Rngs, size: int = 3, dtype=F64
) -> nnx.Conv:
    """A ``size``^d convolution from ``a`` to ``b`` channels (channel-last) in ``dtype``."""
    return nnx.Conv(
        a,
        b,
        kernel_size=(size,) * ndim,
        padding=pad,
        dtype=dtype,
        param_dtype=dtype,
        rngs=rngs,
    )


def dense(a: int, b: int, *, rngs: nnx.Rngs, dtype=F64) -> nnx.Linear:
    """A dense layer from ``a`` to ``b`` features (the last axis) in ``dtype``."""
    return nnx.Linear(a, b, dtype=dtype, param_dtype=dtype, rngs=rngs)


def cast_in(u: jax.Array, dtype) -> jax.Array:
    """A float64 field entering a network that computes in ``dtype``."""
    return u.astype(dtype)


def cast_out(h: jax.Array) -> jax.Array:
    """A network's result leaving it: float64, whatever the network computed in."""
    return h.astype(F64)


class ConvBlock(nnx.Module):
    """Two 3^d convolutions with GELU."""

    def __init__(self, a: int, b: int, pad: str, ndim: int, *, rngs: nnx.Rngs, dtype=F64):
        self.c1 = conv(a, b, ndim, pad, rngs=rngs, dtype=dtype)
        self.c2 = conv(b, b, ndim, pad, rngs=rngs, dtype=dtype)

    def __call__(self, h: jax.Array) -> jax.Array:
        return nnx.gelu(self.c2(nnx.gelu(self.c1(h))))


def downsample(h: jax.Array, ndim: int) -> jax.Array:
    """2^d average pooling (channel-last): every side halves.

    Each side ``n`` is split into ``(n/2, 2)`` and the mean taken over the pairs; in 2D this is
    ``reshape(..., n1/2, 2, n2/2, 2, C).mean(axis=(-4, -2))``, the same operations in the same
    order as the original 2D pooling, so 2D results are bit-identical to it.
    """
    *lead, c = h.shape
    lead, grid = lead[: len(lead) - ndim], lead[len(lead) - ndim :]
    split = [m for n in grid for m in (n // 2, 2)]
    pairs = tuple(-2 * k for k in range(ndim, 0, -1))  # (-2d, ..., -4, -2)
    return h.reshape(*lead, *split, c).mean(axis=pairs)


def upsample(h: jax.Array, ndim: int) -> jax.Array:
    """Nearest-neighbour ×2 along every side (channel-last)."""
    for axis in range(-ndim - 1, -1):
        h = jnp.repeat(h, 2, axis=axis)
    return h
