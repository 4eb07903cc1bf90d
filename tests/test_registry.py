"""The registry in-process: packaging, aliases, and the champion compared on the same data."""

from __future__ import annotations

import dataclasses
import shutil
import warnings

import pytest

from ml4dynamics import registry
from ml4dynamics.core.tracking import Run
from ml4dynamics.datasets import open_dataset, open_splits
from ml4dynamics.datasets.pairs import system_of
from ml4dynamics.evaluation.config import EvaluateConfig
from ml4dynamics.evaluation.result import split_score
from ml4dynamics.evaluation.rollouts import evaluate_splits
from ml4dynamics.models import LocalClosureConfig, build_closure
from ml4dynamics.models.io import export_model
from ml4dynamics.registry.gates import GATES
from ml4dynamics.registry.promotion import champion_score
from tests.results import result, summary

EVALUATE = EvaluateConfig(bound=10.0, report_time=2.0)


def candidate(data_fingerprint: str):
    """A candidate's evaluation on the data ``data_fingerprint`` names (its numbers do not
    matter: only the champion is scored here)."""
    return result({"test": summary(), "ood": summary()}, data_fingerprint=data_fingerprint)


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    yield tmp_path


def register(tmp_path, system, seed: int, data_fingerprint: str, champion: bool = True):
    """A (randomly initialised) closure exported, registered and (by default) made champion."""
    config = LocalClosureConfig("local", 4, 1, 1)
    model = build_closure(config, system.state_field, system.closure_field, seed=seed)
    name = system.name
    meta = {"system": name, "system_config": dataclasses.asdict(system.config), "estimator": "ols"}
    fields = {"state": system.state_field, "closure": system.closure_field}
    closure_dir = export_model(tmp_path / f"closure{seed}", "closure", model, config, meta, fields)
    run = Run(name, "train", f"{name}-ols", {})
    version = registry.log_closure(closure_dir, system, f"{name}-closure")
    run.end()
    tags = {"data_fingerprint": data_fingerprint, "score": 9.9, "estimator": "ols"}
    registry.set_tags(f"{name}-closure", version, tags)
    if not champion:
        return model, version
    registry.set_alias(f"{name}-closure", version, registry.CHAMPION)
    return model, registry.version_by_alias(f"{name}-closure", registry.CHAMPION)


def test_champion_is_scored_on_the_candidates_data(store, generated):
    system = system_of(open_dataset(generated / "rd" / "test.zarr"))
    model, champion = register(store, system, seed=3, data_fingerprint="older-data")
    loaded, loaded_system, meta = registry.load_registered("models:/rd-closure@champion")
    assert loaded_system == system and meta["estimator"] == "ols"

    # same data as the candidate: the score recorded on the version is used
    same = champion_score(champion, candidate("older-data"), None, EVALUATE, system)
    assert (same.score, same.label) == (9.9, f"v{champion.version} (ols)")
    # other data: the champion is rolled out again on the candidate's data
    score, label = dataclasses.astuple(
        champion_score(champion, candidate("current"), generated / "rd", EVALUATE, system)
    )
    splits = open_splits(generated / "rd", ("test", "ood"))
    summaries, *_ = evaluate_splits(splits, model, None, 10.0, 2.0, with_ablation=False)
    assert score == split_score(list(summaries.values()), chaotic=False)
    assert "re-evaluated" in label
    # another grid: not comparable (the gate then passes on the candidate's own merits)
    other = type(system)(dataclasses.replace(system.config, n=16))
    score, label = dataclasses.astuple(
        champion_score(champion, candidate("current"), generated / "rd", EVALUATE, other)
    )
    assert score is None and "not comparable" in label


def test_an_unknown_model_is_one_clear_error(store):
    from ml4dynamics.core.errors import ML4DError
    from ml4dynamics.core.tracking import experiment_id

    # no store at all: said as such, and none is created by asking
    with pytest.raises(ML4DError, match="no MLflow store at .*mlruns/mlflow.db: run from"):
        registry.load_registered("models:/rd-closure@champion")
    assert not (store / "mlruns").exists()
    experiment_id("rd")  # a store (as any stage that writes creates it), without that model
    with pytest.raises(ML4DError, match="no registered model 'rd-closure' in sqlite:///"):
        registry.load_registered("models:/rd-closure@champion")


def test_no_champion_says_which_gates_refused_each_version(store, generated):
    """Every version failed its gates: the error names them and the version to run instead;
    a refused version named explicitly loads, and says what it is and which gates it failed."""
    from ml4dynamics.core.errors import ML4DError

    system = system_of(open_dataset(generated / "rd" / "test.zarr"))
    first, *others = GATES  # v1 fails the first registered gate, v2 all the others
    for seed, failed in ((1, [first]), (2, others)):
        _, version = register(store, system, seed, "data", champion=False)
        outcome = {f"gate.{g}": "failed" if g in failed else "passed" for g in GATES}
        registry.set_tags("rd-closure", version, {"gates": "failed", **outcome})
    with pytest.raises(ML4DError) as refused:
        registry.load_registered("models:/rd-closure@champion")
    assert str(refused.value) == (
        f"rd-closure has no champion: all 2 versions failed their gates (v1 (ols): "
        f"{first}; v2 (ols): {', '.join(sorted(others))}); to run one anyway, name its "
        "version, e.g. models:/rd-closure/2"
    )
    _, _, meta = registry.load_registered("models:/rd-closure/2")
    assert meta["registry"]["version"] == 2 and meta["registry"]["gates"] == "failed"
    assert meta["registry"]["failed_gates"] == sorted(others)


def test_a_run_in_a_dvc_experiment_is_named_after_it(store, monkeypatch):
    monkeypatch.setenv("DVC_EXP_NAME", "lam-10")
    run = Run("rd", "train", "rd-tr-projector", {})
    run.end()
    assert run.run.info.run_name == "rd-tr-projector (lam-10)"


def test_a_version_without_its_run_or_files_is_refused_in_one_line(store, generated):
    """A registered version whose MLflow run was deleted, or whose artifact files are gone, is
    refused with one clear error instead of being loaded silently or with a traceback."""
    from ml4dynamics.core.errors import ML4DError

    system = system_of(open_dataset(generated / "rd" / "test.zarr"))
    _, champion = register(store, system, seed=4, data_fingerprint="x")
    client = registry.client()
    client.delete_run(champion.run_id)
    with pytest.raises(ML4DError, match=r"whose MLflow run .* was deleted; restore the run"):
        registry.load_registered("models:/rd-closure@champion")
    client.restore_run(champion.run_id)
    registry.load_registered("models:/rd-closure@champion")  # served again once restored
    shutil.rmtree(store / "mlruns" / "artifacts" / "rd" / "models")  # the version's files are lost
    with pytest.raises(ML4DError) as lost:
        registry.load_registered(f"models:/rd-closure/{champion.version}")
    assert "\n" not in str(lost.value) and "are gone from the artifact store" in str(lost.value)


def test_registering_a_closure_gives_no_advice_about_a_missing_signature(store, generated):
    """The pyfunc has an explicit signature: MLflow's advice to add type hints or an input example
    (printed in colour at every promotion) is kept out of the user's output."""
    system = system_of(open_dataset(generated / "rd" / "test.zarr"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        register(store, system, seed=5, data_fingerprint="data")
        registry.load_registered("models:/rd-closure@champion")
    said = [str(w.message) for w in caught]
    assert not [m for m in said if "type hints" in m or "input example" in m], said


def test_the_benchmark_scores_a_chaotic_system_as_promotion_does(store, tmp_path):
    """ks is chaotic: promotion scores its closures at the report time (every hybrid has
    decorrelated from the truth by the horizon). The golden benchmark scores the same closure on
    the same data by that same score — not by the error at the horizon, which it once used."""
    from ml4dynamics.config import parse_params
    from ml4dynamics.datasets import generate_split, write_datasets
    from ml4dynamics.pipeline.benchmark import RECIPE, score
    from tests.conftest import small_params

    setup = parse_params({"ks": small_params()["ks"]}).setup("ks")
    provenance = {"ml4dynamics_version": "t", "git_revision": "t"}
    root = tmp_path / "benchmark"
    write_datasets({s: generate_split(setup, s, provenance) for s in ("test", "ood")}, root / "ks")
    (root / RECIPE).write_text(f"evaluate: {EVALUATE.as_dict()}\n")
    system = system_of(open_dataset(root / "ks" / "test.zarr"))
    assert system.chaotic
    _, champion = register(store, system, seed=6, data_fingerprint="older-data")

    scores = score(["models:/ks-closure@champion"], root, tmp_path / "scores.json")
    benchmarked = scores["models"]["models:/ks-closure@champion"]
    promoted = champion_score(champion, candidate("current"), root / "ks", EVALUATE, system)
    assert "re-evaluated" in promoted.label  # (other data: rolled out again, as the benchmark)
    assert benchmarked["score_metric"] == "error_t2"  # ks's report time in SMALL_PARAMS
    assert promoted.score is not None and benchmarked["score"] == promoted.score
    at_report = [benchmarked[s]["error_t2"] for s in ("test", "ood")]
    assert benchmarked["score"] == pytest.approx(sum(at_report) / 2, rel=1e-15)
    # what the benchmark once scored: the error at the horizon (None: blown up by then)
    horizon = [benchmarked[s]["error_horizon"] for s in ("test", "ood")]
    once = None if None in horizon else sum(horizon) / 2
    assert once is None or once != pytest.approx(benchmarked["score"])


def test_the_code_registered_versions_carry_still_imports():
    """Every registered version holds a copy of closure_model.py, which imports the loader by
    its module path; moving that function would break the versions already registered."""
    import ast
    import importlib
    from pathlib import Path

    code = Path(registry.__file__).with_name("closure_model.py").read_text()
    imports = [
        (node.module, alias.name)
        for node in ast.walk(ast.parse(code))
        if isinstance(node, ast.ImportFrom) and node.module.startswith("ml4dynamics")
        for alias in node.names
    ]
    assert imports == [("ml4dynamics.registry.packaging", "load_closure_dir")]
    for module, name in imports:
        assert callable(getattr(importlib.import_module(module), name))


def test_a_model_card_says_what_a_user_needs_before_running_a_closure():
    """System, data (with its DVC hash), estimator and λ, training, every split's rollouts,
    every gate against its threshold, the speed-up, and the limits: the drawn parameters'
    training range, the failed gates, the splits whose rollouts blew up."""
    from ml4dynamics.registry.card import model_card
    from tests.results import result, summary

    meta = {
        "system": "ns_channel",
        "system_config": {"n": 32, "dt": 0.01},
        "estimator": "tr-projector",
        "reg": {"kind": "tr", "normal": "projector", "lam": 1.0, "eps": 1e-8},
        "model": {"kind": "unet"},
        "data": {"split": "train", "steps": 100, "store_every": 25, "seed": 1}
        | {"trajectories_per_variant": 2, "system.re": [100.0, 300.0, 500.0]},
    }
    blown = summary(stable_fraction=0.5, blowup_times=(2.8, None), error_horizon=None)
    evaluated = result({"val": summary(), "test": blown, "ood": summary()}, system="ns_channel")
    gates = [
        {"name": "finite_and_bounded", "passed": False, "detail": "test: 1 of 2 blow up"},
        {"name": "shift", "passed": True, "detail": "test shift 0.5 <= 2"},
    ]
    card = model_card(
        name="ns_channel-closure",
        version=7,
        meta=meta,
        result=evaluated,
        checks=gates,
        decision="refused",
        training={"epochs": 924, "train_loss": 0.1, "val_loss": 0.2, "val_misfit": 0.02},
        data_hash="abc123.dir",
        speedup={"speedup": 0.3, "resolution": 17.5},
    )
    assert card.startswith("# ns_channel-closure v7\n")
    assert "re = " not in card and "n = 32" in card  # the system's own parameters
    assert "every 25 steps stored" in card and "`abc123.dir`" in card
    assert "lam = 1" in card and "924 epochs" in card and "0.3×" in card
    assert "| test | 0.1 | not finite | 0.5 | 0.5 |" in card
    assert "| finite_and_bounded | failed | test: 1 of 2 blow up |" in card
    limits = card.split("**Known limits**")[1]
    assert "re in [100, 500]" in limits and "finite_and_bounded: test: 1 of 2" in limits
    assert "rollouts blow up on test" in limits


def test_the_report_that_made_a_champion_is_kept_beside_it_not_in_a_tag(store, generated):
    """The promotion report travels with the version as a JSON artifact of its run; the
    version's tags stay short values a person can read (no raw JSON on the version page)."""
    system = system_of(open_dataset(generated / "rd" / "test.zarr"))
    _, champion = register(store, system, seed=5, data_fingerprint="d")
    assert registry.champion_report(champion) is None  # none recorded yet
    report = {"version": int(champion.version), "passed": True, "gates": {"a": {"value": 1.5}}}
    registry.record_champion_report("rd-closure", champion.version, report)
    again = registry.version_by_alias("rd-closure", registry.CHAMPION)
    assert registry.champion_report(again) == report
    assert not any(value.lstrip().startswith(("{", "[")) for value in again.tags.values())


def test_a_registered_closure_with_damaged_files_is_one_line(store, generated):
    """The parameter files of a registered version damaged in the artifact store: one line
    naming the version and the way out (another version, or register again), no traceback."""
    from ml4dynamics.core.errors import ML4DError

    system = system_of(open_dataset(generated / "rd" / "test.zarr"))
    register(store, system, seed=6, data_fingerprint="x")
    models = store / "mlruns" / "artifacts" / "rd" / "models"
    for chunk in models.rglob("*"):
        if chunk.is_file() and chunk.parent.name == "d":  # the checkpoint's data files
            chunk.write_bytes(chunk.read_bytes()[:20])
    with pytest.raises(ML4DError) as damaged:
        registry.load_registered("models:/rd-closure@champion")
    message = str(damaged.value)
    assert "\n" not in message and "the registered closure's files are damaged" in message
    assert "use another version" in message
