"""Train the closure on data/SYSTEM with estimator ESTIMATOR of params.yaml `estimators` (TR weight
from `reg`); checkpoint to models/SYSTEM/checkpoints/ESTIMATOR (resumes after SIGINT/SIGTERM),
export models/SYSTEM/closures/ESTIMATOR, write metrics/SYSTEM/train/ESTIMATOR.json and
plots/SYSTEM/train/; log to MLflow.

``ml4d train`` (stage ``train``): fit the closure φ_θ with one estimator of params.yaml.

Checkpoints go to a persistent directory so that an interrupted run (SIGINT/SIGTERM) resumes
where it stopped and ends with the same parameters as an uninterrupted one; the MLflow run is
resumed with it. Final parameters are exported for the evaluation stages.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from functools import partial
from pathlib import Path
from typing import Any

from ml4dynamics.config import load_params
from ml4dynamics.core.atomic import replacing
from ml4dynamics.core.errors import warn
from ml4dynamics.core.layout import Layout
from ml4dynamics.core.outputs import exclusive, fingerprint, write_csv, write_json
from ml4dynamics.core.tracking import Run
from ml4dynamics.datasets import open_splits
from ml4dynamics.datasets.pairs import as_pairs, system_of
from ml4dynamics.learning import aggregation, estimators
from ml4dynamics.learning.closure_training import Windows, frozen, train_closure, window_profile
from ml4dynamics.learning.manifold_quality import assess, warnings
from ml4dynamics.learning.network_config import network_stage
from ml4dynamics.learning.training import Interrupted, convergence, convergence_warning
from ml4dynamics.models import build_closure
from ml4dynamics.models.checkpoints import RunCheckpoints
from ml4dynamics.models.io import export_model, load_model
from ml4dynamics.pipeline import print_json
from ml4dynamics.reporting.figures import loss_curves

ARGUMENTS = ("system", "estimator", "params")


def main(args: argparse.Namespace) -> int:
    layout, name, label = Layout(), args.system, args.estimator
    # one writer per model (training or evaluating it): a second stops at once, disturbing nothing
    lock = layout.lock(name, f"model-{label}")
    with exclusive(lock, f"`ml4d train {name} --estimator {label}`"):
        return _train(args, layout, name, label)


def _train(args: argparse.Namespace, layout: Layout, name: str, label: str) -> int:
    params = load_params(args.params)
    stage = network_stage(params, "train", name)
    estimator = estimators.estimator(params, label, name)
    data_dir, manifold_dir = layout.data(name), layout.manifold(name)
    splits = open_splits(data_dir, ("train", "val"))
    system = system_of(splits["train"])
    manifold, _ = load_model(manifold_dir, "manifold", system.state_field)
    config = _run_config(stage, estimator, label, name, splits["train"].attrs)
    if estimator.unrolled:  # its curriculum decides the result: fingerprinted and recorded
        config["unroll"] = None if stage.unroll is None else dataclasses.asdict(stage.unroll)
    fp = fingerprint(config, [layout.split(name, "train"), layout.split(name, "val"), manifold_dir])
    checkpoint_dir = layout.checkpoints(name, label)
    checkpoints = RunCheckpoints(checkpoint_dir, fp)
    logged = config
    if estimator.shared_section == "reg":  # its λ is reg.<system>.lam × this (reg.lam)
        multiplier = estimators.lam_multiplier(params)
        logged = {**config, "reg": {**config["reg"], "lam_multiplier": multiplier}}
    tracker = _tracker(checkpoint_dir / "mlflow_run.json", fp, name, label, logged)
    model = build_closure(stage.model, system.state_field, system.closure_field, stage.optim.seed)
    history, quality = _fit(system, model, estimator, stage, splits, manifold, checkpoints, tracker)
    with replacing(layout.closure(name, label)) as out_dir:  # old or new, never half
        export_model(
            out_dir,
            "closure",
            model,
            stage.model,
            {
                "system": name,
                "system_config": dataclasses.asdict(system.config),
                "estimator": label,
                "reg": dataclasses.asdict(estimator.config),
                "data": config["data"],
                "mlflow_run_id": tracker.run_id,
            },
            {"state": system.state_field, "closure": system.closure_field},
        )
    converged = convergence(history.epochs)
    result = _result(label, history.epochs, quality, converged)
    _warn(quality, converged, name, label)
    tracker.log_metrics(
        {f"manifold.{k}": float(v) for k, v in quality.items() if k != "val_tr_penalty"}
        | ({"val_misfit_drop": converged["drop"]} if converged["drop"] is not None else {})
    )
    write_json(layout.train_metrics(name, label), result)
    plots = layout.train_plots(name)
    plots.mkdir(parents=True, exist_ok=True)
    write_csv(plots / f"{label}.csv", history.epochs)
    figure = loss_curves(history.epochs, plots / f"{label}.png", f"{name}: {label}")
    tracker.log_artifact(figure, "figures")
    tracker.end()
    print_json(result)
    return 0


def _run_config(stage, estimator, label: str, name: str, data_attrs) -> dict[str, Any]:
    """What the run records (MLflow params) and fingerprints: the network, the optimiser, the
    estimator's config, and the physics and data the closure is trained on, as recorded in the
    dataset."""
    return {
        "model": dataclasses.asdict(stage.model),
        "optim": dataclasses.asdict(stage.optim),
        "reg": dataclasses.asdict(estimator.config),
        "estimator": label,
        "system": name,
        "data": {k: v for k, v in data_attrs.items() if k != "system"},
    }


def _tracker(run_file: Path, fp: str, name: str, label: str, config: dict[str, Any]) -> Run:
    """The MLflow run of this training: the one ``run_file`` names if it was started for the
    same fingerprint (a resumed training), else a new one; ``run_file`` then names it."""
    run_id = None
    if run_file.is_file() and json.loads(run_file.read_text()).get("fingerprint") == fp:
        run_id = json.loads(run_file.read_text())["run_id"]
    tracker = Run(
        name,
        "train",
        f"{name}-{label}",
        config,
        tags={"role": "closure", "estimator": label},
        run_id=run_id,
    )
    write_json(run_file, {"fingerprint": fp, "run_id": tracker.run_id})
    return tracker


def _log_epoch(tracker: Run, optim, epoch: int, metrics: dict) -> None:
    """An epoch's metrics into the run; sent at once before a checkpoint is written (training
    saves one after this epoch), so a training killed later and resumed from it has every
    epoch's point in its run, not only those after it."""
    tracker.log_metrics(metrics, step=epoch)
    if (epoch + 1) % optim.checkpoint_every == 0 or (epoch + 1) % optim.epochs == 0:
        tracker.flush()


def _fit(system, model, estimator, stage, splits, manifold, checkpoints, tracker: Run):
    """(history, manifold quality): train ``model`` in place with checkpoints, logging every
    epoch, then measure the floor diagnostic. Checkpoints are closed either way; on an error the
    MLflow run ends, KILLED after a signal (the run resumes with the training), else FAILED."""
    train, val, reconstruct = as_pairs(splits["train"]), as_pairs(splits["val"]), frozen(manifold)
    windows = Windows(splits["train"], splits["val"], stage.unroll)
    try:
        history = train_closure(
            system,
            model,
            estimator,
            stage.optim,
            train,
            val,
            reconstruct=reconstruct,
            checkpoints=checkpoints,
            on_epoch=partial(_log_epoch, tracker, stage.optim),
            grow=aggregation.for_estimator(estimator, splits["train"], stage.optim.seed),
            windows=windows,
        )
        if estimator.unrolled:  # how the error grows along the last window, frame by frame
            for j, err in enumerate(window_profile(system, model, windows), start=1):
                tracker.log_metrics({"val_frame_misfit": err}, step=j)
        # can the manifold model see this closure's errors? (the floor diagnostic)
        quality = assess(estimator, system, train, val, reconstruct, history.epochs[-1])
    except Interrupted:
        checkpoints.close()
        tracker.end("KILLED")
        raise
    except BaseException:
        checkpoints.close()
        tracker.fail()
        raise
    checkpoints.close()
    return history, quality


def _result(label: str, epochs: list[dict[str, Any]], quality, converged) -> dict[str, Any]:
    """metrics/SYSTEM/train/ESTIMATOR.json: the last epoch's metrics, the floor diagnostic and
    the convergence of the validation misfit."""
    return {
        "estimator": label,
        "epochs": len(epochs),
        **{k: v for k, v in epochs[-1].items() if k != "epoch"},
        "manifold": quality,
        "convergence": converged,
    }


def _warn(quality: dict[str, Any], converged: dict[str, Any], name: str, label: str) -> None:
    """One line per problem of the training: the floor diagnostic's, then a collapse or a
    validation misfit still falling (each naming the knob that mends it)."""
    for line in warnings(quality, f"{name} {label}"):
        warn(line)
    line = convergence_warning(
        converged, f"{name} {label}", f"train.{name}.optim.lr", f"train.{name}.optim.epochs"
    )
    if line:
        warn(line)
