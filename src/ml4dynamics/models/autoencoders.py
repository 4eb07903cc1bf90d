"""Autoencoders (E, D) whose reconstruction error F(u) = ‖u − D(E(u))‖² measures the distance
to the data manifold.

They have a bottleneck and **no skip connections**: a skip-connected network can learn the
identity, and then F is zero everywhere and means nothing (DESIGN §2).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from ml4dynamics.models.closures import (
    F64,
    downsample,
    to_channels_first,
    to_channels_last,
    upsample,
)


class LinearAutoencoder(nnx.Module):
    """E(u) = W_e u (latent ``k`` < d), D(z) = W_d z. With W_e = vᵀ, W_d = v for an orthonormal
    basis v of V, D∘E is the orthogonal projector P_V (``exact_projector``)."""

    def __init__(self, d: int, latent: int, *, rngs: nnx.Rngs):
        key = rngs.params()
        self.W_e = nnx.Param(jax.random.normal(key, (latent, d), dtype=F64) / jnp.sqrt(d))
        self.W_d = nnx.Param(self.W_e[...].T)

    def encode(self, u: jax.Array) -> jax.Array:
        return u @ self.W_e[...].T

    def decode(self, z: jax.Array) -> jax.Array:
        return z @ self.W_d[...].T

    def __call__(self, u: jax.Array) -> jax.Array:
        return self.decode(self.encode(u))

    @classmethod
    def exact_projector(cls, basis: jax.Array) -> LinearAutoencoder:
        """The autoencoder with D∘E = P_V, ``basis`` (k, d) with orthonormal rows spanning V."""
        basis = jnp.asarray(basis, dtype=F64)
        ae = cls(basis.shape[1], basis.shape[0], rngs=nnx.Rngs(0))
        ae.W_e[...] = basis
        ae.W_d[...] = basis.T
        return ae


class ConvAutoencoder(nnx.Module):
    """Fields (B, C, n, n) → latent (B, latent_channels, n/2^L, n/2^L) → fields; strided by
    average pooling, no skip connections."""

    def __init__(
        self,
        channels: int,
        width: int,
        levels: int,
        latent_channels: int,
        *,
        periodic: bool = True,
        rngs: nnx.Rngs,
    ):
        pad = "CIRCULAR" if periodic else "SAME"

        def conv(a: int, b: int) -> nnx.Conv:
            return nnx.Conv(a, b, kernel_size=(3, 3), padding=pad, param_dtype=F64, rngs=rngs)

        widths = [width * 2**i for i in range(levels)]
        self.enc = nnx.List(
            [conv(channels if i == 0 else widths[i - 1], widths[i]) for i in range(levels)]
        )
        self.to_latent = conv(widths[-1], latent_channels)
        self.from_latent = conv(latent_channels, widths[-1])
        self.dec = nnx.List(
            [conv(widths[i], widths[i - 1] if i else width) for i in reversed(range(levels))]
        )
        self.out = nnx.Conv(width, channels, kernel_size=(1, 1), param_dtype=F64, rngs=rngs)

    def encode(self, u: jax.Array) -> jax.Array:
        h = to_channels_last(u)
        for layer in self.enc:
            h = downsample(nnx.gelu(layer(h)))
        return self.to_latent(h)

    def decode(self, z: jax.Array) -> jax.Array:
        h = nnx.gelu(self.from_latent(z))
        for layer in self.dec:
            h = nnx.gelu(layer(upsample(h)))
        return to_channels_first(self.out(h))

    def __call__(self, u: jax.Array) -> jax.Array:
        return self.decode(self.encode(u))
