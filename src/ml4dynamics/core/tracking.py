"""MLflow tracking: a sqlite store under the repository root, one experiment per system.

The root comes from ``$DVC_ROOT`` when DVC runs the stage (queued and ``--temp`` experiments run
in a copy under .dvc/tmp, and a relative URI would lose their runs), else from git, else the
working directory. Runs are tagged with the code revision and DVC's experiment variables.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ml4dynamics.core.errors import ML4DError
from ml4dynamics.core.faults import kill_point
from ml4dynamics.core.mlflow_store import alive, relocate, this_process
from ml4dynamics.core.provenance import git_revision

DVC_TAGS = {
    "dvc_exp_name": "DVC_EXP_NAME",
    "dvc_exp_baseline_rev": "DVC_EXP_BASELINE_REV",
    "dvc_stage": "DVC_STAGE",
}
# the process holding a run open, and the status a resumed run had before it was reopened: a
# run left RUNNING by a dead process is ended with that status (or KILLED) by the next Run
PROCESS_TAG, STATUS_BEFORE_TAG = "ml4d.process", "ml4d.status_before"


def repo_root() -> Path:
    if os.environ.get("DVC_ROOT"):
        return Path(os.environ["DVC_ROOT"]).absolute()
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        return Path(out.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return Path.cwd()


def tracking_uri(root: Path | None = None) -> str:
    return f"sqlite:///{(root or repo_root()) / 'mlruns' / 'mlflow.db'}"


def configured_uri(root: Path | None = None, create: bool = True) -> str:
    """``$MLFLOW_TRACKING_URI`` (a shared server) or the repository's sqlite store; a sqlite
    store that was copied or moved is first pointed at its own artifacts
    (``mlflow_store.relocate``). A reader (``create=False``: ``ml4d simulate``, ``ml4d card``)
    gets one line, and nothing created, where there is no store."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        uri = os.environ["MLFLOW_TRACKING_URI"]
    else:
        root = root or repo_root()
        db = root / "mlruns" / "mlflow.db"
        if not create and not db.is_file():
            raise ML4DError(
                f"no MLflow store at {db}: run from the repository whose `dvc repro` registered "
                "the model, or set MLFLOW_TRACKING_URI (e.g. sqlite:////path/to/repo/mlruns/"
                "mlflow.db, or a server's http://...)"
            )
        (root / "mlruns").mkdir(parents=True, exist_ok=True)
        uri = tracking_uri(root)
    relocate(uri)
    return uri


_URI_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


def use_store(uri: str):
    """Point this process's MLflow (tracking and registry) at ``uri`` and return the module.

    MLflow's setters also export ``MLFLOW_TRACKING_URI``/``MLFLOW_REGISTRY_URI`` into the
    environment; that is undone here, so the user's own setting stays what ``configured_uri``
    reads (a second workspace used later in the same process gets its own store) and child
    processes (DVC, a user's script) do not inherit a store they were never told about."""
    import mlflow

    before = {name: os.environ.get(name) for name in _URI_VARIABLES}
    try:
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)  # models:/ URIs resolve through the registry
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return mlflow


def _mlflow(root: Path):
    return use_store(configured_uri(root))


#: what MLflow's UI reads to open an experiment on its training runs (not the GenAI traces view)
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")


def experiment_tags(system: str) -> dict[str, str]:
    """The tags every experiment of ours carries: its kind, and a description (the text the UI
    shows above the runs)."""
    return {
        EXPERIMENT_KIND[0]: EXPERIMENT_KIND[1],
        "mlflow.note.content": (
            f"ML4Dynamics closures of the {system} system: one run per training (`stage` train, "
            "its loss curves and manifold diagnostics) with its evaluation as a child run "
            "(`stage` evaluate: the rollout errors per split), and the promotion runs."
        ),
    }


def experiment_id(system: str, root: Path | None = None) -> str:
    """The experiment named after the system, created with artifacts under mlruns/ and
    ``experiment_tags`` (an older experiment gains its kind)."""
    root = root or repo_root()
    mlflow = _mlflow(root)
    found = mlflow.get_experiment_by_name(system)
    if found is not None:
        if found.tags.get(EXPERIMENT_KIND[0]) != EXPERIMENT_KIND[1]:
            client = mlflow.MlflowClient()
            for key, value in experiment_tags(system).items():
                client.set_experiment_tag(found.experiment_id, key, value)
        return found.experiment_id
    artifacts = (root / "mlruns" / "artifacts" / system).as_uri()
    return mlflow.create_experiment(
        system, artifact_location=artifacts, tags=experiment_tags(system)
    )


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def display_name(run_name: str) -> str:
    """A run's name in the MLflow UI: ``rd-tr-projector``, or ``rd-tr-projector (lam-10)`` when
    a DVC experiment runs it, so the runs of different experiments tell apart at a glance."""
    experiment = os.environ.get("DVC_EXP_NAME")
    return f"{run_name} ({experiment})" if experiment else run_name


def run_tags(stage: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    tags = {"stage": stage, "git_revision": git_revision(repo_root())}
    tags.update({tag: os.environ[var] for tag, var in DVC_TAGS.items() if os.environ.get(var)})
    tags.update(extra or {})
    return tags


#: a RUNNING run without ``PROCESS_TAG`` older than this (by start time) is ended by the sweep:
#: runs are tagged as they are created, so it is one of older code, or of another tool that
#: was killed
UNTAGGED_GRACE_S = 600


def _dead(run, now_ms: int) -> str | None:
    """Why a RUNNING run is dead (its process died, or it never recorded one and is older than
    ``UNTAGGED_GRACE_S``); None while it may still be alive."""
    process = run.data.tags.get(PROCESS_TAG)
    if process is not None:
        return None if alive(process) else f"process {process} died"
    if now_ms - (run.info.start_time or 0) > UNTAGGED_GRACE_S * 1000:
        return f"no process recorded, started over {UNTAGGED_GRACE_S // 60} min ago"
    return None


def end_dead_runs(client, experiment_ids: list[str]) -> list[str]:
    """End every RUNNING run whose recorded process has died, or that recorded no process and
    started more than ``UNTAGGED_GRACE_S`` ago: KILLED, or the status a resumed run had before
    it was reopened (a stage that dies never rewrites a run it did not start). Returns the
    names ended."""
    import time

    ended = []
    now_ms = int(time.time() * 1000)
    for run in client.search_runs(experiment_ids, filter_string="attributes.status = 'RUNNING'"):
        why = _dead(run, now_ms)
        if why is None:
            continue
        before = run.data.tags.get(STATUS_BEFORE_TAG)
        status = before if before in ("FINISHED", "FAILED", "KILLED") else "KILLED"
        client.set_tag(run.info.run_id, "ml4d.ended", f"{why}; ended {status}")
        client.set_terminated(run.info.run_id, status)
        ended.append(f"{run.info.run_name} ({status})")
    return ended


class Run:
    """One MLflow run (new, or resumed by id); a thin layer so stages log in one style.

    A later stage that adds to the run of a model (``promote``) resumes it by id; its tags then go
    under ``<stage>.`` so the run keeps saying which stage created it. An id the store does not
    know (``mlruns/`` deleted) starts a new run instead. A stage that records a result about
    another run (``evaluate``) starts a child run of it (``parent_run_id``); with
    ``replace=True`` the earlier child runs of the same stage are deleted once this one ends
    FINISHED (never before: a failed or killed re-evaluation leaves the previous one), so a
    re-evaluation replaces the previous one instead of adding a second history.

    Starting a Run first ends the runs of the store whose process died (``end_dead_runs``).
    """

    def __init__(
        self,
        system: str,
        stage: str,
        run_name: str,
        params: Mapping[str, Any],
        tags: Mapping[str, str] | None = None,
        run_id: str | None = None,
        parent_run_id: str | None = None,
        replace: bool = False,
    ):
        self.root = repo_root()
        self.mlflow = _mlflow(self.root)
        client = self.mlflow.MlflowClient()
        exp = experiment_id(system, self.root)
        ended = end_dead_runs(client, [e.experiment_id for e in client.search_experiments()])
        if ended:
            print(
                f"ml4d: note: ended {len(ended)} run(s) whose process died: {', '.join(ended)}",
                file=sys.stderr,
            )
        if run_id is not None and not self._exists(run_id):
            run_id = None
        if parent_run_id is not None and not self._exists(parent_run_id):
            parent_run_id = None
        self.parent_run_id, self.replace = parent_run_id, replace
        self.resumed = run_id is not None
        self.previous_status = None
        if run_id is not None:
            self.run = self._reopen(client, run_id, stage, tags)
        else:
            # created with its process: a kill at any moment leaves a run the sweep can end
            all_tags = {**run_tags(stage, tags), PROCESS_TAG: this_process()}
            if parent_run_id:
                all_tags["mlflow.parentRunId"] = parent_run_id
            self.run = self.mlflow.start_run(
                experiment_id=exp, run_name=display_name(run_name), tags=all_tags
            )
        kill_point("run_created")  # fault-injection tests: the run exists, nothing logged yet
        if not self.resumed:
            items = [(k, str(v)) for k, v in flatten(params).items()]
            for i in range(0, len(items), 100):  # MLflow takes at most 100 params per call
                self.mlflow.log_params(dict(items[i : i + 100]))
        self.run_id = self.run.info.run_id

    def _reopen(self, client, run_id: str, stage: str, tags: Mapping[str, str] | None):
        """Reopen run ``run_id``: its tags (under ``<stage>.`` when another stage created it),
        this process and the status it had are recorded first, then it is set RUNNING."""
        from mlflow.entities import RunTag

        existing = self.mlflow.get_run(run_id)
        self.previous_status = existing.info.status
        all_tags = run_tags(stage, tags)
        if existing.data.tags.get("stage") != stage:
            all_tags = {f"{stage}.{k}": v for k, v in all_tags.items()}
        all_tags[PROCESS_TAG] = this_process()
        all_tags[STATUS_BEFORE_TAG] = self.previous_status
        client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in all_tags.items()])
        return self.mlflow.start_run(run_id=run_id)

    def _exists(self, run_id: str) -> bool:
        from mlflow.exceptions import MlflowException

        try:
            self.mlflow.get_run(run_id)
            return True
        except MlflowException:
            return False

    def log_series(self, curves: Mapping[str, Any], steps: Any, prefix: str = "") -> None:
        """Per-frame curves as step metrics in one batch (non-finite points are skipped)."""
        import math
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [
            Metric(f"{prefix}{name}", float(v), now, int(step))
            for name, values in curves.items()
            for step, v in zip(steps, values, strict=True)
            if math.isfinite(float(v))
        ]
        client = self.mlflow.MlflowClient()
        for i in range(0, len(metrics), 1000):  # the store's batch limit
            client.log_batch(self.run_id, metrics=metrics[i : i + 1000])

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self.mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)

    def log_on_parent(self, metrics: Mapping[str, float]) -> None:
        """Also log ``metrics`` on the parent run (a training run gets its evaluation's headline,
        so the runs table shows it without opening the child run); nothing without a parent."""
        import time

        from mlflow.entities import Metric

        if self.parent_run_id is None:
            return
        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, 0) for k, v in metrics.items()]
        self.mlflow.MlflowClient().log_batch(self.parent_run_id, metrics=batch)

    def log_artifact(self, path: str | Path, subdir: str | None = None) -> None:
        self.mlflow.log_artifact(str(path), artifact_path=subdir)

    def end(self, status: str = "FINISHED") -> None:
        self.mlflow.end_run(status=status)
        if status == "FINISHED" and self.replace and self.parent_run_id is not None:
            self._delete_earlier_siblings()

    def _delete_earlier_siblings(self) -> None:
        """Delete the other child runs of this run's parent made by the same stage (the runs
        this complete one replaces: earlier, failed or killed ones)."""
        client = self.mlflow.MlflowClient()
        stage = client.get_run(self.run_id).data.tags.get("stage")
        for old in client.search_runs(
            [self.run.info.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{self.parent_run_id}' "
            f"and tags.stage = '{stage}'",
        ):
            if old.info.run_id != self.run_id:
                client.delete_run(old.info.run_id)

    def fail(self) -> None:
        """End after a failure: FAILED for a run this process started; a resumed run keeps the
        status it had (a failure never rewrites the record of a run it did not start)."""
        if self.resumed and self.previous_status not in (None, "RUNNING"):
            self.end(self.previous_status)
        else:
            self.end("FAILED")
