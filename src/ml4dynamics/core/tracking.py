"""MLflow tracking: a sqlite store under the repository root, or a team's server
(``$MLFLOW_TRACKING_URI``), one experiment per system.

The root comes from ``$DVC_ROOT`` when DVC runs the stage (queued and ``--temp`` experiments run
in a copy under .dvc/tmp, and a relative URI would lose their runs), else from git, else the
working directory. Runs are tagged with the code revision, DVC's experiment variables and the
backend JAX computes on. On a server every call is a round trip (~50 ms): metrics logged per
step are sent in batches (``Run.log_metrics``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ml4dynamics.core import tracking_server
from ml4dynamics.core.errors import ML4DError
from ml4dynamics.core.faults import kill_point
from ml4dynamics.core.mlflow_store import (
    PROCESS_TAG,
    STATUS_BEFORE_TAG,
    end_dead_runs,
    relocate,
    this_process,
)
from ml4dynamics.core.provenance import git_revision

DVC_TAGS = {
    "dvc_exp_name": "DVC_EXP_NAME",
    "dvc_exp_baseline_rev": "DVC_EXP_BASELINE_REV",
    "dvc_stage": "DVC_STAGE",
}


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
        if is_server(uri):
            tracking_server.require_answer(uri)
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


def is_server(uri: str) -> bool:
    """Whether ``uri`` is a tracking server (its artifacts go through it: clients need no shared
    folder), not a store on this machine's disk."""
    return uri.startswith(("http://", "https://"))


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
    """The experiment named after the system, created with ``experiment_tags`` (an older
    experiment gains its kind): its artifacts under mlruns/ in a local store, where the server
    keeps them on a server. Two processes creating it at once both get the one that was made."""
    from mlflow.exceptions import MlflowException

    root = root or repo_root()
    uri = configured_uri(root)
    mlflow = use_store(uri)
    found = mlflow.get_experiment_by_name(system)
    if found is not None:
        if found.tags.get(EXPERIMENT_KIND[0]) != EXPERIMENT_KIND[1]:
            client = mlflow.MlflowClient()
            for key, value in experiment_tags(system).items():
                client.set_experiment_tag(found.experiment_id, key, value)
        return found.experiment_id
    where = (
        {}
        if is_server(uri)
        else {"artifact_location": (root / "mlruns" / "artifacts" / system).as_uri()}
    )
    try:
        return mlflow.create_experiment(system, tags=experiment_tags(system), **where)
    except MlflowException as err:
        if err.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        return mlflow.get_experiment_by_name(system).experiment_id  # another writer made it


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


def backend_tags() -> dict[str, str]:
    """What JAX computes on in this process: backend (cpu, gpu, tpu), devices and version."""
    import jax

    devices = jax.devices()
    kinds = sorted({d.device_kind for d in devices})
    return {
        "jax.backend": jax.default_backend(),
        "jax.devices": f"{len(devices)} x {', '.join(kinds)}",
        "jax.version": jax.__version__,
    }


def run_tags(stage: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    tags = {"stage": stage, "git_revision": git_revision(repo_root()), **backend_tags()}
    tags.update({tag: os.environ[var] for tag, var in DVC_TAGS.items() if os.environ.get(var)})
    tags.update(extra or {})
    return tags


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
        self._pending: list = []  # per-step metrics not yet sent (``log_metrics``)
        self._sent_at = time.monotonic()

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

    #: per-step metrics are sent once this many are waiting or this many seconds have passed
    BATCH_POINTS, BATCH_SECONDS = 1000, 5.0

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Log ``metrics``; with a ``step`` (a curve, logged in a loop) they are sent in
        batches, within ``BATCH_SECONDS`` (the UI's curves follow a training live), and at the
        latest when the run ends."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._pending += [Metric(k, float(v), now, step or 0) for k, v in metrics.items()]
        if (
            step is None
            or len(self._pending) >= self.BATCH_POINTS
            or time.monotonic() - self._sent_at >= self.BATCH_SECONDS
        ):
            self.flush()

    def flush(self) -> None:
        """Send the metrics ``log_metrics`` holds back (one call per 1000 points)."""
        client = self.mlflow.MlflowClient()
        pending, self._pending = self._pending, []
        for i in range(0, len(pending), 1000):  # the store's batch limit
            client.log_batch(self.run_id, metrics=pending[i : i + 1000])
        self._sent_at = time.monotonic()

    def log_on_parent(self, metrics: Mapping[str, float]) -> None:
        """Also log ``metrics`` on the parent run (a training run gets its evaluation's headline,
        so the runs table shows it without opening the child run); nothing without a parent."""
        from mlflow.entities import Metric

        if self.parent_run_id is None:
            return
        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, 0) for k, v in metrics.items()]
        self.mlflow.MlflowClient().log_batch(self.parent_run_id, metrics=batch)

    def log_artifact(self, path: str | Path, subdir: str | None = None) -> None:
        self.mlflow.log_artifact(str(path), artifact_path=subdir)

    def end(self, status: str = "FINISHED") -> None:
        self.flush()
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
