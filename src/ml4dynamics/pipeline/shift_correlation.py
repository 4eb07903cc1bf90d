"""Spearman's rank correlation between the excess shift and the error at the horizon over every
evaluated (closure, split or swept parameter value) of the given systems, read from
metrics/SYSTEM/evaluate; blown-up units are counted, not ranked.

``ml4d shift-correlation`` (stage ``shift_correlation``): does distribution shift go with
rollout error? Reads every evaluation of the given systems, ranks them with
``ml4dynamics.evaluation.shift_correlation`` and writes the result.
"""

from __future__ import annotations

import argparse
from typing import Any

from ml4dynamics.core.layout import Layout
from ml4dynamics.core.outputs import write_json
from ml4dynamics.evaluation.result import EvaluationResult
from ml4dynamics.evaluation.shift_correlation import correlate, units
from ml4dynamics.pipeline import print_json, system_argument


def configure(parser: argparse.ArgumentParser) -> None:
    system_argument(
        parser,
        nargs="*",
        what="systems whose evaluations to pool (default: those with models in dvc.yaml)",
    )
    parser.add_argument("--out", help="output JSON (default: metrics/shift_correlation.json)")


def main(args: argparse.Namespace) -> int:
    layout = Layout()
    rows: list[dict[str, Any]] = []
    for system in args.system or layout.pipeline_systems():
        for path in layout.current_evaluations(system):
            rows += units(EvaluationResult.read(path), str(path))
    result = correlate(rows)
    write_json(args.out or layout.shift_correlation, {**result, "rows": rows})
    print_json(result)
    return 0
