"""Every registered coarse grid closed by a fine solver (``CoarseGridClosure``, found in the
registry, e.g. ks and kolmogorov) through every stage a user runs, at a tiny size, in one
process (the commands' own ``main``): generate → fit-manifold → train (OLS and TR) → evaluate
(beside the coarse solver alone; a chaotic system scored at its report time) → promote
(registered as ``<system>-closure``) → simulate and speedup from the registry.

Each system runs at its own settings (``tests.conftest.own_sections``: ``SMALL_PARAMS``, else
the repository's params.yaml), shrunk by ``tiny``: one trajectory per split, at most
``FRAMES`` stored frames, at most ``EPOCHS`` epochs, networks no larger than ``NETWORK_CAPS``.
A new system needs no edit here."""

from __future__ import annotations

import json

import pytest

from ml4dynamics.cli import main as cli
from ml4dynamics.config import SPLITS, parse_params
from ml4dynamics.datasets import open_dataset
from ml4dynamics.systems import SYSTEMS, CoarseGridClosure, make_system
from tests.conftest import own_sections, small_params, write_params

COARSE = sorted(n for n, cls in SYSTEMS.items() if issubclass(cls, CoarseGridClosure))
FRAMES = 8  # stored frames per split after the first: enough for a correlation time
EPOCHS = 2  # a pipeline check, not a training: the closures need not be good
#: the largest value of each model key that sizes a network (of whichever kind has it)
NETWORK_CAPS = {"width": 2, "levels": 1, "hidden": 8, "rank": 12, "shifts": 2}


def tiny(name: str) -> dict:
    """params.yaml for ``name``: its own sections, shrunk, with the small estimators and the
    small evaluation and promotion settings."""
    own = own_sections(name)
    data = own[name]["data"]
    every = data["store_every"]
    for split in SPLITS:
        entry = data[split]
        entry.update(trajectories=1, steps=every * min(entry["steps"] // every, FRAMES))
    data["warmup_steps"] = min(data["warmup_steps"], FRAMES * every)
    for section in ("manifold", "train"):
        model = own[section][name]["model"]
        model.update({k: min(v, model[k]) for k, v in NETWORK_CAPS.items() if k in model})
        optim = own[section][name]["optim"]
        optim.update(epochs=min(optim["epochs"], EPOCHS), checkpoint_every=1)
        optim["batch_size"] = min(optim["batch_size"], 8) or optim["batch_size"]
    small = small_params()
    return {**own, **{k: small[k] for k in ("estimators", "evaluate", "envelope", "promote")}}


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(args: list[str], capsys) -> str:
    code = cli(args)
    out, err = capsys.readouterr()
    assert code == 0, f"ml4d {' '.join(args)}: {err}"
    return out


def check_evaluation(result: dict, system, report_time: float, reaches_report_time: bool) -> None:
    """Scored at the report time if chaotic (at the horizon otherwise), beside the coarse solver
    alone and, for the correction closure, the ablation from the reference run with noise."""
    score = f"error_t{report_time:g}" if system.chaotic else "error_horizon"
    assert result["chaotic"] == system.chaotic and result["score_metric"] == score
    spectrum = system.spectrum_weight is not None and reaches_report_time
    for split in ("val", "test", "ood"):
        noisy, own = result[split]["ablation"], result[split]["error_horizon"]
        if system.noisy_reference:
            assert noisy["misfit_std"] > 0 and noisy["error_horizon"] > 0
            ratio = None if own is None else pytest.approx(own / noisy["error_horizon"])
            assert result[split]["error_vs_ablation"] == ratio
        else:
            assert noisy is None
        base = result[split]["coarse_alone"]
        assert base["stable_fraction"] == 1.0 and base["error_horizon"] > 0
        if spectrum:  # the statistics a decorrelated hybrid can keep, from the report time on
            assert base["spectrum_error"] > 0
            stable = result[split]["stable_fraction"] == 1.0
            assert (result[split]["spectrum_error"] is not None) == stable


@pytest.mark.parametrize("name", COARSE)
def test_a_coarse_grid_closure_goes_through_the_pipeline(name, workdir, capsys):
    params = tiny(name)
    write_params(workdir / "params.yaml", params)
    system = make_system(parse_params(params).setup(name).system)
    evaluate = params["evaluate"]
    report_time = evaluate.get("report_times", {}).get(name, evaluate["report_time"])

    run(["generate", name], capsys)
    train = workdir / "data" / name / "train.zarr"
    assert "closure label energy by wavenumber band" in run(["inspect", str(train)], capsys)
    elapsed = open_dataset(train).time.values
    run(["fit-manifold", name], capsys)
    for estimator in ("ols", "tr-projector"):
        run(["train", name, "--estimator", estimator], capsys)
        run(["evaluate", name, "--estimator", estimator], capsys)
        result = json.loads((workdir / f"metrics/{name}/evaluate/{estimator}.json").read_text())
        check_evaluation(result, system, report_time, elapsed[-1] - elapsed[0] >= report_time)

    printed = run(["promote", name], capsys)
    promotion = json.loads((workdir / f"metrics/{name}/promotion.json").read_text())
    assert promotion["registered_model"] == f"{name}-closure"
    assert set(promotion["candidates"]) == {"ols", "tr-projector"}
    for entry in promotion["candidates"].values():
        assert "beats_coarse_solver" in entry["gates"] and entry["decision"] in printed
    uri = f"models:/{name}-closure/{promotion['candidates']['ols']['version']}"
    out = workdir / "run.zarr"
    run(["simulate", "--model", uri, "--steps", "4", "--out", str(out), "--warmup", "4"], capsys)
    assert open_dataset(out).sizes["time"] == 5
    # a simulation at the far end of its first physical parameter's range; for ks (the default
    # pipeline's) the validity envelope over it, the plain solver beside every point
    (param, spec), *_ = system.physical_params.items()
    if name == "ks":
        envelope_json = workdir / "envelope.json"
        args = ["envelope", uri, "--points", f"{param}=2", "--refinements", "0"]
        run([*args, "--trajectories", "1", "--out", str(envelope_json)], capsys)
        envelope = json.loads(envelope_json.read_text())
        scanned = {p["params"][param] for p in envelope["points"]}
        assert scanned == {spec.low, spec.high, float(getattr(system.config, param))}
        assert all(p["plain_error"] is not None for p in envelope["points"])
    args = ["simulate", "--model", uri, "--steps", "2", "--warmup", "2"]
    run([*args, "--param", f"{param}={spec.high:g}", "--out", str(workdir / "far.zarr")], capsys)
    assert open_dataset(workdir / "far.zarr").attrs[f"system.{param}"] == spec.high
    coarse, fine = system.config.n_coarse, system.config.n_fine
    ladder = f"{coarse},{min(coarse + 8, fine)}"
    spacing = 2 * system.dt  # frames: multiples of the time step
    args = ["speedup", uri, "--ladder", ladder, "--trajectories", "2", "--horizon", "2"]
    args += ["--spacing", f"{spacing:g}", "--steps", "2", "--repeats", "1"]
    assert "speed-up" in run(args, capsys)
    assert (workdir / f"bench/{name}_speedup.json").is_file()


def test_an_unrolled_closure_trains_evaluates_and_reaches_the_registry(workdir, capsys):
    """`ml4d train ks --estimator unrolled` as a stage runs it: along its curriculum, each epoch
    logged with its window length, the error along the last window logged frame by frame; then
    evaluated and submitted to the registry through the same gates as every closure."""
    from tests.conftest import mlflow_client

    params = tiny("ks")
    params["train"]["ks"]["unroll"] = {"windows": [1, 2], "epochs": [1, 1], "clip": 1.0}
    params["estimators"] = {
        "ols": {"kind": "ols"},
        "unrolled": {"kind": "unrolled", "solver_gradient": True},
    }
    write_params(workdir / "params.yaml", params)
    for args in (["generate", "ks"], ["fit-manifold", "ks"]):
        run(args, capsys)
    for estimator in ("ols", "unrolled"):
        run(["train", "ks", "--estimator", estimator], capsys)
        run(["evaluate", "ks", "--estimator", estimator], capsys)
    metrics = json.loads((workdir / "metrics/ks/train/unrolled.json").read_text())
    assert metrics["epochs"] == 2 and metrics["window"] == 2
    assert {"train_state_misfit", "val_state_misfit", "val_misfit"} <= set(metrics)
    client = mlflow_client(workdir)
    experiment = client.get_experiment_by_name("ks")
    (train_run,) = client.search_runs(
        [experiment.experiment_id], "tags.stage = 'train' and tags.estimator = 'unrolled'"
    )
    windows = client.get_metric_history(train_run.info.run_id, "window")
    assert sorted((m.step, m.value) for m in windows) == [(0, 1.0), (1, 2.0)]
    profile = client.get_metric_history(train_run.info.run_id, "val_frame_misfit")
    assert sorted(m.step for m in profile) == [1, 2]
    assert "unroll.windows" in train_run.data.params
    run(["promote", "ks"], capsys)
    promotion = json.loads((workdir / "metrics/ks/promotion.json").read_text())
    assert set(promotion["candidates"]) == {"ols", "unrolled"}
    assert "beats_coarse_solver" in promotion["candidates"]["unrolled"]["gates"]
