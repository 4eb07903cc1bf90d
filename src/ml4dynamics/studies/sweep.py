"""The trial behind ``ml4d sweep``: every estimator over seeds, with λ chosen on validation
rollouts and the instruments that explain the result, optionally along one system parameter
(the paper's table: error vs γ_u on rd).

For each value of the varied parameter (or once, at params.yaml's settings): generate
train/val/test with the reference solver (the system's settings of params.yaml with that
parameter replaced), fit the manifold model once, then train every estimator with every seed
(the seed of the network's initialisation and of the batch order; the data stay the same); TR
estimators are trained once per λ of ``--lam``. Every closure is rolled out on the validation and
the test trajectories. For each TR estimator, the λ with the lowest mean validation score (over
seeds; a blow-up counts as infinite) is chosen — test numbers never enter the choice — and the
table reports the test error at the report time at that λ. The validation score is the one
promotion uses (``evaluation.score_key``): the error at the horizon, or at the report time for
a chaotic system, whose rollouts have all decorrelated from the truth by the horizon. Beside
it: the floor ratio (the exact closure's tangent penalty ÷ the closure's, on validation; near 1
the manifold model cannot see the closure's errors) and the ablation (the exact closure plus
noise of the closure's own misfit: what the per-step error alone costs; none where the exact
closure is known only along the reference trajectories, as on a coarse grid). Everything runs
in one process, so JAX compiles each program once for the whole sweep.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from ml4dynamics.config import load_params
from ml4dynamics.core.errors import ML4DError, warn
from ml4dynamics.core.layout import trial_curves
from ml4dynamics.core.outputs import write_json
from ml4dynamics.core.provenance import provenance
from ml4dynamics.datasets import generate_split
from ml4dynamics.datasets.generation import GENERATION_CODE
from ml4dynamics.datasets.pairs import as_pairs, system_of
from ml4dynamics.evaluation import evaluate_config, evaluate_splits, report_key, score_key
from ml4dynamics.learning import aggregation, estimators
from ml4dynamics.learning.closure_training import frozen, train_closure
from ml4dynamics.learning.manifold_fitting import fit_manifold
from ml4dynamics.learning.manifold_quality import assess
from ml4dynamics.learning.network_config import network_stage
from ml4dynamics.learning.training import STILL_FALLING, convergence, convergence_warning
from ml4dynamics.models import build_closure
from ml4dynamics.reporting import figures
from ml4dynamics.reporting.report import manifold_shape, optimiser
from ml4dynamics.studies.trial_tables import (
    CHOICE_RULE,
    VALIDATION_SETTINGS,
    choose_lam,
    choose_trial,
    errors_cell,
    lam_table,
    mean_std,
    setting_label,
    shift_cell,
    stability_table,
    table,
)


def with_lam(reg, lam: float | None):
    """``reg`` with its TR weight replaced (unchanged for other kinds or ``lam=None``)."""
    if lam is None or not hasattr(reg.config, "lam"):
        return reg
    return type(reg)(dataclasses.replace(reg.config, lam=lam))


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
    params = load_params(params_path)
    base = params.setup(system_name)
    train_stage = network_stage(params, "train", system_name)
    manifold_stage = network_stage(params, "manifold", system_name)
    evaluate = evaluate_config(params, system_name)
    names = names or list(estimators.configured(params, system_name))
    regs = {name: estimators.estimator(params, name, system_name) for name in names}
    if param is None:
        values = [None]
    elif not hasattr(base.system, param):
        known = ", ".join(f.name for f in dataclasses.fields(base.system))
        raise ML4DError(f"{system_name} has no parameter {param!r}; vary one of: {known}")
    if not values or not seeds:
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
    if batch_size is not None and batch_size < 0:
        raise ML4DError(f"--batch-size must be >= 0 (0: full batch), got {batch_size}")
    if lr is not None and not (np.isfinite(lr) and lr > 0):
        raise ML4DError(f"--lr must be a positive learning rate, got {lr}")
    changed = {"epochs": epochs, "batch_size": batch_size, "lr": lr}
    optim = dataclasses.replace(
        train_stage.optim, **{k: v for k, v in changed.items() if v is not None}
    )
    system_cfg = base.system if n is None else dataclasses.replace(base.system, n=n)
    prov = provenance(".", GENERATION_CODE)
    key = report_key(evaluate.report_time)
    column = param or "setting"
    runs: list[dict[str, Any]] = []
    val_key = None
    for value in values:
        cfg = system_cfg if param is None else dataclasses.replace(system_cfg, **{param: value})
        setup = dataclasses.replace(base, system=cfg)
        data = {s: generate_split(setup, s, prov) for s in ("train", "val", "test")}
        system = system_of(data["train"])
        val_key = score_key(system, evaluate.report_time)
        train, val = as_pairs(data["train"]), as_pairs(data["val"])
        manifold, _ = fit_manifold(system.state_field, manifold_stage, train["u"], val["u"])
        reconstruct = frozen(manifold)
        for seed in seeds:
            for name, configured in regs.items():
                grid = lams if lams is not None and hasattr(configured.config, "lam") else [None]
                for lam in grid:
                    reg = with_lam(configured, lam)
                    start = time.perf_counter()
                    model = build_closure(
                        train_stage.model, system.state_field, system.closure_field, seed
                    )
                    history = train_closure(
                        system,
                        model,
                        reg,
                        dataclasses.replace(optim, seed=seed),
                        train,
                        val,
                        reconstruct=reconstruct,
                        progress=False,
                        grow=aggregation.for_estimator(reg, data["train"], seed),
                    )
                    quality = assess(reg, system, train, val, reconstruct, history.epochs[-1])
                    converged = convergence(history.epochs)
                    # the ablation on test only: λ is chosen on validation's own rollouts (on a
                    # coarse grid the ablation reruns the fine solver: ~30 s per run on kolmogorov)
                    valid = evaluate_splits(
                        {"val": data["val"]},
                        model,
                        reconstruct,
                        evaluate.bound,
                        evaluate.report_time,
                        with_ablation=False,
                    )[0]["val"]
                    summaries, curves, _ = evaluate_splits(
                        {"test": data["test"]},
                        model,
                        reconstruct,
                        evaluate.bound,
                        evaluate.report_time,
                    )
                    test = summaries["test"]
                    # how long the validation rollouts last (a blow-up ends one): the tie-break
                    # of λ choices whose validation rollouts all blew up
                    lasted = [valid["horizon"] if b is None else b for b in valid["blowup_times"]]
                    row = {
                        column: value,
                        "seed": seed,
                        "estimator": name,
                        "lam": getattr(reg.config, "lam", None),
                        "val_score": valid[val_key],
                        "val_error_horizon": valid["error_horizon"],
                        "val_stable_time": float(np.mean(lasted)),
                        "error": test[key],
                        "error_sq": test[f"{key}_sq"],
                        "error_horizon": test["error_horizon"],
                        "stable_fraction": test["stable_fraction"],
                        "excess_shift": test.get("excess_shift"),
                        "ablation_error": (test.get("ablation") or {}).get(key),
                        # present when the ablation ran: tells its blow-up from its absence
                        "ablation_stable_fraction": (test.get("ablation") or {}).get(
                            "stable_fraction"
                        ),
                        "floor_ratio": quality["floor_ratio"],
                        "lam_scale": quality["lam_scale"],
                        "val_misfit": history.epochs[-1]["val_misfit"],
                        "collapsed": converged["collapsed"],
                        "epochs": len(history.epochs),
                        "val_loss_curve": [e["val_loss"] for e in history.epochs],
                        "seconds": round(time.perf_counter() - start, 1),
                    }
                    for extra in ("corr_time_80", "coarse_alone"):
                        if extra in test:
                            row[extra] = test[extra]
                    lam_text = "" if row["lam"] is None else f" λ = {row['lam']:g}"
                    line = convergence_warning(
                        converged,
                        f"{system_name} {name}{lam_text} seed {seed}",
                        "the learning rate (--lr; a collapsed run's row is a broken closure)",
                        "--epochs",
                    )
                    if line:
                        warn(line)
                    row["blowup_times"] = test["blowup_times"]
                    row["curves"] = kept_curves(curves["test"])
                    runs.append(row)
                    print(
                        {k: v for k, v in row.items() if k not in ("val_loss_curve", "curves")},
                        flush=True,
                    )
    result = {
        "settings": {
            "system": system_name,
            "parameter": param,
            "n": getattr(system_cfg, "n", None),
            "epochs": optim.epochs,
            "optim": {k: getattr(optim, k) for k in ("optimizer", "lr", "batch_size", "schedule")},
            "report_time": evaluate.report_time,
            "horizon": test_time,
            "val_score": val_key,
            # per parameter combination of the split (ns_channel: one per Reynolds number) ...
            "test_trajectories": base.data.test.trajectories,
            "val_trajectories": base.data.val.trajectories,
            # ... and in all
            "test_samples": int(data["test"].sizes["sample"]),
            "val_samples": int(data["val"].sizes["sample"]),
            "names": names,  # the estimators in the order asked for (the first is the baseline)
            "lams": lams,
            "model": dataclasses.asdict(train_stage.model),
            "manifold": dataclasses.asdict(manifold_stage.model),
            "estimators": {k: dataclasses.asdict(v.config) for k, v in regs.items()},
        },
        "runs": runs,
    }
    return _tabulated(result, out)


def _rounded(values) -> list[float | None]:
    """Four significant digits, None where not finite (a JSON-friendly curve)."""
    return [float(f"{v:.4g}") if np.isfinite(v) else None for v in np.asarray(values, float)]


def kept_curves(curves: dict[str, np.ndarray]) -> dict[str, list[float | None]]:
    """The per-frame test curves a sweep keeps of each run (``evaluation.score_split``'s: medians
    over every trajectory, a blown-up one counting as the worst value): the relative error, the
    fraction still stable, the shift (median log10 F of the hybrid minus the truth's, where the
    run has a manifold model), the ablation's error (the exact closure plus noise of the
    closure's misfit, where there is one) and the coarse solver's alone (on a coarse grid)."""
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


def render(out: Path) -> dict[str, Any]:
    """Rewrite the tables of the sweep recorded in ``out`` (its JSON) from its runs, without
    running anything: for a committed sweep after the tables gained a column."""
    return _tabulated(_recorded(out), out)


# what the trials of one configuration may differ in: which estimators and λ values they ran
GRID_SETTINGS = ("names", "lams", "estimators")


def merge(paths: list[Path], out: Path) -> dict[str, Any]:
    """One trial from sweeps recorded with the same settings and different seeds or more of the
    λ grid (a trial extended by more seeds, or by λ values at the ends of its grid, later): their
    runs together, λ chosen again on every seed's validation, tabulated into ``out`` (JSON,
    Markdown and figure, as ``run`` writes them). Every λ of an estimator must have run on the same
    seeds, so that the choice compares like with like."""
    if len(paths) < 2:
        raise ML4DError("--merge takes the JSON files of two or more `ml4d sweep` trials")
    if Path(out).suffix != ".json":
        raise ML4DError(f"--out {out}: a merged trial is JSON (Markdown beside it); end it .json")
    results = [_recorded(path) for path in paths]
    settings = dict(results[0]["settings"])
    for path, result in zip(paths[1:], results[1:], strict=True):
        other = result["settings"]
        differing = sorted(
            k
            for k in settings.keys() | other.keys()
            if k not in GRID_SETTINGS and settings.get(k) != other.get(k)
        )
        differing += [
            f"estimator {name}"
            for name in sorted(settings["estimators"].keys() & other["estimators"].keys())
            if _without_lam(settings["estimators"][name]) != _without_lam(other["estimators"][name])
        ]
        if differing:
            raise ML4DError(
                f"{path} was run with other settings than {paths[0]} ({', '.join(differing)}); "
                "merge trials of one configuration only"
            )
        names = settings.get("names") or []
        names = names + [n for n in other.get("names") or [] if n not in names]
        settings["names"] = sorted(names, key=lambda n: n != "ols")  # the baseline first
        lams = set(settings.get("lams") or []) | set(other.get("lams") or [])
        settings["lams"] = sorted(lams) or None
        settings["estimators"] = {**other["estimators"], **settings["estimators"]}
    runs = [row for result in results for row in result["runs"]]
    column = settings["parameter"] or "setting"
    keys = [(row[column], row["seed"], row["estimator"], row["lam"]) for row in runs]
    if len(set(keys)) < len(keys):
        raise ML4DError(
            "the trials ran a seed twice (the same estimator, λ and setting); merge trials of "
            "different seeds or λ values"
        )
    seeds: dict[tuple[Any, str], dict[float, set[int]]] = {}
    for value, seed, name, lam in keys:
        if lam is not None:
            seeds.setdefault((value, name), {}).setdefault(lam, set()).add(seed)
    for (value, name), by_lam in seeds.items():
        if len({frozenset(s) for s in by_lam.values()}) > 1:
            ran = "; ".join(f"λ = {lam:g} on {sorted(s)}" for lam, s in sorted(by_lam.items()))
            raise ML4DError(
                f"{name} ({setting_label(value)}) ran its λ values on different seeds ({ran}); "
                "λ is chosen over the same seeds: run the missing seeds first"
            )
    merged = {"settings": settings, "runs": runs, "merged_from": [str(p) for p in paths]}
    return _tabulated(merged, Path(out))


def _without_lam(config: dict[str, Any]) -> dict[str, Any]:
    """An estimator's recorded configuration but its λ (each run records the λ it trained at)."""
    return {k: v for k, v in config.items() if k != "lam"}


def compare(paths: list[Path], out: Path, command: str) -> str:
    """Markdown: recorded trials side by side (e.g. one training budget each), one row per trial
    and estimator at the setting(s) it ran — TR at the λ its own validation chose — with the
    validation misfit of the last epoch and its change from the same estimator's row in the
    trial listed before ("–" where that trial chose another λ, another loss; within
    ``STILL_FALLING``, 10 %: the two budgets ended at the same misfit, a plateau across budgets —
    which a cosine schedule's last quarter, always falling, cannot show within one run), the
    same for the validation loss (the estimator's own objective: for TR misfit + λ·penalty,
    whose plateau may come before the misfit's), the validation score that chose λ and how
    long the validation rollouts lasted, the test error at the report time and at the horizon,
    the fraction of test rollouts still stable at the horizon, the excess shift, the floor
    ratio and the seconds per run (training and rollouts), mean ± std over seeds. Under the
    table, per setting and estimator, the trial its validation chooses (``choose_trial``: the
    budget, or the learning rate, chosen like λ). Written to ``out`` under a line naming
    ``command``, which regenerates it; the validation loss curves of those runs (every seed)
    beside it, ``out`` with ``.png``."""
    if not paths:
        raise ML4DError("give the JSON files of the `ml4d sweep` trials to compare")
    if out.suffix != ".md":
        raise ML4DError(f"--out {out}: the comparison is Markdown; give a path ending in .md")
    lines = [
        "| trial | epochs (optimiser) | manifold model | setting | estimator | λ "
        "| validation misfit | misfit: change from the trial before | validation loss "
        "| loss: change from the trial before | validation score "
        "| validation: time stable | test error (report time) | test error (horizon) "
        "| test: stable fraction | test: excess shift | floor ratio | seconds per run |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    # per (setting, estimator), its rows trial by trial: the misfit and loss changes, the choice
    candidates: dict[tuple[str, str], list[dict[str, Any]]] = {}
    curves: dict[str, dict[str, list[list[float]]]] = {}
    for path in paths:
        result = _recorded(path)
        settings, runs = result["settings"], result["runs"]
        column = settings["parameter"] or "setting"
        chosen = choose_lam(runs, column)
        names = settings.get("names") or sorted(settings["estimators"], key=lambda n: n != "ols")
        budget = (
            f"{settings['epochs']} ({optimiser(settings.get('optim')) or 'optimiser not recorded'})"
        )
        manifold = settings.get("manifold")
        model = f"{manifold['kind']} ({manifold_shape(manifold)})" if manifold else "not recorded"
        for value in dict.fromkeys(r[column] for r in runs):
            for name in names:
                lam = chosen.get((value, name))
                rows = [
                    r
                    for r in runs
                    if (r[column], r["estimator"]) == (value, name) and r["lam"] == lam
                ]
                if not rows:
                    continue
                label = (
                    setting_label(value)
                    if column == "setting"
                    else f"{column} {setting_label(value)}"
                )
                key = trial_name(path) if column == "setting" else f"{trial_name(path)}, {label}"
                curves.setdefault(key, {})[name] = [r["val_loss_curve"] for r in rows]
                rounds = settings["estimators"].get(name, {}).get("rounds", 1)
                spent = budget if rounds == 1 else f"{rounds} rounds × {budget}"
                # the loss is the estimator's own objective (TR: misfit + λ·penalty), the
                # last epoch's value of its validation curve
                rows = [dict(r, val_loss=r["val_loss_curve"][-1]) for r in rows]
                misfit = float(np.mean([r["val_misfit"] for r in rows]))
                loss = float(np.mean([r["val_loss"] for r in rows]))
                earlier = candidates.setdefault((label, name), [])
                before = earlier[-1] if earlier and earlier[-1]["lam"] == lam else None
                change = _change(None if before is None else before["misfit"], misfit)
                loss_change = _change(None if before is None else before["loss"], loss)
                earlier.append(
                    {
                        "trial": trial_name(path),
                        "lam": lam,
                        "misfit": misfit,
                        "loss": loss,
                        "epochs": settings["epochs"] * rounds,
                        "seeds": sorted(r["seed"] for r in rows),
                        "validation": [settings.get(k) for k in VALIDATION_SETTINGS],
                        "rows": rows,
                    }
                )
                lines.append(
                    f"| {trial_name(path)} | {spent} | {model} | {label} | {name} | "
                    f"{'–' if lam is None else f'{lam:g}'} | {mean_std(rows, 'val_misfit')} | "
                    f"{change} | {mean_std(rows, 'val_loss')} | {loss_change} | "
                    f"{errors_cell(rows, 'val_score')} | "
                    f"{mean_std(rows, 'val_stable_time')} | {errors_cell(rows, 'error')} | "
                    f"{errors_cell(rows, 'error_horizon')} "
                    f"| {mean_std(rows, 'stable_fraction')} | {shift_cell(rows)} | "
                    f"{mean_std(rows, 'floor_ratio')} | {mean_std(rows, 'seconds')} |"
                )
    lines += ["", CHOICE_RULE, ""]
    for (label, name), trials in candidates.items():
        best, considered, left_out = choose_trial(trials)
        where = "" if label == "params.yaml" else f" at {label}"
        line = f"- {name}{where}: **{best}** (of {', '.join(considered)})"
        if left_out:
            line += f"; not comparable (other seeds or validation split): {', '.join(left_out)}"
        lines.append(line)
    text = f"Generated by `{command}`.\n\n" + "\n".join(lines) + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    figures.budget_curves(
        out.with_suffix(".png"),
        curves,
        f"{out.stem.removesuffix('_comparison')}: validation loss over the epochs",
    )
    out.write_text(text)
    return text


def _change(before: float | None, after: float) -> str:
    """A mean validation misfit's (or loss's) change from one trial to the next: "-3% (within 10%)",
    "-66%", "×7e+04" (a collapse); "–" for the first trial of an estimator."""
    if before is None or not before > 0:
        return "–"
    change = after / before - 1
    if abs(change) >= 1:
        return f"×{after / before:.2g}"
    within = f" (within {STILL_FALLING:.0%})" if abs(change) <= STILL_FALLING else ""
    return f"{change:+.0%}{within}"


def trial_name(path: Path) -> str:
    """``rd_120_epochs`` of ``sweep/rd_120_epochs_table.json``."""
    return Path(path).stem.removesuffix("_table")


def _recorded(out: Path) -> dict[str, Any]:
    """The JSON an ``ml4d sweep`` wrote to ``out``, checked (one clear line if it is not)."""
    try:
        result = json.loads(Path(out).read_text())
    except FileNotFoundError as exc:
        raise ML4DError(f"{out} does not exist; give the JSON an `ml4d sweep` wrote") from exc
    except (OSError, ValueError) as exc:
        raise ML4DError(f"{out} is not the JSON of an `ml4d sweep` ({exc}); give its path") from exc
    needed = {"estimators", "parameter", "val_score"}
    if not isinstance(result, dict) or "runs" not in result:
        raise ML4DError(f"{out} is not the JSON of an `ml4d sweep` (no runs); give its path")
    if not needed <= set(result.get("settings", {})):
        raise ML4DError(
            f"{out} is not the JSON of an `ml4d sweep` (no settings {sorted(needed)}: recorded "
            "before they were); give its path"
        )
    return result


def _tabulated(result: dict[str, Any], out: Path) -> dict[str, Any]:
    """``result`` with its λ choice and tables (from its settings and runs), written to ``out``
    (JSON) and beside it (Markdown)."""
    settings, runs = result["settings"], result["runs"]
    column = settings["parameter"] or "setting"
    # (a sweep recorded before the order was: OLS, the baseline, first)
    recorded = sorted(settings["estimators"], key=lambda name: name != "ols")
    names = settings.get("names") or recorded
    values = list(dict.fromkeys(r[column] for r in runs))
    chosen = choose_lam(runs, column)
    picked = [
        r for r in runs if r["lam"] is None or chosen[(r[column], r["estimator"])] == r["lam"]
    ]
    result["chosen_lam"] = [
        {column: g, "estimator": e, "lam": lam} for (g, e), lam in chosen.items()
    ]
    base_key = report_key(settings["report_time"])
    result["table"] = table(picked, names, values, chosen, column, base_key)
    result["stability_table"] = stability_table(picked, names, values, column)
    lams = settings.get("lams")
    result["lam_table"] = lam_table(runs, values, column, settings["val_score"]) if lams else ""
    write_json(out, result)
    parts = [result["table"], result["stability_table"], result["lam_table"]]
    out.with_suffix(".md").write_text("\n\n".join(p for p in parts if p) + "\n")
    if any("curves" in r for r in picked):
        figures.trial_curves(
            trial_curves(out),
            {setting_label(value): _by_estimator(picked, names, value, column) for value in values},
            f"{settings['system']}: the test rollouts of every seed "
            f"({settings.get('test_samples')} per seed; TR at its chosen λ)",
        )
    return result


def _by_estimator(
    runs: list[dict[str, Any]], names: list[str], value: Any, column: str
) -> dict[str, dict[str, Any]]:
    """Per estimator, its legend (with its λ where it has one) and the curves of its runs at
    ``value``, one per seed."""
    grouped: dict[str, dict[str, Any]] = {}
    for name in names:
        rows = [r for r in runs if r[column] == value and r["estimator"] == name and "curves" in r]
        if rows:
            lam = rows[0]["lam"]
            label = name if lam is None else f"{name} (λ = {lam:g})"
            grouped[name] = {"label": label, "runs": [r["curves"] for r in rows]}
    return grouped
