"""The MLflow layer: later stages add to a model's run without rewriting who created it."""

from __future__ import annotations

import os
import subprocess
import sys

from ml4dynamics.core.tracking import Run
from tests.conftest import mlflow_client


def test_later_stages_resume_the_run_and_prefix_their_tags(tmp_path, monkeypatch):
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    train = Run("rd", "train", "rd-ols", {"lr": 0.1}, tags={"estimator": "ols"})
    train.end()
    evaluate = Run("rd", "evaluate", "rd-ols", {}, run_id=train.run_id)
    evaluate.log_series({"rel_error": [0.1, float("nan"), 0.3]}, [10, 20, 30], "eval.test.")
    evaluate.end()
    lost = Run("rd", "evaluate", "rd-ols", {}, run_id="0" * 32)  # mlruns/ lost that run
    lost.end()
    client = mlflow_client(tmp_path)
    run = client.get_run(train.run_id)
    assert evaluate.resumed and evaluate.run_id == train.run_id
    assert run.data.tags["stage"] == "train" and "evaluate.stage" in run.data.tags
    history = client.get_metric_history(train.run_id, "eval.test.rel_error")
    assert [(m.step, m.value) for m in history] == [(10, 0.1), (30, 0.3)]  # nan skipped
    assert not lost.resumed and lost.run_id != train.run_id
    assert client.get_run(lost.run_id).data.tags["stage"] == "evaluate"


def test_a_failure_keeps_the_status_of_a_run_it_did_not_start(tmp_path, monkeypatch):
    """A stage that reopens a finished run (a retraining that resumes) and then fails must not
    mark the finished run FAILED; a run it started itself is marked FAILED."""
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    train = Run("rd", "train", "rd-ols", {})
    train.end()
    again = Run("rd", "train", "rd-ols", {}, run_id=train.run_id)
    again.fail()
    fresh = Run("rd", "train", "rd-aols", {})
    fresh.fail()
    client = mlflow_client(tmp_path)
    assert client.get_run(train.run_id).info.status == "FINISHED"
    assert client.get_run(fresh.run_id).info.status == "FAILED"


def test_a_process_identity_outlives_pid_reuse():
    """A run records boot id, pid and start time of its process: this process is alive, one that
    has exited is not, and neither is a process of another boot with the same pid."""
    import subprocess
    import sys

    from ml4dynamics.core.mlflow_store import alive, this_process

    me = this_process()
    assert alive(me)
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from ml4dynamics.core.mlflow_store import this_process as p; print(p())",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    gone = child.communicate()[0].strip()
    assert gone.rsplit(":", 2)[1] == str(child.pid) and not alive(gone)
    where, pid, ticks = me.rsplit(":", 2)
    host, boot = where.split("/")
    assert not alive(f"{host}/another-boot:{pid}:{ticks}")
    assert not alive(f"{where}:{pid}:{int(ticks) + 1}")  # the pid reused by a later process
    assert not alive(f"{boot}:{child.pid}:{ticks}")  # written before hosts were recorded
    # a shared server's run of another machine: only that machine can tell, so it is kept
    assert alive(f"another-host/{boot}:{child.pid}:{ticks}")


def test_one_process_two_workspaces_each_keeps_its_own_store(tmp_path, monkeypatch):
    """MLflow's URI setters export MLFLOW_TRACKING_URI/MLFLOW_REGISTRY_URI. Left in the
    environment, the first workspace a process used would capture every later one (a notebook
    that opens a second checkout) and every child process (DVC stages, a user's script loading
    ``models:/…@champion`` from the wrong registry)."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    runs = {}
    for name in ("first", "second"):
        monkeypatch.setenv("DVC_ROOT", str(tmp_path / name))
        run = Run("rd", "train", f"rd-{name}", {})
        run.end()
        runs[name] = run.run_id
        assert "MLFLOW_TRACKING_URI" not in os.environ
        assert "MLFLOW_REGISTRY_URI" not in os.environ
    for name, run_id in runs.items():
        found = mlflow_client(tmp_path / name).search_runs(
            [mlflow_client(tmp_path / name).get_experiment_by_name("rd").experiment_id]
        )
        assert [r.info.run_id for r in found] == [run_id]
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.environ.get('MLFLOW_REGISTRY_URI'))"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert child.stdout.strip() == "None"


def test_a_server_that_does_not_answer_is_one_line_at_once(tmp_path):
    """MLFLOW_TRACKING_URI naming a server that is down: one line naming it and the way out, not
    MLflow's minutes of retries and a traceback."""
    import socket
    import time

    from tests.conftest import run_cli

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}"}
    start = time.monotonic()
    result = run_cli(["card", "models:/rd-closure@champion"], tmp_path, env)
    assert result.returncode == 2 and time.monotonic() - start < 60
    (line,) = result.stderr.splitlines()
    assert f"no MLflow server answers at MLFLOW_TRACKING_URI=http://127.0.0.1:{port}" in line
    assert "ml4d server --help" in line and "unset MLFLOW_TRACKING_URI" in line
