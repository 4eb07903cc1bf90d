"""Train the autoencoder (E, D) on data/SYSTEM/train.zarr; write models/SYSTEM/manifold and
metrics/SYSTEM/manifold.json; log an MLflow run.

``ml4d fit-manifold`` (stage ``fit_manifold``): the autoencoder whose F(u) = ‖u − D(E(u))‖²
measures the distance to the training data's manifold.
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np

from ml4dynamics.config import SPLITS, load_params
from ml4dynamics.core.atomic import replacing
from ml4dynamics.core.layout import Layout
from ml4dynamics.core.outputs import exclusive, write_json
from ml4dynamics.core.tracking import Run
from ml4dynamics.datasets import open_splits
from ml4dynamics.datasets.pairs import as_pairs, system_of
from ml4dynamics.learning.closure_training import frozen
from ml4dynamics.learning.manifold_fitting import fit_manifold, mean_log10_f
from ml4dynamics.learning.manifold_quality import projector_floor
from ml4dynamics.learning.network_config import network_stage
from ml4dynamics.models.io import export_model
from ml4dynamics.pipeline import print_json

ARGUMENTS = ("system", "params")


def main(args: argparse.Namespace) -> int:
    layout, name = Layout(), args.system
    with exclusive(layout.lock(name, "manifold"), f"`ml4d fit-manifold {name}`"):
        return _fit(args, layout, name)


def _fit(args: argparse.Namespace, layout: Layout, name: str) -> int:
    stage = network_stage(load_params(args.params), "manifold", name)
    splits = open_splits(layout.data(name), SPLITS)
    system = system_of(splits["train"])
    train_u = as_pairs(splits["train"])["u"]
    config = {"model": dataclasses.asdict(stage.model), "optim": dataclasses.asdict(stage.optim)}
    tracker = Run(name, "fit_manifold", f"{name}-manifold", config, tags={"role": "manifold"})
    val = as_pairs(splits["val"])
    try:
        model, fitted = fit_manifold(  # PCA in closed form, an autoencoder by training
            system.state_field,
            stage,
            train_u,
            val["u"],
            on_epoch=lambda e, mtr: tracker.log_metrics(mtr, step=e),
            description=f"fit_manifold {name}",
        )
        result = {
            f"log10_F_{s}": mean_log10_f(model, as_pairs(ds)["u"]) for s, ds in splits.items()
        }
        result.update(
            fitted,
            state_norm2=float(
                np.mean(np.sum(np.asarray(train_u) ** 2, axis=tuple(range(1, train_u.ndim))))
            ),
            # the exact closure's tangent penalty: the manifold model's own error (its floor)
            val_floor=projector_floor(system, val, frozen(model)),
        )
        with replacing(layout.manifold(name)) as out_dir:  # old or new, never half
            export_model(
                out_dir,
                "manifold",
                model,
                stage.model,
                {"system": name},
                {"state": system.state_field},
            )
        write_json(layout.manifold_metrics(name), result)
        tracker.log_metrics(result)
    except BaseException:
        tracker.fail()
        raise
    tracker.end()
    print_json(result)
    return 0
