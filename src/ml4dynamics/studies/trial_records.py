"""A recorded trial of ``ml4d sweep``: its JSON read back and checked, its λ choice and tables
written from its runs alone (``render``), and trials of the same settings merged into one
(``merge``). The runs themselves come from ``ml4dynamics.studies.sweep``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ml4dynamics.core.errors import ML4DError
from ml4dynamics.core.layout import trial_curves
from ml4dynamics.core.outputs import write_json
from ml4dynamics.evaluation.result import report_key
from ml4dynamics.reporting import trial_figures
from ml4dynamics.studies.trial_tables import (
    choice,
    choice_label,
    choose,
    cost_table,
    lam_table,
    picked,
    setting_label,
    stability_table,
    table,
)


def render(out: Path) -> dict[str, Any]:
    """Rewrite the tables of the sweep recorded in ``out`` (its JSON) from its runs, without
    running anything: for a committed sweep after the tables gained a column."""
    return tabulated(recorded(out), out)


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
    results = [recorded(path) for path in paths]
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
    keys = [(row[column], row["seed"], row["estimator"], choice(row)) for row in runs]
    if len(set(keys)) < len(keys):
        raise ML4DError(
            "the trials ran a seed twice (the same estimator, λ, window and setting); merge "
            "trials of different seeds or λ values"
        )
    seeds: dict[tuple[Any, str], dict[tuple, set[int]]] = {}
    for value, seed, name, picks in keys:
        if picks != (None, None):
            seeds.setdefault((value, name), {}).setdefault(picks, set()).add(seed)
    for (value, name), by_choice in seeds.items():
        if len({frozenset(s) for s in by_choice.values()}) > 1:
            ran = "; ".join(
                f"{choice_label(*c)} on {sorted(s)}"
                for c, s in sorted(by_choice.items(), key=lambda i: str(i[0]))
            )
            raise ML4DError(
                f"{name} ({setting_label(value)}) ran its candidates on different seeds ({ran}); "
                "λ and k are chosen over the same seeds: run the missing seeds first"
            )
    merged = {"settings": settings, "runs": runs, "merged_from": [str(p) for p in paths]}
    return tabulated(merged, Path(out))


def _without_lam(config: dict[str, Any]) -> dict[str, Any]:
    """An estimator's recorded configuration but its λ (each run records the λ it trained at)."""
    return {k: v for k, v in config.items() if k != "lam"}


def trial_name(path: Path) -> str:
    """``rd_120_epochs`` of ``sweep/rd_120_epochs_table.json``."""
    return Path(path).stem.removesuffix("_table")


def recorded(out: Path) -> dict[str, Any]:
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


def tabulated(result: dict[str, Any], out: Path) -> dict[str, Any]:
    """``result`` with its λ choice and tables (from its settings and runs), written to ``out``
    (JSON) and beside it (Markdown)."""
    settings, runs = result["settings"], result["runs"]
    column = settings["parameter"] or "setting"
    # (a sweep recorded before the order was: OLS, the baseline, first)
    recorded = sorted(settings["estimators"], key=lambda name: name != "ols")
    names = settings.get("names") or recorded
    values = list(dict.fromkeys(r[column] for r in runs))
    chosen = choose(runs, column)
    kept = picked(runs, chosen, column)
    result["chosen_lam"] = [
        {column: g, "estimator": e, "lam": lam} | ({} if window is None else {"window": window})
        for (g, e), (lam, window) in chosen.items()
    ]
    base_key = report_key(settings["report_time"])
    result["table"] = table(kept, names, values, chosen, column, base_key)
    result["stability_table"] = stability_table(kept, names, values, column)
    choices = settings.get("lams") or any(r.get("window") is not None for r in runs)
    result["lam_table"] = lam_table(runs, values, column, settings["val_score"]) if choices else ""
    result["cost_table"] = cost_table(kept, names, values, column)
    write_json(out, result)
    parts = [result["table"], result["stability_table"], result["lam_table"], result["cost_table"]]
    out.with_suffix(".md").write_text("\n\n".join(p for p in parts if p) + "\n")
    if any("curves" in r for r in kept):
        trial_figures.trial_curves(
            trial_curves(out),
            {setting_label(value): _by_estimator(kept, names, value, column) for value in values},
            f"{settings['system']}: the test rollouts of every seed "
            f"({settings.get('test_samples')} per seed; TR at its chosen λ, unrolled at its k)",
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
            picks = choice_label(*choice(rows[0]))
            label = f"{name} ({picks})" if picks else name
            grouped[name] = {"label": label, "runs": [r["curves"] for r in rows]}
    return grouped
