"""Architectures: shapes, dtype, periodicity, and the autoencoder's bottleneck."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ml4dynamics.models import ConvAutoencoder, LocalClosure, UNet


@pytest.mark.parametrize(
    "model",
    [
        lambda: UNet(2, 2, 4, 2, rngs=nnx.Rngs(0)),
        lambda: LocalClosure(2, 2, 8, 2, 3, rngs=nnx.Rngs(0)),
        lambda: ConvAutoencoder(2, 4, 2, 2, rngs=nnx.Rngs(0)),
    ],
    ids=["unet", "local-stencil3", "conv-autoencoder"],
)
def test_periodic_models_commute_with_shifts(model):
    """Circular padding: shifting the input by a multiple of the pooling factor (4 for two
    levels) shifts the output the same way, up to round-off. Zero padding would break this."""
    m = model()
    u = jax.random.normal(jax.random.key(1), (1, 2, 16, 16), dtype=jnp.float64)
    out = m(u)
    assert out.shape == u.shape and out.dtype == jnp.float64
    shifted = m(jnp.roll(u, (4, 8), axis=(-2, -1)))
    np.testing.assert_allclose(shifted, jnp.roll(out, (4, 8), axis=(-2, -1)), atol=1e-12)


def test_autoencoder_has_a_bottleneck():
    ae = ConvAutoencoder(2, 4, 2, 2, rngs=nnx.Rngs(0))
    z = ae.encode(jnp.ones((1, 2, 16, 16)))
    assert z.size == 2 * 4 * 4 < 2 * 16 * 16  # 32 latent numbers for 512 state numbers
