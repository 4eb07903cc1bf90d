"""What a user does with a pipeline's champion, in a fresh clone after `dvc repro`: load it in
another process, drive a simulation, score versions on the frozen benchmark, and see a closure
that blows up refused. (The pipeline and experiments themselves: tests/test_pipeline.py.)"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.clones import (
    CHAMPION_ONLY,
    TEST_MODELS,
    load_in_fresh_process,
    pipeline_params,
    registry,
    reproduced,
    sh,
    store_env,
)
from tests.conftest import BIN, write_params

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A clone whose pipeline trains one rd closure (OLS), its champion: all a downstream user
    needs (the full two-model pipeline: tests/test_pipeline.py)."""
    return reproduced(tmp_path_factory.mktemp("downstream"), CHAMPION_ONLY, with_linear=False)


def ml4d(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "ml4d"), *args], cwd=cwd, env=env, capture_output=True, text=True
    )


def test_a_fresh_process_elsewhere_loads_the_champion_and_simulates_with_it(workspace, tmp_path):
    repo, env = workspace
    load_in_fresh_process(repo, "models:/rd-closure@champion", tmp_path, env)
    out = tmp_path / "run.zarr"
    model = ["--model", "models:/rd-closure@champion"]
    steps = ["--steps", "100", "--store-every", "10", "--out", str(out)]
    sh([str(BIN / "ml4d"), "simulate", *model, *steps], tmp_path, {**env, **store_env(repo)})
    from ml4dynamics.datasets import open_dataset

    run = open_dataset(out)  # the validating reader: finite, float64, schema
    assert run.sizes["time"] == 11 and run.attrs["model_uri"] == "models:/rd-closure@champion"
    champion = registry(repo).get_model_version_by_alias("rd-closure", "champion")
    # what the alias resolved to when it ran (the alias may move later; the record does not)
    assert run.attrs["model_version"] == int(champion.version)
    assert run.attrs["model_run_id"] == champion.run_id and run.attrs["model_gates"] == "passed"
    assert (tmp_path / "run.png").is_file()


def test_the_benchmark_is_frozen_and_scores_registry_versions(workspace):
    """The clone's data.dvc refuses a silent rebuild; removed on purpose, the benchmark is built
    anew (tiny rd only), tracked by data.dvc, and scores registry versions."""
    repo, env = workspace
    refused_build = ml4d(["golden", "build"], repo, env)
    assert refused_build.returncode == 2 and "data.dvc already tracks" in refused_build.stderr
    sh(["dvc", "remove", "data.dvc"], repo, env)
    sh([str(BIN / "ml4d"), "golden", "build", "--system", "rd"], repo, env)
    recipe = yaml.safe_load((repo / "data/benchmark/recipe.yaml").read_text())
    assert recipe["systems"]["rd"]["data"]["test"]["seed"] == 3 + 1000  # its own trajectories
    assert yaml.safe_load((repo / "data.dvc").read_text())["outs"][0]["path"] == "data/benchmark"
    rebuilt = ml4d(["golden", "build"], repo, env)
    assert rebuilt.returncode == 2 and "the benchmark is frozen" in rebuilt.stderr
    uris = ["models:/rd-closure@champion", "models:/rd-closure/1"]
    models = [arg for uri in uris for arg in ("--model", uri)]
    sh([str(BIN / "ml4d"), "golden", "score", *models, "--scores", "scores.json"], repo, env)
    scores = json.loads((repo / "scores.json").read_text())
    assert set(scores["models"]) == set(uris)
    assert scores["benchmark_md5"].endswith(".dir")
    client = registry(repo)
    experiment = client.get_experiment_by_name("rd")
    benchmarked = client.search_runs(
        [experiment.experiment_id], filter_string="tags.stage = 'benchmark'"
    )
    assert len(benchmarked) == 2 and "bench.test.error_horizon" in benchmarked[0].data.metrics


def test_a_closure_that_blows_up_is_refused_and_the_champion_stays(workspace):
    """One epoch at a huge learning rate, no TR: trained, evaluated and promoted by the stages'
    commands with its own parameter file, refused with the reason tagged."""
    repo, env = workspace
    client = registry(repo)
    champion = client.get_model_version_by_alias("rd-closure", "champion")
    pipeline = yaml.safe_load((repo / "dvc.yaml").read_text())  # the user lists the new model
    pipeline["vars"][2]["models"]["rd-tr-projector"] = TEST_MODELS["rd-tr-projector"]
    (repo / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
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
    # run anyway by its number: one warning line names the failed gate before it simulates
    # (a closure this bad may blow up even in one step: then that is the one error line after)
    uri = f"models:/rd-closure/{refused.version}"
    out = repo / "refused.zarr"
    result = ml4d(["simulate", "--model", uri, "--steps", "1", "--out", str(out)], repo, env)
    assert result.returncode == 0 or "blew up" in result.stderr.splitlines()[-1], result.stderr
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    failed = sorted(k[5:] for k, v in refused.tags.items() if k[:5] == "gate." and v == "failed")
    assert "finite_and_bounded" in failed
    assert warnings == [
        f"ml4d: warning: {uri} is version {refused.version}, which failed its gates "
        f"({', '.join(failed)}): the registry refused it as a champion"
    ]
