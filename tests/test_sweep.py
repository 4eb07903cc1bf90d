"""`ml4d sweep`, the paper-style table, on a tiny grid: real data, training and rollouts."""

from __future__ import annotations

import json
import math

from ml4dynamics.sweep import choose_lam, run, table
from tests.conftest import small_params, write_params


def test_sweep_trains_rolls_out_and_tabulates(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = write_params(tmp_path / "params.yaml", small_params())
    out = tmp_path / "sweep" / "table.json"
    result = run(
        str(params),
        [0.05],
        [0],
        ["ols", "tr-projector"],
        out,
        n=16,
        epochs=1,
        lams=[0.0, 10.0],
    )
    runs = result["runs"]
    # TR once per λ of the grid, OLS once
    assert len(runs) == 1 + 2
    assert {r["lam"] for r in runs if r["estimator"] == "ols"} == {None}
    assert all(math.isfinite(r["error"]) and r["stable_fraction"] == 1.0 for r in runs)
    assert all(r["floor_ratio"] > 0 and r["ablation_error"] >= 0 for r in runs)
    assert result["settings"]["n"] == 16 and result["settings"]["epochs"] == 1
    assert json.loads(out.read_text())["runs"] == runs
    # λ is the one with the lowest mean *validation* error, whatever the test errors say
    for choice in result["chosen_lam"]:
        rows = [
            r
            for r in runs
            if r["estimator"] == "tr-projector" and r["gamma_u"] == choice["gamma_u"]
        ]
        mean = {
            lam: sum(r["val_error_horizon"] for r in rows if r["lam"] == lam) for lam in (0.0, 10.0)
        }
        assert choice["lam"] == min(mean, key=mean.get)
    lines = out.with_suffix(".md").read_text().splitlines()
    assert lines[0] == "| γ_u | ols | tr-projector | floor ratio (ols) | ablation (ols) |"
    assert "(λ = " in lines[2] and len(lines[: lines.index("")]) == 3  # one row per γ_u
    assert lines[lines.index("") + 1].startswith("| γ_u | estimator | λ | validation error")


def test_lam_is_chosen_on_validation_never_on_test():
    runs = [
        {"gamma_u": 0.05, "estimator": "tr", "lam": 1.0, "val_error_horizon": 0.2, "error": 0.9},
        {"gamma_u": 0.05, "estimator": "tr", "lam": 10.0, "val_error_horizon": 0.3, "error": 0.1},
        {"gamma_u": 0.05, "estimator": "tr", "lam": 100.0, "val_error_horizon": None, "error": 0.0},
    ]
    assert choose_lam(runs) == {(0.05, "tr"): 1.0}


def test_table_reports_blow_ups_instead_of_averaging_them():
    runs = [
        {"gamma_u": 0.05, "estimator": "ols", "error": 0.1},
        {"gamma_u": 0.05, "estimator": "ols", "error": None},
        {"gamma_u": 0.05, "estimator": "tr", "error": 0.2},
        {"gamma_u": 0.05, "estimator": "tr", "error": 0.4},
    ]
    row = table(runs, ["ols", "tr"], [0.05]).splitlines()[-1]
    assert row == "| 0.05 | blew up in 1/2 | 0.3 ± 0.1 |"
