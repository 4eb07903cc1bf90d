"""The shift–error rank correlation: Spearman against known values, and which units it ranks."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from ml4dynamics.core.errors import ML4DError
from ml4dynamics.evaluation.shift_correlation import correlate, ranks, spearman, units
from tests.conftest import run_cli
from tests.results import result as evaluated
from tests.results import summary


def test_ranks_average_ties():
    np.testing.assert_array_equal(ranks(np.array([10.0, 30.0, 20.0, 30.0])), [1, 3.5, 2, 3.5])


def test_spearman_known_values():
    x = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert spearman(x, [v**3 for v in x]) == pytest.approx(1.0)  # monotone, not linear
    assert spearman(x, [-v for v in x]) == pytest.approx(-1.0)
    # d = rank differences (0, 0, 1, -1, 0): 1 - 6·2 / (5·24) = 0.9
    assert spearman(x, [1.0, 2.0, 4.0, 3.0, 5.0]) == pytest.approx(0.9)
    with pytest.raises(ML4DError):
        spearman([1.0, 1.0, 1.0], [1.0, 2.0, 3.0])


def _summary(error, shift, stable=1.0, **values):
    return summary(
        error_horizon=error,
        excess_shift=shift,
        stable_fraction=stable,
        stability_horizon=4.0,
        **values,
    )


def test_units_use_swept_groups_and_skip_blow_ups(tmp_path):
    by_re = {"100": _summary(0.1, 0.5), "500": _summary(None, None, 0.0)}
    test = _summary(None, None, 0.5, by={"re": by_re})
    metrics = evaluated({"test": test, "ood": _summary(0.4, 1.5)}, system="ns_channel")
    rows = units(metrics, "x.json")
    assert [r["unit"] for r in rows] == ["test re=100", "test re=500", "ood"]
    other = evaluated({"test": _summary(0.2, 1.0)})  # (no ood: nothing ranked of it)
    # the stage's own files: metrics/<system>/evaluate/<estimator>.json
    for system, name, m in (
        ("ns_channel", "ols", metrics),
        ("ns_channel", "tr", dataclasses.replace(metrics, estimator="tr")),
        ("rd", "ols", other),
    ):
        folder = tmp_path / "metrics" / system / "evaluate"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}.json").write_text(json.dumps(m.to_json()))
    done = run_cli(["shift-correlation", "ns_channel", "rd"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    written = json.loads((tmp_path / "metrics" / "shift_correlation.json").read_text())
    result = correlate(written["rows"])
    assert {k: written[k] for k in result} == result
    assert result["units"] == 7 and result["ranked"] == 5 and result["blown_up_or_unscored"] == 2
    # ranked: (0.5, 0.1) twice, (1.5, 0.4) twice, (1.0, 0.2): perfectly concordant
    assert result["spearman_all"] == pytest.approx(1.0)
    assert written["rows"][0]["unit"] == "test re=100"
    missing = run_cli(["shift-correlation", "linear"], cwd=tmp_path)
    assert missing.returncode == 2
    assert "no evaluations of linear in metrics/linear/evaluate" in missing.stderr
