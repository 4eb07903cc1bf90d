"""Fitting the manifold model: the autoencoder (E, D) whose reconstruction error
F(u) = ‖u − D(E(u))‖² measures the distance to the training data's manifold
(docs/design.md §1). Frozen afterwards; the TR estimators and the shift metric use it."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ml4dynamics.core.fields import FieldSpec
from ml4dynamics.learning.estimators import reconstruction_error
from ml4dynamics.learning.network_config import NetworkStage
from ml4dynamics.learning.training import History, fit
from ml4dynamics.models import PCAManifoldConfig, build_manifold


def f_values(model: nnx.Module, u: jax.Array, chunk: int = 64) -> jax.Array:
    """F(u) per sample of ``u`` (N, *state), in chunks to bound memory."""
    f = nnx.jit(lambda m, x: jax.vmap(lambda v: reconstruction_error(m, v))(x))
    return jnp.concatenate([f(model, u[i : i + chunk]) for i in range(0, u.shape[0], chunk)])


def mean_f(model: nnx.Module, u: jax.Array) -> float:
    """Mean over samples of F(u) (the autoencoder's loss)."""
    return float(jnp.mean(f_values(model, u)))


def mean_log10_f(model: nnx.Module, u: jax.Array) -> float:
    """Mean over samples of log10 F(u), the distribution-shift measure of docs/design.md §1."""
    return float(jnp.mean(jnp.log10(f_values(model, u) + 1e-300)))


def random_shift(u: jax.Array, key: jax.Array, ndim: int) -> jax.Array:
    """``u`` (C, n1, ..., n_d) translated periodically by a uniform random shift per axis."""
    grid = u.shape[-ndim:]
    shift = jax.random.randint(key, (ndim,), 0, jnp.asarray(grid))
    return jnp.roll(u, tuple(shift[i] for i in range(ndim)), axis=tuple(range(-ndim, 0)))


def fit_pca(
    state: FieldSpec, config: PCAManifoldConfig, train_u: jax.Array, seed: int = 0
) -> tuple[nnx.Module, dict[str, float]]:
    """The PCA manifold of ``config`` fitted to states ``(N, *state.shape)``: their mean and
    leading principal modes (with ``config.shifts`` random periodic translations of every state
    added first), as many as explain ``config.energy`` of the variance, at most ``config.rank``.
    Returns the model and its record (modes kept, variance explained)."""
    model = build_manifold(config, state, seed)
    u = np.asarray(train_u, dtype=np.float64)
    if config.shifts:
        keys = jax.random.split(jax.random.key(seed), config.shifts * u.shape[0])
        copies = jax.jit(jax.vmap(lambda v, k: random_shift(v, k, state.ndim)))
        shifted = copies(jnp.tile(jnp.asarray(u), (config.shifts,) + (1,) * (u.ndim - 1)), keys)
        u = np.concatenate([u, np.asarray(shifted)])
    x = u.reshape(u.shape[0], -1)
    mean = x.mean(axis=0)
    # principal modes from the smaller Gram matrix (samples x samples or features x features)
    centred = x - mean
    if centred.shape[0] <= centred.shape[1]:
        values, vectors = np.linalg.eigh(centred @ centred.T)
        values, vectors = values[::-1].clip(min=0.0), vectors[:, ::-1]
        keep = values > values[0] * 1e-14
        modes = (vectors[:, keep] / np.sqrt(values[keep])).T @ centred
    else:
        values, vectors = np.linalg.eigh(centred.T @ centred)
        values, vectors = values[::-1].clip(min=0.0), vectors[:, ::-1]
        keep = values > values[0] * 1e-14
        modes = vectors[:, keep].T
    values = values[keep]
    explained = np.cumsum(values) / values.sum()
    rank = min(config.rank, int(np.searchsorted(explained, config.energy - 1e-12) + 1))
    basis = np.zeros((config.rank, x.shape[1]))
    basis[:rank] = modes[:rank]
    model.mean[...] = jnp.asarray(mean)
    model.basis[...] = jnp.asarray(basis)
    record = {
        "rank": rank,
        "explained_variance": float(explained[rank - 1]),
        "fit_states": int(x.shape[0]),
    }
    return model, record


def fit_autoencoder(
    state: FieldSpec,
    stage: NetworkStage,
    train_u: jax.Array,
    val_u: jax.Array,
    on_epoch=None,
    description: str = "fit_manifold",
) -> tuple[nnx.Module, History]:
    """Train the autoencoder of ``stage`` on states ``(N, *state.shape)``: minimise mean F(u)."""
    model = build_manifold(stage.model, state, stage.optim.seed)  # compiled init (models)

    augment = getattr(stage.model, "shift_augment", False)

    def loss(m, batch, key):
        u = batch["u"]
        if augment:  # each state at a random periodic translation
            keys = jax.random.split(key, u.shape[0])
            u = jax.vmap(lambda v, k: random_shift(v, k, state.ndim))(u, keys)
        f = jnp.mean(jax.vmap(lambda v: reconstruction_error(m, v))(u))
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


def fit_manifold(
    state: FieldSpec,
    stage: NetworkStage,
    train_u: jax.Array,
    val_u: jax.Array,
    on_epoch=None,
    description: str = "fit_manifold",
) -> tuple[nnx.Module, dict[str, float]]:
    """The manifold model of ``stage`` fitted to ``train_u``: PCA in closed form, an autoencoder
    by training. Returns it and its record (``final_train_loss``/``final_val_loss``: mean F on
    the training and validation states; PCA adds its rank and explained variance)."""
    if isinstance(stage.model, PCAManifoldConfig):
        model, record = fit_pca(state, stage.model, train_u, stage.optim.seed)
        record.update(final_train_loss=mean_f(model, train_u), final_val_loss=mean_f(model, val_u))
        return model, record
    model, history = fit_autoencoder(state, stage, train_u, val_u, on_epoch, description)
    last = history.epochs[-1]
    return model, {"final_train_loss": last["train_loss"], "final_val_loss": last["val_loss"]}
