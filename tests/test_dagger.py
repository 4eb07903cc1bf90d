"""The ``dagger`` estimator: the hybrid's own states labelled by the exact closure
(``aggregation``), rounds with a cosine schedule laid out in advance, and its clear errors."""

from __future__ import annotations

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ml4dynamics.cli import main as cli
from ml4dynamics.core.errors import ConfigError, ML4DError
from ml4dynamics.datasets import open_dataset
from ml4dynamics.datasets.pairs import as_pairs, system_of
from ml4dynamics.learning.aggregation import for_estimator, grower, hybrid_states
from ml4dynamics.learning.closure_training import train_closure
from ml4dynamics.learning.estimators import parse_estimator
from ml4dynamics.learning.training import OptimConfig, fit
from ml4dynamics.models import UNetConfig, build_closure
from ml4dynamics.models.closures import LinearClosure
from tests.conftest import small_params, write_params


class ExactClosure(nnx.Module):
    """The system's own closure as a 'trained network' (autonomous systems: t is unused)."""

    def __init__(self, system):
        self.system = system

    def __call__(self, u: jax.Array) -> jax.Array:
        return jax.vmap(lambda x: self.system.closure(x, 0.0))(u)


@pytest.fixture(scope="module")
def rd_ds(generated):
    return open_dataset(generated / "rd" / "train.zarr")


@pytest.fixture(scope="module")
def linear_ds(generated):
    return open_dataset(generated / "linear" / "train.zarr")


def test_the_exact_closures_hybrid_revisits_the_data_with_its_labels(rd_ds):
    # rd's data are the exact-closure rollout (no label noise): DAgger's states must be the
    # stored frames after the first, in order, and its labels the stored labels, to round-off
    states = hybrid_states(rd_ds, ExactClosure(system_of(rd_ds)), bound=2.0)
    frames = rd_ds.sizes["time"] - 1
    assert states["u"].shape == (rd_ds.sizes["sample"] * frames, *rd_ds.u.shape[2:])
    u = rd_ds.u.values[:, 1:].reshape(states["u"].shape)
    y = rd_ds.y.values[:, 1:].reshape(states["y"].shape)
    scale = np.abs(u).max()
    assert np.max(np.abs(np.asarray(states["u"]) - u)) < 1e-10 * scale
    assert np.max(np.abs(np.asarray(states["y"]) - y)) < 1e-10 * np.abs(y).max()
    t = np.tile(rd_ds.time.values[1:], rd_ds.sizes["sample"])
    np.testing.assert_array_equal(np.asarray(states["t"]), t)
    assert states["q"] == {}


def test_frames_beyond_the_bound_are_not_labelled(linear_ds):
    # the linear system without its closure grows like 1.2^k: only the frames before the first
    # with max|û| > bound · max|u| of the true trajectory are kept, each labelled C û
    system = system_of(linear_ds)
    bound = 3.0
    states = hybrid_states(linear_ds, LinearClosure(2, 2, rngs=nnx.Rngs(0)), bound)
    A, C = np.asarray(system.A), np.asarray(system.C)
    expected = []
    for truth in linear_ds.u.values:
        u, limit = truth[0], bound * np.abs(truth).max()
        for _ in range(1, len(truth)):
            u = A @ u
            if np.abs(u).max() > limit:
                break
            expected.append(u)
    expected = np.asarray(expected)
    assert 0 < len(expected) < linear_ds.u.shape[0] * (linear_ds.sizes["time"] - 1)
    np.testing.assert_allclose(np.asarray(states["u"]), expected, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(states["y"]), expected @ C.T, rtol=1e-12)


def test_grow_draws_a_fixed_number_reproducibly_and_refuses_when_nothing_survives(linear_ds):
    model = LinearClosure(2, 2, rngs=nnx.Rngs(0))
    available = hybrid_states(linear_ds, model, 3.0)["u"].shape[0]
    for size in (5, 3 * available):  # fewer than there are, and more (with replacement)
        grow = grower(linear_ds, 3.0, size, seed=0)
        first, again = grow(model, 1), grow(model, 1)
        assert first["u"].shape == (size, 2) and first["y"].shape == (size, 2)
        np.testing.assert_array_equal(first["u"], again["u"])  # seeded by (seed, round)
        assert not np.array_equal(grow(model, 2)["u"], first["u"])
    exploding = LinearClosure(2, 2, rngs=nnx.Rngs(0))
    exploding.C[...] = jnp.full((2, 2), 1e6)
    with pytest.raises(ML4DError, match="blew up .* before its first stored frame"):
        grower(linear_ds, 3.0, 5, seed=0)(exploding, 1)


def test_train_closure_needs_the_grow_of_an_estimator_of_rounds(rd_ds):
    # (training itself through `ml4d train`: the last test)
    system = system_of(rd_ds)
    estimator = parse_estimator({"kind": "dagger", "rounds": 2, "bound": 2.0}, "estimators.d")
    model = build_closure(
        UNetConfig("unet", 2, 1, "float32"), system.state_field, system.closure_field, seed=0
    )
    optim = OptimConfig("adam", 0.003, 2, 8, 0, 10, "cosine")
    with pytest.raises(ML4DError, match="pass grow"):
        train_closure(system, model, estimator, optim, as_pairs(rd_ds), progress=False)
    assert for_estimator(parse_estimator({"kind": "ols"}, "e"), rd_ds, seed=0) is None
    assert for_estimator(estimator, rd_ds, seed=0) is not None


def test_a_cosine_schedule_spans_every_round_when_the_growth_is_known(linear_ds, monkeypatch):
    train = as_pairs(linear_ds)
    n = train["u"].shape[0]

    def ols(m, batch, key):
        misfit = jnp.mean(jnp.sum((batch["y"] - m(batch["u"])) ** 2, axis=-1))
        return misfit, {}

    grow = grower(linear_ds, 3.0, n, seed=0)
    config = OptimConfig("adam", 0.05, 2, 16, 0, 10, "cosine")
    model = LinearClosure(2, 2, rngs=nnx.Rngs(0))
    with pytest.raises(ML4DError, match="use schedule: constant with rounds"):
        fit(model, ols, train, config, progress=False, grow=grow, rounds=3)
    with pytest.raises(ML4DError, match="laid out for grow_size=7"):
        fit(model, ols, train, config, progress=False, grow=grow, rounds=3, grow_size=7)
    laid_out: list[int] = []
    transform = OptimConfig.transform
    monkeypatch.setattr(
        OptimConfig,
        "transform",
        lambda self, total, clip=None: laid_out.append(total) or transform(self, total, clip),
    )
    history = fit(model, ols, train, config, progress=False, grow=grow, rounds=3, grow_size=n)
    # round r has (r + 1) n samples: 2 epochs of floor((r + 1) n / 16) steps each (full batches)
    assert laid_out == [sum(2 * ((r + 1) * n // 16) for r in range(3))]
    assert [e["round"] for e in history.epochs] == [0, 0, 1, 1, 2, 2]


def test_dagger_settings_are_checked():
    with pytest.raises(ConfigError, match="rounds"):
        parse_estimator({"kind": "dagger", "rounds": 1, "bound": 2.0}, "estimators.d")
    with pytest.raises(ConfigError, match="bound"):
        parse_estimator({"kind": "dagger", "rounds": 3, "bound": 1.0}, "estimators.d")
    assert parse_estimator({"kind": "dagger", "rounds": 3, "bound": 2.0}, "e").rounds == 3
    assert parse_estimator({"kind": "ols"}, "e").rounds == 1


def test_ml4d_train_runs_dagger_and_refuses_a_system_without_an_exact_closure(
    generated, tmp_path, monkeypatch, capsys
):
    params = small_params()
    params["estimators"]["dagger"] = {"kind": "dagger", "rounds": 2, "bound": 2.0}
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    write_params(tmp_path / "params.yaml", params)
    shutil.copytree(generated / "rd", tmp_path / "data" / "rd")
    for args in (["fit-manifold", "rd"], ["train", "rd", "--estimator", "dagger"]):
        assert cli(args) == 0, capsys.readouterr().err
    result = json.loads((tmp_path / "metrics/rd/train/dagger.json").read_text())
    assert result["epochs"] == 2 * params["train"]["rd"]["optim"]["epochs"]  # two rounds
    assert cli(["evaluate", "rd", "--estimator", "dagger"]) == 0, capsys.readouterr().err

    for args in (["generate", "ks"], ["fit-manifold", "ks"]):
        assert cli(args) == 0, capsys.readouterr().err
    capsys.readouterr()
    assert cli(["train", "ks", "--estimator", "dagger"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ks has no exact closure" in err[0], err
    assert not (tmp_path / "metrics/ks/train/dagger.json").exists()
    assert not (tmp_path / "models/ks/closures/dagger").exists()
