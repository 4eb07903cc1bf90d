"""Fault injection: a small real workspace (data, manifold, one closure, its evaluation and
registration, all made by `ml4d`) is copied, and each copy gets one fault — SIGKILL at a fixed
point of a stage (``$ML4D_KILL_AT``, see ml4dynamics.core.faults), a full disk, a copied or moved
store. Each test checks that nothing is lost: outputs are the old ones or complete new ones, no run
stays RUNNING, no temporaries remain, nothing is registered or logged twice, and a failure is one
line. (Corrupt inputs are tested where they are read: chunks and coordinates in test_datasets,
checkpoint files in test_training, model.json in test_models, registry artifacts and deleted runs
in test_registry.)"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import signal
import sqlite3
import subprocess
from pathlib import Path

import mlflow
import pytest

from ml4dynamics.datasets import open_splits
from ml4dynamics.registry.packaging import load_closure_dir
from tests.conftest import BIN, mlflow_client, promote_thresholds, small_params, write_params

SPLITS = ("train", "val", "test", "ood")


def params() -> dict:
    """The small parameters, with gates loose enough that the tiny closure becomes champion."""
    p = small_params()
    p["promote"] = promote_thresholds(scale=10)
    return p


def digest(root: Path) -> dict[str, str]:
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
    return {
        str(p.relative_to(root.parent)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files
    }


def ml4d(
    root: Path, *args: str, kill_at: str | None = None, **kwargs
) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "DVC_ROOT")}
    env["PATH"] = f"{BIN}{os.pathsep}{os.environ['PATH']}"
    if kill_at:
        env["ML4D_KILL_AT"] = kill_at
    return subprocess.run(
        [str(BIN / "ml4d"), *args], cwd=root, env=env, capture_output=True, text=True, **kwargs
    )


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def client(root: Path) -> mlflow.MlflowClient:
    return mlflow_client(root)


def runs(root: Path) -> list:
    c = client(root)
    return c.search_runs([e.experiment_id for e in c.search_experiments()])


def leftovers(root: Path) -> list[str]:
    """Temporaries of interrupted writes anywhere in the workspace (outside the store)."""
    return [
        str(p.relative_to(root))
        for p in root.rglob(".*")
        if (".new." in p.name or p.name.endswith(".old")) and "mlruns" not in p.parts
    ]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, generated) -> Path:
    """A git repository after the pipeline's rd chain for OLS: data, manifold, closure,
    evaluation, registered champion."""
    root = tmp_path_factory.mktemp("faults") / "ws"
    root.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    write_params(root / "params.yaml", params())
    shutil.copytree(generated / "rd", root / "data" / "rd")
    ok(ml4d(root, "fit-manifold", "rd"))
    ok(ml4d(root, "train", "rd", "--estimator", "ols"))
    ok(ml4d(root, "evaluate", "rd", "--estimator", "ols"))
    ok(ml4d(root, "promote", "rd"))
    return root


def copy_of(workspace: Path, dest: Path) -> Path:
    shutil.copytree(workspace, dest, symlinks=True)
    return dest


def intact_or_new(path: Path, before: dict[str, str]) -> None:
    """``path`` is byte for byte what it was, or a complete, readable new output."""
    if digest(path) == before:
        return
    if path.name == "rd" and path.parent.name == "data":
        open_splits(path, SPLITS)
    elif path.suffix == ".json":
        json.loads(path.read_text())
    else:
        load_closure_dir(path) if path.parent.name == "closures" else (
            path / "model.json"
        ).is_file()


KILLS = {
    # stage: (command, where it dies, its outputs)
    "generate": (("generate", "rd"), "swap", ("data/rd",)),
    "fit-manifold": (("fit-manifold", "rd"), "swap", ("models/rd/manifold",)),  # (a PCA fit)
    "train": (
        ("train", "rd", "--estimator", "ols"),
        "epoch#2",
        ("models/rd/closures/ols", "metrics/rd/train/ols.json"),
    ),
    "evaluate": (
        ("evaluate", "rd", "--estimator", "ols"),
        "evaluate-logged",
        ("metrics/rd/evaluate/ols.json",),
    ),
    "promote": (("promote", "rd"), "promote-registered", ("metrics/rd/promotion.json",)),
}


@pytest.mark.parametrize("stage", list(KILLS))
def test_sigkill_loses_nothing(workspace, tmp_path, stage):
    """SIGKILL at a fixed point of each stage, then the same command again: the outputs were
    the old ones or complete new ones at every moment, the killed run is ended (KILLED) when
    tracking next starts, and the rerun finishes with nothing left over or recorded twice."""
    root = copy_of(workspace, tmp_path / "ws")
    command, point, outputs = KILLS[stage]
    if stage == "generate":  # new data differ from the old
        changed = params()
        changed["rd"]["data"]["train"]["seed"] = 101
        write_params(root / "params.yaml", changed)
    if stage == "promote":  # a store that has never seen this closure: it registers anew
        shutil.rmtree(root / "mlruns")
    if stage == "train":  # no finished checkpoints to resume from: it trains anew
        shutil.rmtree(root / "models" / "rd" / "checkpoints")
    before = {out: digest(root / out) for out in outputs}
    evaluations = {r.info.run_id for r in runs(root) if r.data.tags.get("stage") == "evaluate"}

    killed = ml4d(root, *command, kill_at=point)
    assert killed.returncode == -9, killed.stderr[-2000:]
    # the complete evaluation stays until a new one is complete (never deleted first)
    assert evaluations <= {r.info.run_id for r in runs(root) if r.info.status == "FINISHED"}
    for out in outputs:
        intact_or_new(root / out, before[out])
    running = [r for r in runs(root) if r.info.status == "RUNNING"]
    # generate logs nothing; promote dies with its registration run ended
    assert len(running) == (0 if stage in ("generate", "promote") else 1), running

    again = ok(ml4d(root, *command))
    assert not leftovers(root)
    assert not [r for r in runs(root) if r.info.status == "RUNNING"]
    c = client(root)
    for zombie in running:
        assert "ended 1 run(s) whose process died" in again.stderr
        # ended KILLED; the rerun of `train` then resumed it and finished it, the rerun of
        # `evaluate` replaced (deleted) it
        assert c.get_run(zombie.info.run_id).info.status in ("KILLED", "FINISHED")
    if stage == "train":  # the resumed run's curves: every epoch, once (the epochs up to the
        # checkpoint it resumed from were sent before that checkpoint was written)
        (resumed,) = running  # killed, ended KILLED, then resumed by the rerun
        epochs = json.loads((root / "metrics/rd/train/ols.json").read_text())["epochs"]
        steps = sorted(m.step for m in c.get_metric_history(resumed.info.run_id, "train_loss"))
        assert steps == list(range(epochs)), steps
    if stage == "evaluate":  # the re-evaluation replaced the killed one: one history
        (training,) = [r for r in runs(root) if r.data.tags.get("stage") == "train"]
        evaluations = c.search_runs(
            [training.info.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{training.info.run_id}'",
        )
        assert len(evaluations) == 1
        history = c.get_metric_history(evaluations[0].info.run_id, "eval.test.rel_error")
        steps = [m.step for m in history]
        assert steps and len(steps) == len(set(steps))
    if stage == "promote":  # registered once, and the champion is set
        versions = c.search_model_versions("name = 'rd-closure'")
        assert len(versions) == 1
        assert c.get_model_version_by_alias("rd-closure", "champion").version == versions[0].version


def test_a_full_disk_is_one_line_and_leaves_the_old_data(workspace, tmp_path):
    """A write that fails for lack of room (here: a file-size limit, which needs no root)
    ends in one `ml4d: error:` line; the old data are untouched and no temporary remains."""
    root = copy_of(workspace, tmp_path / "ws")
    changed = params()
    changed["rd"]["data"]["train"]["seed"] = 101
    write_params(root / "params.yaml", changed)
    before = digest(root / "data" / "rd")

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))

    result = ml4d(root, "generate", "rd", preexec_fn=limit)
    errors = [line for line in result.stderr.splitlines() if line.startswith("ml4d: error:")]
    assert result.returncode == 1 and len(errors) == 1, result.stderr[-2000:]
    assert "File too large" in errors[0] and "earlier outputs are left as they were" in errors[0]
    assert digest(root / "data" / "rd") == before and not leftovers(root)


def locations(root: Path) -> list[str]:
    with sqlite3.connect(root / "mlruns" / "mlflow.db") as con:
        rows = con.execute("SELECT artifact_location FROM experiments").fetchall()
        rows += con.execute("SELECT artifact_uri FROM runs").fetchall()
        rows += con.execute("SELECT storage_location FROM model_versions").fetchall()
    return [r[0] for r in rows if r[0]]


def test_a_copied_or_moved_workspace_works_on_its_own_store(workspace, tmp_path):
    """`cp -a` of a workspace, then evaluate and simulate in the copy: the copy's store points at
    its own artifacts and nothing of the original changes; moved again, it still works."""
    original = digest(workspace / "mlruns")
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-a", str(workspace), str(copy)], check=True)
    evaluated = ok(ml4d(copy, "evaluate", "rd", "--estimator", "ols"))
    assert "was copied or moved from" in evaluated.stderr
    assert all(str(copy / "mlruns") in loc for loc in locations(copy))
    simulate = ("simulate", "--model", "models:/rd-closure@champion", "--steps", "20")
    ok(ml4d(copy, *simulate, "--out", "run.zarr"))
    assert digest(workspace / "mlruns") == original
    evaluation = max(
        (r for r in runs(copy) if r.data.tags.get("stage") == "evaluate"),
        key=lambda r: r.info.start_time,
    )
    assert (copy / "mlruns").as_uri() in evaluation.info.artifact_uri
    assert client(copy).list_artifacts(evaluation.info.run_id, "evaluation")

    moved = tmp_path / "moved"
    copy.rename(moved)
    ok(ml4d(moved, *simulate, "--out", "run2.zarr"))
    assert all(str(moved / "mlruns") in loc for loc in locations(moved))


def one_error(result: subprocess.CompletedProcess, code: int = 2) -> str:
    """The single `ml4d: error:` line of a failed command (and nothing else on stderr but notes
    and warnings)."""
    lines = [line for line in result.stderr.splitlines() if not line.startswith("ml4d: note")]
    assert result.returncode == code and len(lines) == 1, result.stderr[-3000:]
    assert lines[0].startswith("ml4d: error: "), lines[0]
    return lines[0]


def test_simulate_never_replaces_what_a_user_has(workspace, tmp_path, monkeypatch):
    """`simulate --out` onto a user's folder, a user's file or a DVC-tracked dataset is one line
    and leaves each byte for byte, with or without --overwrite; a store simulate wrote is
    replaced only with --overwrite."""
    from ml4dynamics.core.errors import ML4DError
    from ml4dynamics.simulation.outputs import safe_out

    root = copy_of(workspace, tmp_path / "ws")
    subprocess.run(["dvc", "init", "-q", "--no-scm"], cwd=root, check=True, env=os.environ)
    stage = "stages:\n  generate:\n    cmd: ml4d generate rd\n    outs:\n      - data/rd\n"
    (root / "dvc.yaml").write_text(stage)
    notes = root / "notes.zarr"
    notes.mkdir()
    (notes / "mine.txt").write_text("a user's notes")
    (root / "existing.zarr").write_text("a user's file")
    before = {p: digest(root / p) for p in ("notes.zarr", "existing.zarr", "data/rd")}
    monkeypatch.chdir(root)
    for out, why in (
        ("notes.zarr", "already exists"),
        ("existing.zarr", "already exists"),
        ("data/rd/test.zarr", "DVC tracks"),
        ("data/rd/new.zarr", "DVC tracks"),
    ):
        for overwrite in (False, True):
            with pytest.raises(ML4DError) as refused:
                safe_out(Path(out), overwrite)
            wanted = "not a store" if overwrite and why != "DVC tracks" else why
            assert wanted in str(refused.value) and "\n" not in str(refused.value)
    # through the command: one line, before anything is computed or written
    simulate = ("simulate", "--model", "models:/rd-closure@champion", "--steps", "2")
    assert "not a store" in one_error(ml4d(root, *simulate, "--out", "notes.zarr", "--overwrite"))
    assert {p: digest(root / p) for p in before} == before
    assert not leftovers(root) and not (root / "notes.png").exists()

    ok(ml4d(root, *simulate, "--out", "run.zarr"))
    first = digest(root / "run.zarr")
    with pytest.raises(ML4DError, match="already exists"):
        safe_out(Path("run.zarr"), overwrite=False)
    safe_out(Path("run.zarr"), overwrite=True)  # a store simulate wrote: replaceable
    ok(ml4d(root, *simulate, "--seed", "3", "--out", "run.zarr", "--overwrite"))
    assert digest(root / "run.zarr") != first and not leftovers(root)


WRITERS = {
    # command: (the lock it takes, its outputs)
    "generate": (("generate", "rd"), "data", "data/rd"),
    "fit-manifold": (("fit-manifold", "rd"), "manifold", "models/rd/manifold"),
    "train": (("train", "rd", "--estimator", "ols"), "model-ols", "models/rd/closures/ols"),
    "evaluate": (("evaluate", "rd", "--estimator", "ols"), "model-ols", "metrics/rd/evaluate"),
    "promote": (("promote", "rd"), "promotion", "metrics/rd/promotion.json"),
}


def test_a_second_writer_stops_at_once_naming_the_first(workspace, tmp_path, monkeypatch, capsys):
    """While a writer holds its outputs' lock (training and evaluating a model share one), the
    same command stops at once with one line naming the holder's process, writing nothing.
    (In this process: the refusal comes before any work, so a subprocess would only add its
    start-up.)"""
    from ml4dynamics.cli import main
    from ml4dynamics.core.layout import Layout
    from ml4dynamics.core.outputs import exclusive

    root = copy_of(workspace, tmp_path / "ws")
    for name in ("MLFLOW_TRACKING_URI", "DVC_ROOT"):
        monkeypatch.delenv(name, raising=False)
    for name in ("JAX_COMPILATION_CACHE_DIR", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"):
        monkeypatch.setenv(name, os.environ.get(name, ""))  # (what `main` sets, put back after)
    monkeypatch.chdir(root)
    before, count = {out: digest(root / out) for *_, out in WRITERS.values()}, len(runs(root))
    for argv, lock, _ in WRITERS.values():
        holder = "`ml4d train rd --estimator ols`" if lock == "model-ols" else "the first one"
        with exclusive(Layout(root).lock("rd", lock), holder):
            code = main(list(argv))
        lines = capsys.readouterr().err.splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("ml4d: error: "), lines
        assert f"pid {os.getpid()} ({holder}) is writing the same outputs" in lines[0]
    assert {out: digest(root / out) for out in before} == before and len(runs(root)) == count


def test_an_evaluation_that_fails_leaves_the_previous_one(workspace, tmp_path):
    """A disk that fills while `evaluate` logs its run: one line, the new run FAILED (not
    FINISHED without its metrics) and the previous evaluation run still there, complete."""
    root = copy_of(workspace, tmp_path / "ws")
    previous = [r for r in runs(root) if r.data.tags.get("stage") == "evaluate"]
    assert [r.info.status for r in previous] == ["FINISHED"]
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "DVC_ROOT")}
    env["ML4D_FAIL_AT"] = "evaluate-logged"
    failed = subprocess.run(
        [str(BIN / "ml4d"), "evaluate", "rd", "--estimator", "ols"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
    )
    assert "No space left on device" in one_error(failed, code=1)
    after = {r.info.run_id: r for r in runs(root) if r.data.tags.get("stage") == "evaluate"}
    assert after[previous[0].info.run_id].info.status == "FINISHED"
    (new,) = [r for i, r in after.items() if i != previous[0].info.run_id]
    assert new.info.status == "FAILED"


def test_damaged_files_and_stores_are_one_line_with_the_way_back(workspace, tmp_path):
    """A damaged closure parameter file, then a damaged `mlflow.db`: one line each, naming the
    file and how to restore it (the store from the backup promotion took)."""
    root = copy_of(workspace, tmp_path / "ws")
    for chunk in (root / "models/rd/closures/ols/params").rglob("*"):
        if chunk.is_file() and chunk.parent.name == "d":  # every data file of the checkpoint
            chunk.write_bytes(chunk.read_bytes()[:20])
    line = one_error(ml4d(root, "evaluate", "rd", "--estimator", "ols"))
    assert "models/rd/closures/ols/params cannot be read" in line and "dvc checkout" in line

    backups = sorted((root / "mlruns" / "backups").glob("mlflow-*.db"))
    assert backups  # the promotion that made the champion took one
    (root / "mlruns" / "mlflow.db").write_bytes(b"not a database" * 100)
    line = one_error(ml4d(root, "card", "models:/rd-closure@champion"), code=1)
    assert "is damaged" in line and f"cp {backups[-1]}" in line, line
    shutil.copy(backups[-1], root / "mlruns" / "mlflow.db")
    assert ok(ml4d(root, "card", "models:/rd-closure@champion")).stdout.startswith("# rd-closure")


def test_a_full_disk_during_training_is_one_line(workspace, tmp_path):
    """Training with no room to write (checkpoints, the export, the store) ends in one line, the
    previous closure intact."""
    root = copy_of(workspace, tmp_path / "ws")
    ok(ml4d(root, "card", "models:/rd-closure@champion"))  # (the copied store's paths fixed)
    shutil.rmtree(root / "models" / "rd" / "checkpoints")
    before = digest(root / "models/rd/closures/ols")

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (4_000, 4_000))

    result = ml4d(root, "train", "rd", "--estimator", "ols", preexec_fn=limit)
    line = one_error(result, code=1)
    assert "earlier outputs are left as they were" in line, line
    assert digest(root / "models/rd/closures/ols") == before


def test_promote_drops_a_champion_it_cannot_load(workspace, tmp_path):
    """The champion's files deleted from the store: promote says so in one warning, removes the
    alias, registers the workspace's closure anew and makes that champion; simulate works."""
    root = copy_of(workspace, tmp_path / "ws")
    ok(ml4d(root, "card", "models:/rd-closure@champion"))  # (the copied store's paths fixed)
    c = client(root)
    champion = c.get_model_version_by_alias("rd-closure", "champion")
    with sqlite3.connect(root / "mlruns" / "mlflow.db") as con:
        (stored,) = con.execute(
            "SELECT storage_location FROM model_versions WHERE version = ?", (champion.version,)
        ).fetchone()
    files = Path(stored.removeprefix("file://"))
    assert root in files.parents  # the copy's own files, never the original's
    shutil.rmtree(files)
    result = ok(ml4d(root, "promote", "rd"))
    warning = [line for line in result.stderr.splitlines() if line.startswith("ml4d: warning")]
    assert len(warning) == 1 and f"champion v{champion.version} of rd-closure" in warning[0]
    now = client(root).get_model_version_by_alias("rd-closure", "champion")
    assert int(now.version) > int(champion.version) and f"v{now.version} is champion" in warning[0]
    assert client(root).get_model_version("rd-closure", champion.version).tags["unloadable"]
    ok(
        ml4d(
            root,
            "simulate",
            "--model",
            "models:/rd-closure@champion",
            "--steps",
            "2",
            "--out",
            "after.zarr",
        )
    )


def test_ml4d_ui_points_a_copied_store_at_its_own_artifacts_before_mlflow_opens_it(
    workspace, tmp_path
):
    """The README's way to browse a copied workspace: `ml4d ui` fixes the store's artifact
    paths first (plain `mlflow ui` in the copy would serve, and write into, the original's),
    then serves MLflow's UI on it."""
    import socket
    import time
    import urllib.request

    copy = tmp_path / "copy"
    subprocess.run(["cp", "-a", str(workspace), str(copy)], check=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "DVC_ROOT")}
    ui = subprocess.Popen(
        [str(BIN / "ml4d"), "ui", "--port", str(port)],
        cwd=copy,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # (MLflow's server runs in children: stopped as a group)
    )
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        else:
            raise AssertionError("the UI did not answer")
        assert all(str(copy / "mlruns") in loc for loc in locations(copy))
        assert not any(str(workspace / "mlruns") in loc for loc in locations(copy))
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        ui.wait(timeout=30)
    assert "MLflow UI at http://127.0.0.1" in ui.stderr.read()
