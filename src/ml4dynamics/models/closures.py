"""Closure networks φ_θ: batches of states ``(B, *state_shape)`` → closures ``(B, *closure_shape)``.

A state is a vector ``(d,)`` (``LinearClosure``) or ``C`` fields on a grid ``(C, n1, ..., n_d)``
in any number ``d`` of spatial dimensions (``LocalClosure``, ``UNet``), periodic (circular
padding) or not (zero padding). Fields enter and leave in float64; the grid networks compute in
their ``dtype`` (float32 or float64), the linear one in float64 (its closed forms are exact).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from ml4dynamics.models.layers import (
    F64,
    ConvBlock,
    cast_in,
    cast_out,
    conv,
    dense,
    downsample,
    padding,
    to_channels_first,
    to_channels_last,
    upsample,
)


class LinearClosure(nnx.Module):
    """y = Ĉ u for vector states, Ĉ initialised to zero.

    Zero start matters: gradient descent then never moves the part of Ĉ that the data cannot
    see (the minimum-norm solution of docs/design.md §1), which is what the closed forms describe.
    """

    def __init__(self, d_state: int, d_closure: int, *, rngs: nnx.Rngs):
        self.C = nnx.Param(jnp.zeros((d_closure, d_state), dtype=F64))

    def __call__(self, u: jax.Array) -> jax.Array:
        return u @ self.C[...].T


class LocalClosure(nnx.Module):
    """A pointwise (``stencil = 1``) or small-stencil MLP on a grid of ``ndim`` dimensions.

    The first layer sees a ``stencil^d`` neighbourhood (circular padding when periodic, zero
    padding otherwise); the rest is the same MLP at every grid point, written as dense layers on
    the channel axis (a matmul is several times faster than a 1×1 convolution in float64 on CPU).
    """

    def __init__(
        self,
        channels: int,
        out_channels: int,
        hidden: int,
        depth: int,
        stencil: int,
        *,
        ndim: int,
        periodic: bool = True,
        rngs: nnx.Rngs,
        dtype=F64,
    ):
        self.ndim = ndim
        self.dtype = dtype
        if stencil == 1:
            self.first = dense(channels, hidden, rngs=rngs, dtype=dtype)
        else:
            pad = padding(periodic)
            self.first = conv(channels, hidden, ndim, pad, size=stencil, rngs=rngs, dtype=dtype)
        self.hidden = nnx.List(
            [dense(hidden, hidden, rngs=rngs, dtype=dtype) for _ in range(depth - 1)]
        )
        self.out = dense(hidden, out_channels, rngs=rngs, dtype=dtype)

    def __call__(self, u: jax.Array) -> jax.Array:
        h = nnx.gelu(self.first(to_channels_last(cast_in(u, self.dtype), self.ndim)))
        for layer in self.hidden:
            h = nnx.gelu(layer(h))
        return cast_out(to_channels_first(self.out(h), self.ndim))


class UNet(nnx.Module):
    """A global closure: U-Net with skip connections on a grid of ``ndim`` dimensions.

    ``levels`` poolings by 2 along every side, so every side must be divisible by 2^levels;
    circular padding on periodic domains, zero padding otherwise.
    """

    def __init__(
        self,
        channels: int,
        out_channels: int,
        width: int,
        levels: int,
        *,
        ndim: int,
        periodic: bool = True,
        rngs: nnx.Rngs,
        dtype=F64,
    ):
        self.ndim = ndim
        self.dtype = dtype
        pad = padding(periodic)
        widths = [width * 2**i for i in range(levels + 1)]

        def block(a: int, b: int) -> ConvBlock:
            return ConvBlock(a, b, pad, ndim, rngs=rngs, dtype=dtype)

        self.down = nnx.List(
            [block(channels if i == 0 else widths[i - 1], widths[i]) for i in range(levels)]
        )
        self.bottom = block(widths[levels - 1], widths[levels])
        self.up = nnx.List(
            [block(widths[i + 1] + widths[i], widths[i]) for i in reversed(range(levels))]
        )
        self.out = conv(width, out_channels, ndim, pad, size=1, rngs=rngs, dtype=dtype)

    def __call__(self, u: jax.Array) -> jax.Array:
        h = to_channels_last(cast_in(u, self.dtype), self.ndim)
        skips = []
        for block in self.down:
            h = block(h)
            skips.append(h)
            h = downsample(h, self.ndim)
        h = self.bottom(h)
        for block, skip in zip(self.up, reversed(skips), strict=True):
            h = block(jnp.concatenate([upsample(h, self.ndim), skip], axis=-1))
        return cast_out(to_channels_first(self.out(h), self.ndim))
