"""Roll the closure models/SYSTEM/closures/ESTIMATOR out (un-nudged, float64, with the system's own
step) from the first frame of every val, test and ood trajectory; write
metrics/SYSTEM/evaluate/ESTIMATOR.json, per-frame curves and figures under
plots/SYSTEM/evaluate/ESTIMATOR/, and log them to an evaluation run nested in the model's run.

``ml4d evaluate`` (stage ``evaluate``): hybrid rollouts of a trained closure on the val, test
and ood splits (val to choose hyperparameters such as λ; test and ood are scored for promotion).

Writes ``metrics/<system>/evaluate/<estimator>.json`` (an ``EvaluationResult``: summaries per
split, see ``ml4dynamics.evaluation.metrics`` for the definitions), per-frame curves as CSV for
``dvc plots`` and PNG figures under ``plots/<system>/evaluate/<estimator>/``, and logs all of it
to an MLflow run nested under the run that trained the model (``<system>-<estimator>-evaluate``);
evaluating again replaces that run, so the per-step history is never logged twice.
"""

from __future__ import annotations

import argparse

import numpy as np

from ml4dynamics.config import ROLLED_OUT_SPLITS, SCORED_SPLITS, load_params
from ml4dynamics.core.faults import kill_point
from ml4dynamics.core.layout import Layout
from ml4dynamics.core.outputs import exclusive, fingerprint, write_csv, write_json
from ml4dynamics.core.tracking import Run
from ml4dynamics.datasets import open_splits
from ml4dynamics.datasets.pairs import system_of
from ml4dynamics.evaluation.config import evaluate_config
from ml4dynamics.evaluation.metrics import curve_rows
from ml4dynamics.evaluation.result import headline
from ml4dynamics.evaluation.rollouts import evaluate_closure
from ml4dynamics.learning import estimators
from ml4dynamics.learning.closure_training import frozen
from ml4dynamics.models.io import load_model, model_identity
from ml4dynamics.pipeline import print_json
from ml4dynamics.reporting import figures
from ml4dynamics.simulation.hybrid import frame_stride

ARGUMENTS = ("system", "estimator", "params")


def main(args: argparse.Namespace) -> int:
    layout, name, label = Layout(), args.system, args.estimator
    # the model's lock, the one its training holds: one writer of a model's outputs at a time
    lock = layout.lock(name, f"model-{label}")
    with exclusive(lock, f"`ml4d evaluate {name} --estimator {label}`"):
        return _evaluate(args, layout, name, label)


def _evaluate(args: argparse.Namespace, layout: Layout, name: str, label: str) -> int:
    params = load_params(args.params)
    estimators.estimator(params, label, name)  # an unknown name fails here, naming the known ones
    config = evaluate_config(params, name)
    data_dir, closure_dir = layout.data(name), layout.closure(name, label)
    datasets = open_splits(data_dir, ROLLED_OUT_SPLITS)
    system = system_of(datasets["test"])
    closure, meta = load_model(closure_dir, "closure", system.state_field, system.closure_field)
    manifold, _ = load_model(layout.manifold(name), "manifold", system.state_field)
    result, curves, frames = evaluate_closure(
        datasets,
        closure,
        config,
        frozen(manifold),
        estimator=label,
        closure_fingerprint=model_identity(closure, meta),
        data_fingerprint=fingerprint({}, [layout.split(name, s) for s in SCORED_SPLITS]),
    )
    plots_dir = layout.evaluate_plots(name, label)
    plots_dir.mkdir(parents=True, exist_ok=True)
    for split in ROLLED_OUT_SPLITS:
        write_csv(plots_dir / f"{split}.csv", curve_rows(curves[split]))
    pngs = _figures(plots_dir, f"{name} {label}", datasets, result, curves, frames)
    write_json(layout.evaluate_metrics(name, label), result.to_json())
    write_json(layout.headline(name, label), headline(result))

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
    try:
        _log(tracker, result, curves, datasets, system, pngs)
    except BaseException:  # FAILED, and the previous evaluation run stays (MLflow would end
        tracker.fail()  # an unfinished run FINISHED at exit)
        raise
    print_json(result.to_json())
    return 0


def _log(tracker: Run, result, curves, datasets, system, pngs) -> None:
    """The evaluation's numbers, curves and figures into its run; ended FINISHED, which makes it
    replace the earlier evaluation runs of the model."""
    tracker.log_metrics(
        result.metrics("eval") | ({"eval.score": result.score} if result.score is not None else {})
    )
    # the headline on the training run too: the runs table shows it beside every training
    tracker.log_on_parent(
        {f"headline.{k}": v for k, v in headline(result).items() if isinstance(v, int | float)}
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


def _figures(plots_dir, title: str, datasets, result, curves, frames) -> list:
    """The evaluation's PNGs: a test and an ood trajectory beside the truth, the error curves
    (with the ablation's and the coarse solver alone's), the shift curves."""
    pngs = []
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
                f"{title}: {split} trajectory 0",
                fields,
                figures.spatial_axes(ds),
            )
        )
    stability = {
        s: (curves[s]["time"], curves[s]["stable_fraction"], result.splits[s].blowup_times)
        for s in ROLLED_OUT_SPLITS
    }
    pngs.append(
        figures.curves(
            plots_dir / "error.png",
            _error_curves(curves),
            "relative L2 error",
            f"{title}: hybrid rollout error",
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
                f"{title}: distribution shift",
                log=False,
                stable={f"{s} hybrid": stability[s] for s in ROLLED_OUT_SPLITS},
            )
        )
    return pngs


def _error_curves(curves) -> dict:
    """The closure's error curve per split, and its baselines' where they were rolled out."""
    out = {s: (curves[s]["time"], curves[s]["rel_error"]) for s in ROLLED_OUT_SPLITS}
    baselines = (
        ("ablation_rel_error", "exact closure + noise of its misfit (ablation)"),
        ("coarse_alone_rel_error", "the alias-free coarse solver alone"),
    )
    for key, what in baselines:  # each where it was rolled out (ablation: not on every
        for s in ROLLED_OUT_SPLITS:  # coarse grid; the coarse solver: only on one)
            if key in curves[s]:
                out[f"{s}: {what}"] = (curves[s]["time"], curves[s][key])
    return out
