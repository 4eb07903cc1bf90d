"""Stage ``evaluate``: hybrid rollouts of a trained closure on the test and ood splits.

Writes ``metrics/<system>/evaluate/<estimator>.json`` (summaries per split, see
``ml4dynamics.evaluation`` for the definitions), per-frame curves as CSV for ``dvc plots`` and
PNG figures under ``plots/<system>/evaluate/<estimator>/``, and logs all of it to the MLflow run
that trained the model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from ml4dynamics.config import EvaluateConfig, load_params
from ml4dynamics.datasets import open_dataset
from ml4dynamics.datasets.pairs import system_of
from ml4dynamics.evaluation import (
    curve_rows,
    evaluate_splits,
    frame_stride,
    numeric_metrics,
    split_score,
)
from ml4dynamics.models.io import load_model
from ml4dynamics.pipeline import figures
from ml4dynamics.pipeline.outputs import fingerprint, write_csv, write_json
from ml4dynamics.pipeline.train import frozen
from ml4dynamics.tracking import Run

SPLITS = ("test", "ood")


def open_splits(data_dir: Path, splits: tuple[str, ...] = SPLITS) -> dict[str, xr.Dataset]:
    """The validated evaluation splits of a data directory."""
    return {split: open_dataset(data_dir / f"{split}.zarr") for split in splits}


def run(
    system_name: str,
    estimator: str,
    params_path: str,
    data_dir: Path,
    manifold_dir: Path,
    closure_dir: Path,
    metrics_path: Path,
    plots_dir: Path,
) -> dict:
    params = load_params(params_path)
    params.estimator(estimator)  # an unknown name fails here, naming the known ones
    config: EvaluateConfig = params.require("evaluate")
    datasets = open_splits(data_dir)
    system = system_of(datasets["test"])
    closure, meta = load_model(closure_dir, "closure", system)
    manifold, _ = load_model(manifold_dir, "manifold", system)
    summaries, curves, frames = evaluate_splits(
        datasets, closure, frozen(manifold), config.bound, config.report_time
    )
    result = {
        "system": system_name,
        "estimator": estimator,
        "closure_fingerprint": fingerprint({}, [closure_dir]),
        "data_fingerprint": fingerprint({}, [data_dir / f"{s}.zarr" for s in SPLITS]),
        "score": split_score([summaries[s] for s in SPLITS]),
        **summaries,
    }
    plots_dir.mkdir(parents=True, exist_ok=True)
    pngs = []
    for split in SPLITS:
        write_csv(plots_dir / f"{split}.csv", curve_rows(curves[split]))
        ds = datasets[split]
        truth, hybrid = ds.u.values[0], frames[split][0]
        times = ds.time.values - ds.time.values[0]
        fields = [str(f) for f in ds.coords["field"].values] if "field" in ds.coords else []
        pngs.append(
            figures.snapshots(
                plots_dir / f"{split}_snapshots.png",
                times,
                {"truth": truth, "hybrid": hybrid, "difference": hybrid - truth},
                f"{system_name} {estimator}: {split} trajectory 0",
                fields,
            )
        )
    pngs.append(
        figures.curves(
            plots_dir / "error.png",
            {s: (curves[s]["time"], curves[s]["rel_error"]) for s in SPLITS},
            "relative L2 error",
            f"{system_name} {estimator}: hybrid rollout error",
        )
    )
    if "log10_f_hybrid" in curves["test"]:
        shift = {}
        for s in SPLITS:
            shift[f"{s} hybrid"] = (curves[s]["time"], curves[s]["log10_f_hybrid"])
            shift[f"{s} truth"] = (curves[s]["time"], curves[s]["log10_f_true"])
        pngs.append(
            figures.curves(
                plots_dir / "shift.png",
                shift,
                "log10 F(u)",
                f"{system_name} {estimator}: distribution shift",
                log=False,
            )
        )
    write_json(metrics_path, result)

    tracker = Run(
        system_name,
        "evaluate",
        f"{system_name}-{estimator}",
        {"estimator": estimator, "evaluate": vars(config)},
        tags={"role": "closure", "estimator": estimator},
        run_id=meta.get("mlflow_run_id"),
    )
    tracker.log_metrics(
        numeric_metrics(summaries, "eval")
        | ({"eval.score": result["score"]} if result["score"] is not None else {})
    )
    for split in SPLITS:
        stride = frame_stride(datasets[split], system.dt)
        steps = np.arange(1, len(curves[split]["time"]) + 1) * stride
        series = {k: v for k, v in curves[split].items() if k != "time"}
        tracker.log_series(series, steps, prefix=f"eval.{split}.")
    for png in pngs:
        tracker.log_artifact(png, "evaluation")
    tracker.end()
    return result
