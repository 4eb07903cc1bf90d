"""The DVC pipeline as a user runs it in a fresh clone: repro, the registry's champion, parameter
changes and queued experiments on λ that rerun only what changed. (What a downstream user does
with the champion: tests/test_downstream.py.)"""

from __future__ import annotations

import json
import re
import subprocess

import pytest
import yaml

from ml4dynamics.registry.gates import GATES
from tests.clones import (
    load_in_fresh_process,
    make_clone,
    pipeline_params,
    ran,
    registry,
    reproduced,
    sh,
)
from tests.conftest import small_params, write_params


@pytest.mark.slow
def test_repro_champion_and_queued_experiments(tmp_path):
    """The user's loop: repro, champion, a parameter change, two queued λ experiments, apply."""
    repo, env = reproduced(tmp_path)
    for system in ("linear", "rd"):
        for split in ("train", "val", "test", "ood"):
            assert (repo / "data" / system / f"{split}.zarr" / "zarr.json").is_file()
    # (`dvc status dvc.yaml`: the clone has data.dvc but, with no remote, not its benchmark;
    # `dvc repro` above ran regardless, as a fresh clone of the project must). Promotion always
    # runs: the registry lives outside DVC.
    status = json.loads(sh(["dvc", "status", "--json", "dvc.yaml"], repo, env).stdout)
    assert status == {"promote@rd": ["always changed"], "envelope@rd": ["always changed"]}
    lock = (repo / "dvc.lock").read_text()
    code = sh(["git", "rev-parse", "HEAD~1"], repo, env).stdout.strip()  # before the outputs
    attrs = json.loads((repo / "data/rd/train.zarr/zarr.json").read_text())["attributes"]
    assert attrs["git_revision"] == code  # provenance: the commit of the code

    # evaluation metrics and plots are where DVC looks for them
    metrics = json.loads(sh(["dvc", "metrics", "show", "--json"], repo, env).stdout)
    assert max(map(len, sh(["dvc", "metrics", "show"], repo, env).stdout.splitlines())) <= 120
    flat = json.dumps(metrics)
    (state,) = metrics.values()  # the workspace
    head = state["data"]["metrics/rd/headline/tr-projector.json"]["data"]
    # each error named with its time: the validation score, test at the report time and horizon
    assert {k.rsplit("_t", 1)[0] for k in head} == {"val", "test", "ood", "stable", "shift"}
    assert "metrics/rd/gates.json" not in flat and "error_horizon" not in flat  # detail stays out
    plots = json.loads(sh(["dvc", "plots", "show", "--json"], repo, env).stdout)
    drawn = plots["data"]  # the figures, and the curves from the CSV files behind them
    assert "plots/rd/evaluate/tr-projector/error.png" in drawn
    assert drawn["rd rollout error, test trajectories"][0]["type"] == "vega"
    # the page `dvc plots show` writes: every figure a PNG file beside it (it shows offline);
    # the only remote addresses are the Vega scripts DVC's charts load
    page = tmp_path / "dvc_plots"
    sh(["dvc", "plots", "show", "--out", str(page)], repo, env)
    html = (page / "index.html").read_text()
    remote = set(re.findall(r'src="(https?://[^"]+)"', html))
    assert remote and all(url.startswith("https://cdn.jsdelivr.net/npm/vega") for url in remote)
    sources = re.findall(r'<img src="([^"]+)"', html)
    assert len(sources) == sum(entry["type"] == "image" for e in drawn.values() for entry in e)
    for src in sources:
        assert (page / src).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", src

    # a champion exists, with its gate results as tags
    client = registry(repo)
    champion = client.get_model_version_by_alias("rd-closure", "champion")
    assert champion.tags["gates"] == "passed" and champion.tags["gates.decided_in"] == "workspace"
    assert {champion.tags[f"gate.{name}"] for name in GATES} == {"passed"}  # every gate
    promotion = json.loads((repo / "metrics/rd/promotion.json").read_text())
    assert promotion["champion"]["version"] == int(champion.version)
    outcomes = json.loads((repo / "metrics/rd/gates.json").read_text())
    assert outcomes[champion.tags["estimator"]] == "champion"
    assert set(outcomes) == {"ols", "tr-projector"}
    assert set(outcomes.values()) <= {"champion", "passed", "refused"}
    # every registered version has a model card, and `ml4d card` prints the champion's: what
    # it was trained on, its gates with their numbers, what not to trust it for
    versions = client.search_model_versions("name = 'rd-closure'")
    assert all(v.description.startswith(f"# rd-closure v{v.version}\n") for v in versions)
    card = sh(["ml4d", "card", "models:/rd-closure@champion"], repo, env).stdout
    assert card == champion.description and "**Data**" in card
    assert all(f"| {name} | passed |" in card for name in GATES) and "**Known limits**" in card
    md5 = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]["generate@rd"]["outs"][0]
    assert md5["md5"] in card  # the data it was trained on, by DVC hash

    # a second repro does nothing but reconcile the registry (nothing new to register)
    # (byte-identical regeneration: tests/test_datasets.py)
    versions = client.search_model_versions("name = 'rd-closure'")
    assert ran(sh(["dvc", "repro"], repo, env)) == {"promote@rd", "envelope@rd"}
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
        "envelope@rd",  # always
    }
    write_params(repo / "params.yaml", pipeline_params())

    # λ, the project's knob: reg.lam (the factor on every system's weight) and reg.rd.lam (rd's
    # own) each invalidate the TR models only
    for knob in ("reg.lam", "reg.rd.lam"):
        params = pipeline_params()
        section = params["reg"] if knob == "reg.lam" else params["reg"]["rd"]
        section["lam"] = 7.0
        write_params(repo / "params.yaml", params)
        assert set(json.loads(sh(["dvc", "status", "--json"], repo, env).stdout)) == {
            "train@rd-tr-projector",
            "data.dvc",
            "promote@rd",
            "envelope@rd",
        }, knob
    write_params(repo / "params.yaml", pipeline_params())

    # two queued experiments on lambda, `-S reg.lam=...` as the README has it, run by two
    # workers: each reruns the TR model through promotion only (one new training run each,
    # none for OLS), registers its TR closure and records its gates, and neither moves the
    # champion
    promotion_before = (repo / "metrics/rd/promotion.json").read_text()
    for lam in ("2.5", "0.3"):
        sh(
            ["dvc", "exp", "run", "--queue", "-S", f"reg.lam={lam}", "-n", f"lam-{lam}"],
            repo,
            env,
        )
    sh(["dvc", "exp", "run", "--run-all", "--jobs", "2"], repo, env)
    shown = json.dumps(json.loads(sh(["dvc", "exp", "show", "--json"], repo, env).stdout))
    for lam in ("2.5", "0.3"):
        assert f'"lam": {lam}' in shown and f'"name": "lam-{lam}"' in shown
    assert "metrics/rd/headline/tr-projector.json" in shown and '"ood_t' in shown
    # ... and side by side in a table that fits a terminal: one row per experiment with its λ
    side_by_side = sh(["ml4d", "experiments"], repo, env).stdout.splitlines()
    assert max(map(len, side_by_side)) <= 200 and "λ rd" in side_by_side[1]
    for lam in ("2.5", "0.3"):
        (row,) = [line for line in side_by_side if f"lam-{lam} " in line]
        assert row.split()[2] == lam
        # each model's gate outcome, as the experiment's commit holds it
        assert {"champion", "passed", "refused"} & set(row.split()), row
    experiment = client.get_experiment_by_name("rd")
    # MLflow's UI opens the experiment on its training runs, not the GenAI view
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    runs = client.search_runs([experiment.experiment_id], filter_string="tags.stage = 'train'")
    assert len(runs) == 2 + 2  # the baseline's OLS and TR, and one TR per experiment
    registered_in = {}
    for lam in ("2.5", "0.3"):
        # its MLflow runs landed in the workspace's store, tagged with the experiment's name
        tagged = [r for r in runs if r.data.tags.get("dvc_exp_name") == f"lam-{lam}"]
        # the effective λ (rd's own, 1, times reg.lam) and the factor
        assert len(tagged) == 1 and tagged[0].data.params["reg.lam"] == lam
        assert tagged[0].data.params["reg.lam_multiplier"] == lam
        assert tagged[0].data.tags["estimator"] == "tr-projector"
        # the evaluation's headline on the training run itself
        assert {"headline.stable", "headline.shift"} <= set(tagged[0].data.metrics)
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
        registered_in[lam] = registered[0].version
    assert len(client.search_model_versions("name = 'rd-closure'")) == 2 + 2
    assert client.get_model_version_by_alias("rd-closure", "champion").version == champion.version
    assert (repo / "metrics/rd/promotion.json").read_text() == promotion_before
    assert not any(
        r.info.status == "RUNNING" for r in client.search_runs([experiment.experiment_id])
    )
    # a version registered by an experiment (in DVC's temporary copy of the workspace) keeps its
    # files in the workspace's store: a fresh process elsewhere loads it
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    load_in_fresh_process(repo, f"models:/rd-closure/{registered_in['2.5']}", elsewhere, env)

    # applied to the workspace, an experiment's pipeline moves the champion (when its gates
    # pass); only promotion runs, and the aliases agree with promotion.json
    applied = subprocess.run(
        ["dvc", "exp", "apply", "lam-2.5"], cwd=repo, env=env, capture_output=True, text=True
    )
    # (this clone has data.dvc but not the benchmark's files: no remote to check them out from)
    assert applied.returncode == 0 or applied.stderr.split("targets:\n")[1].startswith(
        "data/benchmark\n"
    ), applied.stderr
    assert yaml.safe_load((repo / "params.yaml").read_text())["reg"]["lam"] == 2.5
    assert ran(sh(["dvc", "repro"], repo, env)) == {"promote@rd", "envelope@rd"}
    # the λ change shows in `dvc metrics diff` as the numbers that moved, nothing else
    moved = json.loads(sh(["dvc", "metrics", "diff", "--json"], repo, env).stdout)
    assert set(moved) <= {"metrics/rd/headline/tr-projector.json"}
    assert 1 <= sum(map(len, moved.values())) <= 7, moved
    promotion = json.loads((repo / "metrics/rd/promotion.json").read_text())
    tr = promotion["candidates"]["tr-projector"]
    assert tr["version"] == int(registered_in["2.5"])  # the experiment's closure, not a new one
    champion = client.get_model_version_by_alias("rd-closure", "champion")
    assert promotion["champion"]["version"] == int(champion.version)
    assert (int(champion.version) == tr["version"]) == tr["passed"]
    assert len(client.search_model_versions("name = 'rd-closure'")) == 2 + 2
    load_in_fresh_process(repo, "models:/rd-closure@champion", elsewhere, env)


@pytest.mark.slow
def test_a_bad_parameter_stops_the_stage_with_one_line(tmp_path):
    repo, env = make_clone(tmp_path)
    params = small_params()
    params["rd"]["system"]["dt"] = -0.01
    write_params(repo / "params.yaml", params)
    result = subprocess.run(
        ["dvc", "repro", "generate@rd"], cwd=repo, env=env, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "ml4d: error: params.yaml: rd.system.dt: must be > 0" in result.stderr + result.stdout
    assert not (repo / "data" / "rd").exists()
