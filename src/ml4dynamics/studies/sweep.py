"""The trial behind ``ml4d sweep``: every estimator over seeds, with λ chosen on validation rollouts
and the instruments that explain the result, optionally along one system parameter (the paper's
table: error vs γ_u on rd).

For each value of the varied parameter (or once, at params.yaml's settings): generate
train/val/test with the reference solver (the system's settings of params.yaml with that
parameter replaced), fit the manifold model once, then train every estimator with every seed
(the seed of the network's initialisation and of the batch order; the data stay the same); TR
estimators are trained once per λ of ``--lam``. Every closure is rolled out on the validation and
the test trajectories; an unrolled estimator's closure is rolled out at the end of every stage of
its curriculum, each stage's window length k a candidate. For each TR estimator the λ, and for
each unrolled one the k (and λ), with the lowest mean validation score (over seeds; a blow-up
counts as infinite) is chosen — test numbers never enter the choice — and the table reports the
test error at the report time at that choice. The validation score is the one
promotion uses (``evaluation.result.scored_error``): the error at the horizon, or at the report
time for a chaotic system, whose rollouts have all decorrelated from the truth by the horizon.
Beside it: the floor ratio (the exact closure's tangent penalty ÷ the closure's, on validation;
near 1 the manifold model cannot see the closure's errors) and the ablation (the exact closure
plus noise of the closure's own misfit: what the per-step error alone costs; none where the
exact closure is known only along the reference trajectories, as on a coarse grid). Everything
runs in one process, so JAX compiles each program once for the whole sweep. The recorded trial
is tabulated by ``trial_records`` (``render`` and ``merge`` work from the record alone).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from flax import nnx

from ml4dynamics.config import SystemSetup, load_params
from ml4dynamics.core.errors import ML4DError, warn
from ml4dynamics.core.provenance import provenance
from ml4dynamics.datasets import generate_split
from ml4dynamics.datasets.generation import GENERATION_CODE
from ml4dynamics.datasets.pairs import as_pairs, system_of
from ml4dynamics.evaluation.config import EvaluateConfig, evaluate_config
from ml4dynamics.evaluation.result import EvaluationResult, or_none, score_metric
from ml4dynamics.evaluation.rollouts import evaluate_closure
from ml4dynamics.learning import aggregation, estimators
from ml4dynamics.learning.closure_training import Windows, frozen, train_closure
from ml4dynamics.learning.manifold_fitting import fit_manifold
from ml4dynamics.learning.manifold_quality import assess
from ml4dynamics.learning.network_config import NetworkStage, network_stage
from ml4dynamics.learning.training import convergence, convergence_warning
from ml4dynamics.models import build_closure
from ml4dynamics.studies.trial_records import tabulated
from ml4dynamics.studies.trial_tables import choice_label


def with_lam(reg, lam: float | None):
    """``reg`` with its TR weight replaced (unchanged for other kinds or ``lam=None``)."""
    if lam is None or not hasattr(reg.config, "lam"):
        return reg
    return type(reg)(dataclasses.replace(reg.config, lam=lam))


@dataclasses.dataclass(frozen=True)
class Trial:
    """What every run of one sweep shares: its settings, checked."""

    system_name: str
    param: str | None  # the varied system parameter (None: params.yaml's settings only)
    base: SystemSetup
    system: Any  # the system's config, with ``--n`` applied
    train_stage: NetworkStage
    manifold_stage: NetworkStage
    optim: Any  # the training's optimiser settings, with the overrides applied
    evaluate: EvaluateConfig
    regs: dict[str, Any]  # estimator name -> its configured estimator
    lams: list[float] | None

    @property
    def column(self) -> str:
        return self.param or "setting"


def run(
    params_path: str,
    values: list[float] | None,
    seeds: list[int],
    names: list[str] | None,
    out: Path,
    n: int | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    lams: list[float] | None = None,
    system_name: str = "rd",
    param: str | None = "gamma_u",
) -> dict[str, Any]:
    """The trial on ``system_name``, along ``param`` over ``values`` (``param=None``: once, at
    params.yaml's settings). Writes ``out`` (JSON: every run, the λ choice, the settings) and its
    Markdown tables beside it."""
    overrides = {"epochs": epochs, "batch_size": batch_size, "lr": lr}
    trial = prepare(params_path, values, seeds, names, n, overrides, lams, system_name, param)
    prov = provenance(".", GENERATION_CODE)
    runs: list[dict[str, Any]] = []
    for value in [None] if param is None else values:
        setting = Setting.generate(trial, value, prov)
        for seed in seeds:
            for name, configured in trial.regs.items():
                has_lam = hasattr(configured.config, "lam")
                for lam in lams if lams is not None and has_lam else [None]:
                    for row in run_one(trial, setting, seed, name, with_lam(configured, lam)):
                        runs.append(row)
                        print(
                            {k: v for k, v in row.items() if k not in ("val_loss_curve", "curves")},
                            flush=True,
                        )
    val_key = score_metric(trial.evaluate.report_time, setting.system.chaotic)
    settings = _settings(trial, list(trial.regs), setting.data, val_key)
    return tabulated({"settings": settings, "runs": runs}, out)


def prepare(
    params_path: str,
    values: list[float] | None,
    seeds: list[int],
    names: list[str] | None,
    n: int | None,
    overrides: dict[str, Any],
    lams: list[float] | None,
    system_name: str,
    param: str | None,
) -> Trial:
    """The sweep's settings from params.yaml and the command line, each checked (one line
    naming what to change)."""
    params = load_params(params_path)
    base = params.setup(system_name)
    train_stage = network_stage(params, "train", system_name)
    manifold_stage = network_stage(params, "manifold", system_name)
    evaluate = evaluate_config(params, system_name)
    names = names or list(estimators.configured(params, system_name))
    regs = {name: estimators.estimator(params, name, system_name) for name in names}
    if param is not None and not hasattr(base.system, param):
        known = ", ".join(f.name for f in dataclasses.fields(base.system))
        raise ML4DError(f"{system_name} has no parameter {param!r}; vary one of: {known}")
    if (param is not None and not values) or not seeds:
        raise ML4DError("give at least one value of the varied parameter and one --seed")
    if lams is not None and any(lam < 0 for lam in lams):
        raise ML4DError(f"--lam values must be >= 0, got {lams}")
    if n is not None and not hasattr(base.system, "n"):
        raise ML4DError(f"--n sets rd's grid; {system_name} has no parameter n")
    test_time = base.data.test.steps * base.system.dt
    if test_time < evaluate.report_time:
        raise ML4DError(
            f"{system_name}.data.test spans t = {test_time:g} < evaluate.report_time = "
            f"{evaluate.report_time:g}; lengthen the test split"
        )
    batch_size, lr = overrides["batch_size"], overrides["lr"]
    if batch_size is not None and batch_size < 0:
        raise ML4DError(f"--batch-size must be >= 0 (0: full batch), got {batch_size}")
    if lr is not None and not (np.isfinite(lr) and lr > 0):
        raise ML4DError(f"--lr must be a positive learning rate, got {lr}")
    changed = {k: v for k, v in overrides.items() if v is not None}
    return Trial(
        system_name=system_name,
        param=param,
        base=base,
        system=base.system if n is None else dataclasses.replace(base.system, n=n),
        train_stage=train_stage,
        manifold_stage=manifold_stage,
        optim=dataclasses.replace(train_stage.optim, **changed),
        evaluate=evaluate,
        regs=regs,
        lams=lams,
    )


@dataclasses.dataclass(frozen=True)
class Setting:
    """One value of the varied parameter: its data, training pairs and manifold model, shared by
    every run at that value."""

    value: Any
    data: dict[str, xr.Dataset]  # train, val, test
    system: Any
    train: dict[str, np.ndarray]
    val: dict[str, np.ndarray]
    reconstruct: Callable  # the frozen manifold model

    @classmethod
    def generate(cls, trial: Trial, value, prov: dict[str, Any]) -> Setting:
        """The system's data at ``value`` (None: params.yaml's settings) from the reference
        solver, and the manifold model fitted to them."""
        config = trial.system
        if trial.param is not None:
            config = dataclasses.replace(config, **{trial.param: value})
        setup = dataclasses.replace(trial.base, system=config)
        data = {s: generate_split(setup, s, prov) for s in ("train", "val", "test")}
        system = system_of(data["train"])
        train, val = as_pairs(data["train"]), as_pairs(data["val"])
        manifold, _ = fit_manifold(system.state_field, trial.manifold_stage, train["u"], val["u"])
        return cls(value, data, system, train, val, frozen(manifold))


def run_one(trial: Trial, setting: Setting, seed: int, name: str, reg) -> list[dict[str, Any]]:
    """One closure trained at ``setting`` (its network and batch order seeded by ``seed``) and
    rolled out on validation and test: its row of the trial. An unrolled estimator gives one row
    per stage of its curriculum (``window``: the closure at the end of the stage of window length
    k, its ``epochs`` and ``seconds`` counted from the start), so that k is chosen on validation
    like λ."""
    start = time.perf_counter()
    system, data, reconstruct = setting.system, setting.data, setting.reconstruct
    model = build_closure(trial.train_stage.model, system.state_field, system.closure_field, seed)
    stages: list[tuple[int | None, Any, list[dict[str, Any]], float]] = []

    def keep(k, m, history):
        stages.append((k, nnx.clone(m), list(history.epochs), time.perf_counter() - start))

    history = train_closure(
        system,
        model,
        reg,
        dataclasses.replace(trial.optim, seed=seed),
        setting.train,
        setting.val,
        reconstruct=reconstruct,
        progress=False,
        grow=aggregation.for_estimator(reg, data["train"], seed),
        windows=Windows(data["train"], data["val"], trial.train_stage.unroll),
        on_stage=keep,
    )
    if not reg.unrolled:
        stages.append((None, model, history.epochs, time.perf_counter() - start))
    return [_evaluated(trial, setting, seed, name, reg, *stage) for stage in stages]


def _evaluated(
    trial: Trial,
    setting: Setting,
    seed: int,
    name: str,
    reg,
    window: int | None,
    model,
    epochs: list[dict[str, Any]],
    trained: float,
) -> dict[str, Any]:
    """The row of a closure trained for ``epochs`` (in ``trained`` seconds): rolled out on
    validation and test, with the instruments beside."""
    start = time.perf_counter()
    system, data, reconstruct = setting.system, setting.data, setting.reconstruct
    quality = assess(reg, system, setting.train, setting.val, reconstruct, epochs[-1])
    converged = convergence(epochs)
    # the ablation on test only: λ is chosen on validation's own rollouts (on a coarse grid the
    # ablation reruns the fine solver: ~30 s per run on kolmogorov)
    evaluate = trial.evaluate
    valid, *_ = evaluate_closure(
        {"val": data["val"]}, model, evaluate, reconstruct, with_ablation=False
    )
    tested, curves, _ = evaluate_closure({"test": data["test"]}, model, evaluate, reconstruct)
    row = {
        trial.column: setting.value,
        "seed": seed,
        "estimator": name,
        "lam": getattr(reg.config, "lam", None),
        **({} if window is None else {"window": window}),
        **_scores(valid, tested),
        "floor_ratio": quality["floor_ratio"],
        "lam_scale": quality["lam_scale"],
        "val_misfit": epochs[-1]["val_misfit"],
        "collapsed": converged["collapsed"],
        "epochs": len(epochs),
        "val_loss_curve": [e["val_loss"] for e in epochs],
        "seconds": round(trained + time.perf_counter() - start, 1),
    }
    test = tested.splits["test"]
    row["corr_time_80"] = test.corr_time_80
    if (base := or_none(test.coarse_alone)) is not None:
        row["coarse_alone"] = base.to_json()
    picks = choice_label(row["lam"], row.get("window"))
    line = convergence_warning(
        converged,
        f"{trial.system_name} {name}{f' ({picks})' if picks else ''} seed {seed}",
        "the learning rate (--lr; a collapsed run's row is a broken closure)",
        "--epochs",
    )
    if line:
        warn(line)
    row["blowup_times"] = list(test.blowup_times)
    row["curves"] = kept_curves(curves["test"])
    return row


def _scores(valid: EvaluationResult, tested: EvaluationResult) -> dict[str, Any]:
    """A run's numbers from its validation and test evaluations: the validation score λ is
    chosen by, and the test errors, stability, shift and ablation the tables show."""
    val, test = valid.splits["val"], tested.splits["test"]
    noisy = or_none(test.ablation)
    # how long the validation rollouts last (a blow-up ends one): the tie-break of λ choices
    # whose validation rollouts all blew up
    lasted = [val.horizon if b is None else b for b in val.blowup_times]
    return {
        "val_score": valid.scored_error("val"),
        "val_error_horizon": val.error_horizon,
        "val_stable_time": float(np.mean(lasted)),
        "error": test.error_report,
        "error_sq": test.error_report_sq,
        "error_horizon": test.error_horizon,
        "stable_fraction": test.stable_fraction,
        "excess_shift": or_none(test.excess_shift),
        "ablation_error": None if noisy is None else noisy.error_report,
        # present when the ablation ran: tells its blow-up from its absence
        "ablation_stable_fraction": None if noisy is None else noisy.stable_fraction,
    }


def _settings(trial: Trial, names: list[str], data, val_key: str) -> dict[str, Any]:
    """What the trial ran with, recorded beside its runs."""
    base, optim = trial.base, trial.optim
    return {
        "system": trial.system_name,
        "parameter": trial.param,
        "n": getattr(trial.system, "n", None),
        "epochs": optim.epochs,
        "optim": {k: getattr(optim, k) for k in ("optimizer", "lr", "batch_size", "schedule")},
        "report_time": trial.evaluate.report_time,
        "horizon": base.data.test.steps * base.system.dt,
        "val_score": val_key,
        # per parameter combination of the split (ns_channel: one per Reynolds number) ...
        "test_trajectories": base.data.test.trajectories,
        "val_trajectories": base.data.val.trajectories,
        # ... and in all
        "test_samples": int(data["test"].sizes["sample"]),
        "val_samples": int(data["val"].sizes["sample"]),
        "names": names,  # the estimators in the order asked for (the first is the baseline)
        "lams": trial.lams,
        "model": dataclasses.asdict(trial.train_stage.model),
        "manifold": dataclasses.asdict(trial.manifold_stage.model),
        "estimators": {
            k: dataclasses.asdict(v.config)
            # an unrolled estimator's curriculum is part of how it was trained
            | ({"unroll": dataclasses.asdict(trial.train_stage.unroll)} if v.unrolled else {})
            for k, v in trial.regs.items()
        },
    }


def _rounded(values) -> list[float | None]:
    """Four significant digits, None where not finite (a JSON-friendly curve)."""
    return [float(f"{v:.4g}") if np.isfinite(v) else None for v in np.asarray(values, float)]


def kept_curves(curves: dict[str, np.ndarray]) -> dict[str, list[float | None]]:
    """The per-frame test curves a sweep keeps of each run (``evaluation.scoring.score_split``'s:
    medians over every trajectory, a blown-up one counting as the worst value): the relative
    error, the fraction still stable, the shift (median log10 F of the hybrid minus the truth's,
    where the run has a manifold model), the ablation's error (the exact closure plus noise of
    the closure's misfit, where there is one) and the coarse solver's alone (on a coarse grid)."""
    kept = {
        "time": curves["time"],
        "rel_error": curves["rel_error"],
        "stable_fraction": curves["stable_fraction"],
    }
    if "log10_f_hybrid" in curves:
        kept["shift"] = np.asarray(curves["log10_f_hybrid"]) - np.asarray(curves["log10_f_true"])
    for extra in ("ablation_rel_error", "coarse_alone_rel_error"):
        if extra in curves:
            kept[extra] = curves[extra]
    return {name: _rounded(values) for name, values in kept.items()}
