"""`ml4d sweep`, the paper-style table, on a tiny grid: real data, training and rollouts."""

from __future__ import annotations

import json
import math

from ml4dynamics.pipeline.sweep import run, table
from tests.conftest import small_params, write_params


def test_sweep_trains_rolls_out_and_tabulates(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = write_params(tmp_path / "params.yaml", small_params())
    out = tmp_path / "sweep" / "table.json"
    result = run(str(params), [0.05, 0.1], [0, 1], ["ols"], out, n=16, epochs=1)
    runs = result["runs"]
    assert [(r["gamma_u"], r["seed"]) for r in runs] == [(0.05, 0), (0.05, 1), (0.1, 0), (0.1, 1)]
    assert all(math.isfinite(r["error"]) and r["stable_fraction"] == 1.0 for r in runs)
    assert result["settings"]["n"] == 16 and result["settings"]["epochs"] == 1
    assert json.loads(out.read_text())["runs"] == runs
    lines = out.with_suffix(".md").read_text().splitlines()
    assert lines[0] == "| γ_u | ols |" and len(lines) == 4  # header, rule, one row per γ_u


def test_table_reports_blow_ups_instead_of_averaging_them():
    runs = [
        {"gamma_u": 0.05, "estimator": "ols", "error": 0.1},
        {"gamma_u": 0.05, "estimator": "ols", "error": None},
        {"gamma_u": 0.05, "estimator": "tr", "error": 0.2},
        {"gamma_u": 0.05, "estimator": "tr", "error": 0.4},
    ]
    row = table(runs, ["ols", "tr"], [0.05]).splitlines()[-1]
    assert row == "| 0.05 | blew up in 1/2 | 0.3 ± 0.1 |"
