"""`ml4d timing SYSTEM`'s step timings (``step_cost.time_steps``): every estimator of params.yaml
in both precisions, the ratios to OLS, and repeats taken round-robin so that a drift of a shared
machine's speed reaches every estimator alike."""

from __future__ import annotations

import json
import shutil

from ml4dynamics.cli import main as cli
from ml4dynamics.studies import step_cost
from tests.conftest import small_params, write_params


def test_step_timings_cover_every_estimator_round_robin(generated, tmp_path, monkeypatch, capsys):
    params = small_params()
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    write_params(tmp_path / "params.yaml", params)
    shutil.copytree(generated / "rd", tmp_path / "data" / "rd")
    assert cli(["fit-manifold", "rd"]) == 0, capsys.readouterr().err

    calls: list[int] = []  # which compiled step ran, in order
    make_step = step_cost.make_step

    def counted(loss, regulariser):
        step, case = make_step(loss, regulariser), len(made)
        made.append(case)

        def run(*args):
            calls.append(case)
            return step(*args)

        return run

    made: list[int] = []
    monkeypatch.setattr(step_cost, "make_step", counted)
    out = tmp_path / "bench" / "rd_train_step.json"
    report = step_cost.time_steps(
        "rd",
        "params.yaml",
        tmp_path / "data" / "rd",
        tmp_path / "models/rd/manifold",
        out,
        repeats=3,
        steps=2,
    )
    cases = len(made)
    assert cases == 2 * len(params["estimators"])  # every estimator, float32 and float64
    timed = calls[cases:]  # after one compiling call each
    assert calls[:cases] == list(range(cases))
    assert timed == [c for _ in range(3) for c in range(cases) for _ in range(2)]  # round-robin
    assert json.loads(out.read_text()) == report
    for dtype in ("float32", "float64"):
        assert set(report["ms_per_step_median"][dtype]) == set(params["estimators"])
        assert all(v > 0 for v in report["ms_per_step_median"][dtype].values())
        assert report["ratio_to_ols"][dtype]["ols"] == 1.0
    assert set(report["float64_over_float32"]) == set(params["estimators"])
