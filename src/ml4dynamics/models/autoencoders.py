"""Autoencoders (E, D) whose reconstruction error F(u) = ‖u − D(E(u))‖² measures the distance
to the data manifold.

They have a bottleneck and **no skip connections**: a skip-connected network can learn the
identity, and then F is zero everywhere and means nothing (docs/design.md §1).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from ml4dynamics.models.layers import (
    F64,
    cast_in,
    cast_out,
    conv,
    downsample,
    padding,
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


class PCAManifold(nnx.Module):
    """The affine manifold of the training states' leading principal modes: E(u) = W(u − μ),
    D(z) = μ + Wᵀz, so D∘E is the exact orthogonal projection onto μ + span(W) and F(u) is the
    squared distance to it. ``W`` has ``rank`` rows; rows past the fitted rank are zero (they
    project onto nothing), so the architecture is fixed by the config and the fit chooses the
    rank (``manifold_fitting.fit_pca``)."""

    def __init__(self, shape: tuple[int, ...], rank: int):
        d = math.prod(shape)
        self.shape = tuple(shape)
        self.mean = nnx.Param(jnp.zeros((d,), dtype=F64))
        self.basis = nnx.Param(jnp.zeros((rank, d), dtype=F64))

    def encode(self, u: jax.Array) -> jax.Array:
        """(..., *shape) → (..., rank): any leading axes, one state per trailing block."""
        flat = u.reshape(*u.shape[: u.ndim - len(self.shape)], -1) - self.mean[...]
        return flat @ self.basis[...].T

    def decode(self, z: jax.Array) -> jax.Array:
        flat = self.mean[...] + z @ self.basis[...]
        return flat.reshape(*z.shape[:-1], *self.shape)

    def __call__(self, u: jax.Array) -> jax.Array:
        return self.decode(self.encode(u))


class ConvAutoencoder(nnx.Module):
    """Fields (B, C, n1, ..., n_d) → latent (B, latent_channels, n1/2^L, ..., n_d/2^L) → fields,
    on a grid of ``ndim = d`` dimensions; strided by average pooling, no skip connections.

    The latent holds ``latent_channels / (C 2^(L d))`` times as many numbers as the state; below
    one that is a bottleneck (``build_manifold`` refuses configs without one). Computes in
    ``dtype``; states enter and reconstructions leave in float64."""

    def __init__(
        self,
        channels: int,
        width: int,
        levels: int,
        latent_channels: int,
        *,
        ndim: int,
        periodic: bool = True,
        rngs: nnx.Rngs,
        dtype=F64,
    ):
        self.ndim = ndim
        self.dtype = dtype
        pad = padding(periodic)

        def conv3(a: int, b: int) -> nnx.Conv:
            return conv(a, b, ndim, pad, rngs=rngs, dtype=dtype)

        widths = [width * 2**i for i in range(levels)]
        self.enc = nnx.List(
            [conv3(channels if i == 0 else widths[i - 1], widths[i]) for i in range(levels)]
        )
        self.to_latent = conv3(widths[-1], latent_channels)
        self.from_latent = conv3(latent_channels, widths[-1])
        self.dec = nnx.List(
            [conv3(widths[i], widths[i - 1] if i else width) for i in reversed(range(levels))]
        )
        self.out = conv(width, channels, ndim, pad, size=1, rngs=rngs, dtype=dtype)

    def encode(self, u: jax.Array) -> jax.Array:
        """(B, C, *grid) → latent, channel-last (B, *grid/2^L, latent_channels), in ``dtype``."""
        h = to_channels_last(cast_in(u, self.dtype), self.ndim)
        for layer in self.enc:
            h = downsample(nnx.gelu(layer(h)), self.ndim)
        return self.to_latent(h)

    def decode(self, z: jax.Array) -> jax.Array:
        """latent → (B, C, *grid) fields in float64."""
        h = nnx.gelu(self.from_latent(cast_in(z, self.dtype)))
        for layer in self.dec:
            h = nnx.gelu(layer(upsample(h, self.ndim)))
        return cast_out(to_channels_first(self.out(h), self.ndim))

    def __call__(self, u: jax.Array) -> jax.Array:
        return self.decode(self.encode(u))
