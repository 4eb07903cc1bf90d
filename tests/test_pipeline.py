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

from tests.conftest import BIN, REPO, mlflow_client, small_params, write_params


def sh(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
    return result


# The test pipeline trains two rd estimators, OLS and TR (the default trains six; the others are
# exercised in test_training and test_registry): an experiment on `reg.rd` must rerun TR only. Thresholds are loose enough for
# tiny trainings to pass, so a champion exists.
TEST_MODELS = {
    "rd-ols": {"system": "rd", "estimator": "ols", "weights": "estimators.ols"},
    "rd-tr-projector": {"system": "rd", "estimator": "tr-projector", "weights": "reg.rd"},
}


def pipeline_params() -> dict:
    params = small_params()
    params["promote"] = {"max_error": 5.0, "max_shift": 20.0}
    return params


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
        if name == "dvc.lock" or not (REPO / name).is_file():
            continue  # the lock and outputs of the real parameters do not belong to this run
        if name.startswith(("data/", "metrics/", "plots/", "bench/")):
            continue
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, repo / name)
    write_params(repo / "params.yaml", pipeline_params())
    pipeline = yaml.safe_load((repo / "dvc.yaml").read_text())
    pipeline["vars"] = [
        {"systems": ["linear", "rd"]},
        {"manifolds": ["rd"]},
        {"models": TEST_MODELS},
        {"registered": ["rd"]},
    ]
    pipeline.pop("plots")  # they name the default estimators' files
    pipeline["stages"].pop("shift_correlation")  # it pools the default systems' evaluations
    pipeline["stages"].pop("report")  # it tabulates the default systems (tests/test_report.py)
    (repo / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
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
    "fit_manifold@rd",
    *(f"{stage}@{model}" for stage in ("train", "evaluate") for model in TEST_MODELS),
    "promote@rd",
    "linear_theory",
)
TR = {f"{stage}@rd-tr-projector" for stage in ("train", "evaluate")} | {"promote@rd"}


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


@pytest.mark.slow
def test_repro_registry_experiments_and_downstream_use(clone, tmp_path):
    """The user's loop end to end: repro, champion, an experiment, pyfunc, simulate, refusal."""
    repo, env = clone
    first = sh(["dvc", "repro"], repo, env)
    assert ran(first) == set(STAGES)
    for system in ("linear", "rd"):
        for split in ("train", "val", "test", "ood"):
            assert (repo / "data" / system / f"{split}.zarr" / "zarr.json").is_file()
    # (`dvc status dvc.yaml`: the clone has data.dvc but, with no remote, not its benchmark;
    # `dvc repro` above ran regardless, as a fresh clone of the project must). Promotion always
    # runs: the registry lives outside DVC.
    status = json.loads(sh(["dvc", "status", "--json", "dvc.yaml"], repo, env).stdout)
    assert status == {"promote@rd": ["always changed"]}
    lock = (repo / "dvc.lock").read_text()
    revision = sh(["git", "rev-parse", "HEAD"], repo, env).stdout.strip()
    attrs = json.loads((repo / "data/rd/train.zarr/zarr.json").read_text())["attributes"]
    assert attrs["git_revision"] == revision  # provenance: the commit of the code

    # evaluation metrics and plots are where DVC looks for them
    metrics = json.loads(sh(["dvc", "metrics", "show", "--json"], repo, env).stdout)
    flat = json.dumps(metrics)
    assert "metrics/rd/evaluate/tr-projector.json" in flat and "error_horizon" in flat
    plots = json.loads(sh(["dvc", "plots", "show", "--json"], repo, env).stdout)
    assert any("evaluate/tr-projector/ood.csv" in key for key in json.dumps(plots).split('"'))

    # a champion exists, with its gate results as tags
    client = registry(repo)
    champion = client.get_model_version_by_alias("rd-closure", "champion")
    assert champion.tags["gates"] == "passed" and champion.tags["gates.decided_in"] == "workspace"
    assert champion.tags["gate.finite_and_bounded"] == "passed"
    promotion = json.loads((repo / "metrics/rd/promotion.json").read_text())
    assert promotion["champion"]["version"] == int(champion.version)

    # a second repro does nothing but reconcile the registry (nothing new to register)
    # (byte-identical regeneration: tests/test_datasets.py)
    versions = client.search_model_versions("name = 'rd-closure'")
    assert ran(sh(["dvc", "repro"], repo, env)) == {"promote@rd"}
    assert len(client.search_model_versions("name = 'rd-closure'")) == len(versions) == 2
    assert (repo / "dvc.lock").read_text() == lock

    # an rd parameter invalidates generate@rd only (the rest of the rd chain follows its data)
    params = pipeline_params()
    params["rd"]["system"]["gamma_u"] = 0.07
    write_params(repo / "params.yaml", params)
    assert set(json.loads(sh(["dvc", "status", "--json"], repo, env).stdout)) == {
        "generate@rd",
        "data.dvc",  # the benchmark: tracked, but not in this clone's cache (no remote)
        "promote@rd",  # always
    }
    write_params(repo / "params.yaml", pipeline_params())

    # two queued experiments on lambda, run by two workers: each reruns the TR model through
    # promotion only (one new training run each, none for OLS), registers its TR closure and
    # records its gates, and neither moves the champion
    sh(["git", "add", "-A"], repo, env)
    sh(["git", "commit", "-q", "-m", "baseline"], repo, env)
    promotion_before = (repo / "metrics/rd/promotion.json").read_text()
    for lam in ("2.5", "0.3"):
        sh(
            ["dvc", "exp", "run", "--queue", "-S", f"reg.rd.lam={lam}", "-n", f"lam-{lam}"],
            repo,
            env,
        )
    sh(["dvc", "exp", "run", "--run-all", "--jobs", "2"], repo, env)
    shown = json.dumps(json.loads(sh(["dvc", "exp", "show", "--json"], repo, env).stdout))
    for lam in ("2.5", "0.3"):
        assert f'"lam": {lam}' in shown and f'"name": "lam-{lam}"' in shown
    assert "metrics/rd/evaluate/tr-projector.json" in shown and "val_tr_penalty" in shown
    experiment = client.get_experiment_by_name("rd")
    runs = client.search_runs([experiment.experiment_id], filter_string="tags.stage = 'train'")
    assert len(runs) == 2 + 2  # the baseline's OLS and TR, and one TR per experiment
    for lam in ("2.5", "0.3"):
        # its MLflow runs landed in the workspace's store, tagged with the experiment's name
        tagged = [r for r in runs if r.data.tags.get("dvc_exp_name") == f"lam-{lam}"]
        assert len(tagged) == 1 and tagged[0].data.params["reg.lam"] == lam
        assert tagged[0].data.tags["estimator"] == "tr-projector"
        evaluation = client.search_runs(
            [experiment.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{tagged[0].info.run_id}'",
        )
        assert len(evaluation) == 1 and "eval.test.error_horizon" in evaluation[0].data.metrics
        registered = client.search_model_versions(
            f"name = 'rd-closure' and tags.registered_in = 'lam-{lam}'"
        )
        assert len(registered) == 1 and registered[0].run_id == tagged[0].info.run_id
        assert registered[0].tags["gates.decided_in"] == f"lam-{lam}"
    assert len(client.search_model_versions("name = 'rd-closure'")) == 2 + 2
    assert client.get_model_version_by_alias("rd-closure", "champion").version == champion.version
    assert (repo / "metrics/rd/promotion.json").read_text() == promotion_before
    assert not any(
        r.info.status == "RUNNING" for r in client.search_runs([experiment.experiment_id])
    )

    # applied to the workspace, an experiment's pipeline moves the champion (when its gates
    # pass); only promotion runs, and the aliases agree with promotion.json
    applied = subprocess.run(
        ["dvc", "exp", "apply", "lam-2.5"], cwd=repo, env=env, capture_output=True, text=True
    )
    # (this clone has data.dvc but not the benchmark's files: no remote to check them out from)
    assert applied.returncode == 0 or applied.stderr.split("targets:\n")[1].startswith(
        "data/benchmark\n"
    ), applied.stderr
    assert yaml.safe_load((repo / "params.yaml").read_text())["reg"]["rd"]["lam"] == 2.5
    assert ran(sh(["dvc", "repro"], repo, env)) == {"promote@rd"}
    promotion = json.loads((repo / "metrics/rd/promotion.json").read_text())
    tr = promotion["candidates"]["tr-projector"]
    champion = client.get_model_version_by_alias("rd-closure", "champion")
    assert promotion["champion"]["version"] == int(champion.version)
    assert (int(champion.version) == tr["version"]) == tr["passed"]
    assert len(client.search_model_versions("name = 'rd-closure'")) == 2 + 2
    sh(["git", "checkout", "--", "."], repo, env)
    sh(["dvc", "checkout", "dvc.yaml"], repo, env)

    # downstream: a fresh process elsewhere loads the champion by alias and predicts
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    script = (
        "import mlflow, numpy as np\n"
        "m = mlflow.pyfunc.load_model('models:/rd-closure@champion')\n"
        "y = m.predict(np.random.default_rng(0).normal(size=(3, 2, 32, 32)))\n"
        "assert y.shape == (3, 2, 32, 32) and y.dtype == np.float64, (y.shape, y.dtype)\n"
        "assert np.isfinite(y).all()\n"
        "print('ok')\n"
    )
    uri = f"sqlite:///{repo / 'mlruns' / 'mlflow.db'}"
    loaded = sh([str(BIN / "python"), "-c", script], elsewhere, {**env, "MLFLOW_TRACKING_URI": uri})
    assert loaded.stdout.strip().endswith("ok")
    out = elsewhere / "run.zarr"
    sh(
        [
            str(BIN / "ml4d"),
            "simulate",
            "--model",
            "models:/rd-closure@champion",
            "--steps",
            "100",
            "--store-every",
            "10",
            "--out",
            str(out),
        ],
        elsewhere,
        {**env, "MLFLOW_TRACKING_URI": uri},
    )
    from ml4dynamics.datasets import open_dataset

    run = open_dataset(out)  # the validating reader: finite, float64, schema
    assert run.sizes["time"] == 11 and run.attrs["model_uri"] == "models:/rd-closure@champion"
    assert (elsewhere / "run.png").is_file()

    # the golden benchmark: frozen — the clone's data.dvc refuses a silent rebuild; removed on
    # purpose, it is built anew (tiny rd only), tracked by data.dvc, and scores registry versions
    refused_build = subprocess.run(
        [str(BIN / "ml4d"), "benchmark", "build"], cwd=repo, env=env, capture_output=True, text=True
    )
    assert refused_build.returncode == 2 and "data.dvc already tracks" in refused_build.stderr
    sh(["dvc", "remove", "data.dvc"], repo, env)
    sh([str(BIN / "ml4d"), "benchmark", "build", "--system", "rd"], repo, env)
    recipe = yaml.safe_load((repo / "data/benchmark/recipe.yaml").read_text())
    assert recipe["systems"]["rd"]["data"]["test"]["seed"] == 3 + 1000  # its own trajectories
    assert yaml.safe_load((repo / "data.dvc").read_text())["outs"][0]["path"] == "data/benchmark"
    rebuilt = subprocess.run(
        [str(BIN / "ml4d"), "benchmark", "build"], cwd=repo, env=env, capture_output=True, text=True
    )
    assert rebuilt.returncode == 2 and "the benchmark is frozen" in rebuilt.stderr
    sh(
        [
            str(BIN / "ml4d"),
            "benchmark",
            "score",
            "--model",
            "models:/rd-closure@champion",
            "--model",
            "models:/rd-closure/1",
            "--scores",
            "scores.json",
        ],
        repo,
        env,
    )
    scores = json.loads((repo / "scores.json").read_text())
    assert set(scores["models"]) == {"models:/rd-closure@champion", "models:/rd-closure/1"}
    assert scores["benchmark_md5"].endswith(".dir")
    benchmarked = client.search_runs(
        [experiment.experiment_id], filter_string="tags.stage = 'benchmark'"
    )
    assert len(benchmarked) == 2 and "bench.test.error_horizon" in benchmarked[0].data.metrics

    # a closure that blows up (one epoch at a huge learning rate, no TR), trained, evaluated and
    # promoted by the stages' commands with its own parameter file: refused with the reason
    # tagged, and the champion stays where it was
    blowup = pipeline_params()
    blowup["reg"]["rd"]["lam"] = 0.0
    blowup["train"]["rd"]["optim"].update(epochs=1, lr=1.0)
    write_params(repo / "blowup.yaml", blowup)
    for args in (
        ["train", "rd", "--estimator", "tr-projector"],
        ["evaluate", "rd", "--estimator", "tr-projector"],
        ["promote", "rd"],
    ):
        sh([str(BIN / "ml4d"), *args, "--params", "blowup.yaml"], repo, env)
    refused = max(client.search_model_versions("name = 'rd-closure'"), key=lambda v: int(v.version))
    assert refused.tags["estimator"] == "tr-projector" and refused.tags["gates"] == "failed"
    assert refused.tags["gate.finite_and_bounded"] == "failed"
    assert "blow up" in refused.tags["refusal_reason"]
    after = client.get_model_version_by_alias("rd-closure", "champion")
    assert after.version == champion.version


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
