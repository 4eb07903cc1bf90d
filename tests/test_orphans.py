"""Nothing outlives a kill: a run killed the instant it is created is ended by the next stage,
and an `ml4d` stage whose `dvc repro` is killed ends too (no second copy runs beside the next)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from ml4dynamics.core.mlflow_store import UNTAGGED_GRACE_S
from ml4dynamics.core.tracking import PROCESS_TAG, Run, experiment_id
from tests.conftest import BIN, mlflow_client

CREATE = "from ml4dynamics.core.tracking import Run; Run('rd', 'train', 'rd-ols', {'lr': 0.1})"
REOPEN = (
    "from ml4dynamics.core.tracking import Run; r = Run('rd', 'train', 'rd-ols', {}); r.end(); "
    "Run('rd', 'promote', 'rd-ols', {}, run_id=r.run_id)"
)


def running(root: Path) -> list:
    client = mlflow_client(root)
    ids = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(ids, filter_string="attributes.status = 'RUNNING'")


@pytest.mark.parametrize(
    ("script", "kill_at", "ended_as"),
    [(CREATE, "run_created", "KILLED"), (REOPEN, "run_created#2", "FINISHED")],
    ids=["new", "reopened"],
)
def test_a_run_killed_as_it_is_created_is_ended_by_the_next_stage(
    tmp_path, monkeypatch, capsys, script, kill_at, ended_as
):
    """SIGKILL right after MLflow created (or reopened) the run: it already names its process,
    so the next stage's sweep ends it at once (KILLED, or the status a reopened run had)."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env |= {"DVC_ROOT": str(tmp_path), "ML4D_KILL_AT": kill_at}
    killed = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    (zombie,) = running(tmp_path)
    assert PROCESS_TAG in zombie.data.tags  # recorded by the call that created the run

    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    Run("rd", "evaluate", "rd-next", {}).end()
    assert "ended 1 run(s) whose process died" in capsys.readouterr().err
    assert not running(tmp_path)
    assert mlflow_client(tmp_path).get_run(zombie.info.run_id).info.status == ended_as


def test_an_untagged_running_run_is_ended_once_it_is_old(tmp_path, monkeypatch):
    """A RUNNING run that names no process (older code, killed) is ended once it started more than
    the grace period ago; a young one (another tool's, maybe still running) is left alone."""
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    exp = experiment_id("rd", tmp_path)
    client = mlflow_client(tmp_path)
    now_ms = int(time.time() * 1000)
    old = client.create_run(exp, start_time=now_ms - (UNTAGGED_GRACE_S + 60) * 1000)
    young = client.create_run(exp, start_time=now_ms - 60 * 1000)
    Run("rd", "train", "rd-ols", {}).end()
    assert client.get_run(old.info.run_id).info.status == "KILLED"
    assert "no process recorded" in client.get_run(old.info.run_id).data.tags["ml4d.ended"]
    assert client.get_run(young.info.run_id).info.status == "RUNNING"


# a stage that runs `ml4d slow` (a command added for the test) and sleeps a minute
SLOW_COMMAND = '''"""Sleep a minute: a stage that takes long."""
import os
import time
from pathlib import Path


def main(args):
    Path("started").write_text(f"{os.getpid()} {os.getppid()}")
    time.sleep(60)
    return 0
'''
STAGE = (
    "import ml4dynamics.cli as c; c.COMMANDS['slow'] = c.Command('slow_command', 'sleep'); "
    "raise SystemExit(c.main(['slow']))"
)


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux: /proc and prctl")
@pytest.mark.parametrize("between", [False, True], ids=["dvc-parent", "shell-between"])
def test_a_stage_dies_with_the_dvc_that_runs_it(tmp_path, between):
    """`kill -9` of `dvc repro` while its `ml4d` stage runs: the stage ends within seconds, whether
    dvc is its parent (the shell exec'd it) or a shell stays in between."""
    root = tmp_path / "repo"
    root.mkdir()
    (root / "slow_command.py").write_text(SLOW_COMMAND)
    command = f'{sys.executable} -c "{STAGE}"'
    cmd = f"{command}; true" if between else f"exec {command}"  # the shell stays, or is replaced
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"slow": {"cmd": cmd}}}))
    env = {k: v for k, v in os.environ.items() if k not in ("DVC_ROOT", "MLFLOW_TRACKING_URI")}
    env |= {"PATH": f"{BIN}{os.pathsep}{env['PATH']}", "DVC_NO_ANALYTICS": "1", "SHELL": "/bin/sh"}
    subprocess.run(["git", "init", "-q"], cwd=root, check=True, env=env)
    subprocess.run([str(BIN / "dvc"), "init", "-q"], cwd=root, check=True, env=env)

    log = (tmp_path / "dvc.log").open("w")
    dvc = subprocess.Popen(
        [str(BIN / "dvc"), "repro"], cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    stage = None
    try:
        deadline = time.monotonic() + 60
        while not (root / "started").is_file() or not (root / "started").read_text():
            assert dvc.poll() is None, (tmp_path / "dvc.log").read_text()
            assert time.monotonic() < deadline, "the stage never started"
            time.sleep(0.1)
        stage, parent = map(int, (root / "started").read_text().split())
        assert (parent != dvc.pid) == between
        dvc.kill()
        dvc.wait()
        deadline = time.monotonic() + 10
        while not gone(stage) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert gone(stage), "the stage outlived the dvc that ran it"
    finally:
        if dvc.poll() is None:
            dvc.kill()
            dvc.wait()
        if stage is not None and not gone(stage):
            os.kill(stage, signal.SIGKILL)
        log.close()
