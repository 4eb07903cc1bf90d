"""Does a learned closure converge with resolution? ``ml4d convergence``: for a spectral coarse grid
closed by a fine solver (``SpectralCoarseGrid`` with the correction closure), closures trained at
several coarse sizes n, each beside the plain solver and the exact correction on the same grid.

Per coarse size n (``coarsening = n_fine / n``; everything else as params.yaml sets the system):

- **plain** and **oracle**: ``studies.resolution`` on the test split's trajectories (its seed,
  count, warm-up and length): the alias-free (padded) coarse solver alone, and the same solver
  plus the exact correction, which must reproduce the restricted truth to round-off;
- **hybrid**: ``studies.sweep`` along the system parameter ``coarsening``: train/val/test
  generated at that n, the manifold model fitted (a principal-mode model's rank scaled with the
  state's size, ``manifold_at``), every estimator trained with every seed and
  rolled out on validation and test. A choice an estimator has (the window k of an unrolled one)
  is made on the mean validation score over seeds (``trial_tables.choose``); the table reports
  test numbers only: the mean ± std over seeds of the error at the report time and of the mean
  time the centred correlation with the truth stays >= 0.8;
- **closure size**: the RMS of the exact correction labels y of the training data, relative to
  the RMS of the training states, and how well each closure fits them (its RMS validation misfit
  ÷ the RMS of y: 1 is no better than y = 0);
- **cost**: wall-clock milliseconds per simulated time unit for the test split's batch of
  trajectories of the plain solver at n, the hybrid at n and the fine solver, all timed in one
  ``timed_together`` call (each repeat times every solver in turn: a change of a shared
  machine's load falls on all alike). The hybrid is timed with an untrained network of the
  trained one's architecture: the cost of a step does not depend on the weights.

``verdict`` says in one sentence per estimator whether its error falls as n grows and where it
beats the plain solver.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from ml4dynamics.config import load_params
from ml4dynamics.core.errors import ML4DError
from ml4dynamics.core.provenance import provenance
from ml4dynamics.datasets.generation import GENERATION_CODE
from ml4dynamics.evaluation.metrics import finite
from ml4dynamics.models import build_closure
from ml4dynamics.reporting.figures import estimator_colour
from ml4dynamics.reporting.tables import markdown_table
from ml4dynamics.simulation.hybrid import network_closure
from ml4dynamics.studies import resolution as plain_study
from ml4dynamics.studies import sweep
from ml4dynamics.studies.solver_bench import timed_together
from ml4dynamics.studies.speedup import reference_states
from ml4dynamics.studies.trial_tables import as_errors, choose, picked
from ml4dynamics.systems import make_system
from ml4dynamics.systems.coarse_grid import SpectralCoarseGrid

COLUMN = "coarsening"  # the system parameter the sweep varies
DROPPED = ("curves", "val_loss_curve")  # per-frame curves: kept out of the JSON's runs


def check_system(system) -> None:
    """One clear error for a system whose closure has no coarse grid to refine."""
    if not isinstance(system, SpectralCoarseGrid) or system.config.closure_kind != "correction":
        raise ML4DError(
            f"`ml4d convergence` needs a spectral coarse grid closed by a fine solver with the "
            f"correction closure (ks, kolmogorov, burgers); {system.name} is not one"
        )


def default_sizes(system: SpectralCoarseGrid) -> list[int]:
    """Half, once and twice the system's own coarse grid, those a coarse grid can have."""
    n, fine = system.config.n_coarse, system.config.n_fine
    return [m for m in (n // 2, n, 2 * n) if m >= 8 and m % 2 == 0 and fine % m == 0]


def convergence(
    params_path: str,
    system_name: str,
    sizes: Sequence[int] | None,
    seeds: Sequence[int],
    names: Sequence[str],
    *,
    epochs: int | None = None,
    timing_steps: int = 200,
    repeats: int = 5,
) -> dict[str, Any]:
    """The whole study (module docstring) on params.yaml's ``system_name``; a JSON-able result."""
    system = make_system(load_params(params_path).setup(system_name).system)
    check_system(system)
    sizes = plain_study.check_sizes(system, default_sizes(system) if sizes is None else sizes)
    sizes = sorted(sizes)  # coarsest first
    fine = system.config.n_fine
    overrides = {"epochs": epochs, "batch_size": None, "lr": None}
    trial = sweep.prepare(params_path, [fine // n for n in sizes], list(seeds), list(names),
                          None, overrides, None, system_name, COLUMN)  # fmt: skip
    test, data = trial.base.data.test, trial.base.data
    horizon, report_time = test.steps * system.dt, trial.evaluate.report_time
    plain = plain_study.resolution(system, sizes, seed=test.seed, trajectories=test.trajectories,
                                   warmup=data.warmup_steps, horizon=horizon,
                                   report_time=report_time)  # fmt: skip
    prov = provenance(".", GENERATION_CODE)
    runs: list[dict[str, Any]] = []
    rows: dict[str, dict[str, Any]] = {}
    steps, starts = {}, {}
    u0 = reference_states(system, test.seed, test.trajectories, data.warmup_steps)
    steps["fine"], starts["fine"] = jax.vmap(system.fine_step), u0
    for n in sizes:
        at_n = manifold_at(trial, n, system)
        setting = sweep.Setting.generate(at_n, fine // n, prov)
        for seed in seeds:
            for name, reg in trial.regs.items():
                for row in sweep.run_one(at_n, setting, seed, name, reg):
                    runs.append({k: v for k, v in row.items() if k not in DROPPED})
                    print(f"n = {n}, {name}, seed {seed}: test error {row['error']}", flush=True)
        rows[str(n)] = {
            "coarsening": fine // n,
            "plain": plain["sizes"][str(n)]["padded"],
            "oracle": plain["sizes"][str(n)]["oracle"],
            "labels": label_size(setting.train),
            "manifold_rank": getattr(at_n.manifold_stage.model, "rank", None),
        }
        model = build_closure(trial.train_stage.model, setting.system.state_field,
                              setting.system.closure_field, 0)  # fmt: skip
        steps[f"plain {n}"], starts[f"plain {n}"] = (
            jax.vmap(system.plain_step(n)), system.resample(u0, n))  # fmt: skip
        steps[f"hybrid {n}"], starts[f"hybrid {n}"] = hybrid(setting.system, model, u0)
    ms = timed_together(steps, starts, timing_steps, repeats)
    per_unit = {k: v / system.dt for k, v in ms.items()}  # ms per simulated time unit
    hybrids = summarise(runs, names, {fine // int(n): row["labels"] for n, row in rows.items()})
    for n, row in rows.items():
        row["hybrids"] = hybrids[fine // int(n)]
        row["cost_ms_per_time_unit"] = {k: per_unit[f"{k} {n}"] for k in ("plain", "hybrid")}
    result = {
        "system": system_name,
        "report_time": report_time,
        "horizon": horizon,
        "fine": {"n": fine, "cost_ms_per_time_unit": per_unit["fine"]},
        "settings": settings(
            trial,
            sizes,
            seeds,
            names,
            f"median of {repeats} x {timing_steps} steps, batch of {test.trajectories}",
        ),
        "sizes": rows,
        "runs": runs,
    }
    result["verdict"] = verdict(result)
    return result


def manifold_at(trial, n: int, system: SpectralCoarseGrid):
    """``trial`` with a principal-mode manifold's rank scaled with the state's size from the
    system's own coarse grid to n points per axis (rank 60 of 64 points: 30 of 32, 120 of 128),
    below the state's size; another kind of manifold model unchanged."""
    stage = trial.manifold_stage
    rank = getattr(stage.model, "rank", None)
    if rank is None:
        return trial
    dims = len(system.state_shape) - 1  # the state: (field, *grid)
    ratio, total = (n / system.config.n_coarse) ** dims, n**dims
    model = dataclasses.replace(stage.model, rank=max(1, min(total - 1, round(rank * ratio))))
    return dataclasses.replace(trial, manifold_stage=dataclasses.replace(stage, model=model))


def hybrid(system: SpectralCoarseGrid, model, u0: jax.Array):
    """(the hybrid's batched step, its batch of start states): the coarse solver plus ``model``
    from the restricted fine states ``u0``."""
    closure = network_closure(model)

    def step(u: jax.Array) -> jax.Array:
        return system.step(u, closure(u, 0.0), 0.0)

    return jax.vmap(step), jax.vmap(system.restrict)(u0)


def label_size(train: Mapping[str, np.ndarray]) -> dict[str, float]:
    """|y| of the training data: the RMS of the exact correction labels, and relative to the RMS
    of the states."""
    rms_y = float(np.sqrt(np.mean(np.square(train["y"]))))
    rms_u = float(np.sqrt(np.mean(np.square(train["u"]))))
    points = int(np.prod(train["y"].shape[1:]))  # per sample
    return {"rms_y": rms_y, "rms_u": rms_u, "relative": rms_y / rms_u, "points": points}


def summarise(
    runs: list[dict[str, Any]], names: Sequence[str], labels: Mapping[int, Mapping[str, Any]]
) -> dict[int, dict[str, Any]]:
    """Per coarsening and estimator: the test numbers of the runs at the choice validation made
    (``trial_tables.choose``), per seed and as mean ± std over seeds; beside them how well the
    closure fits: the RMS of its validation misfit per point ÷ the RMS of the training labels
    (``labels``: ``label_size`` per coarsening; 1 is as far off as y = 0)."""
    chosen = choose(runs, COLUMN)
    kept = picked(runs, chosen, COLUMN)
    out: dict[int, dict[str, Any]] = {}
    for c in sorted({r[COLUMN] for r in runs}):
        per: dict[str, Any] = {}
        for name in names:
            mine = [r for r in kept if r[COLUMN] == c and r["estimator"] == name]
            errors = as_errors(mine, "error")
            times = np.array([r["corr_time_80"] for r in mine], dtype=float)
            per[name] = {
                "choice": chosen.get((c, name)),
                "seeds": [r["seed"] for r in mine],
                "error_at_report": [None if np.isinf(e) else float(e) for e in errors],
                "time_above_0.8": times.tolist(),
                "error_mean": finite(float(np.mean(errors))),  # None: a seed blew up
                "error_std": finite(float(np.std(errors))),
                "time_mean": float(np.mean(times)),
                "time_std": float(np.std(times)),
                "misfit_ratio": [
                    float(np.sqrt(r["val_misfit"] / labels[c]["points"]) / labels[c]["rms_y"])
                    for r in mine
                ],
            }
        out[c] = per
    return out


def settings(trial, sizes, seeds, names, timing: str) -> dict[str, Any]:
    """What the study ran with, recorded beside its numbers."""
    optim, data = trial.optim, trial.base.data
    return {
        "sizes": list(sizes),
        "seeds": list(seeds),
        "estimators": list(names),
        "epochs": optim.epochs,
        "optim": {k: getattr(optim, k) for k in ("optimizer", "lr", "batch_size", "schedule")},
        "model": dataclasses.asdict(trial.train_stage.model),
        "train_trajectories": data.train.trajectories,
        "val_trajectories": data.val.trajectories,
        "test_trajectories": data.test.trajectories,
        "test_seed": data.test.seed,
        "timing": timing,
        "backend": jax.default_backend(),
    }


def verdict(result: Mapping[str, Any]) -> str:
    """One sentence per estimator: does its test error fall as n grows, and does it beat the
    plain solver at each n (mean over seeds below the plain solver's error)?"""
    sizes = result["sizes"]
    ns = sorted(sizes, key=int)
    parts = []
    for name in result["settings"]["estimators"]:
        errors = [_plot(sizes[n]["hybrids"][name]["error_mean"], np.inf) for n in ns]
        plain = [sizes[n]["plain"]["error_at_report"] for n in ns]
        falls = all(b < a for a, b in zip(errors, errors[1:], strict=False))
        trend = " → ".join(f"{e:.2g}" for e in errors)
        beats = [n for n, e, p in zip(ns, errors, plain, strict=True) if e < _plot(p, np.inf)]
        loses = [n for n in ns if n not in beats]
        where = (
            "at every n"
            if not loses
            else "nowhere"
            if not beats
            else f"at n = {', '.join(beats)} but not at n = {', '.join(loses)}"
        )
        t = result["report_time"]
        lost = [n for n in ns if max(_times(sizes[n], name)) < t]  # both decorrelated by then
        note = (
            f" (at n = {', '.join(lost)} both have lost correlation 0.8 before t = {t:g}: "
            "there the error compares decorrelated fields)"
            if lost
            else ""
        )
        parts.append(
            f"The {name} hybrid's test error at t = {t:g} "
            f"{'falls' if falls else 'does NOT fall monotonically'} as n grows "
            f"(n = {', '.join(ns)}: {trend}) and beats the plain padded solver {where}{note}."
        )
    return " ".join(parts)


def _times(row: Mapping[str, Any], name: str) -> tuple[float, float]:
    """(the hybrid's mean time with correlation >= 0.8, the plain solver's) at one size."""
    return row["hybrids"][name].get("time_mean", np.inf), row["plain"].get("time_above_0.8", np.inf)


def tables(result: Mapping[str, Any]) -> str:
    """The result as two Markdown tables, a row per coarse size: accuracy (test split), then cost
    and the closure's size."""
    t, names, fine = result["report_time"], result["settings"]["estimators"], result["fine"]
    sizes = sorted(result["sizes"].items(), key=lambda kv: int(kv[0]))
    head = ["n (points)", f"plain: error (t = {t:g})", "plain: time ρ ≥ 0.8"]
    for e in names:
        head += [f"{e}: error (t = {t:g}), mean ± std (per seed)", f"{e}: time ρ ≥ 0.8"]
    accuracy = [head + [f"oracle: largest error to t = {t:g}"]]
    for n, row in sizes:
        p = row["plain"]
        cells = [n, _num(p["error_at_report"]), f"{p['time_above_0.8']:.3g}"]
        for e in names:
            h = row["hybrids"][e]
            seeds = ", ".join(_num(x) for x in h["error_at_report"])
            spread = "" if h["error_std"] is None else f" ± {h['error_std']:.1g}"
            cells += [f"{_num(h['error_mean'])}{spread} ({seeds})",
                      f"{h['time_mean']:.3g} ± {h['time_std']:.2g}"]  # fmt: skip
        accuracy.append(cells + [_num(row["oracle"]["max_error_to_report"])])
    cost = [["n (points)", "plain: ms per time unit", "hybrid: ms per time unit",
             "hybrid ÷ plain", f"fine ({fine['n']} points) ÷ hybrid",
             "RMS of the exact correction y", "RMS y ÷ RMS u"]
            + [f"{e}: RMS misfit ÷ RMS y (validation, per seed)" for e in names]]  # fmt: skip
    fine_cost = fine["cost_ms_per_time_unit"]
    for n, row in sizes:
        c, lab = row["cost_ms_per_time_unit"], row["labels"]
        cost.append(
            [n, f"{c['plain']:.3g}", f"{c['hybrid']:.3g}", f"{c['hybrid'] / c['plain']:.3g}",
             f"{fine_cost / c['hybrid']:.3g}", f"{lab['rms_y']:.3g}", f"{lab['relative']:.3g}"]
            + [", ".join(f"{m:.2g}" for m in row["hybrids"][e]["misfit_ratio"]) for e in names]
        )  # fmt: skip
    cost.append([f"{fine['n']} (fine)", f"{fine_cost:.3g}"] + [""] * (len(cost[0]) - 2))
    return "\n\n".join(markdown_table(table[0], table[1:]) for table in (accuracy, cost)) + "\n"


def _num(value: float | None) -> str:
    return "blown up" if value is None else f"{value:.2g}"


def figure(result: Mapping[str, Any], path: Path) -> Path:
    """Error at the report time against n (left) and against cost (right): the plain solver, each
    hybrid (mean over seeds, bars: ± std, clipped above zero) and the oracle (left only: it runs
    the fine solver); log scales."""
    import matplotlib.pyplot as plt

    t, sizes, fine = result["report_time"], result["sizes"], result["fine"]
    ns = sorted(sizes, key=int)
    n_axis = np.array([int(n) for n in ns], dtype=float)
    plain = np.array([_plot(sizes[n]["plain"]["error_at_report"]) for n in ns])
    plain_cost = np.array([sizes[n]["cost_ms_per_time_unit"]["plain"] for n in ns])
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.4))
    label = "plain coarse solver alone (alias-free)"
    left.plot(n_axis, plain, "o-", color="0.35", label=label)
    right.plot(plain_cost, plain, "o-", color="0.35", label=label)
    oracle = [max(_plot(sizes[n]["oracle"]["max_error_to_report"]), 1e-16) for n in ns]
    left.plot(n_axis, oracle, "^:", color="0.6", label="exact correction (oracle): round-off")
    for name in result["settings"]["estimators"]:
        mean = np.array([_plot(sizes[n]["hybrids"][name]["error_mean"]) for n in ns])
        std = np.array([_plot(sizes[n]["hybrids"][name]["error_std"]) for n in ns])
        bars = [np.minimum(std, 0.9 * mean), std]
        cost = [sizes[n]["cost_ms_per_time_unit"]["hybrid"] for n in ns]
        seeds = len(result["settings"]["seeds"])
        text = f"hybrid: coarse solver + {name} closure (mean ± std over {seeds} seeds)"
        style = {"fmt": "s-", "color": estimator_colour(name), "capsize": 3, "label": text}
        left.errorbar(n_axis, mean, yerr=bars, **style)
        right.errorbar(cost, mean, yerr=bars, **style)
        _label_sizes(right, ns, cost, mean)
    _label_sizes(right, ns, plain_cost, plain)
    right.axvline(fine["cost_ms_per_time_unit"], ls="--", color="k", lw=1,
                  label=f"fine solver, {fine['n']} points (the truth)")  # fmt: skip
    left.set_xscale("log", base=2)
    left.set_xticks(n_axis, [str(int(n)) for n in n_axis])
    left.set_xlabel("coarse grid points per axis n")
    right.set_xscale("log")
    right.set_xlabel("wall time (ms) per simulated time unit, the test batch")
    for ax, where in ((left, "best"), (right, "upper right")):
        ax.set_yscale("log")
        if ax is right:  # room above the points for the legend, clear of the n labels
            ax.set_ylim(top=ax.get_ylim()[1] * 100)
        ax.set_ylabel(f"relative L2 error at t = {t:g} (non-dimensional time)")
        ax.legend(fontsize=7, loc=where)
    left.set_title(f"{result['system']}: error vs resolution (test split)")
    right.set_title(f"{result['system']}: error vs cost")
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)
    return path


def _label_sizes(ax, ns, xs, ys) -> None:
    for n, x, y in zip(ns, xs, ys, strict=True):
        ax.annotate(f"n = {n}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)


def _plot(value: float | None, missing: float = np.nan) -> float:
    return missing if value is None else value
