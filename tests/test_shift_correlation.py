"""The shift–error rank correlation: Spearman against known values, and which units it ranks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ml4dynamics.errors import ML4DError
from ml4dynamics.pipeline.shift_correlation import ranks, run, spearman, units


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


def _summary(error, shift, stable=1.0):
    return {
        "error_horizon": error,
        "excess_shift": shift,
        "stable_fraction": stable,
        "stability_horizon": 4.0,
    }


def test_units_use_swept_groups_and_skip_blow_ups(tmp_path):
    metrics = {
        "system": "ns_channel",
        "estimator": "ols",
        "test": {
            **_summary(None, None, 0.5),
            "by_re": {"100": _summary(0.1, 0.5), "500": _summary(None, None, 0.0)},
        },
        "ood": _summary(0.4, 1.5),
    }
    rows = units(metrics, "x.json")
    assert [r["unit"] for r in rows] == ["test re=100", "test re=500", "ood"]
    other = {"system": "rd", "estimator": "ols", "test": _summary(0.2, 1.0), "ood": None}
    for name, m in (("ols", metrics), ("tr", {**metrics, "estimator": "tr"})):
        (tmp_path / f"{name}.json").write_text(json.dumps(m))
    (tmp_path / "rd").mkdir()
    (tmp_path / "rd" / "ols.json").write_text(json.dumps(other))
    out = tmp_path / "corr.json"
    result = run([tmp_path, tmp_path / "rd"], out)
    assert result["units"] == 7 and result["ranked"] == 5 and result["blown_up_or_unscored"] == 2
    # ranked: (0.5, 0.1) twice, (1.5, 0.4) twice, (1.0, 0.2): perfectly concordant
    assert result["spearman_all"] == pytest.approx(1.0)
    assert json.loads(out.read_text())["rows"][0]["unit"] == "test re=100"
    with pytest.raises(ML4DError, match="no evaluation metrics"):
        run([tmp_path / "empty"], out)
