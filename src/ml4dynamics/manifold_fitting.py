"""Fitting the manifold model: the autoencoder (E, D) whose reconstruction error
F(u) = ‖u − D(E(u))‖² measures the distance to the training data's manifold (DESIGN §2). Frozen
afterwards; the TR estimators and the shift metric use it."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from ml4dynamics.estimators import reconstruction_error
from ml4dynamics.fields import FieldSpec
from ml4dynamics.models import build_manifold
from ml4dynamics.network_config import NetworkStage
from ml4dynamics.training import History, fit


def mean_log10_f(model: nnx.Module, u: jax.Array, chunk: int = 64) -> float:
    """Mean over samples of log10 F(u), the distribution-shift measure of DESIGN §2."""
    f = nnx.jit(lambda m, x: jax.vmap(lambda v: reconstruction_error(m, v))(x))
    values = jnp.concatenate([f(model, u[i : i + chunk]) for i in range(0, u.shape[0], chunk)])
    return float(jnp.mean(jnp.log10(values + 1e-300)))


def fit_autoencoder(
    state: FieldSpec,
    stage: NetworkStage,
    train_u: jax.Array,
    val_u: jax.Array,
    on_epoch=None,
    description: str = "fit_manifold",
) -> tuple[nnx.Module, History]:
    """Train the autoencoder of ``stage`` on states ``(N, *state.shape)``: minimise mean F(u)."""
    # initialised as one compiled program: eagerly, every conv's float64 random init compiles
    # on its own (20 s for the default autoencoder, 13 s this way; the values are identical)
    model = nnx.jit(lambda: build_manifold(stage.model, state, stage.optim.seed))()

    def loss(m, batch, key):
        f = jnp.mean(jax.vmap(lambda v: reconstruction_error(m, v))(batch["u"]))
        return f, {}

    val_f = nnx.jit(lambda m: jnp.mean(jax.vmap(lambda v: reconstruction_error(m, v))(val_u)))
    history = fit(
        model,
        loss,
        {"u": train_u},
        stage.optim,
        evaluate=lambda m: {"val_loss": float(val_f(m))},
        on_epoch=on_epoch,
        description=description,
    )
    return model, history
