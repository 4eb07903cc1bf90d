"""What a user does with a pipeline's champion, in a fresh clone after `dvc repro`: load it in
another process, drive a simulation, score versions on the frozen benchmark, and see a closure
that blows up refused. (The pipeline and experiments themselves: tests/test_pipeline.py.)"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.clones import (
    CHAMPION_ONLY,
    TEST_MODELS,
    load_in_fresh_process,
    pipeline_params,
    ran,
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


def test_the_champion_carries_its_envelope_and_simulate_warns_outside_it(workspace, tmp_path):
    """`dvc repro` measured the champion's validity envelope (stage envelope@rd): the JSON and
    figure are logged on its version, the tags and the model card summarise it. `ml4d simulate
    --param` runs at any physical parameter: silently inside the trusted region, after one
    warning line naming the nearest trusted point outside it; a parameter rd does not have is
    one line, before anything loads, with nothing written."""
    repo, env = workspace
    envelope = json.loads((repo / "metrics/rd/envelope.json").read_text())
    client = registry(repo)
    champion = client.get_model_version_by_alias("rd-closure", "champion")
    assert envelope["model"]["version"] == int(champion.version)
    assert envelope["training"] == {"gamma_u": 0.05}
    scanned = sorted(p["params"]["gamma_u"] for p in envelope["points"])
    assert {0.0125, 0.05, 0.4} <= set(scanned)
    assert len(envelope["points"]) in (3, 4)  # grid ends + training value, one refinement
    assert (repo / "plots/rd/envelope.png").read_bytes()[:4] == b"\x89PNG"
    table = (repo / "metrics/rd/envelope.md").read_text()
    assert table.startswith(f"The validity envelope of rd-closure v{champion.version} ")
    assert table.count("\n| ") == len(envelope["points"]) + 2  # a row per point, the header
    tags = champion.tags
    assert tags["envelope.points"] == str(len(envelope["points"]))
    assert tags["envelope.key"] == envelope["key"] and "envelope.trusted.gamma_u" in tags
    logged = {a.path for a in client.list_artifacts(champion.run_id, "envelope")}
    assert {f"envelope/rd-closure-v{champion.version}.json", "envelope/envelope.png"} <= logged
    card = sh([str(BIN / "ml4d"), "card", "models:/rd-closure@champion"], repo, env).stdout
    assert card.count("**Validity envelope**") == 1 and "gamma_u " in card

    model = ["--model", "models:/rd-closure@champion", "--steps", "10", "--store-every", "10"]
    store = {**env, **store_env(repo)}
    inside = ml4d(
        ["simulate", *model, "--param", "gamma_u=0.05", "--out", "a.zarr"], tmp_path, store
    )
    assert inside.returncode == 0 and "warning" not in inside.stderr, inside.stderr
    beyond = ml4d(
        ["simulate", *model, "--param", "gamma_u=0.5", "--out", "b.zarr"], tmp_path, store
    )
    assert beyond.returncode == 0, beyond.stderr
    (line,) = [s for s in beyond.stderr.splitlines() if "warning" in s]
    assert line.startswith("ml4d: warning: gamma_u=0.5, alpha=0.01 is outside the validity ")
    assert f"rd-closure v{champion.version}; nearest trusted point: " in line
    from ml4dynamics.datasets import open_dataset

    ran_at = open_dataset(tmp_path / "b.zarr").attrs
    assert ran_at["system.gamma_u"] == 0.5 and ran_at["system.n"] == 32
    for bad, message in (
        ("nonsense=1", "--param nonsense: rd has no such parameter; its parameters are: "
         "gamma_u, alpha"),
        ("gamma_u=-1", "--param gamma_u=-1: must be >= 0"),
    ):  # fmt: skip
        refused = ml4d(["simulate", *model, "--param", bad, "--out", "c.zarr"], tmp_path, store)
        assert refused.returncode == 2 and refused.stderr.startswith(f"ml4d: error: {message}")
        assert len(refused.stderr.splitlines()) == 1 and not (tmp_path / "c.zarr").exists()


def test_a_fresh_registry_gets_the_envelope_without_a_second_scan(workspace, tmp_path):
    """The registry lives outside DVC: with mlruns/ gone, `dvc repro` registers the closure anew
    (promote) and the envelope stage records the envelope it already has on the new version,
    rolling nothing out (its JSON, and so dvc.lock, stay byte for byte)."""
    repo, env = workspace
    copy = tmp_path / "copy"
    shutil.copytree(repo, copy, symlinks=True)
    shutil.rmtree(copy / "mlruns")
    sh(["git", "checkout", "--", "dvc.yaml"], copy, env)  # (another test lists a model there)
    before = (copy / "metrics/rd/envelope.json").read_text()
    table = (copy / "metrics/rd/envelope.md").read_text()
    result = sh(["dvc", "repro"], copy, env)
    assert ran(result) == {"promote@rd", "envelope@rd"}
    assert (copy / "metrics/rd/envelope.json").read_text() == before
    assert (copy / "metrics/rd/envelope.md").read_text() == table
    champion = registry(copy).get_model_version_by_alias("rd-closure", "champion")
    assert champion.tags["envelope.key"] == json.loads(before)["key"]


def test_envelope_refuses_bad_input_in_one_line_before_rolling_out(workspace, tmp_path):
    repo, env = workspace  # (run in the workspace: its params.yaml says how to scan)
    uri = "models:/rd-closure@champion"
    (tmp_path / "mine.json").write_text('{"a user": "file"}\n')
    (tmp_path / "old.json").write_text((repo / "metrics/rd/envelope.json").read_text())
    for args, message in (
        ([uri, "--points", "nonsense=2"], "--points nonsense: not a physical parameter of rd"),
        ([uri, "--points", "gamma_u=1"], "--points 'gamma_u=1': write NAME=COUNT with COUNT >= 2"),
        ([uri, "--out", f"{tmp_path}/mine.json"], f"{tmp_path}/mine.json already exists"),
        ([uri, "--out", f"{tmp_path}/mine.json", "--overwrite"], "is not an envelope `ml4d"),
        ([uri, "--out", f"{tmp_path}/x.txt"], "--out must name a .json file"),
        ([uri, "--out", "metrics/rd/envelope.json"], "DVC tracks"),
        (["rd-closure"], "'rd-closure' is neither a registry URI"),
    ):
        result = ml4d(["envelope", *args], repo, env)
        assert result.returncode == 2, (args, result.stderr)
        assert len(result.stderr.splitlines()) == 1 and message in result.stderr, result.stderr
    assert (tmp_path / "mine.json").read_text() == '{"a user": "file"}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.json", "old.json"]
    # an earlier envelope is replaced with --overwrite (here: one point, no refinement)
    args = [uri, "--out", f"{tmp_path}/old.json", "--overwrite", "--points", "gamma_u=2"]
    result = ml4d(["envelope", *args, "--refinements", "0", "--trajectories", "1"], repo, env)
    assert result.returncode == 0, result.stderr
    assert len(json.loads((tmp_path / "old.json").read_text())["points"]) == 3
    assert (tmp_path / "old.png").is_file() and (tmp_path / "old.md").is_file()
