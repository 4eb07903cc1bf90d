"""A fresh git repository made from this working tree, with small parameters and a two-model rd
pipeline: what the end-to-end pipeline tests run `dvc` and `ml4d` in."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import mlflow
import yaml

from tests.conftest import (
    BIN,
    REPO,
    mlflow_client,
    promote_thresholds,
    small_params,
    write_params,
)

MLFLOW_URIS = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")  # the clone's own store, not these


def sh(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
    return result


# The test pipeline trains two rd estimators, OLS and TR (the others are exercised in
# test_training and test_registry): an experiment on `reg.rd` must rerun TR only. The gates'
# thresholds are loose enough for tiny trainings to pass, so a champion exists.
TEST_MODELS = {
    "rd-ols": {
        "system": "rd",
        "estimator": "ols",
        "weights": "estimators.ols",
        "scale": "estimators.ols",
    },
    "rd-tr-projector": {
        "system": "rd",
        "estimator": "tr-projector",
        "weights": "reg.rd",
        "scale": "reg.lam",
    },
}


def pipeline_params() -> dict:
    params = small_params()
    params["promote"] = promote_thresholds(scale=10)
    return params


# what a downstream user needs: one rd closure in the registry (no TR, no linear toy)
CHAMPION_ONLY = {"rd-ols": TEST_MODELS["rd-ols"]}


def _plots_of(plots: list, models: dict, with_linear: bool) -> list:
    """The top-level plot definitions that draw files of ``models`` (and of the linear toy)."""
    owned = tuple(
        prefix
        for m in models.values()
        for prefix in (
            f"plots/{m['system']}/train/{m['estimator']}.",
            f"plots/{m['system']}/evaluate/{m['estimator']}/",
        )
    ) + (("plots/linear_theory.",) if with_linear else ())
    kept = []
    for entry in plots:
        if isinstance(entry, str):
            if entry.startswith(owned):
                kept.append(entry)
            continue
        ((title, spec),) = entry.items()
        y = {path: column for path, column in spec["y"].items() if path.startswith(owned)}
        if y:
            kept.append({title: {**spec, "y": y}})
    return kept


def make_clone(
    tmp_path: Path, models: dict | None = None, with_linear: bool = True
) -> tuple[Path, dict[str, str]]:
    """A new repository with the project's files (as in the working tree), small params, and a
    pipeline of ``models`` (default ``TEST_MODELS``) on rd (and the linear toy)."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    repo = tmp_path / "repo"
    for name in files:
        if name == "dvc.lock" or not (REPO / name).is_file():
            continue  # the lock and outputs of the real parameters do not belong to this run
        if name.startswith(("data/", "metrics/", "plots/", "bench/")):
            continue
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, repo / name)
    write_params(repo / "params.yaml", pipeline_params())
    pipeline = yaml.safe_load((repo / "dvc.yaml").read_text())
    pipeline["vars"] = [
        {"systems": ["linear", "rd"] if with_linear else ["rd"]},
        {"manifolds": ["rd"]},
        {"models": models or TEST_MODELS},
        {"registered": ["rd"]},
    ]
    pipeline["plots"] = _plots_of(pipeline["plots"], models or TEST_MODELS, with_linear)
    if not with_linear:
        pipeline["stages"].pop("linear_theory")  # it reads data/linear
    pipeline["stages"].pop("shift_correlation")  # it pools the default systems' evaluations
    pipeline["stages"].pop("report")  # it tabulates the default systems (tests/test_report.py)
    (repo / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    env = {
        **{k: v for k, v in os.environ.items() if k not in MLFLOW_URIS},
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "DVC_SITE_CACHE_DIR": str(tmp_path / "dvc-site-cache"),  # off the machine-wide cache
        "DVC_NO_ANALYTICS": "1",
        "GIT_AUTHOR_NAME": "test",
        "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "test",
        "GIT_COMMITTER_EMAIL": "test@example.com",
    }
    sh(["git", "init", "-q", "-b", "main"], repo, env)
    sh(["git", "add", "-A"], repo, env)
    sh(["git", "commit", "-q", "-m", "project"], repo, env)
    return repo, env


def ran(result: subprocess.CompletedProcess) -> set[str]:
    return {
        line.split("'")[1]
        for line in result.stdout.splitlines()
        if line.startswith("Running stage '")
    }


def lock_entry(repo: Path, stage: str) -> dict:
    return yaml.safe_load((repo / "dvc.lock").read_text())["stages"][stage]


def registry(repo: Path) -> mlflow.MlflowClient:
    return mlflow_client(repo)


def reproduced(
    tmp_path: Path, models: dict | None = None, with_linear: bool = True
) -> tuple[Path, dict[str, str]]:
    """A clone (``make_clone``) on which `dvc repro` has run every stage, state committed."""
    repo, env = make_clone(tmp_path, models, with_linear)
    first = sh(["dvc", "repro"], repo, env)
    expected = {
        *(["generate@linear", "linear_theory"] if with_linear else []),
        "generate@rd",
        "fit_manifold@rd",
        *(f"{stage}@{model}" for stage in ("train", "evaluate") for model in models or TEST_MODELS),
        "promote@rd",
        "envelope@rd",
    }
    assert ran(first) == expected
    sh(["git", "add", "-A"], repo, env)
    sh(["git", "commit", "-q", "-m", "baseline"], repo, env)
    return repo, env


def load_in_fresh_process(repo: Path, model_uri: str, cwd: Path, env: dict[str, str]) -> None:
    """A new Python elsewhere, told only the store's URI, loads ``model_uri`` with plain MLflow
    (as a downstream user would) and predicts finite float64 closures."""
    script = (
        "import mlflow, numpy as np\n"
        f"m = mlflow.pyfunc.load_model({model_uri!r})\n"
        "y = m.predict(np.random.default_rng(0).normal(size=(3, 2, 32, 32)))\n"
        "assert y.shape == (3, 2, 32, 32) and y.dtype == np.float64, (y.shape, y.dtype)\n"
        "assert np.isfinite(y).all()\n"
        "print('ok')\n"
    )
    loaded = sh([str(BIN / "python"), "-c", script], cwd, {**env, **store_env(repo)})
    assert loaded.stdout.strip().endswith("ok")


def store_env(repo: Path) -> dict[str, str]:
    return {"MLFLOW_TRACKING_URI": f"sqlite:///{repo / 'mlruns' / 'mlflow.db'}"}
