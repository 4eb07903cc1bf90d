"""Stage ``train``: fit the closure φ_θ with the estimator chosen under ``reg``.

Checkpoints go to a persistent directory so that an interrupted run (SIGINT/SIGTERM) resumes
where it stopped and ends with the same parameters as an uninterrupted one; the MLflow run is
resumed with it. Final parameters are exported for the evaluation stages.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib
from flax import nnx

from ml4dynamics.checkpoints import RunCheckpoints
from ml4dynamics.config import load_params
from ml4dynamics.datasets import open_dataset
from ml4dynamics.datasets.pairs import as_pairs, system_of
from ml4dynamics.estimators import (
    RegConfig,
    data_misfit,
    estimator_loss,
    tangent_penalty,
    unit_normals,
)
from ml4dynamics.models import build_closure
from ml4dynamics.models.io import export_model, load_model
from ml4dynamics.pipeline.outputs import fingerprint, fresh_dir, write_csv, write_json
from ml4dynamics.systems import System
from ml4dynamics.tracking import Run
from ml4dynamics.training import History, Interrupted, OptimConfig, fit

matplotlib.use("Agg")


def frozen(model: nnx.Module):
    """A single-sample function u ↦ model(u) with the model's parameters as constants."""
    graphdef, state = nnx.split(model)
    state = jax.tree.map(jax.lax.stop_gradient, state)
    return lambda u: nnx.merge(graphdef, state)(u[None])[0]


def param_norm2(model: nnx.Module) -> jax.Array:
    return sum(jnp.sum(p**2) for p in jax.tree.leaves(nnx.state(model, nnx.Param)))


def estimator_objective(system: System, reg: RegConfig, reconstruct=None):
    """(loss_fn, regulariser) of ``reg``'s estimator for ``training.fit``/``make_step``."""
    if reg.kind == "tr" and reconstruct is None:
        raise ValueError("the TR estimator needs the frozen autoencoder (reconstruct)")

    def loss(m, batch, key):
        return estimator_loss(reg, system, m, batch, key, reconstruct)

    regulariser = (lambda m: reg.wd * param_norm2(m)) if reg.kind == "mols" else None
    return loss, regulariser


def with_normals(data: dict[str, jax.Array], reconstruct, reg: RegConfig) -> dict[str, jax.Array]:
    """Add the unit normals n(u) of the gradient form (they do not depend on θ: computed once)."""
    return {**data, "n": unit_normals(reconstruct, data["u"], reg.eps)}


def train_closure(
    system: System,
    model: nnx.Module,
    reg: RegConfig,
    optim: OptimConfig,
    train: dict[str, jax.Array],
    val: dict[str, jax.Array] | None = None,
    reconstruct=None,
    checkpoints: RunCheckpoints | None = None,
    on_epoch=None,
    progress: bool = True,
) -> History:
    """Train ``model`` in place with ``reg``'s estimator; the library entry point of the stage.

    With ``reconstruct`` (the frozen autoencoder) the TR penalty is also reported on ``val`` for
    every estimator, so runs compare on one scale.
    """
    loss, regulariser = estimator_objective(system, reg, reconstruct)
    if reconstruct is not None and reg.normal == "gradient":
        train = with_normals(train, reconstruct, reg)
        if val is not None:
            val = with_normals(val, reconstruct, reg)

    @nnx.jit
    def val_metrics(m):
        out = {"val_misfit": data_misfit(m, val["u"], val["y"])}
        if reconstruct is not None:
            out["val_tr_penalty"] = tangent_penalty(reg, system, m, val, reconstruct)
        out["val_loss"] = out["val_misfit"] + (
            reg.lam * out["val_tr_penalty"] if reg.kind == "tr" else 0.0
        )
        return out

    evaluate = None if val is None else (lambda m: {k: float(v) for k, v in val_metrics(m).items()})
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
        description=f"train {system.name} {reg.label}",
    )


def loss_figure(history: History, path: Path, title: str) -> Path:
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history.epochs]
    fig, ax = plt.subplots(figsize=(6, 4))
    for key in ("train_loss", "val_loss", "val_tr_penalty"):
        if key in history.epochs[0]:
            ax.semilogy(epochs, [h[key] for h in history.epochs], label=key)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (per sample)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def run(
    system_name: str,
    estimator: str,
    params_path: str,
    data_dir: Path,
    manifold_dir: Path,
    out_dir: Path,
    checkpoint_dir: Path,
    metrics: Path,
    plots: Path,
) -> dict:
    """Train ``estimator`` (a name under ``estimators`` in params.yaml) on ``system_name``;
    ``plots`` is the directory of the loss curve (``<estimator>.csv`` and ``.png``)."""
    params = load_params(params_path)
    stage = params.stage("train", system_name)
    reg = params.estimator(estimator)
    ds_train, ds_val = (open_dataset(data_dir / f"{s}.zarr") for s in ("train", "val"))
    system = system_of(ds_train)
    manifold, _ = load_model(manifold_dir, "manifold", system)
    config = {
        "model": dataclasses.asdict(stage.model),
        "optim": dataclasses.asdict(stage.optim),
        "reg": dataclasses.asdict(reg),
        "estimator": estimator,
        "system": system_name,
        # the physics and data the closure is trained on, as recorded in the dataset
        "data": {k: v for k, v in ds_train.attrs.items() if k != "system"},
    }
    fp = fingerprint(config, [data_dir / "train.zarr", data_dir / "val.zarr", manifold_dir])
    checkpoints = RunCheckpoints(checkpoint_dir, fp)
    run_file = checkpoint_dir / "mlflow_run.json"
    run_id = None
    if run_file.is_file() and json.loads(run_file.read_text()).get("fingerprint") == fp:
        run_id = json.loads(run_file.read_text())["run_id"]
    tracker = Run(
        system_name,
        "train",
        f"{system_name}-{estimator}",
        config,
        tags={"role": "closure", "estimator": estimator},
        run_id=run_id,
    )
    write_json(run_file, {"fingerprint": fp, "run_id": tracker.run_id})
    model = build_closure(stage.model, system, stage.optim.seed)
    try:
        history = train_closure(
            system,
            model,
            reg,
            stage.optim,
            as_pairs(ds_train),
            as_pairs(ds_val),
            reconstruct=frozen(manifold),
            checkpoints=checkpoints,
            on_epoch=lambda e, m: tracker.log_metrics(m, step=e),
        )
    except Interrupted:
        checkpoints.close()
        tracker.end("KILLED")
        raise
    except BaseException:
        checkpoints.close()
        tracker.end("FAILED")
        raise
    checkpoints.close()
    fresh_dir(out_dir)
    export_model(
        out_dir,
        "closure",
        model,
        stage.model,
        {
            "system": system_name,
            "system_config": dataclasses.asdict(system.config),
            "estimator": estimator,
            "reg": dataclasses.asdict(reg),
            "data": config["data"],
            "mlflow_run_id": tracker.run_id,
        },
    )
    final = history.epochs[-1]
    result = {
        "estimator": estimator,
        "epochs": len(history.epochs),
        **{k: v for k, v in final.items() if k != "epoch"},
    }
    write_json(metrics, result)
    plots.mkdir(parents=True, exist_ok=True)
    write_csv(plots / f"{estimator}.csv", history.epochs)
    figure = loss_figure(history, plots / f"{estimator}.png", f"{system_name}: {estimator}")
    tracker.log_artifact(figure, "figures")
    tracker.end()
    return result
