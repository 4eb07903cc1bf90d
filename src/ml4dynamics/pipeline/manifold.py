"""Stage ``fit_manifold``: the autoencoder (E, D) whose F(u) = ‖u − D(E(u))‖² measures the
distance to the training data's manifold. Frozen afterwards; TR training and the shift metric
use it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ml4dynamics.config import NetworkStage, load_params
from ml4dynamics.datasets import open_dataset
from ml4dynamics.datasets.pairs import as_pairs, system_of
from ml4dynamics.estimators import reconstruction_error
from ml4dynamics.models import build_manifold
from ml4dynamics.models.io import export_model
from ml4dynamics.pipeline.outputs import write_json
from ml4dynamics.tracking import Run
from ml4dynamics.training import History, fit


def mean_log10_f(model: nnx.Module, u: jax.Array, chunk: int = 64) -> float:
    """Mean over samples of log10 F(u), the distribution-shift measure of DESIGN §2."""
    f = nnx.jit(lambda m, x: jax.vmap(lambda v: reconstruction_error(m, v))(x))
    values = jnp.concatenate([f(model, u[i : i + chunk]) for i in range(0, u.shape[0], chunk)])
    return float(jnp.mean(jnp.log10(values + 1e-300)))


def fit_autoencoder(
    system, stage: NetworkStage, train_u: jax.Array, val_u: jax.Array, on_epoch=None
) -> tuple[nnx.Module, History]:
    """Train the autoencoder of ``stage`` on states ``(N, *state)``: minimise mean F(u)."""
    # initialised as one compiled program: eagerly, every conv's float64 random init compiles
    # on its own (20 s for the default autoencoder, 13 s this way; the values are identical)
    model = nnx.jit(lambda: build_manifold(stage.model, system, stage.optim.seed))()

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
        description=f"fit_manifold {system.name}",
    )
    return model, history


def run(system_name: str, params_path: str, data_dir: Path, out_dir: Path, metrics: Path) -> dict:
    params = load_params(params_path)
    stage = params.stage("manifold", system_name)
    splits = {s: open_dataset(data_dir / f"{s}.zarr") for s in ("train", "val", "test", "ood")}
    system = system_of(splits["train"])
    train_u = as_pairs(splits["train"])["u"]
    config = {"model": dataclasses.asdict(stage.model), "optim": dataclasses.asdict(stage.optim)}
    tracker = Run(
        system_name, "fit_manifold", f"{system_name}-manifold", config, tags={"role": "manifold"}
    )
    try:
        model, history = fit_autoencoder(
            system,
            stage,
            train_u,
            as_pairs(splits["val"])["u"],
            on_epoch=lambda e, mtr: tracker.log_metrics(mtr, step=e),
        )
        result = {
            f"log10_F_{s}": mean_log10_f(model, as_pairs(ds)["u"]) for s, ds in splits.items()
        }
        result.update(
            final_train_loss=history.epochs[-1]["train_loss"],
            final_val_loss=history.epochs[-1]["val_loss"],
            state_norm2=float(
                np.mean(np.sum(np.asarray(train_u) ** 2, axis=tuple(range(1, train_u.ndim))))
            ),
        )
        export_model(out_dir, "manifold", model, stage.model, {"system": system_name})
        write_json(metrics, result)
        tracker.log_metrics(result)
    except BaseException:
        tracker.end("FAILED")
        raise
    tracker.end()
    return result
