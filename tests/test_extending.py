"""Extension points are one entry each: a new estimator kind is one module in
``ml4dynamics/learning/estimators`` plus its params.yaml entry (shown through the real CLI on a copy of the
package), and a new promotion gate is one registered check plus its thresholds under ``promote``.
(A new system: tests/test_toy_system.py.)"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from ml4dynamics.core.errors import ConfigError
from ml4dynamics.learning.estimators import ESTIMATORS
from ml4dynamics.registry import gates
from tests.conftest import REPO, run_cli, small_params, write_params
from tests.results import result, summary

TOY = Path(__file__).parent / "toy_estimators" / "huber.py"


def test_an_estimator_kind_is_one_module_plus_its_params_entry(tmp_path):
    package = tmp_path / "pkg"
    shutil.copytree(
        REPO / "src" / "ml4dynamics",
        package / "ml4dynamics",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    shutil.copy(
        TOY, package / "ml4dynamics" / "learning" / "estimators" / "huber.py"
    )  # no other edit
    params = small_params()
    params["estimators"]["huber"] = {"kind": "huber", "delta": 0.1}
    project = tmp_path / "project"
    project.mkdir()
    write_params(project / "params.yaml", params)
    env = {
        **{k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"},
        "PYTHONPATH": str(package),  # ahead of the editable install's src/
        "DVC_ROOT": str(project),
    }
    for args in (
        ["params"],
        ["generate", "linear"],
        ["fit-manifold", "linear"],
        ["train", "linear", "--estimator", "huber"],
    ):
        result = run_cli(args, cwd=project, env=env)
        assert result.returncode == 0, f"{args}: {result.stderr}"
    trained = json.loads((project / "metrics/linear/train/huber.json").read_text())
    assert trained["estimator"] == "huber" and trained["train_huber"] >= 0
    meta = json.loads((project / "models/linear/closures/huber/model.json").read_text())
    assert meta["reg"] == {"kind": "huber", "delta": 0.1}  # its own keys, nothing else
    # its config is validated like every kind's, with the key named
    params["estimators"]["huber"]["delta"] = -1.0
    write_params(project / "params.yaml", params)
    refused = run_cli(["train", "linear", "--estimator", "huber"], cwd=project, env=env)
    assert refused.returncode == 2
    assert "estimators.huber.delta: must be > 0 (the Huber threshold)" in refused.stderr
    assert "huber" not in ESTIMATORS  # the real package never sees the toy


@pytest.fixture
def extra_gate(thresholds):
    """A gate registered for one test: a minimum stable time on every split (after params.yaml's
    thresholds were read for the gates registered before it)."""

    @gates.gate("stable_for", min_stable_time="time every trajectory stays bounded, e.g. 5")
    def stable_for(result, limits, champion, splits):
        worst = min(result.splits[s].stability_horizon for s in splits)
        return worst >= limits["min_stable_time"], f"stable to t = {worst:g}"

    yield
    del gates.GATES["stable_for"]


def test_a_gate_is_one_entry_plus_its_thresholds(thresholds, extra_gate):
    with pytest.raises(ConfigError, match="exactly the gate thresholds"):
        gates.parse_thresholds(thresholds)  # its threshold is missing
    limits = gates.parse_thresholds({**thresholds, "min_stable_time": 5.0})
    split = summary(stability_horizon=3.0, error_horizon=0.1 * thresholds["max_error"])
    evaluated = result({"test": split, "ood": split})
    outcome = {g.name: g for g in gates.check(evaluated, limits)}
    assert list(outcome) == [*gates.GATES]  # every registered gate runs, in order
    assert not outcome["stable_for"].passed and outcome["stable_for"].detail == "stable to t = 3"
    assert gates.refusal(list(outcome.values())) == "stable_for: stable to t = 3"
