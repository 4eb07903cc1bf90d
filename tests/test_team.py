"""Beyond one workspace: a team's MLflow server on PostgreSQL (`ml4d server`), a DVC remote, and
experiments run on two machines and gathered in a third clone.

The "machines" are clones of one bare git repository, each with its own DVC cache and no
``mlruns/``: what they share is the server's address, the DVC remote and the git remote. The
server is started the way a team starts it (`ml4d server --postgres-data DIR`) and stopped, its
database removed, at the end. Needs PostgreSQL's server programs (Debian's `postgresql`)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.clones import make_clone, ran, sh
from tests.conftest import BIN

pytestmark = pytest.mark.slow

TR_ONLY = {
    "rd-tr-projector": {
        "system": "rd",
        "estimator": "tr-projector",
        "weights": "reg.rd",
        "scale": "reg.lam",
    }
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    """`ml4d server --postgres-data` on loopback: yields its address; stopped (database with it)
    and removed afterwards."""
    from ml4dynamics.core.errors import ML4DError
    from ml4dynamics.core.postgres import programs

    try:
        programs()
    except ML4DError as err:
        pytest.skip(str(err))
    root = Path(tempfile.mkdtemp(prefix="ml4d-team-"))
    root.chmod(0o755)  # the postgres user (when the tests run as root) must reach its folder
    port, pg_port = _free_port(), _free_port()
    log = root / "server.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [str(BIN / "ml4d"), "server", "--postgres-data", str(root / "srv")]
            + ["--postgres-port", str(pg_port), "--port", str(port), "--workers", "2"],
            cwd=root,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 240
    while "on each machine: export" not in log.read_text(errors="replace"):
        assert process.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.5)
    address = f"http://127.0.0.1:{port}"
    try:
        yield address
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(90)
        text = log.read_text(errors="replace")
        stopped = not (root / "srv/postgres/data/postmaster.pid").exists()
        shutil.rmtree(root, ignore_errors=True)
    assert "ml4d: stopping the MLflow server" in text
    assert stopped, "PostgreSQL is still running after the server stopped"


def _client(address: str):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=address, registry_uri=address)


def _machine(env: dict[str, str], address: str) -> dict[str, str]:
    return {**env, "MLFLOW_TRACKING_URI": address}


def _wait_for_queue(repo: Path, env: dict[str, str], timeout: float = 900) -> str:
    """Wait until `dvc queue status` shows no queued or running task; returns its last table."""
    deadline = time.monotonic() + timeout
    while True:
        table = sh(["dvc", "queue", "status"], repo, env).stdout
        if not any(word in table for word in ("Queued", "Running")):
            return table
        assert time.monotonic() < deadline, table
        time.sleep(8)  # (each look costs a second of CPU the experiments need)


def test_a_team_shares_server_remote_and_experiments(server, tmp_path):
    """Machine A runs the pipeline against the server and pushes code, data and models; machine
    B pulls them and has nothing to recompute; each runs a λ experiment from its own queue and
    pushes it; a third clone pulls both, lists them, and simulates with the champion from the
    server, with no MLflow store of its own."""
    origin = tmp_path / "origin.git"
    remote = tmp_path / "dvc-remote"
    a, env = make_clone(tmp_path / "a", TR_ONLY, with_linear=False)
    a_env = _machine(env, server)
    sh(["git", "rm", "-q", "data.dvc"], a, env)  # the golden benchmark: not built in a clone
    sh(["git", "commit", "-q", "-m", "no benchmark"], a, env)
    sh(["git", "init", "-q", "--bare", "-b", "main", str(origin)], tmp_path, env)
    sh(["git", "remote", "add", "origin", str(origin)], a, env)
    sh(["dvc", "remote", "add", "-d", "team", str(remote)], a, env)
    sh(["git", "commit", "-q", "-am", "the team's DVC remote"], a, env)

    # machine A: the whole pipeline, every run and version on the server
    first = sh(["dvc", "repro"], a, a_env)
    assert ran(first) == {
        "generate@rd",
        "fit_manifold@rd",
        "train@rd-tr-projector",
        "evaluate@rd-tr-projector",
        "promote@rd",
        "envelope@rd",
    }
    assert not (a / "mlruns").exists()  # nothing tracked locally
    client = _client(server)
    champion = client.get_model_version_by_alias("rd-closure", "champion")
    assert champion.tags["gates"] == "passed"
    training = client.get_run(champion.run_id)
    assert training.data.tags["jax.backend"] == "cpu" and training.data.tags["jax.devices"]
    epochs = client.get_metric_history(champion.run_id, "train_loss")
    assert len(epochs) == len({m.step for m in epochs}) > 1  # every epoch, once (batched)
    experiment = client.get_experiment_by_name("rd")
    assert experiment.artifact_location.startswith("mlflow-artifacts:")  # served, not a path
    sh(["git", "add", "-A"], a, env)
    sh(["git", "commit", "-q", "-m", "baseline"], a, env)
    sh(["git", "push", "-q", "origin", "main"], a, env)
    sh(["dvc", "push"], a, env)

    # machine B: pulls what A computed; nothing to recompute, nothing new to register
    b = tmp_path / "b"
    sh(["git", "clone", "-q", str(origin), str(b)], tmp_path, env)
    b_env = _machine(env, server)
    sh(["dvc", "pull"], b, b_env)
    status = json.loads(sh(["dvc", "status", "--json"], b, b_env).stdout)
    assert status == {
        "promote@rd": ["always changed"],
        "envelope@rd": ["always changed"],
    }  # (the registry lives outside DVC)
    versions = len(client.search_model_versions("name = 'rd-closure'"))
    assert ran(sh(["dvc", "repro"], b, b_env)) == {"promote@rd", "envelope@rd"}
    assert len(client.search_model_versions("name = 'rd-closure'")) == versions
    assert sh(["git", "status", "--porcelain"], b, env).stdout == ""

    # each machine queues one λ experiment and runs its queue; both write to the server at once
    for repo, repo_env, lam in ((a, a_env, "2.5"), (b, b_env, "0.3")):
        sh(
            ["dvc", "exp", "run", "--queue", "-S", f"reg.lam={lam}", "-n", f"lam-{lam}"],
            repo,
            repo_env,
        )
        sh(["dvc", "queue", "start", "-j", "1"], repo, repo_env)
    for repo, repo_env, lam in ((a, a_env, "2.5"), (b, b_env, "0.3")):
        table = _wait_for_queue(repo, repo_env)
        assert "Success" in table and "Failed" not in table, table
        sh(["dvc", "exp", "push", "origin", f"lam-{lam}"], repo, repo_env)

    # a third clone gathers both experiments and lists them with their λ and scores
    c = tmp_path / "c"
    sh(["git", "clone", "-q", str(origin), str(c)], tmp_path, env)
    c_env = _machine(env, server)
    for lam in ("2.5", "0.3"):
        sh(["dvc", "exp", "pull", "origin", f"lam-{lam}"], c, c_env)
    table = sh([str(BIN / "ml4d"), "experiments"], c, c_env).stdout.splitlines()
    for lam in ("2.5", "0.3"):
        (row,) = [line for line in table if f"lam-{lam} " in line]
        assert row.split()[2] == lam, table
        assert {"champion", "passed", "refused"} & set(row.split()), row
    # their runs and closures are on the server, tagged with the experiment that made them
    trained = client.search_runs([experiment.experiment_id], filter_string="tags.stage = 'train'")
    assert {r.data.tags.get("dvc_exp_name") for r in trained} == {None, "lam-2.5", "lam-0.3"}
    assert not any(
        r.info.status == "RUNNING" for r in client.search_runs([experiment.experiment_id])
    )
    assert len(client.search_model_versions("name = 'rd-closure'")) == versions + 2

    # C, with no MLflow store of its own, simulates with the champion and loads it with MLflow
    out = c / "run.zarr"
    steps = ["--steps", "60", "--store-every", "20", "--out", str(out)]
    sh([str(BIN / "ml4d"), "simulate", "--model", "models:/rd-closure@champion", *steps], c, c_env)
    from ml4dynamics.datasets import open_dataset

    assert open_dataset(out).attrs["model_version"] == int(champion.version)
    script = (
        "import mlflow, numpy as np\n"
        "m = mlflow.pyfunc.load_model('models:/rd-closure@champion')\n"
        "y = m.predict(np.zeros((2, 2, 32, 32)))\n"
        "assert y.shape == (2, 2, 32, 32) and np.isfinite(y).all()\n"
        "print('ok')\n"
    )
    loaded = sh([str(BIN / "python"), "-c", script], tmp_path, c_env)
    assert loaded.stdout.strip().endswith("ok")
    assert not (c / "mlruns").exists()


WRITER = """
import sys
from ml4dynamics.core.tracking import Run

run = Run(sys.argv[1], "write-test", f"writer-{sys.argv[2]}", {"writer": sys.argv[2]})
for step in range(400):  # a training loop: one point per step, sent in batches
    run.log_metrics({"loss": step + 0.5, "other": -step}, step=step)
run.log_series({"curve": [float(i) for i in range(250)]}, list(range(250)))
run.end()
print(run.run_id)
"""


def test_four_parallel_writers_lose_no_metric_point(server, tmp_path):
    """Four processes create the same new experiment at once and log 1050 points each."""
    experiment = f"writers-{os.getpid()}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")},
        "MLFLOW_TRACKING_URI": server,
    }
    writers = [
        subprocess.Popen(
            [str(BIN / "python"), "-c", WRITER, experiment, str(i)],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    run_ids = []
    for writer in writers:
        out, err = writer.communicate(timeout=300)
        assert writer.returncode == 0, err
        run_ids.append(out.strip().splitlines()[-1])
    client = _client(server)
    (found,) = [e for e in client.search_experiments() if e.name == experiment]
    for run_id in run_ids:
        run = client.get_run(run_id)
        assert run.info.experiment_id == found.experiment_id and run.info.status == "FINISHED"
        loss = client.get_metric_history(run_id, "loss")
        assert sorted(m.step for m in loss) == list(range(400))
        assert sorted(m.value for m in loss) == [s + 0.5 for s in range(400)]
        assert len(client.get_metric_history(run_id, "other")) == 400
        assert len(client.get_metric_history(run_id, "curve")) == 250


def test_a_database_that_cannot_be_reached_is_one_line_before_any_server_starts(tmp_path):
    """`ml4d server` on a team's database that is down: one line naming it, nothing started."""
    from tests.conftest import run_cli

    port = _free_port()
    result = run_cli(
        ["server", "--backend-store-uri", f"postgresql://mlflow@127.0.0.1:{port}/mlflow"],
        tmp_path,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.splitlines()
    # the driver SQLAlchemy 2.1 needs is filled in
    assert line.startswith(
        f"ml4d: error: cannot reach the database postgresql+psycopg2://mlflow@127.0.0.1:{port}/mlflow"
    )
    assert "start it" in line and not (tmp_path / "mlartifacts").exists()
    missing = run_cli(["server"], tmp_path)
    assert missing.returncode == 2 and "--backend-store-uri" in missing.stderr
