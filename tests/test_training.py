"""Training as a user runs it: kill-and-resume, MLflow records, and every estimator learning."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import jax
import mlflow
import numpy as np
import pytest
import yaml
from flax import nnx

from ml4dynamics.datasets import open_dataset
from ml4dynamics.datasets.pairs import as_pairs, steps_per_frame, system_of
from ml4dynamics.learning.aggregation import for_estimator
from ml4dynamics.learning.closure_training import (
    Windows,
    frozen,
    objective,
    stage_windows,
    train_closure,
)
from ml4dynamics.learning.estimators import parse_estimator
from ml4dynamics.learning.network_config import UnrollConfig
from ml4dynamics.learning.training import OptimConfig, convergence, convergence_warning
from ml4dynamics.models import LocalClosureConfig, build_closure
from ml4dynamics.models.io import load_model
from tests.conftest import BIN, REPO, mlflow_client, run_cli, small_params, write_params

EPOCHS = 10  # long enough that a signal after the first checkpoint lands mid-run


def store(root: Path) -> mlflow.MlflowClient:
    """The project's own MLflow store (a client: no process-wide tracking URI to leak)."""
    return mlflow_client(root)


def train_runs(root: Path) -> list:
    client = store(root)
    experiment = client.get_experiment_by_name("rd")
    return client.search_runs([experiment.experiment_id], filter_string="tags.stage = 'train'")


def project(root: Path, data: Path, epochs: int, batch_size: int) -> tuple[Path, dict]:
    """A directory set up as the pipeline leaves it before `train`: params, data, manifold."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(data / "rd", root / "data" / "rd")  # the session's small rd data
    params = small_params()
    params["train"]["rd"]["optim"].update(epochs=epochs, batch_size=batch_size, checkpoint_every=1)
    write_params(root / "params.yaml", params)
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(DVC_ROOT=str(root), PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    result = run_cli(["fit-manifold", "rd"], cwd=root, env=env)
    assert result.returncode == 0, result.stderr
    return root, env


@pytest.fixture(scope="module")
def base_project(tmp_path_factory, generated) -> Path:
    root, _ = project(tmp_path_factory.mktemp("project") / "p", generated, EPOCHS, batch_size=4)
    return root


@pytest.fixture(scope="module")
def straight(base_project, tmp_path_factory) -> Path:
    """The same training, never interrupted: the reference for resumed runs."""
    root, env = copy_project(base_project, tmp_path_factory.mktemp("straight") / "p")
    result = run_cli(["train", "rd", "--estimator", "tr-projector"], cwd=root, env=env)
    assert result.returncode == 0, result.stderr
    return root


def copy_project(base: Path, dest: Path) -> tuple[Path, dict]:
    shutil.copytree(base, dest, ignore=shutil.ignore_patterns("mlruns"))
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(
        DVC_ROOT=str(dest),
        PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}",
        DVC_EXP_NAME="test-exp",
        DVC_EXP_BASELINE_REV="0" * 40,
        DVC_STAGE="train@rd-tr-projector",
    )
    return dest, env


def final_params(root: Path) -> list[np.ndarray]:
    ds = open_dataset(root / "data" / "rd" / "train.zarr")
    system = system_of(ds)
    model, _ = load_model(
        root / "models" / "rd" / "closures" / "tr-projector",
        "closure",
        system.state_field,
        system.closure_field,
    )
    return [np.asarray(x) for x in jax.tree.leaves(nnx.state(model, nnx.Param))]


@pytest.mark.slow
# (SIGINT is caught by the same handler, installed for both in one loop; SIGKILL, which no
# handler sees, is test_faults' train case)
@pytest.mark.parametrize("signum", [signal.SIGTERM])
def test_killed_training_resumes_to_the_same_parameters(base_project, straight, tmp_path, signum):
    killed, env_b = copy_project(base_project, tmp_path / "killed")
    proc = subprocess.Popen(
        [str(BIN / "ml4d"), "train", "rd", "--estimator", "tr-projector"],
        cwd=killed,
        env=env_b,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    checkpoints = killed / "models" / "rd" / "checkpoints" / "tr-projector"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if any(p.name.isdigit() for p in checkpoints.glob("*")):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "training finished before it could be interrupted"
    time.sleep(0.05)  # inside the second of EPOCHS epochs
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signum, err
    assert f"training interrupted by {signal.Signals(signum).name}; checkpoint saved" in err
    assert not (killed / "models" / "rd" / "closures" / "tr-projector").exists()

    resumed = run_cli(["train", "rd", "--estimator", "tr-projector"], cwd=killed, env=env_b)
    assert resumed.returncode == 0, resumed.stderr
    for a, b in zip(final_params(straight), final_params(killed), strict=True):
        np.testing.assert_array_equal(a, b)  # bit for bit: same batches, same optimizer state

    # one MLflow run, resumed, with the full per-epoch history and the expected records
    runs = train_runs(killed)
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.params["reg.kind"] == "tr" and run.data.params["reg.lam"] == "1.0"
    assert run.data.params["optim.epochs"] == str(EPOCHS)
    # the physics and data parameters of the training set are recorded too
    assert run.data.params["data.system.gamma_u"] == "0.05"
    assert run.data.params["data.system.n"] == "32" and run.data.params["data.seed"] == "1"
    tags = run.data.tags
    assert tags["estimator"] == "tr-projector" and tags["dvc_exp_name"] == "test-exp"
    assert tags["dvc_stage"] == "train@rd-tr-projector" and tags["dvc_exp_baseline_rev"] == "0" * 40
    assert tags["git_revision"]
    client = store(killed)
    for metric in ("train_loss", "val_loss", "train_tr_penalty", "val_tr_penalty"):
        history = client.get_metric_history(run.info.run_id, metric)
        assert sorted(m.step for m in history) == list(range(EPOCHS)), metric
    artifacts = [a.path for a in client.list_artifacts(run.info.run_id, "figures")]
    assert artifacts == ["figures/tr-projector.png"]


@pytest.mark.slow
def test_a_changed_config_does_not_resume_anothers_checkpoint(straight, tmp_path):
    root, env = copy_project(straight, tmp_path / "p")  # its checkpoints: a finished lam=1 run
    params = small_params()
    params["train"]["rd"]["optim"].update(epochs=EPOCHS, batch_size=4, checkpoint_every=1)
    params["reg"]["rd"]["lam"] = 2.0
    write_params(root / "params.yaml", params)
    result = run_cli(["train", "rd", "--estimator", "tr-projector"], cwd=root, env=env)
    assert result.returncode == 0, result.stderr
    runs = train_runs(root)
    assert [r.data.params["reg.lam"] for r in runs] == ["2.0"]
    # it trained every epoch itself instead of resuming at the end of the lam=1 run
    assert len(store(root).get_metric_history(runs[0].info.run_id, "train_loss")) == EPOCHS


#: params.yaml's estimators (name → entry): every kind the pipeline trains, a new one included
#: with its entry there
ESTIMATORS = yaml.safe_load((REPO / "params.yaml").read_text())["estimators"]


@pytest.mark.parametrize("name", ESTIMATORS)
def test_short_rd_training_lowers_the_loss_for_every_estimator(base_project, name):
    ds = open_dataset(base_project / "data" / "rd" / "train.zarr")
    system = system_of(ds)
    manifold, _ = load_model(
        base_project / "models" / "rd" / "manifold", "manifold", system.state_field
    )
    recon = frozen(manifold)
    reg = parse_estimator(
        ESTIMATORS[name], f"estimators.{name}", {"reg": {"lam": 1.0, "eps": 1e-8}}
    )
    data = as_pairs(ds)
    scored = reg.prepare(data, recon)
    # an unrolled kind trains on windows: one-frame, then two-frame ones
    windows = Windows(ds, ds, UnrollConfig(windows=(1, 2), epochs=(2, 1), clip=1.0))
    if reg.unrolled:
        scored = stage_windows(ds, 2)
    loss_fn, _ = objective(reg, system, recon, steps_per_frame(ds))
    model = build_closure(
        LocalClosureConfig("local", 8, 2, 1), system.state_field, system.closure_field, seed=0
    )

    @nnx.jit
    def loss_of(m):
        return loss_fn(m, scored, jax.random.key(0))[0]

    def loss_now() -> float:
        return float(loss_of(model))

    before = loss_now()
    history = train_closure(
        system,
        model,
        reg,
        OptimConfig(optimizer="adam", lr=3e-3, epochs=3, batch_size=8, seed=0, checkpoint_every=3),
        data,
        reconstruct=recon,
        progress=False,
        grow=for_estimator(reg, ds, seed=0),  # the hybrid's own states (dagger), else None
        windows=windows,
    )
    after = loss_now()
    assert after < 0.8 * before, (before, after)
    # (an unrolled kind's loss grows with its window: compared within the first stage)
    losses = [h["train_loss"] for h in history.epochs if h.get("window", 1) == 1]
    assert losses[-1] < losses[0]
    if reg.kind == "tr":
        assert "train_tr_penalty" in history.epochs[0]
    if reg.unrolled:
        assert [e["window"] for e in history.epochs] == [1, 1, 2]


def test_estimator_configs_are_validated():
    """Each kind validates only its own keys, and names the section each key was read from."""
    from ml4dynamics.core.errors import ConfigError

    reg = {"reg": {"lam": -1.0, "eps": 1e-8}}
    with pytest.raises(ConfigError, match="^reg.lam: must be >= 0"):
        parse_estimator({"kind": "tr", "normal": "gradient"}, "estimators.tr-gradient", reg)
    with pytest.raises(ConfigError, match="^estimators.aols.sigma: must be > 0"):
        parse_estimator({"kind": "aols", "sigma": 0.0}, "estimators.aols", reg)
    tr = parse_estimator(
        {"kind": "tr", "normal": "projector"}, "estimators.x", {"reg": {"lam": 2.0, "eps": 1e-8}}
    )
    assert tr.label == "tr-projector" and tr.config.lam == 2.0 and tr.needs_manifold
    ols = parse_estimator({"kind": "ols"}, "estimators.ols")
    assert dataclasses.asdict(ols.config) == {"kind": "ols"}  # no dummy weights of others


@pytest.mark.parametrize("factor", [3.3, 0.0])
def test_reg_lam_multiplies_every_systems_tr_weight_and_nothing_else(tmp_path, factor):
    """`-S reg.lam=X`: each estimator that reads `reg` trains at X × its system's own λ; the
    others are untouched; without the key each system's λ is its own."""
    from ml4dynamics.config import load_params
    from ml4dynamics.learning.estimators import estimator, lam_multiplier

    params = small_params()
    params["reg"]["kolmogorov"]["lam"] = 0.1
    params["estimators"]["ols-field"] = {"kind": "ols-field"}
    plain = load_params(write_params(tmp_path / "plain.yaml", params))
    params["reg"]["lam"] = factor
    scaled = load_params(write_params(tmp_path / "scaled.yaml", params))
    assert lam_multiplier(plain) == 1.0 and lam_multiplier(scaled) == factor
    for system, own in (("rd", 1.0), ("kolmogorov", 0.1)):
        for name in ("tr-projector", "ols-field"):
            assert estimator(plain, name, system).config.lam == own
            assert estimator(scaled, name, system).config.lam == pytest.approx(own * factor)
        assert estimator(scaled, "ols", system).config == estimator(plain, "ols", system).config


@pytest.mark.parametrize("value", [-1.0, "big", float("nan"), True])
def test_a_bad_reg_lam_is_one_line_naming_the_key(tmp_path, value):
    from ml4dynamics.config import load_params
    from ml4dynamics.core.errors import ConfigError
    from ml4dynamics.learning.estimators import estimator

    params = small_params()
    params["reg"]["lam"] = value
    path = write_params(tmp_path / "params.yaml", params)
    with pytest.raises(ConfigError, match=rf"^{path}: reg.lam: must be a number >= 0, got "):
        estimator(load_params(path), "tr-projector", "rd")


@pytest.mark.slow
def test_an_unreadable_checkpoint_falls_back_to_an_older_one(straight, tmp_path):
    """Truncated files in the newest checkpoint: one warning line, training resumes from the
    previous checkpoint and ends where an uninterrupted run ends."""
    root, env = copy_project(straight, tmp_path / "p")
    directory = root / "models" / "rd" / "checkpoints" / "tr-projector"
    steps = sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())
    assert len(steps) == 2  # the two newest are kept
    for f in (directory / str(steps[-1])).rglob("*"):
        if f.is_file():
            f.write_bytes(f.read_bytes()[: len(f.read_bytes()) // 2])  # half of every file
    result = run_cli(["train", "rd", "--estimator", "tr-projector"], cwd=root, env=env)
    assert result.returncode == 0, result.stderr
    warnings = [
        line
        for line in result.stderr.splitlines()
        if line.startswith("ml4d: warning: checkpoint")  # (not the manifold-quality warnings)
    ]
    assert len(warnings) == 1 and f"checkpoint {steps[-1]} in" in warnings[0], result.stderr
    for a, b in zip(final_params(straight), final_params(root), strict=True):
        np.testing.assert_array_equal(a, b)  # resumed from the older one, same end point


def test_a_second_training_of_the_same_model_stops_at_once(base_project, tmp_path):
    """One writer per model: while a training holds the lock, another stops with one line and
    touches nothing."""
    from ml4dynamics.core.layout import Layout
    from ml4dynamics.core.outputs import exclusive

    root, env = copy_project(base_project, tmp_path / "p")
    with exclusive(Layout(root).lock("rd", "model-ols"), "the first training"):
        result = run_cli(["train", "rd", "--estimator", "ols"], cwd=root, env=env)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "cannot start `ml4d train rd --estimator ols`" in result.stderr
    assert "the first training) is writing the same outputs" in result.stderr
    assert not (root / "models" / "rd" / "checkpoints" / "ols").exists()
    assert not (root / "models" / "rd" / "closures" / "ols").exists()


def test_a_trained_closure_reports_the_manifolds_floor(straight):
    """The train stage measures the floor (the exact closure's penalty on validation states),
    reports floor ÷ penalty with the run (DVC metrics and MLflow) and, for TR, whether the
    training penalty fell below the training floor. (The tiny autoencoder of these tests is
    far too coarse: the ratio is above the limit, which the stage says.)"""
    import json

    metrics = json.loads((straight / "metrics/rd/train/tr-projector.json").read_text())
    record = metrics["manifold"]
    assert record["val_floor"] > 0 and record["val_tr_penalty"] == metrics["val_tr_penalty"]
    assert record["floor_ratio"] == pytest.approx(record["val_floor"] / metrics["val_tr_penalty"])
    assert record["lam_scale"] == pytest.approx(metrics["val_misfit"] / metrics["val_tr_penalty"])
    assert record["below_floor"] == (metrics["train_tr_penalty"] < record["train_floor"])
    (run,) = [r for r in train_runs(straight) if r.data.tags.get("estimator") == "tr-projector"]
    assert run.data.metrics["manifold.floor_ratio"] == pytest.approx(record["floor_ratio"])
    assert run.data.metrics["manifold.below_floor"] == float(record["below_floor"])


def test_convergence_tells_a_plateau_from_a_falling_curve():
    def epochs(values):
        return [{"epoch": i, "val_misfit": v} for i, v in enumerate(values)]

    # halves every epoch: the best of the last quarter is 8x below the best before it
    falling = convergence(epochs([2.0**-i for i in range(12)]))
    assert falling["plateau"] is False and falling["drop"] == 1 - 2.0**-3
    # flat after a fast start, with one noisy epoch at the end: the best value decides
    flat = convergence(epochs([1.0, 0.1, 0.1, 0.1, 0.1, 0.1, 0.099, 0.5]))
    assert flat["plateau"] is True and abs(flat["drop"] - 0.01) < 1e-12
    worse = convergence(epochs([1.0, 0.5, 0.4, 0.6, 0.7]))  # got worse: a negative drop
    assert worse["plateau"] is True and worse["drop"] == (0.4 - 0.7) / 0.4
    assert convergence(epochs([1.0, 0.5, 0.2]))["plateau"] is None  # too short to say
    assert not flat["collapsed"] and not falling["collapsed"] and not worse["collapsed"]
    # the rd closure at batch 4 and 480 epochs: down to 3.6e-4 at epoch 80, then 7.0 (a dead
    # network) to the end; its best-value drop alone says "plateau"
    dead = convergence(epochs([0.3, 0.01, 0.00036, 7.07, 7.0, 7.02, 7.03, 7.03]))
    assert dead["plateau"] is True and dead["collapsed"] is True
    assert dead["best"] == 0.00036 and dead["best_epoch"] == 2
    assert convergence(epochs([1.0, 20.0]))["collapsed"] is True  # short runs too
    # one warning line each, naming the knob that mends it (the train stage's and the sweep's)
    line = convergence_warning(dead, "rd ols", "train.rd.optim.lr", "train.rd.optim.epochs")
    assert line == (
        "rd ols: training collapsed: the validation misfit ended over 10× its best (0.00036 at "
        "epoch 2); lower train.rd.optim.lr"
    )
    line = convergence_warning(falling, "rd tr seed 1", "--lr", "--epochs")
    assert line == (
        "rd tr seed 1: the validation misfit still fell 88% over the last quarter of training "
        "(> 10%): no plateau yet; train longer (--epochs)"
    )
    assert convergence_warning(flat, "rd ols", "--lr", "--epochs") is None
    assert convergence_warning(convergence(epochs([1.0, 0.5])), "x", "--lr", "--epochs") is None


def test_a_cosine_schedule_decays_the_step_to_zero_over_the_training():
    import jax.numpy as jnp

    config = OptimConfig("sgd", 0.5, 10, 0, 0, 10, schedule="cosine")
    transform = config.transform(total_steps=10)
    params = jnp.zeros(())
    state = transform.init(params)
    steps = []
    for _ in range(12):  # the gradient of θ is 1: each update is minus that step's rate
        update, state = transform.update(jnp.ones(()), state, params)
        steps.append(-float(update))
    expected = [0.25 * (1 + np.cos(np.pi * k / 10)) for k in range(10)] + [0.0, 0.0]
    np.testing.assert_allclose(steps, expected, atol=1e-12)
    constant = OptimConfig("sgd", 0.5, 10, 0, 0, 10).transform(total_steps=10)
    update, _ = constant.update(jnp.ones(()), constant.init(params), params)
    assert float(update) == -0.5


def test_bench_times_every_estimator_in_both_precisions(base_project, tmp_path):
    """`ml4d timing` on the pipeline's files: a median step time for every configured estimator
    in float32 and float64 (the same network, dtype replaced), ratios to OLS in one run."""
    out = tmp_path / "bench.json"
    args = ["timing", "rd", "--repeats", "1", "--steps", "2", "--out", str(out)]
    result = run_cli(args, cwd=base_project)
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    configured = set(small_params()["estimators"])
    times = report["ms_per_step_median"]
    assert set(times) == {"float32", "float64"}
    for dtype in times:
        assert set(times[dtype]) == configured
        assert all(t > 0 and math.isfinite(t) for t in times[dtype].values())
        assert report["ratio_to_ols"][dtype]["ols"] == 1.0
        ratio = report["ratio_to_ols"][dtype]["tr-projector"]
        assert ratio == times[dtype]["tr-projector"] / times[dtype]["ols"]
    assert set(report["float64_over_float32"]) == configured
    assert report["model"]["dtype"] == small_params()["train"]["rd"]["model"]["dtype"]
    bad = run_cli([*args[:2], "--steps", "0", "--out", str(tmp_path / "no.json")], base_project)
    assert bad.returncode == 2 and bad.stderr.strip() == "ml4d: error: --steps must be >= 1, got 0"
    assert not (tmp_path / "no.json").exists()
