"""Roll the closure models/SYSTEM/closures/ESTIMATOR out (un-nudged, float64, with the system's own
step) from the first frame of every val, test and ood trajectory; write
metrics/SYSTEM/evaluate/ESTIMATOR.json, per-frame curves and figures under
plots/SYSTEM/evaluate/ESTIMATOR/, and log them to an evaluation run nested in the model's run.

``ml4d evaluate`` (stage ``evaluate``): hybrid rollouts of a trained closure on the val, test
and ood splits (val to choose hyperparameters such as λ; test and ood are scored for promotion).

Writes ``metrics/<system>/evaluate/<estimator>.json`` (summaries per split, see
``ml4dynamics.evaluation`` for the definitions), per-frame curves as CSV for ``dvc plots`` and PNG
figures under ``plots/<system>/evaluate/<estimator>/``, and logs all of it to an MLflow run nested
under the run that trained the model (``<system>-<estimator>-evaluate``); evaluating again replaces
that run, so the per-step history is never logged twice.
"""

from __future__ import annotations

import argparse

import numpy as np

from ml4dynamics.config import ROLLED_OUT_SPLITS, SCORED_SPLITS, load_params
from ml4dynamics.core.faults import kill_point
from ml4dynamics.core.layout import Layout
from ml4dynamics.core.outputs import fingerprint, write_csv, write_json
from ml4dynamics.core.tracking import Run
from ml4dynamics.datasets import open_splits
from ml4dynamics.datasets.pairs import system_of
from ml4dynamics.evaluation import (
    curve_rows,
    evaluate_config,
    evaluate_splits,
    headline,
    numeric_metrics,
    score_key,
    split_score,
)
from ml4dynamics.learning import estimators
from ml4dynamics.learning.closure_training import frozen
from ml4dynamics.models.io import load_model, model_identity
from ml4dynamics.pipeline import print_json
from ml4dynamics.reporting import figures
from ml4dynamics.simulation.hybrid import frame_stride

ARGUMENTS = ("system", "estimator", "params")


def main(args: argparse.Namespace) -> int:
    layout, name, label = Layout(), args.system, args.estimator
    params = load_params(args.params)
    estimators.estimator(params, label, name)  # an unknown name fails here, naming the known ones
    config = evaluate_config(params, name)
    data_dir, closure_dir = layout.data(name), layout.closure(name, label)
    datasets = open_splits(data_dir, ROLLED_OUT_SPLITS)
    system = system_of(datasets["test"])
    closure, meta = load_model(closure_dir, "closure", system.state_field, system.closure_field)
    manifold, _ = load_model(layout.manifold(name), "manifold", system.state_field)
    summaries, curves, frames = evaluate_splits(
        datasets, closure, frozen(manifold), config.bound, config.report_time
    )
    scored_by = score_key(system, config.report_time)
    result = {
        "system": name,
        "estimator": label,
        "closure_fingerprint": model_identity(closure, meta),
        "data_fingerprint": fingerprint({}, [layout.split(name, s) for s in SCORED_SPLITS]),
        "score": split_score([summaries[s] for s in SCORED_SPLITS], scored_by),
        "score_metric": scored_by,
        "chaotic": system.chaotic,
        **summaries,
    }
    plots_dir = layout.evaluate_plots(name, label)
    plots_dir.mkdir(parents=True, exist_ok=True)
    pngs = []
    for split in ROLLED_OUT_SPLITS:
        write_csv(plots_dir / f"{split}.csv", curve_rows(curves[split]))
    for split in SCORED_SPLITS:
        ds = datasets[split]
        truth, hybrid = ds.u.values[0], frames[split][0]
        times = ds.time.values - ds.time.values[0]
        fields = [str(f) for f in ds.coords["field"].values] if "field" in ds.coords else []
        pngs.append(
            figures.snapshots(
                plots_dir / f"{split}_snapshots.png",
                times,
                {"truth": truth, "hybrid": hybrid, "difference": hybrid - truth},
                f"{name} {label}: {split} trajectory 0",
                fields,
                figures.spatial_axes(ds),
            )
        )
    stability = {
        s: (curves[s]["time"], curves[s]["stable_fraction"], summaries[s]["blowup_times"])
        for s in ROLLED_OUT_SPLITS
    }
    pngs.append(
        figures.curves(
            plots_dir / "error.png",
            {
                **{s: (curves[s]["time"], curves[s]["rel_error"]) for s in ROLLED_OUT_SPLITS},
                **{
                    f"{s}: exact closure + noise of its misfit (ablation)": (
                        curves[s]["time"],
                        curves[s]["ablation_rel_error"],
                    )
                    for s in ROLLED_OUT_SPLITS
                    if "ablation_rel_error" in curves[s]  # (none without an exact closure)
                },
                **{
                    f"{s}: the coarse solver alone": (
                        curves[s]["time"],
                        curves[s]["coarse_alone_rel_error"],
                    )
                    for s in ROLLED_OUT_SPLITS
                    if "coarse_alone_rel_error" in curves[s]  # (a closure of a coarse solver)
                },
            },
            "relative L2 error",
            f"{name} {label}: hybrid rollout error",
            stable=stability,
        )
    )
    if "log10_f_hybrid" in curves["test"]:
        shift = {}
        for s in ROLLED_OUT_SPLITS:
            shift[f"{s} hybrid"] = (curves[s]["time"], curves[s]["log10_f_hybrid"])
            shift[f"{s} truth"] = (curves[s]["time"], curves[s]["log10_f_true"])
        pngs.append(
            figures.curves(
                plots_dir / "shift.png",
                shift,
                "log10 F(u)",
                f"{name} {label}: distribution shift",
                log=False,
                stable={f"{s} hybrid": stability[s] for s in ROLLED_OUT_SPLITS},
            )
        )
    write_json(layout.evaluate_metrics(name, label), result)
    write_json(layout.headline(name, label), headline(summaries, config.report_time, scored_by))

    # a child run of the training run; a re-evaluation replaces it (no second history)
    tracker = Run(
        name,
        "evaluate",
        f"{name}-{label}-evaluate",
        {"estimator": label, "evaluate": vars(config), "reg": meta.get("reg", {})},
        tags={"role": "evaluation", "estimator": label},
        parent_run_id=meta.get("mlflow_run_id"),
        replace=True,
    )
    tracker.log_metrics(
        numeric_metrics(summaries, "eval")
        | ({"eval.score": result["score"]} if result["score"] is not None else {})
    )
    kill_point("evaluate-logged")  # fault-injection tests: summaries logged, curves not yet
    for split in ROLLED_OUT_SPLITS:
        stride = frame_stride(datasets[split], system.dt)
        steps = np.arange(1, len(curves[split]["time"]) + 1) * stride
        series = {k: v for k, v in curves[split].items() if k != "time"}
        tracker.log_series(series, steps, prefix=f"eval.{split}.")
    for png in pngs:
        tracker.log_artifact(png, "evaluation")
    tracker.end()
    print_json(result)
    return 0
