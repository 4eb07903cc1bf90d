"""Training a closure network with an estimator: the library behind ``ml4d train`` (and the sweep,
the benchmark and the linear experiment).

The estimator supplies the loss, any preparation of the data (TR's normals) and the validation
metrics; the system supplies the step S inside the tangent penalty; ``training.fit`` runs the
optimisation with deterministic, resumable checkpoints.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
from flax import nnx

from ml4dynamics.core.errors import ML4DError
from ml4dynamics.learning.estimators import Estimator
from ml4dynamics.learning.training import Grow, History, OptimConfig, fit
from ml4dynamics.models.checkpoints import RunCheckpoints

Reconstruct = Callable[[jax.Array], jax.Array]


def frozen(model: nnx.Module) -> Reconstruct:
    """A single-sample function u ↦ model(u) with the model's parameters as constants (the
    frozen autoencoder D∘E of the TR penalty and of the shift metric)."""
    graphdef, state = nnx.split(model)
    state = jax.tree.map(jax.lax.stop_gradient, state)
    return lambda u: nnx.merge(graphdef, state)(u[None])[0]


def objective(estimator: Estimator, system, reconstruct: Reconstruct | None = None):
    """(loss_fn, regulariser) of ``estimator`` for ``training.fit``/``training.make_step``."""
    if estimator.needs_manifold and reconstruct is None:
        raise ValueError(f"the {estimator.label} estimator needs the frozen autoencoder")

    def loss(m: nnx.Module, batch: dict[str, Any], key: jax.Array):
        return estimator.loss(system, m, batch, key, reconstruct)

    return loss, estimator.regulariser()


def train_closure(
    system,
    model: nnx.Module,
    estimator: Estimator,
    optim: OptimConfig,
    train: dict[str, Any],
    val: dict[str, Any] | None = None,
    reconstruct: Reconstruct | None = None,
    checkpoints: RunCheckpoints | None = None,
    on_epoch=None,
    progress: bool = True,
    grow: Grow | None = None,
) -> History:
    """Train ``model`` in place with ``estimator`` on ``train`` (pairs from
    ``datasets.pairs.as_pairs``); report the estimator's validation metrics on ``val`` after
    every epoch. With ``reconstruct`` (the frozen autoencoder) the tangent penalty is reported
    for every estimator, so runs compare on one scale.

    An estimator of several rounds (``dagger``) trains ``optim.epochs`` epochs per round and
    adds, before each round after the first, ``grow(model, r)``: as many new samples as
    ``train`` has (``aggregation.grower``: the hybrid's own states, labelled)."""
    loss, regulariser = objective(estimator, system, reconstruct)
    train = estimator.prepare(train, reconstruct)
    evaluate = None
    if val is not None:
        val = estimator.prepare(val, reconstruct)

        @nnx.jit
        def val_metrics(m):
            return estimator.validation(system, m, val, reconstruct)

        def evaluate(m):
            return {k: float(v) for k, v in val_metrics(m).items()}

    if estimator.rounds > 1 and grow is None:
        raise ML4DError(
            f"the {estimator.label} estimator adds the hybrid's own states between rounds: pass "
            "grow (aggregation.grower of the training dataset)"
        )
    return fit(
        model,
        loss,
        train,
        optim,
        checkpoints=checkpoints,
        evaluate=evaluate,
        on_epoch=on_epoch,
        regulariser=regulariser,
        progress=progress,
        description=f"train {system.name} {estimator.label}",
        grow=grow if estimator.rounds > 1 else None,
        rounds=estimator.rounds,
        grow_size=len(train["u"]) if estimator.rounds > 1 else None,
    )
