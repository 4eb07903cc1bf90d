"""What a trial's runs say, as ``ml4d sweep`` writes it: λ — and a whole trial, a training
budget or a learning rate — chosen on validation rollouts by one rule, and the Markdown tables of
a trial (test error per estimator at its chosen λ, how the rollouts survive, the validation
scores λ was chosen from). Pure functions of the recorded runs (``ml4dynamics.studies.sweep`` runs
and records them); a blow-up (a score of None) counts as infinite error throughout.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# what two trials' validation rollouts must share for their scores to be compared
VALIDATION_SETTINGS = ("val_score", "val_samples", "report_time", "horizon")

CHOICE_RULE = (
    "Chosen on validation, per estimator, among the trials above (the rule that chooses λ, "
    "applied to whole trials — a training budget, a learning rate: the lowest mean validation "
    "score over seeds, a blow-up infinite; among equal scores the validation rollouts that "
    "lasted longest, then the fewer epochs; only trials on the seeds and validation split that "
    "most of the estimator's trials share):"
)


def choose_trial(trials: list[dict[str, Any]]) -> tuple[str, list[str], list[str]]:
    """The trial (its name) an estimator's validation chooses among ``trials`` (each: ``trial``,
    ``epochs``, ``seeds``, ``validation`` settings and the ``rows`` of its runs at its chosen
    λ), by ``choose_lam``'s rule with fewer epochs in place of the smaller λ. Only trials whose
    scores compare like with like take part: those on the seeds and validation settings most of
    them share (the later trials' where as many share others). Returns the choice, the trials
    considered and those left out."""
    groups = [(tuple(t["seeds"]), tuple(t["validation"])) for t in trials]
    common = max(reversed(groups), key=groups.count)
    same = [t for t, g in zip(trials, groups, strict=True) if g == common]
    best = min(same, key=lambda t: (*_validation_rank(t["rows"]), t["epochs"]))
    left_out = [t["trial"] for t, g in zip(trials, groups, strict=True) if g != common]
    return best["trial"], [t["trial"] for t in same], left_out


def _validation_rank(rows: list[dict[str, Any]]) -> tuple[float, float]:
    """What λ and trials are chosen by, lowest first: the mean validation score over seeds (a
    blow-up infinite), then minus how long the validation rollouts lasted on average."""
    return (
        float(np.mean(as_errors(rows, "val_score"))),
        -float(np.mean([r.get("val_stable_time", 0.0) for r in rows])),
    )


def choice(row: dict[str, Any]) -> tuple[float | None, int | None]:
    """What validation chooses among for a run's estimator: its λ (TR-type estimators) and its
    window length k (unrolled estimators: the curriculum stage whose closure the row evaluates);
    None for what the estimator does not have."""
    return row["lam"], row.get("window")


def choice_label(lam: float | None, window: int | None) -> str:
    """``λ = 1, k = 16`` (the parts a choice has)."""
    parts = [] if lam is None else [f"λ = {lam:g}"]
    return ", ".join(parts + ([] if window is None else [f"k = {window}"]))


def choose(
    runs: list[dict[str, Any]], column: str = "gamma_u"
) -> dict[tuple[Any, str], tuple[float | None, int | None]]:
    """Per (setting, estimator with a choice): the (λ, k) with the lowest mean validation score
    over seeds (a blow-up is infinite error); among equal scores (every candidate blew up
    somewhere) the one whose validation rollouts lasted longest on average, then the smaller λ,
    then the shorter window. Test errors are not used."""
    chosen: dict[tuple[Any, str], tuple[float | None, int | None]] = {}
    keys = {(r[column], r["estimator"]) for r in runs if choice(r) != (None, None)}
    for g, e in sorted(keys, key=lambda k: (k[0] is not None, k[0] or 0, k[1])):
        by_choice: dict[tuple[float | None, int | None], list[dict[str, Any]]] = {}
        for r in runs:
            if (r[column], r["estimator"]) == (g, e):
                by_choice.setdefault(choice(r), []).append(r)
        means = {c: _validation_rank(rows) for c, rows in by_choice.items()}
        order = sorted(means, key=lambda c: tuple(-1 if v is None else v for v in c))
        chosen[(g, e)] = min(order, key=lambda c: means[c])
    return chosen


def choose_lam(runs: list[dict[str, Any]], column: str = "gamma_u") -> dict[tuple[Any, str], float]:
    """Per (setting, TR estimator): the λ ``choose`` picks."""
    return {k: lam for k, (lam, _) in choose(runs, column).items() if lam is not None}


def picked(
    runs: list[dict[str, Any]],
    chosen: dict[tuple[Any, str], tuple[float | None, int | None]],
    column: str,
) -> list[dict[str, Any]]:
    """The runs at their estimator's chosen (λ, k) (every run of an estimator without a
    choice)."""
    return [r for r in runs if choice(r) == chosen.get((r[column], r["estimator"]), (None, None))]


def as_errors(rows: list[dict[str, Any]], key: str) -> np.ndarray:
    """The rows' ``key`` values with a blow-up (None) as infinite error."""
    return np.array([np.inf if r[key] is None else r[key] for r in rows], dtype=float)


def setting_label(value: Any) -> str:
    return "params.yaml" if value is None else f"{value:g}"


def heading(column: str) -> str:
    return {"gamma_u": "γ_u"}.get(column, column)


def mean_std(rows: list[dict[str, Any]], key: str) -> str:
    """Mean ± std over the rows of ``key`` ("–" where no row has it: a sweep run before it)."""
    values = [r[key] for r in rows if r.get(key) is not None]
    return f"{np.mean(values):.3g} ± {np.std(values):.2g}" if values else "–"


def error_cell(values: np.ndarray) -> str:
    if not np.isfinite(values).all():
        return f"blew up in {int(np.sum(~np.isfinite(values)))}/{len(values)}"
    return f"{np.mean(values):.3g} ± {np.std(values):.2g}"


def errors_cell(rows: list[dict[str, Any]], key: str) -> str:
    """``error_cell`` of the rows' ``key`` values, a blow-up (None) infinite."""
    return error_cell(as_errors(rows, key))


def table(
    runs: list[dict[str, Any]],
    names: list[str],
    values: list[Any],
    chosen: dict[tuple[Any, str], tuple[float | None, int | None]] | None = None,
    column: str = "gamma_u",
    base_key: str | None = None,
) -> str:
    """Markdown: one row per setting, one column per estimator, mean ± std over seeds of the test
    error at the report time (a run that blew up counts as ∞ and is reported as such); TR columns
    at the λ, unrolled ones at the window length, chosen on validation (named in the cell); then
    the floor ratio and the ablation error of the first estimator (the OLS baseline) when the runs
    carry them; and, on a coarse grid, the coarse solver alone's test error at the report time
    (``base_key`` of the runs' ``coarse_alone``): the bar a closure must clear to be worth
    having."""
    chosen = chosen or {}
    extra = bool(runs) and "floor_ratio" in runs[0]
    coarse = base_key is not None and any(r.get("coarse_alone") for r in runs)
    head = [*names, *([f"floor ratio ({names[0]})", f"ablation ({names[0]})"] if extra else [])]
    head += ["coarse solver alone (alias-free)"] if coarse else []
    lines = [f"| {heading(column)} | " + " | ".join(head) + " |", "|---|" + "---|" * len(head)]
    for value in values:
        cells = []
        for name in names:
            rows = [r for r in runs if r[column] == value and r["estimator"] == name]
            cell = errors_cell(rows, "error")
            if (value, name) in chosen:
                cell += f" ({choice_label(*chosen[(value, name)])})"
            cells.append(cell)
        if extra:
            first = [r for r in runs if r[column] == value and r["estimator"] == names[0]]
            cells.extend([errors_cell(first, "floor_ratio"), ablation_cell(first)])
        if coarse:
            cells.append(error_cell(as_errors(coarse_alone_rows(runs, value, column), base_key)))
        lines.append(f"| {setting_label(value)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def stability_table(
    runs: list[dict[str, Any]], names: list[str], values: list[Any], column: str = "gamma_u"
) -> str:
    """Markdown: per setting and estimator (TR at its chosen λ: ``runs`` are the picked ones),
    how much of the test rollouts survives — the stable fraction and the mean time until the
    correlation with the truth drops below 0.8 (a blow-up ends it), mean ± std over seeds — the
    error at the horizon, and how far they drift off the manifold (the excess shift); then each
    estimator's own test error at the report time beside its own ablation (the exact closure
    plus noise of that closure's misfit: the error per-step noise alone would cause), so that
    every closure, not only the baseline, shows how much of its error is distribution shift; on
    a coarse grid, a last row per setting for the coarse solver alone. Empty when the runs do not
    carry those times (a sweep recorded before they were)."""
    if not any("corr_time_80" in r for r in runs):
        return ""
    lines = [
        f"| {heading(column)} | estimator | test: stable fraction | test: time until ρ < 0.8 "
        "| test error (horizon) | test: excess shift | test error (report time) "
        "| its ablation (report time) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for value in values:
        for name in names:
            rows = [r for r in runs if r[column] == value and r["estimator"] == name]
            lines.append(
                f"| {setting_label(value)} | {name} | {mean_std(rows, 'stable_fraction')} | "
                f"{mean_std(rows, 'corr_time_80')} | {errors_cell(rows, 'error_horizon')} | "
                f"{shift_cell(rows)} | {errors_cell(rows, 'error')} | {ablation_cell(rows)} |"
            )
        if base := coarse_alone_rows(runs, value, column):
            lines.append(
                f"| {setting_label(value)} | coarse solver alone (alias-free) | "
                f"{mean_std(base, 'stable_fraction')} | "
                f"{mean_std(base, 'corr_time_80')} | {errors_cell(base, 'error_horizon')} | "
                f"{shift_cell(base)} | – | – |"
            )
    return "\n".join(lines)


def cost_table(
    runs: list[dict[str, Any]], names: list[str], values: list[Any], column: str = "gamma_u"
) -> str:
    """Markdown: per setting and estimator (TR at its chosen λ), what a run cost: its epochs and
    its wall-clock seconds (training, then the validation and test rollouts), mean ± std over
    seeds. Seconds compare within one sweep (one machine, one load), not across sweeps. Empty
    when the runs do not carry them."""
    if not any("seconds" in r for r in runs):
        return ""
    lines = [
        f"| {heading(column)} | estimator | epochs | seconds per run (training and rollouts) |",
        "|---|---|---|---|",
    ]
    for value in values:
        for name in names:
            rows = [r for r in runs if r[column] == value and r["estimator"] == name]
            if rows:
                lines.append(
                    f"| {setting_label(value)} | {name} | {mean_std(rows, 'epochs')} | "
                    f"{mean_std(rows, 'seconds')} |"
                )
    return "\n".join(lines)


def ablation_cell(rows: list[dict[str, Any]]) -> str:
    """Mean ± std of the rows' ablation error over the runs that have an ablation ("–" when none
    has: a sweep recorded before the ablation, or a closure kind without one). An ablation that
    blew up counts as such (a run records its ablation's stable fraction, so a missing error is
    told from a missing ablation); with only some runs ablated, the cell says how many."""
    have = [
        r
        for r in rows
        if r.get("ablation_error") is not None or r.get("ablation_stable_fraction") is not None
    ]
    if not have:
        return "–"
    cell = errors_cell(have, "ablation_error")
    return cell if len(have) == len(rows) else f"{cell} ({len(have)} of {len(rows)} seeds)"


def coarse_alone_rows(runs: list[dict[str, Any]], value: Any, column: str) -> list[dict[str, Any]]:
    """The coarse solver alone's test summary at ``value``, one per seed (the rollouts of the
    first estimator's runs that carry it; it does not depend on the seed); empty off a coarse
    grid."""
    rows = [r for r in runs if r[column] == value and r.get("coarse_alone")]
    first = [r for r in rows if r["estimator"] == rows[0]["estimator"]] if rows else []
    return [r["coarse_alone"] for r in first]


def shift_cell(rows: list[dict[str, Any]]) -> str:
    """Mean ± std of the runs' excess shift (the largest log10 F(hybrid) − log10 F(truth) over
    the test rollouts; 1: F ten times the truth's); a run whose rollouts blew up has none, and
    then the cell says how many, rather than averaging the survivors."""
    missing = sum(r.get("excess_shift") is None for r in rows)
    if missing:
        return f"none: blew up in {missing}/{len(rows)} seeds"
    return mean_std(rows, "excess_shift")


def lam_table(
    runs: list[dict[str, Any]],
    values: list[Any],
    column: str = "gamma_u",
    val_key: str | None = "error_horizon",
) -> str:
    """Markdown: per setting and estimator with a choice, the validation score for every λ (TR)
    and window length k (unrolled; a column only when a run has one), mean ± std over seeds —
    the numbers they are chosen from — and beside it the test error, how much of the test
    rollouts survived and drifted (the excess shift), and the floor ratio (near 1: the penalty
    is down to the manifold model's own error)."""
    metric = {"error_horizon": "horizon"}.get(val_key or "", val_key)
    windows = any(r.get("window") is not None for r in runs)
    lines = [
        f"| {heading(column)} | estimator | λ |{' k |' if windows else ''} validation error "
        f"({metric}) | validation: time stable | test error (report time) "
        "| test: stable fraction | test: excess shift | floor ratio |",
        "|---|---|---|" + ("---|" if windows else "") + "---|---|---|---|---|---|",
    ]
    for value in values:
        candidates = sorted(
            {
                (r["estimator"], *choice(r))
                for r in runs
                if r[column] == value and choice(r) != (None, None)
            },
            key=lambda c: (c[0], *(-1 if v is None else v for v in c[1:])),
        )
        for name, lam, window in candidates:
            rows = [
                r
                for r in runs
                if (r[column], r["estimator"], *choice(r)) == (value, name, lam, window)
            ]
            k_cell = (" – |" if window is None else f" {window} |") if windows else ""
            lines.append(
                f"| {setting_label(value)} | {name} | {'–' if lam is None else f'{lam:g}'} |"
                f"{k_cell} {errors_cell(rows, 'val_score')} | "
                f"{mean_std(rows, 'val_stable_time')} | "
                f"{errors_cell(rows, 'error')} | {mean_std(rows, 'stable_fraction')} | "
                f"{shift_cell(rows)} | {mean_std(rows, 'floor_ratio')} |"
            )
    return "\n".join(lines)
