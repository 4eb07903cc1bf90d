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


def _mlflow(root: Path):
    import mlflow

    (root / "mlruns").mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI") or tracking_uri(root))
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
    """One MLflow run (new, or resumed by id); a thin layer so stages log in one style."""

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
        if run_id is not None:
            self.run = self.mlflow.start_run(run_id=run_id)
        else:
            self.run = self.mlflow.start_run(experiment_id=exp, run_name=run_name)
            flat = {k: str(v) for k, v in flatten(params).items()}
            items = list(flat.items())
            for i in range(0, len(items), 100):  # MLflow takes at most 100 params per call
                self.mlflow.log_params(dict(items[i : i + 100]))
        self.mlflow.set_tags(run_tags(stage, tags))
        self.run_id = self.run.info.run_id

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self.mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)

    def log_artifact(self, path: str | Path, subdir: str | None = None) -> None:
        self.mlflow.log_artifact(str(path), artifact_path=subdir)

    def end(self, status: str = "FINISHED") -> None:
        self.mlflow.end_run(status=status)
