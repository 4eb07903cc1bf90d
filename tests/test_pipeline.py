"""The DVC pipeline as a user runs it, in a fresh git repository made from this working tree."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import mlflow
import pytest
import yaml

from tests.conftest import BIN, REPO, small_params, write_params


def sh(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
    return result


def make_clone(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A new repository with the project's files (as in the working tree), small params."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    repo = tmp_path / "repo"
    for name in files:
        if name == "dvc.lock" or name.startswith("data/") or not (REPO / name).is_file():
            continue  # the lock and outputs of the real parameters do not belong to this run
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, repo / name)
    write_params(repo / "params.yaml", small_params())
    env = {
        **{k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"},
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


@pytest.fixture
def clone(tmp_path) -> tuple[Path, dict[str, str]]:
    return make_clone(tmp_path)


STAGES = (
    "generate@linear",
    "generate@rd",
    "fit_manifold@linear",
    "fit_manifold@rd",
    "train@linear",
    "train@rd",
    "linear_theory",
)


def ran(result: subprocess.CompletedProcess) -> set[str]:
    return {
        line.split("'")[1]
        for line in result.stdout.splitlines()
        if line.startswith("Running stage '")
    }


def lock_entry(repo: Path, stage: str) -> dict:
    return yaml.safe_load((repo / "dvc.lock").read_text())["stages"][stage]


@pytest.mark.slow
def test_repro_then_nothing_then_only_what_changed_then_an_experiment(clone):
    repo, env = clone
    first = sh(["dvc", "repro"], repo, env)
    for stage in STAGES:
        assert f"Running stage '{stage}'" in first.stdout
    for system in ("linear", "rd"):
        for split in ("train", "val", "test", "ood"):
            assert (repo / "data" / system / f"{split}.zarr" / "zarr.json").is_file()
    assert "up to date" in sh(["dvc", "status"], repo, env).stdout
    lock = (repo / "dvc.lock").read_text()
    revision = sh(["git", "rev-parse", "HEAD"], repo, env).stdout.strip()
    attrs = json.loads((repo / "data/rd/train.zarr/zarr.json").read_text())["attributes"]
    assert attrs["git_revision"] == revision  # provenance: the commit of the code

    # a second repro does nothing
    second = sh(["dvc", "repro"], repo, env)
    assert "Running stage" not in second.stdout
    assert (repo / "dvc.lock").read_text() == lock

    # rerunning a stage for real reproduces its recorded hashes byte for byte
    sh(["dvc", "repro", "--force", "--no-run-cache", "generate@rd"], repo, env)
    assert (repo / "dvc.lock").read_text() == lock

    # an rd parameter reruns generate@rd and nothing else
    params = small_params()
    params["rd"]["system"]["gamma_u"] = 0.07
    write_params(repo / "params.yaml", params)
    status = json.loads(sh(["dvc", "status", "--json"], repo, env).stdout)
    assert set(status) == {"generate@rd"}
    linear_before = lock_entry(repo, "generate@linear")
    third = sh(["dvc", "repro"], repo, env)
    assert ran(third) == {"generate@rd", "fit_manifold@rd", "train@rd"}
    assert lock_entry(repo, "generate@linear") == linear_before
    assert (
        lock_entry(repo, "generate@rd")["params"]["params.yaml"]["rd"]["system"]["gamma_u"] == 0.07
    )
    assert "up to date" in sh(["dvc", "status"], repo, env).stdout

    # an experiment with another lambda reruns training only, and is listed with its metrics
    sh(["git", "add", "-A"], repo, env)
    sh(["git", "commit", "-q", "-m", "baseline"], repo, env)
    exp = sh(["dvc", "exp", "run", "-S", "reg.lam=2.5", "-n", "lam-2.5"], repo, env)
    assert ran(exp) == {"train@linear", "train@rd"}
    shown = json.dumps(json.loads(sh(["dvc", "exp", "show", "--json"], repo, env).stdout))
    assert '"lam": 2.5' in shown and '"name": "lam-2.5"' in shown
    assert "metrics/rd/train.json" in shown and "val_tr_penalty" in shown
    # its MLflow run landed in the workspace's store, tagged with the experiment's name
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlruns' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("rd")
    runs = client.search_runs([experiment.experiment_id], filter_string="tags.stage = 'train'")
    tagged = [r for r in runs if r.data.tags.get("dvc_exp_name") == "lam-2.5"]
    assert len(tagged) == 1 and tagged[0].data.params["reg.lam"] == "2.5"


@pytest.mark.slow
def test_a_bad_parameter_stops_the_stage_with_one_line(clone):
    repo, env = clone
    params = small_params()
    params["rd"]["system"]["dt"] = -0.01
    write_params(repo / "params.yaml", params)
    result = subprocess.run(
        ["dvc", "repro", "generate@rd"], cwd=repo, env=env, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "ml4d: error: params.yaml: rd.system.dt: must be > 0" in result.stderr + result.stdout
    assert not (repo / "data" / "rd").exists()


def test_generation_provenance_covers_exactly_the_generate_stage_code():
    """The git revision written into datasets is that of the generate stage's code deps; if the
    two lists drift apart, a fresh clone no longer reproduces dvc.lock (see provenance.py)."""
    from ml4dynamics.datasets.generation import GENERATION_CODE

    stage = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["generate"]["do"]
    code = {d for d in stage["deps"] if d.startswith("src/")}
    assert code == set(GENERATION_CODE)
