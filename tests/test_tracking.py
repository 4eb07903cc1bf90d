"""The MLflow layer: later stages add to a model's run without rewriting who created it."""

from __future__ import annotations

from ml4dynamics.tracking import Run
from tests.conftest import mlflow_client


def test_later_stages_resume_the_run_and_prefix_their_tags(tmp_path, monkeypatch):
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    try:
        train = Run("rd", "train", "rd-ols", {"lr": 0.1}, tags={"estimator": "ols"})
        train.end()
        evaluate = Run("rd", "evaluate", "rd-ols", {}, run_id=train.run_id)
        evaluate.log_series({"rel_error": [0.1, float("nan"), 0.3]}, [10, 20, 30], "eval.test.")
        evaluate.end()
        lost = Run("rd", "evaluate", "rd-ols", {}, run_id="0" * 32)  # mlruns/ lost that run
        lost.end()
    finally:
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # set_tracking_uri exports it
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
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    try:
        train = Run("rd", "train", "rd-ols", {})
        train.end()
        again = Run("rd", "train", "rd-ols", {}, run_id=train.run_id)
        again.fail()
        fresh = Run("rd", "train", "rd-aols", {})
        fresh.fail()
    finally:
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    client = mlflow_client(tmp_path)
    assert client.get_run(train.run_id).info.status == "FINISHED"
    assert client.get_run(fresh.run_id).info.status == "FAILED"


def test_a_process_identity_outlives_pid_reuse():
    """A run records boot id, pid and start time of its process: this process is alive, one that
    has exited is not, and neither is a process of another boot with the same pid."""
    import subprocess
    import sys

    from ml4dynamics.mlflow_store import alive, this_process

    me = this_process()
    assert alive(me)
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from ml4dynamics.mlflow_store import this_process as p; print(p())",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    gone = child.communicate()[0].strip()
    assert gone.rsplit(":", 2)[1] == str(child.pid) and not alive(gone)
    boot, pid, ticks = me.rsplit(":", 2)
    assert not alive(f"another-boot:{pid}:{ticks}")
    assert not alive(f"{boot}:{pid}:{int(ticks) + 1}")  # the pid reused by a later process
