"""Training a closure network with an estimator: the library behind ``ml4d train`` (and the sweep,
the benchmark and the linear experiment).

The estimator supplies the loss, any preparation of the data (TR's normals) and the validation
metrics; the system supplies the step S inside the tangent penalty; ``training.fit`` runs the
optimisation with deterministic, resumable checkpoints. An unrolled estimator trains on windows of
the stored trajectories instead of pairs, one ``fit`` per window length of its curriculum, each
with its own checkpoints (``window_<k>/`` under the run's directory), so that a run killed at any
stage resumes there.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import xarray as xr
from flax import nnx

from ml4dynamics.core.errors import ML4DError
from ml4dynamics.datasets.pairs import as_windows, steps_per_frame
from ml4dynamics.learning.estimators import Estimator
from ml4dynamics.learning.estimators.unrolled import frame_errors
from ml4dynamics.learning.network_config import UnrollConfig
from ml4dynamics.learning.training import Grow, History, OptimConfig, fit
from ml4dynamics.models.checkpoints import RunCheckpoints

Reconstruct = Callable[[jax.Array], jax.Array]


def frozen(model: nnx.Module) -> Reconstruct:
    """A single-sample function u ↦ model(u) with the model's parameters as constants (the
    frozen autoencoder D∘E of the TR penalty and of the shift metric)."""
    graphdef, state = nnx.split(model)
    state = jax.tree.map(jax.lax.stop_gradient, state)
    return lambda u: nnx.merge(graphdef, state)(u[None])[0]


def objective(estimator: Estimator, system, reconstruct: Reconstruct | None = None, steps: int = 1):
    """(loss_fn, regulariser) of ``estimator`` for ``training.fit``/``training.make_step``; an
    unrolled estimator's loss is over windows whose frames are ``steps`` solver steps apart."""
    if estimator.needs_manifold and reconstruct is None:
        raise ValueError(f"the {estimator.label} estimator needs the frozen autoencoder")

    def loss(m: nnx.Module, batch: dict[str, Any], key: jax.Array):
        if estimator.unrolled:
            return estimator.window_loss(system, m, batch, key, reconstruct, steps)
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
    windows: Windows | None = None,
    on_stage=None,
) -> History:
    """Train ``model`` in place with ``estimator`` on ``train`` (pairs from
    ``datasets.pairs.as_pairs``); report the estimator's validation metrics on ``val`` after
    every epoch. With ``reconstruct`` (the frozen autoencoder) the tangent penalty is reported
    for every estimator, so runs compare on one scale.

    An estimator of several rounds (``dagger``) trains ``optim.epochs`` epochs per round and
    adds, before each round after the first, ``grow(model, r)``: as many new samples as
    ``train`` has (``aggregation.grower``: the hybrid's own states, labelled).

    An unrolled estimator trains on ``windows`` instead (``train_unrolled``, which calls
    ``on_stage`` after each stage of its curriculum); ``train`` and ``val`` are then unused."""
    if estimator.unrolled:
        if windows is None:
            raise ML4DError(
                f"the {estimator.label} estimator trains on windows of the trajectories: pass "
                "windows (the train and val datasets and train.<system>.unroll)"
            )
        return train_unrolled(
            system,
            model,
            estimator,
            optim,
            windows,
            reconstruct,
            checkpoints,
            on_epoch,
            progress,
            on_stage,
        )
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


@dataclasses.dataclass(frozen=True)
class Windows:
    """What an unrolled estimator trains on: the training and validation datasets (their
    windows are cut per stage) and the curriculum (``train.<system>.unroll``)."""

    train: xr.Dataset
    val: xr.Dataset
    unroll: UnrollConfig | None

    def curriculum(self, system_name: str) -> UnrollConfig:
        if self.unroll is None:
            raise ML4DError(
                f"train.{system_name}.unroll is missing: the unrolled estimators need their "
                "curriculum; add e.g. unroll: {windows: [1, 4, 16], epochs: [10, 4, 2], clip: 1.0}"
            )
        return self.unroll


def stage_windows(ds: xr.Dataset, k: int, stride: int = 1) -> dict[str, Any]:
    """Windows of ``k`` hybrid frames (k + 1 stored frames) of ``ds``, every ``stride``-th start."""
    w = as_windows(ds, k + 1)
    return w if stride == 1 else jax.tree.map(lambda a: a[::stride], w)


def train_unrolled(
    system,
    model: nnx.Module,
    estimator: Estimator,
    optim: OptimConfig,
    windows: Windows,
    reconstruct: Reconstruct | None = None,
    checkpoints: RunCheckpoints | None = None,
    on_epoch=None,
    progress: bool = True,
    on_stage=None,
) -> History:
    """Train ``model`` in place with an unrolled ``estimator`` along its curriculum: for each
    window length k, ``epochs`` epochs over every window of k frames of the training
    trajectories (``optim``'s learning rate, schedule, batch size and seed; gradients clipped),
    validated after every epoch on non-overlapping windows of k frames of the validation ones.
    Epochs are numbered across the stages and each carries its ``window``. After each stage,
    ``on_stage(k, model, history)`` (the history so far): each stage's closure is a candidate
    when k is chosen on validation (``ml4d sweep``)."""
    unroll = windows.curriculum(system.name)
    steps = steps_per_frame(windows.train)
    if steps_per_frame(windows.val) != steps:
        raise ML4DError(
            "the train and val splits store their frames at different spacings (store_every); "
            "regenerate them with one"
        )
    loss, _ = objective(estimator, system, reconstruct, steps)
    history, offset = History(), 0
    for k, epochs in zip(unroll.windows, unroll.epochs, strict=True):
        val = stage_windows(windows.val, k, stride=k)

        @nnx.jit
        def val_metrics(m, val=val):
            return estimator.window_validation(system, m, val, reconstruct, steps)

        def report(epoch, metrics, k=k, offset=offset):
            if on_epoch is not None:
                on_epoch(offset + epoch, {**metrics, "window": k})

        stage = None
        if checkpoints is not None:
            stage = RunCheckpoints(
                checkpoints.directory / f"window_{k}", f"{checkpoints.fingerprint}:window_{k}"
            )
        try:
            done = fit(
                model,
                loss,
                stage_windows(windows.train, k),
                dataclasses.replace(
                    optim, epochs=epochs, checkpoint_every=min(optim.checkpoint_every, epochs)
                ),
                checkpoints=stage,
                evaluate=lambda m: {n: float(v) for n, v in val_metrics(m).items()},
                on_epoch=report,
                progress=progress,
                description=f"train {system.name} {estimator.label} k={k}",
                clip=unroll.clip,
            )
        finally:
            if stage is not None:
                stage.close()
        history.epochs += [{**e, "epoch": offset + e["epoch"], "window": k} for e in done.epochs]
        offset += epochs
        if on_stage is not None:
            on_stage(k, model, history)
    return history


def window_profile(system, model: nnx.Module, windows: Windows) -> list[float]:
    """The mean validation error ‖û_j − u_j‖²/Δt_f² at each frame j = 1 … k of the curriculum's
    longest window (non-overlapping windows of the validation trajectories): how the trained
    closure's error grows along a window."""
    k = windows.curriculum(system.name).windows[-1]
    batch = stage_windows(windows.val, k, stride=k)
    errors = nnx.jit(lambda m: frame_errors(system, m, batch, steps_per_frame(windows.val)))
    return [float(e) for e in errors(model)]
