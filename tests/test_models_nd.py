"""The convolutional networks on 1D and 2D grids: shapes, dtype, and translation equivariance.

On a periodic domain (circular padding) a circular shift of the input shifts the output the same
way: any shift for the local closure, a multiple of the pooling factor 2**levels for the U-Net
and the autoencoder (pooling by 2 is equivariant only to even shifts, level after level). Zero
padding breaks this near the boundary, which the negative controls check.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ml4dynamics.fields import FieldSpec
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
def build(kind: str, ndim: int, periodic: bool) -> nnx.Module:
    spec = FieldSpec(CHANNELS, GRIDS[ndim][0], periodic)
    if kind == "conv":
        return build_manifold(CONFIGS[kind], spec, seed=0)
    closure = FieldSpec(CLOSURE_CHANNELS, spec.grid, periodic)
    return build_closure(CONFIGS[kind], spec, closure, seed=0)


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
    return np.abs(np.asarray(model(shift(u, shifts)) - shift(model(u), shifts)))


PERIODIC = pytest.mark.parametrize("periodic", [True, False], ids=["periodic", "zero"])
NDIM = pytest.mark.parametrize("ndim", [1, 2], ids=["1d", "2d"])


@PERIODIC
@NDIM
@pytest.mark.parametrize("kind", CONFIGS)
def test_field_networks_keep_the_grid_in_float64(kind, ndim, periodic):
    model = build(kind, ndim, periodic)
    y = model(states(ndim))
    channels = CHANNELS if kind == "conv" else CLOSURE_CHANNELS  # an autoencoder gives a state
    assert y.shape == (BATCH, channels, *GRIDS[ndim][0]) and y.dtype == jnp.float64
    params = jax.tree.leaves(nnx.state(model, nnx.Param))
    assert all(p.dtype == jnp.float64 for p in params) and bool(np.isfinite(y).all())


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
