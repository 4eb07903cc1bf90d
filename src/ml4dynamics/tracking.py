"""MLflow tracking: a sqlite store under the repository root, one experiment per system.

The root comes from ``$DVC_ROOT`` when DVC runs the stage (queued and ``--temp`` experiments run
in a copy under .dvc/tmp, and a relative URI would lose their runs), else from git, else the
working directory. Runs are tagged with the code revision and DVC's experiment variables.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ml4dynamics.provenance import git_revision

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


def configured_uri(root: Path | None = None) -> str:
    """``$MLFLOW_TRACKING_URI`` (a shared server) or the repository's sqlite store."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    root = root or repo_root()
    (root / "mlruns").mkdir(parents=True, exist_ok=True)
    return tracking_uri(root)


def _mlflow(root: Path):
    import mlflow

    mlflow.set_tracking_uri(configured_uri(root))
    return mlflow


def experiment_id(system: str, root: Path | None = None) -> str:
    """The experiment named after the system, created with artifacts under mlruns/."""
    root = root or repo_root()
    mlflow = _mlflow(root)
    found = mlflow.get_experiment_by_name(system)
    if found is not None:
        return found.experiment_id
    artifacts = (root / "mlruns" / "artifacts" / system).as_uri()
    return mlflow.create_experiment(system, artifact_location=artifacts)


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def run_tags(stage: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    tags = {"stage": stage, "git_revision": git_revision(repo_root())}
    tags.update({tag: os.environ[var] for tag, var in DVC_TAGS.items() if os.environ.get(var)})
    tags.update(extra or {})
    return tags


class Run:
    """One MLflow run (new, or resumed by id); a thin layer so stages log in one style.

    A later stage that adds to the run of a model (``evaluate``, ``promote``) resumes it by id;
    its tags then go under ``<stage>.`` so the run keeps saying which stage created it. An id the
    store does not know (``mlruns/`` deleted) starts a new run instead.
    """

    def __init__(
        self,
        system: str,
        stage: str,
        run_name: str,
        params: Mapping[str, Any],
        tags: Mapping[str, str] | None = None,
        run_id: str | None = None,
    ):
        self.root = repo_root()
        self.mlflow = _mlflow(self.root)
        exp = experiment_id(system, self.root)
        if run_id is not None and not self._exists(run_id):
            run_id = None
        self.resumed = run_id is not None
        self.previous_status = None
        if run_id is not None:
            self.previous_status = self.mlflow.get_run(run_id).info.status
            self.run = self.mlflow.start_run(run_id=run_id)
            created_by = self.run.data.tags.get("stage")
        else:
            self.run = self.mlflow.start_run(experiment_id=exp, run_name=run_name)
            flat = {k: str(v) for k, v in flatten(params).items()}
            items = list(flat.items())
            for i in range(0, len(items), 100):  # MLflow takes at most 100 params per call
                self.mlflow.log_params(dict(items[i : i + 100]))
            created_by = stage
        all_tags = run_tags(stage, tags)
        if created_by != stage:
            all_tags = {f"{stage}.{k}": v for k, v in all_tags.items()}
        self.mlflow.set_tags(all_tags)
        self.run_id = self.run.info.run_id

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

    def log_artifact(self, path: str | Path, subdir: str | None = None) -> None:
        self.mlflow.log_artifact(str(path), artifact_path=subdir)

    def end(self, status: str = "FINISHED") -> None:
        self.mlflow.end_run(status=status)

    def fail(self) -> None:
        """End after a failure: FAILED for a run this process started; a resumed run keeps the
        status it had (a failure never rewrites the record of a run it did not start)."""
        if self.resumed and self.previous_status not in (None, "RUNNING"):
            self.end(self.previous_status)
        else:
            self.end("FAILED")
