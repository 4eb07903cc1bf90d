"""The workspace's DVC experiments as a table a person can read (``ml4d experiments``).

`dvc exp show` lists every parameter and every code dependency as a column — over 300 here —
and has no setting that chooses its default columns. This view reads the same record (`dvc exp
show --json`) and keeps what a λ sweep is judged by: per experiment, each system's TR weight
and, per estimator, the validation score λ is chosen on, the test error, the stable fraction
and the gate outcome. Rows are the workspace, the baseline commit and its experiments, in
`dvc exp show`'s order.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator, Mapping
from typing import Any

from ml4dynamics.core.errors import ML4DError

HEADLINE = re.compile(r"metrics/(?P<system>[^/]+)/headline/(?P<estimator>[^/]+)\.json$")
#: per model: the validation score λ is chosen on (the headline's ``val_t<time>``) and the test
#: error at the same time beside it, then the stable fraction and the gate outcome
COLUMNS = ("val", "test", "stable", "gate")
#: the gate outcomes of a system's models (``ml4d promote``; not a DVC metric, so that `dvc
#: metrics show` stays narrow): read from the state's commit
GATES = "metrics/{system}/gates.json"


def shown(cwd: str = ".") -> list[dict[str, Any]]:
    """`dvc exp show --json` of the repository at ``cwd``."""
    try:
        done = subprocess.run(
            ["dvc", "exp", "show", "--json"], cwd=cwd, capture_output=True, text=True, check=False
        )
    except FileNotFoundError as exc:
        raise ML4DError("dvc is not on PATH; activate the environment of the README") from exc
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise ML4DError(f"`dvc exp show --json` failed: {last}")
    return json.loads(done.stdout)


def _states(
    record: list[Mapping[str, Any]],
) -> Iterator[tuple[str, str, Mapping[str, Any] | None]]:
    """(label, revision, data) of the workspace, each baseline and each of its experiments."""
    for commit in record:
        rev = str(commit.get("rev", ""))
        label = commit.get("name") or (rev if rev == "workspace" else rev[:7])
        yield label, rev, commit.get("data")
        for group in commit.get("experiments") or []:
            for exp in group.get("revs") or []:
                name = exp.get("name") or group.get("name") or str(exp.get("rev", ""))[:7]
                yield f"└ {name}", str(exp.get("rev", "")), exp.get("data")


def committed_gates(cwd: str = "."):
    """The reader of a state's gate outcomes: the workspace's file, or the file as the state's
    commit holds it (an experiment is a commit); ``{}`` where there is none."""

    def read(rev: str, system: str) -> Mapping[str, Any]:
        path = GATES.format(system=system)
        if rev == "workspace":
            try:
                with open(f"{cwd}/{path}") as f:
                    return json.load(f)
            except (OSError, ValueError):
                return {}
        done = subprocess.run(
            ["git", "show", f"{rev}:{path}"], cwd=cwd, capture_output=True, text=True, check=False
        )
        try:
            return json.loads(done.stdout) if done.returncode == 0 else {}
        except ValueError:
            return {}

    return read


def _lams(params: Mapping[str, Any]) -> dict[str, Any]:
    """Each system's effective TR weight: ``reg.<system>.lam`` times ``reg.lam`` (1 if unset)."""
    reg = (params.get("params.yaml") or {}).get("data", {}).get("reg") or {}
    factor = reg.get("lam", 1.0)
    factor = factor if isinstance(factor, int | float) else 1.0
    return {
        system: section["lam"] if factor == 1.0 else float(f"{section['lam'] * factor:.6g}")
        for system, section in reg.items()
        if isinstance(section, Mapping) and "lam" in section
    }


def _model_cells(head: Mapping[str, Any] | None, gate: Any) -> list[str]:
    head = head or {}
    val = next((k for k in head if k.startswith("val_t")), None)
    test = None if val is None else "test_t" + val.removeprefix("val_t")
    return [_fmt(head.get(val)), _fmt(head.get(test)), _fmt(head.get("stable")), _fmt(gate)]


def rows(
    record: list[Mapping[str, Any]], gates=lambda rev, system: {}
) -> tuple[list[tuple[str, int]], list[str], list[list[str]]]:
    """The column groups (label, number of columns), the column labels and one row per state of
    ``record`` (`dvc exp show --json`); ``gates(rev, system)`` reads a state's gate outcomes
    (``committed_gates``). Columns: the experiment; the λ of each system with a model where the
    states differ in it; per (system, estimator) with a headline ``COLUMNS``."""
    states = [(label, rev, data or {}) for label, rev, data in _states(record)]
    lams = [_lams(data.get("params") or {}) for _, _, data in states]
    models: dict[tuple[str, str], None] = {}
    for _, _, data in states:
        for path in data.get("metrics") or {}:
            if m := HEADLINE.search(path):
                models[(m["system"], m["estimator"])] = None
    trained = {system for system, _ in models}  # (`reg.lam` scales every system's weight)
    varied = sorted(
        {s for lam in lams for s in lam if s in trained and len({str(x.get(s)) for x in lams}) > 1}
    )
    groups = [("", 1 + len(varied))] + [(f"{s} {e}", len(COLUMNS)) for s, e in models]
    labels = ["experiment", *(f"λ {s}" for s in varied)] + [*COLUMNS] * len(models)
    body = []
    for (label, rev, data), lam in zip(states, lams, strict=True):
        metrics = data.get("metrics") or {}
        line = [label, *(_fmt(lam.get(s)) for s in varied)]
        outcomes = {system: gates(rev, system) for system in dict.fromkeys(s for s, _ in models)}
        for system, estimator in models:
            head = (metrics.get(f"metrics/{system}/headline/{estimator}.json") or {}).get("data")
            line += _model_cells(head, outcomes[system].get(estimator))
        body.append(line)
    return groups, labels, body


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def table(record: list[Mapping[str, Any]], gates=lambda rev, system: {}) -> str:
    """``rows(record, gates)`` as aligned text: a line of model names over their columns, a line
    of column labels, one line per state."""
    groups, labels, body = rows(record, gates)
    widths = [max(len(r[i]) for r in (labels, *body)) for i in range(len(labels))]
    top, i = [], 0
    for label, n in groups:
        span = sum(widths[i : i + n]) + 2 * (n - 1)
        widths[i + n - 1] += max(0, len(label) - span)  # a long model name widens its group
        top.append(label.ljust(max(span, len(label))))
        i += n
    lines = ["  ".join(top)]
    lines += [
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in (labels, *body)
    ]
    return "\n".join(line.rstrip() for line in lines)
