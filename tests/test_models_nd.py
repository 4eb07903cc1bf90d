"""The convolutional networks on 1D and 2D grids: shapes, dtype, and translation equivariance.

A network may compute in float32 (``dtype`` of its config): its parameters are float32, fields
still enter and leave as float64, and its outputs and gradients agree with the float64 network of
the same initialisation to float32 round-off.

On a periodic domain (circular padding) a circular shift of the input shifts the output the same
way: any shift for the local closure, a multiple of the pooling factor 2**levels for the U-Net
and the autoencoder (pooling by 2 is equivariant only to even shifts, level after level). Zero
padding breaks this near the boundary, which the negative controls check.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ml4dynamics.core.fields import FieldSpec
from ml4dynamics.models import (
    ConvAutoencoderConfig,
    LocalClosureConfig,
    UNetConfig,
    build_closure,
    build_manifold,
)

LEVELS = 2  # pooling by 2**2 = 4
CONFIGS = {
    "unet": UNetConfig("unet", 2, LEVELS),  # width 2
    "conv": ConvAutoencoderConfig("conv", 2, LEVELS, 2),  # width 2, 2 latent channels
    "local1": LocalClosureConfig("local", 4, 2, 1),  # pointwise MLP, 4 hidden, 2 layers
    "local3": LocalClosureConfig("local", 4, 2, 3),  # stencil 3: the first layer sees neighbours
}
# 16 and 8 x 16 are divisible by 4 and 8 x 16 is not square. Shifts: 4 = 2**LEVELS along the
# first side, 8 = 2 * 4 along the second (different per axis, so swapped axes would show).
GRIDS = {1: ((16,), (4,)), 2: ((8, 16), (4, 8))}
CHANNELS, CLOSURE_CHANNELS = 2, 1  # different, so channel axes cannot be confused
BATCH = 3  # any batch size; 3 is not a channel or grid size
ROUND_OFF = 1e-12  # float64 eps 2e-16 times O(100) operations on O(1) values, with margin


@functools.cache  # one network per case for the whole file (initialisers compile per shape)
def build(kind: str, ndim: int, periodic: bool, dtype: str = "float64") -> nnx.Module:
    spec = FieldSpec(CHANNELS, GRIDS[ndim][0], periodic)
    config = dataclasses.replace(CONFIGS[kind], dtype=dtype)
    if kind == "conv":
        return build_manifold(config, spec, seed=0)
    closure = FieldSpec(CLOSURE_CHANNELS, spec.grid, periodic)
    return build_closure(config, spec, closure, seed=0)


# compiled once per network and input shape: eagerly, every operation compiles on its own
apply = nnx.jit(lambda model, u: model(u))


def states(ndim: int) -> jax.Array:
    shape = (BATCH, CHANNELS, *GRIDS[ndim][0])
    return jax.random.normal(jax.random.key(1), shape, dtype=jnp.float64)


def shift(u: jax.Array, shifts: tuple[int, ...]) -> jax.Array:
    """Circular shift of the grid axes (the last ``len(shifts)``)."""
    return jnp.roll(u, shifts, axis=tuple(range(-len(shifts), 0)))


def shift_defect(kind: str, ndim: int, periodic: bool, shifts=None) -> np.ndarray:
    """|φ(shift u) − shift φ(u)| on the ``ndim``-dimensional test grid."""
    shifts = GRIDS[ndim][1] if shifts is None else shifts
    model, u = build(kind, ndim, periodic), states(ndim)
    return np.abs(np.asarray(apply(model, shift(u, shifts)) - shift(apply(model, u), shifts)))


PERIODIC = pytest.mark.parametrize("periodic", [True, False], ids=["periodic", "zero"])
NDIM = pytest.mark.parametrize("ndim", [1, 2], ids=["1d", "2d"])


@PERIODIC
@NDIM
@pytest.mark.parametrize("kind", CONFIGS)
def test_field_networks_keep_the_grid_in_float64(kind, ndim, periodic):
    model = build(kind, ndim, periodic)
    y = apply(model, states(ndim))
    channels = CHANNELS if kind == "conv" else CLOSURE_CHANNELS  # an autoencoder gives a state
    assert y.shape == (BATCH, channels, *GRIDS[ndim][0]) and y.dtype == jnp.float64
    params = jax.tree.leaves(nnx.state(model, nnx.Param))
    assert all(p.dtype == jnp.float64 for p in params) and bool(np.isfinite(y).all())


@NDIM
@pytest.mark.parametrize("kind", CONFIGS)
def test_a_float32_network_takes_and_gives_float64_and_matches_float64(kind, ndim):
    """float32 parameters and arithmetic inside, float64 at the boundary; the same initial
    weights as float64 (drawn in float32 precision) give the same outputs and input gradients
    to float32 round-off, far below the O(1) size of either."""
    f32, f64 = build(kind, ndim, True, "float32"), nnx.clone(build(kind, ndim, True))
    params = jax.tree.leaves(nnx.state(f32, nnx.Param))
    assert params and all(p.dtype == jnp.float32 for p in params)
    nnx.update(f64, jax.tree.map(lambda p: p.astype(jnp.float64), nnx.state(f32, nnx.Param)))
    u = states(ndim)
    y32, y64 = apply(f32, u), apply(f64, u)
    assert y32.dtype == jnp.float64 and y32.shape == y64.shape
    scale = float(jnp.abs(y64).max())
    assert scale > 1e-2
    assert 0 < float(jnp.abs(y32 - y64).max()) < 1e-5 * scale  # float32, not float64, inside

    def grad(model):
        return jax.jit(jax.grad(lambda v: jnp.sum(model(v) ** 2)))(u)

    g32, g64 = grad(f32), grad(f64)
    assert g32.dtype == jnp.float64
    assert float(jnp.abs(g32 - g64).max()) < 1e-4 * float(jnp.abs(g64).max())


@PERIODIC
@NDIM
def test_conv_autoencoder_latent_is_smaller_than_the_state(ndim, periodic):
    u = states(ndim)
    z = build("conv", ndim, periodic).encode(u)
    # 2 latent channels (channel-last) on the grid pooled twice: every side / 4
    assert z.shape == (BATCH, *(n // 4 for n in GRIDS[ndim][0]), 2)
    assert z[0].size < u[0].size  # 8 < 32 numbers in 1D, 16 < 256 in 2D


@NDIM
@pytest.mark.parametrize("kind", ["unet", "conv", "local3"])
def test_periodic_networks_commute_with_shifts_by_the_pooling_factor(kind, ndim):
    assert shift_defect(kind, ndim, periodic=True).max() < ROUND_OFF


@pytest.mark.parametrize(
    ("ndim", "shifts"),
    [(1, (1,)), (1, (5,)), (2, (1, 3)), (2, (3, 7))],  # odd: not multiples of any pooling
)
def test_a_periodic_local_closure_commutes_with_any_shift(ndim, shifts):
    assert shift_defect("local3", ndim, periodic=True, shifts=shifts).max() < ROUND_OFF


@NDIM
@pytest.mark.parametrize("kind", ["unet", "conv"])
def test_zero_padding_breaks_shift_equivariance(kind, ndim):
    """Negative control: the same networks with zero padding see the wrapped-around values as
    zeros, an O(1) change of their input, far above round-off."""
    assert shift_defect(kind, ndim, periodic=False).max() > 1e-3


@NDIM
def test_zero_padding_breaks_local_equivariance_only_at_the_boundary(ndim):
    """With a 3-point stencil and zero padding, φ(shift u)[i] and φ(u)[i - s] see the same
    values unless one of their windows touches the domain edge: the grid's first and last
    points, and the points s and s - 1 (mod n) that the shift wraps there."""
    grid, shifts = GRIDS[ndim]
    defect = shift_defect("local3", ndim, periodic=False).max(axis=(0, 1))
    near = np.zeros(grid, dtype=bool)
    for axis, (n, s) in enumerate(zip(grid, shifts, strict=True)):
        edge = np.zeros(n, dtype=bool)
        edge[[0, n - 1, s % n, (s - 1) % n]] = True
        near |= edge.reshape([-1 if a == axis else 1 for a in range(ndim)])
    assert defect[~near].max() < ROUND_OFF  # interior: equivariant
    assert defect[near].min() > 1e-6  # every edge point differs, far above round-off
