"""Closure networks φ_θ: batches of states ``(B, *state_shape)`` → closures ``(B, *closure_shape)``.

Float64 parameters (the package's dtype policy). Fields are stored channel-first
``(channels, x1, x2)``; Flax convolutions want channel-last, so the models transpose inside.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

F64 = jnp.float64


def to_channels_last(u: jax.Array) -> jax.Array:
    return jnp.moveaxis(u, -3, -1)


def to_channels_first(u: jax.Array) -> jax.Array:
    return jnp.moveaxis(u, -1, -3)


class LinearClosure(nnx.Module):
    """y = Ĉ u for vector states, Ĉ initialised to zero.

    Zero start matters: gradient descent then never moves the part of Ĉ that the data cannot
    see (the minimum-norm solution of DESIGN §2), which is what the closed forms describe.
    """

    def __init__(self, d_state: int, d_closure: int, *, rngs: nnx.Rngs):
        self.C = nnx.Param(jnp.zeros((d_closure, d_state), dtype=F64))

    def __call__(self, u: jax.Array) -> jax.Array:
        return u @ self.C[...].T


class LocalClosure(nnx.Module):
    """A pointwise (``stencil = 1``) or small-stencil MLP on a periodic grid.

    The first layer sees a ``stencil × stencil`` neighbourhood (circular padding); the rest is
    the same MLP at every grid point, written as dense layers on the channel axis (a matmul is
    several times faster than a 1×1 convolution in float64 on CPU).
    """

    def __init__(
        self,
        channels: int,
        out_channels: int,
        hidden: int,
        depth: int,
        stencil: int,
        *,
        periodic: bool = True,
        rngs: nnx.Rngs,
    ):
        if stencil == 1:
            self.first = nnx.Linear(channels, hidden, param_dtype=F64, rngs=rngs)
        else:
            self.first = nnx.Conv(
                channels,
                hidden,
                kernel_size=(stencil, stencil),
                padding="CIRCULAR" if periodic else "SAME",
                param_dtype=F64,
                rngs=rngs,
            )
        self.hidden = nnx.List(
            [nnx.Linear(hidden, hidden, param_dtype=F64, rngs=rngs) for _ in range(depth - 1)]
        )
        self.out = nnx.Linear(hidden, out_channels, param_dtype=F64, rngs=rngs)

    def __call__(self, u: jax.Array) -> jax.Array:
        h = nnx.gelu(self.first(to_channels_last(u)))
        for layer in self.hidden:
            h = nnx.gelu(layer(h))
        return to_channels_first(self.out(h))


class ConvBlock(nnx.Module):
    """Two 3×3 convolutions with GELU."""

    def __init__(self, a: int, b: int, padding: str, *, rngs: nnx.Rngs):
        self.c1 = nnx.Conv(a, b, kernel_size=(3, 3), padding=padding, param_dtype=F64, rngs=rngs)
        self.c2 = nnx.Conv(b, b, kernel_size=(3, 3), padding=padding, param_dtype=F64, rngs=rngs)

    def __call__(self, h: jax.Array) -> jax.Array:
        return nnx.gelu(self.c2(nnx.gelu(self.c1(h))))


def downsample(h: jax.Array) -> jax.Array:
    """2×2 average pooling (channel-last)."""
    *lead, x1, x2, c = h.shape
    return h.reshape(*lead, x1 // 2, 2, x2 // 2, 2, c).mean(axis=(-4, -2))


def upsample(h: jax.Array) -> jax.Array:
    """Nearest-neighbour ×2 (channel-last)."""
    return jnp.repeat(jnp.repeat(h, 2, axis=-3), 2, axis=-2)


class UNet(nnx.Module):
    """A global closure: U-Net with skip connections, circular padding on periodic domains."""

    def __init__(
        self,
        channels: int,
        out_channels: int,
        width: int,
        levels: int,
        *,
        periodic: bool = True,
        rngs: nnx.Rngs,
    ):
        padding = "CIRCULAR" if periodic else "SAME"
        widths = [width * 2**i for i in range(levels + 1)]
        self.down = nnx.List(
            [
                ConvBlock(channels if i == 0 else widths[i - 1], widths[i], padding, rngs=rngs)
                for i in range(levels)
            ]
        )
        self.bottom = ConvBlock(widths[levels - 1], widths[levels], padding, rngs=rngs)
        self.up = nnx.List(
            [
                ConvBlock(widths[i + 1] + widths[i], widths[i], padding, rngs=rngs)
                for i in reversed(range(levels))
            ]
        )
        self.out = nnx.Conv(width, out_channels, kernel_size=(1, 1), param_dtype=F64, rngs=rngs)

    def __call__(self, u: jax.Array) -> jax.Array:
        h = to_channels_last(u)
        skips = []
        for block in self.down:
            h = block(h)
            skips.append(h)
            h = downsample(h)
        h = self.bottom(h)
        for block, skip in zip(self.up, reversed(skips), strict=True):
            h = block(jnp.concatenate([upsample(h), skip], axis=-1))
        return to_channels_first(self.out(h))
