"""Unrolled (solver-in-the-loop) estimators against hand-written losses and gradients: one frame
is the one-step state misfit, no gradient path through earlier steps without the solver's, the
tangent variant at λ = 0, memory bounded by rematerialisation, kill-and-resume along the
curriculum."""

from __future__ import annotations

import os
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import yaml
from flax import nnx

from ml4dynamics.core.errors import ConfigError, ML4DError
from ml4dynamics.core.validation import parse
from ml4dynamics.datasets import open_dataset
from ml4dynamics.datasets.pairs import as_windows, steps_per_frame, system_of
from ml4dynamics.learning.closure_training import Windows, train_closure, train_unrolled
from ml4dynamics.learning.estimators import parse_estimator
from ml4dynamics.learning.estimators.unrolled import hybrid_window
from ml4dynamics.learning.network_config import UnrollConfig, parse_network_stage
from ml4dynamics.learning.training import Interrupted, OptimConfig
from ml4dynamics.models import LinearClosureConfig, LocalClosureConfig, UNetConfig, build_closure
from ml4dynamics.models.checkpoints import RunCheckpoints
from ml4dynamics.studies.step_cost import window_memory
from ml4dynamics.systems import system_class
from tests.conftest import REPO

REG = {"reg": {"lam": 0.0, "eps": 1e-12}}


def estimator(kind: str, lam: float = 0.0, **keys):
    entry = {"kind": kind, **keys}
    return parse_estimator(entry, f"estimators.{kind}", {"reg": {"lam": lam, "eps": 1e-12}})


def unrolled(solver_gradient: bool = True):
    return estimator("unrolled", solver_gradient=solver_gradient)


@pytest.fixture(scope="module")
def rd(generated):
    """rd's small training split (frames 10 solver steps apart) and a float64 pointwise closure."""
    ds = open_dataset(generated / "rd" / "train.zarr")
    system = system_of(ds)
    config = LocalClosureConfig("local", 8, 2, 1, "float64")
    model = build_closure(config, system.state_field, system.closure_field, seed=0)
    return ds, system, model


@pytest.fixture(scope="module")
def linear(generated):
    """The linear toy (S(u, y) = A u + B y, Δt = 1) and a linear closure y = C u."""
    ds = open_dataset(generated / "linear" / "train.zarr")
    system = system_of(ds)
    model = build_closure(
        LinearClosureConfig("linear"), system.state_field, system.closure_field, 0
    )
    return ds, system, model


def by_hand(system, model, u0, t0, steps: int) -> jax.Array:
    """``steps`` hybrid steps from each sample, one sample and one step at a time."""
    out = []
    for u, t in zip(u0, t0, strict=True):
        for i in range(steps):
            u = system.step(u, model(u[None])[0], t + i * system.dt)
        out.append(u)
    return jnp.stack(out)


@pytest.mark.parametrize("frame_steps", [1, 10])
def test_one_frame_is_the_one_step_state_misfit(rd, frame_steps):
    """k = 1: the loss is mean ‖S(u, φ(u)) − u_next‖² / Δt_f², written out one sample at a
    time; with one solver step per frame (u_next made by one exact step) and with the split's
    own 10."""
    ds, system, model = rd
    w = jax.tree.map(lambda a: a[:3], as_windows(ds, 2))
    if frame_steps == 1:  # the next frame one step of the exact closure after the first
        u0, t0 = w["u"][:, 0], w["t"][:, 0]
        nxt = jnp.stack(
            [system.step(u, system.closure(u, t), t) for u, t in zip(u0, t0, strict=True)]
        )
        w = {**w, "u": jnp.stack([u0, nxt], axis=1)}
    else:
        assert steps_per_frame(ds) == frame_steps
    loss, parts = unrolled().window_loss(system, model, w, None, None, frame_steps)
    hand = by_hand(system, model, w["u"][:, 0], w["t"][:, 0], frame_steps)
    dt_f = frame_steps * system.dt
    expected = np.mean([np.sum((a - b) ** 2) for a, b in zip(hand, w["u"][:, 1], strict=True)])
    assert float(loss) > 0
    np.testing.assert_allclose(float(loss) * dt_f**2, expected, rtol=1e-12)
    assert float(parts["state_misfit"]) == float(loss) == float(parts["last_frame"])


def test_without_the_solvers_gradient_no_path_reaches_earlier_steps(linear):
    """unrolled-nog: the gradient is that of k one-step losses taken at the hybrid's own states
    held constant, and nothing reaches a window's first state; through the solver it does."""
    ds, system, model = linear
    k = 3
    w = jax.tree.map(lambda a: a[:8], as_windows(ds, k + 1))
    graphdef, params = nnx.split(model)

    def loss(p, batch, est):
        return est.window_loss(system, nnx.merge(graphdef, p), batch, None, None, 1)[0]

    nog, through = unrolled(False), unrolled(True)
    # the hybrid's states c_0 = u_0, c_j = S(c_{j-1}, φ(c_{j-1})), then held constant
    frames, _ = hybrid_window(system, model, w, 1)
    held = jnp.concatenate([w["u"][:, :1], frames[:, :-1]], axis=1)

    def one_step_losses(p):
        m = nnx.merge(graphdef, p)
        step = jax.vmap(lambda u, y: system.step(u, y, 0.0))
        errs = [step(held[:, j], m(held[:, j])) - w["u"][:, j + 1] for j in range(k)]
        return jnp.mean(jnp.stack([jnp.mean(jnp.sum(e**2, axis=-1)) for e in errs]))

    expected = jax.grad(one_step_losses)(params)
    got = jax.grad(loss)(params, w, nog)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
    full = jax.grad(loss)(params, w, through)
    assert not all(
        np.allclose(a, b, rtol=1e-6)
        for a, b in zip(jax.tree.leaves(full), jax.tree.leaves(got), strict=True)
    )
    # the first state: only an input, stop_gradient-ed at every step without the solver's gradient
    du_nog = jax.grad(lambda b: loss(params, b, nog))(w)["u"]
    du_full = jax.grad(lambda b: loss(params, b, through))(w)["u"]
    assert float(jnp.max(jnp.abs(du_nog[:, 0]))) == 0.0
    assert float(jnp.max(jnp.abs(du_full[:, 0]))) > 0.0
    assert float(jnp.max(jnp.abs(du_nog[:, 1:]))) > 0.0  # the targets are still compared


def projection(u: jax.Array) -> jax.Array:
    """D∘E of the linear toy's data manifold V = span(e1)."""
    return u * jnp.array([1.0, 0.0])


@pytest.mark.parametrize("normal", ["projector", "gradient"])
def test_unrolled_tr_at_lambda_zero_is_unrolled(linear, normal):
    ds, system, model = linear
    w = jax.tree.map(lambda a: a[:8], as_windows(ds, 4))
    graphdef, params = nnx.split(model)

    def loss(p, est):
        return est.window_loss(system, nnx.merge(graphdef, p), w, None, projection, 1)[0]

    tr0 = estimator("unrolled-tr", 0.0, normal=normal)
    assert float(loss(params, tr0)) == float(loss(params, unrolled()))
    for a, b in zip(
        jax.tree.leaves(jax.grad(loss)(params, tr0)),
        jax.tree.leaves(jax.grad(loss)(params, unrolled())),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)
    tr = estimator("unrolled-tr", 2.0, normal=normal)
    assert float(loss(params, tr)) > float(loss(params, unrolled()))


def test_the_window_penalty_is_the_tangent_penalty_at_every_hybrid_state(linear):
    """unrolled-tr's penalty in closed form on the linear toy: with V = span(e1), the mean over
    the window's states c_j of ‖P⊥ (A c_j + B φ(c_j) − c_j)‖² (Δt = 1)."""
    ds, system, model = linear
    w = jax.tree.map(lambda a: a[:5], as_windows(ds, 3))
    a, b = np.asarray(system.A), np.asarray(system.B)
    tr = estimator("unrolled-tr", 1.0, normal="projector")
    _, parts = tr.window_loss(system, model, w, None, projection, 1)
    frames, _ = hybrid_window(system, model, w, 1)
    states = np.concatenate([np.asarray(w["u"][:, :1]), np.asarray(frames[:, :-1])], axis=1)
    pen = []
    for u in states.reshape(-1, 2):
        v = a @ u + b @ np.asarray(model(jnp.asarray(u)[None])[0]) - u
        pen.append(v[1] ** 2)  # P⊥ keeps the second component
    np.testing.assert_allclose(float(parts["window_tr_penalty"]), np.mean(pen), rtol=1e-12)


def test_rematerialisation_bounds_the_memory_of_a_long_window():
    """XLA's compiled temporary memory of the gradient of a ks window (64 points, the default
    U-Net, batch 32): at k = 32 within 16 MiB, and growing by well under 0.1 MiB per step, where
    storing every step's intermediates needs ~190 MiB (measured: 4.6 MiB and 186 MiB; at
    k = 4, 3.7 and 25.5). ``ml4d timing`` reports the same numbers for a system's curriculum."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    cls = system_class("ks")
    system = cls(parse(cls.config_class, params["ks"]["system"], "ks.system"))
    unet = UNetConfig("unet", 8, 3, "float32")
    at32 = window_memory(system, unet, batch=32, k=32, steps=1)
    at4 = window_memory(system, unet, batch=32, k=4, steps=1)
    assert at32["rematerialised"] <= 16.0, at32
    assert (at32["rematerialised"] - at4["rematerialised"]) / 28 < 0.1
    assert at32["stored"] > 10 * at32["rematerialised"]


def curriculum(windows=(1, 2), epochs=(2, 2)) -> UnrollConfig:
    return UnrollConfig(windows=windows, epochs=epochs, clip=1.0)


def optim(epochs: int = 1) -> OptimConfig:
    return OptimConfig("adam", 1e-3, epochs, 4, 0, 1, "cosine")


def params_of(model) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree.leaves(nnx.state(model, nnx.Param))]


def test_a_training_killed_inside_the_curriculum_resumes_to_the_same_parameters(rd, tmp_path):
    """SIGTERM in the second stage (k = 2): the checkpoint is taken, and the same call again
    restores the finished first stage, resumes the second mid-epoch and ends bit for bit where
    an uninterrupted training ends."""
    ds, system, _ = rd
    windows = Windows(ds, ds, curriculum())
    est = unrolled()

    def fresh():
        config = LocalClosureConfig("local", 8, 2, 1, "float32")
        return build_closure(config, system.state_field, system.closure_field, seed=0)

    straight = fresh()
    history = train_unrolled(
        system,
        straight,
        est,
        optim(),
        windows,
        progress=False,
        checkpoints=RunCheckpoints(tmp_path / "straight", "fp"),
    )
    assert [e["window"] for e in history.epochs] == [1, 1, 2, 2]
    assert [e["epoch"] for e in history.epochs] == [0, 1, 2, 3]

    killed, seen = fresh(), []

    def kill_in_stage_two(epoch, metrics):
        seen.append((epoch, metrics["window"]))
        if epoch == 2:  # after the first epoch of k = 2: the next step stops the run
            os.kill(os.getpid(), signal.SIGTERM)

    checkpoints = RunCheckpoints(tmp_path / "killed", "fp")
    with pytest.raises(Interrupted):
        train_unrolled(
            system,
            killed,
            est,
            optim(),
            windows,
            progress=False,
            checkpoints=checkpoints,
            on_epoch=kill_in_stage_two,
        )
    assert seen == [(0, 1), (1, 1), (2, 2)]
    assert sorted(p.name for p in (tmp_path / "killed").iterdir()) == ["window_1", "window_2"]
    resumed = fresh()  # a new process: the parameters come from the checkpoints alone
    again = train_unrolled(
        system, resumed, est, optim(), windows, progress=False, checkpoints=checkpoints
    )
    assert [e["epoch"] for e in again.epochs] == [0, 1, 2, 3]
    for a, b in zip(params_of(straight), params_of(resumed), strict=True):
        np.testing.assert_array_equal(a, b)


def test_the_curriculum_is_validated_and_required():
    with pytest.raises(ConfigError, match="windows: must increase"):
        UnrollConfig((4, 1), (1, 1), 1.0)
    with pytest.raises(ConfigError, match="epochs: must give one number of epochs >= 1 per"):
        UnrollConfig((1, 4), (1,), 1.0)
    with pytest.raises(ConfigError, match="clip: must be > 0"):
        UnrollConfig((1,), (1,), 0.0)
    raw = {
        "model": {"kind": "linear"},
        "optim": {
            "optimizer": "sgd",
            "lr": 0.1,
            "epochs": 1,
            "batch_size": 0,
            "seed": 0,
            "checkpoint_every": 1,
            "schedule": "constant",
        },
        "unroll": {"windows": [1, 3], "epochs": [2, 1], "clip": 0.5},
    }
    stage = parse_network_stage(raw, "train.linear", "train")
    assert stage.unroll == UnrollConfig((1, 3), (2, 1), 0.5)
    with pytest.raises(ConfigError, match="^manifold.linear: must have the keys"):
        parse_network_stage(raw, "manifold.linear", "manifold")


def test_an_unrolled_estimator_without_a_curriculum_is_one_clear_error(linear):
    ds, system, model = linear
    with pytest.raises(ML4DError, match=r"^train\.linear\.unroll is missing"):
        train_closure(
            system,
            model,
            unrolled(),
            optim(),
            None,
            None,
            windows=Windows(ds, ds, None),
            progress=False,
        )
    with pytest.raises(ML4DError, match="trains on windows of the trajectories"):
        train_closure(system, model, unrolled(), optim(), None, None, progress=False)
