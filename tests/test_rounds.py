"""Training sets that grow between rounds (DAgger): what is appended, and resume bit for bit.

The problem is the linear system's data with a ``LinearClosure`` and a plain OLS loss; ``grow``
is a real DAgger step: roll the hybrid out with the current closure from the training initial
states and label the visited states with the exact closure.
"""

from __future__ import annotations

import dataclasses
import os
import signal

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import nnx

from ml4dynamics.core.errors import ML4DError
from ml4dynamics.datasets import open_dataset
from ml4dynamics.datasets.pairs import as_pairs, system_of
from ml4dynamics.learning.training import History, Interrupted, OptimConfig, fit
from ml4dynamics.models.checkpoints import RunCheckpoints
from ml4dynamics.models.closures import LinearClosure

EPOCHS = 4  # per round: long enough to interrupt inside a round, not only at its edges
ROUNDS = 3  # round 0 on the data, then two grown rounds
TRAIN = 4 * 51  # SMALL_PARAMS linear train: 4 trajectories × (50 steps + 1) frames
VISITS = 10  # hybrid steps per trajectory in each DAgger round
GROWN = 4 * VISITS  # samples each round adds: 4 trajectories × 10 visited states


def ols(model, batch, key):
    """Mean squared misfit per sample, with the batch size and sums of the batch as parts (full
    batch: their per-epoch averages are exactly the training set's)."""
    misfit = jnp.mean(jnp.sum((batch["y"] - model(batch["u"])) ** 2, axis=-1))
    parts = {
        "samples": jnp.asarray(batch["u"].shape[0], dtype=jnp.float64),
        "u_sum": jnp.sum(batch["u"]),
        "y_sq": jnp.sum(batch["y"] ** 2),
        "t_sum": jnp.sum(batch["t"]),
    }
    return misfit, parts


class Dagger:
    """``grow(model, r)``: the states the hybrid û_{k+1} = S(û_k, Ĉ û_k) visits in ``VISITS``
    steps from each training trajectory's first frame, labelled by the exact closure C û."""

    def __init__(self, ds, signal_first: bool = False):
        self.signal_first = signal_first  # SIGINT to this process inside the first call
        self.system = system_of(ds)
        self.u0 = jnp.asarray(ds.u.values[:, 0])
        self.t0 = float(ds.time.values[0])
        self.calls: list[int] = []
        self.returned: list[dict] = []

    def __call__(self, model: nnx.Module, r: int) -> dict:
        self.calls.append(r)
        if self.signal_first and len(self.calls) == 1:
            os.kill(os.getpid(), signal.SIGINT)
        step = jax.vmap(self.system.step, in_axes=(0, 0, None))
        label = jax.vmap(self.system.closure, in_axes=(0, None))
        u, us, ys, ts = self.u0, [], [], []
        for k in range(VISITS):
            t = self.t0 + (k + 1) * self.system.dt
            u = step(u, model(u), t - self.system.dt)
            us.append(u)
            ys.append(label(u, t))
            ts.append(jnp.full(len(u), t))
        new = {
            "u": jnp.concatenate(us),
            "y": jnp.concatenate(ys),
            "t": jnp.concatenate(ts),
            "q": {},
        }
        self.returned.append(new)
        return new


@pytest.fixture(scope="module")
def linear_ds(generated):
    return open_dataset(generated / "linear" / "train.zarr")


def config(batch_size: int, checkpoint_every: int) -> OptimConfig:
    # lr 0.05 with Adam: the closure moves visibly in 12 epochs without diverging
    return OptimConfig("adam", 0.05, EPOCHS, batch_size, 0, checkpoint_every)


def new_model() -> LinearClosure:
    return LinearClosure(2, 2, rngs=nnx.Rngs(0))  # the linear system: 2 states, 2 closures


def test_each_round_appends_exactly_what_grow_returns(linear_ds, tmp_path):
    train = as_pairs(linear_ds)
    grow = Dagger(linear_ds)
    checkpoints = RunCheckpoints(tmp_path / "ck", "run")
    history = fit(
        new_model(),
        ols,
        train,
        config(0, EPOCHS),
        checkpoints,
        progress=False,
        grow=grow,
        rounds=ROUNDS,
    )
    checkpoints.close()
    assert grow.calls == [1, 2]  # once per round after the first
    assert [h["round"] for h in history.epochs] == [r for r in range(ROUNDS) for _ in range(EPOCHS)]
    assert [h["epoch"] for h in history.epochs] == list(range(ROUNDS * EPOCHS))  # global
    counts = [TRAIN + r * GROWN for r in range(ROUNDS)]
    assert [h["train_samples"] for h in history.epochs] == [
        c for c in counts for _ in range(EPOCHS)
    ]
    for r in range(ROUNDS):
        seen = [train, *grow.returned[:r]]
        entry = history.epochs[r * EPOCHS]
        # the same numbers summed in another order (the epoch's permutation): apart by at most
        # ~n ulp of the sum of magnitudes, n <= 284 terms → ~3e-14 of it, well inside 1e-12
        for part, of in (
            ("u_sum", lambda b: b["u"]),
            ("y_sq", lambda b: b["y"] ** 2),
            ("t_sum", lambda b: b["t"]),
        ):
            expected = sum(float(np.sum(of(b))) for b in seen)
            scale = sum(float(np.sum(np.abs(of(b)))) for b in seen)
            assert abs(entry[f"train_{part}"] - expected) <= 1e-12 * scale, part

    # the checkpoint keeps the grown samples bit for bit, one list of arrays per round
    reader = RunCheckpoints(tmp_path / "ck", "run")
    model = new_model()
    meta = reader.restore_latest(
        model, nnx.Optimizer(model, config(0, 1).transform(), wrt=nnx.Param)
    )
    reader.close()
    assert len(meta["grown"]) == ROUNDS - 1
    for saved, returned in zip(meta["grown"], grow.returned, strict=True):
        for a, b in zip(saved, jax.tree.leaves(returned), strict=True):
            np.testing.assert_array_equal(a, b)


@dataclasses.dataclass
class Outcome:
    c: np.ndarray  # the trained Ĉ
    history: History
    calls: list[int]  # grow's calls, over both processes' attempts
    interrupted: str = ""  # the Interrupted message of the first attempt
    calls_before: list[int] = dataclasses.field(default_factory=list)  # grow's calls until then


def run(ds, path, stop_at: int | None = None, stop_in_grow: bool = False) -> Outcome:
    """A growing run (50-sample batches: 4, 4 and 5 steps per epoch as the set grows from 204
    to 244 and 284; a checkpoint every 3 epochs, out of step with the rounds; every checkpoint
    kept). With ``stop_at``, SIGINT from the callback of that epoch; with ``stop_in_grow``, from
    inside the first ``grow``; then the same call again, as a user would."""
    train, grow = as_pairs(ds), Dagger(ds, signal_first=stop_in_grow)

    def on_epoch(epoch: int, metrics: dict) -> None:
        if epoch == stop_at:
            os.kill(os.getpid(), signal.SIGINT)

    def attempt(callback) -> tuple[nnx.Module, History]:
        model, checkpoints = new_model(), RunCheckpoints(path, "run", keep=100)
        try:
            history = fit(
                model,
                ols,
                train,
                config(50, 3),
                checkpoints,
                on_epoch=callback,
                progress=False,
                grow=grow,
                rounds=ROUNDS,
            )
        finally:
            checkpoints.close()
        return model, history

    message, calls_before = "", []
    if stop_at is not None or stop_in_grow:
        with pytest.raises(Interrupted) as err:
            attempt(on_epoch)
        message, calls_before = str(err.value), list(grow.calls)
    model, history = attempt(None)
    return Outcome(np.asarray(model.C[...]), history, grow.calls, message, calls_before)


@pytest.fixture(scope="module")
def straight_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("straight") / "ck"


@pytest.fixture(scope="module")
def straight(linear_ds, straight_dir) -> Outcome:
    return run(linear_ds, straight_dir)


def test_checkpoints_every_few_epochs_at_round_ends_and_after_grow(straight, straight_dir):
    """(global epoch, step, rounds grown) of every checkpoint of the uninterrupted run: every
    3rd epoch, the end of each round of 4 epochs (4, 8, 12), right after grow (4 and 8 again)."""
    checkpoints = RunCheckpoints(straight_dir, "run", keep=100)
    manager = checkpoints.manager
    saved = []
    for step in sorted(manager.all_steps()):
        meta = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
        saved.append((meta["epoch"], meta["step"], len(meta.get("grown", []))))
    checkpoints.close()
    assert saved == [
        (3, 0, 0),
        (4, 0, 0),
        (4, 0, 1),
        (6, 0, 1),
        (8, 0, 1),
        (8, 0, 2),
        (9, 0, 2),
        (12, 0, 2),
    ]


@pytest.mark.parametrize(
    ("stop_at", "stop_in_grow", "saved_at", "grown_before"),
    [
        # signal in the callback of round 1's second epoch (global 5): noticed after the first
        # step of epoch 6, saved there with round 1's samples, so grow(·, 1) is not called again
        (EPOCHS + 1, False, "epoch 6, step 1", [1]),
        # signal after round 0's last epoch (global 3): stops at the round boundary, before
        # round 1's samples are drawn; the resumed run draws them
        (EPOCHS - 1, False, "epoch 4, step 0", []),
        # signal while round 1's samples are drawn: they are saved, then the run stops
        (None, True, "epoch 4, step 0", [1]),
    ],
    ids=["mid-round", "round-boundary", "inside-grow"],
)
def test_interrupted_growing_run_resumes_bit_identical(
    linear_ds, straight, tmp_path, stop_at, stop_in_grow, saved_at, grown_before
):
    resumed = run(linear_ds, tmp_path / "ck", stop_at, stop_in_grow)
    assert f"interrupted by SIGINT; checkpoint saved at {saved_at};" in resumed.interrupted
    assert resumed.calls_before == grown_before
    assert resumed.calls == straight.calls == [1, 2]  # each round's samples drawn once in all
    np.testing.assert_array_equal(resumed.c, straight.c)  # bit for bit
    assert resumed.history.epochs == straight.history.epochs
    assert np.abs(straight.c).max() > 0.01  # it did train (Ĉ starts at zero; C is -0.05, -0.3)


def test_a_single_round_keeps_the_old_history_and_checkpoints(linear_ds, tmp_path):
    """rounds=1: no round key, no grown item; an interrupted full-batch run (every interrupt
    lands after the epoch's only step, the position the epoch's end saves again) resumes."""
    train = as_pairs(linear_ds)

    def go(path, callback=None):
        model, checkpoints = new_model(), RunCheckpoints(path, "run")
        try:
            return model, fit(
                model, ols, train, config(0, 1), checkpoints, on_epoch=callback, progress=False
            )
        finally:
            checkpoints.close()

    model, history = go(tmp_path / "a")
    assert set(history.epochs[0]) == {
        "epoch",
        "train_loss",
        "train_samples",
        "train_u_sum",
        "train_y_sq",
        "train_t_sum",
    }

    def stop_after_epoch_1(epoch: int, metrics: dict) -> None:
        if epoch == 1:
            os.kill(os.getpid(), signal.SIGINT)

    # noticed after the only step of epoch 2
    with pytest.raises(Interrupted, match="saved at epoch 2, step 1"):
        go(tmp_path / "b", stop_after_epoch_1)
    reader = RunCheckpoints(tmp_path / "b", "run")
    probe = new_model()
    meta = reader.restore_latest(
        probe, nnx.Optimizer(probe, config(0, 1).transform(), wrt=nnx.Param)
    )
    reader.close()
    assert "grown" not in meta and (meta["epoch"], meta["step"]) == (2, 1)
    resumed, resumed_history = go(tmp_path / "b")
    np.testing.assert_array_equal(resumed.C[...], model.C[...])
    assert resumed_history.epochs == history.epochs


def test_grow_must_return_samples_like_the_training_set(linear_ds):
    train = as_pairs(linear_ds)

    def wrong(model, r):  # 5 (any number of) states of 3 components instead of 2
        return {**train, "u": jnp.zeros((5, 3))}

    with pytest.raises(ML4DError, match=r"^grow\(model, 1\) returned an array of shape \(5, 3\)"):
        fit(new_model(), ols, train, config(0, 1), progress=False, grow=wrong, rounds=2)
    with pytest.raises(ML4DError, match=r"^rounds=2 needs a grow function"):
        fit(new_model(), ols, train, config(0, 1), progress=False, rounds=2)
    cosine = dataclasses.replace(config(0, 1), schedule="cosine")  # decays over a known length
    with pytest.raises(ML4DError, match=r"^schedule 'cosine' decays over a known number"):
        fit(new_model(), ols, train, cosine, progress=False, grow=wrong, rounds=2)


def test_checkpoints_keep_grown_arrays_including_empty_ones(tmp_path):
    """A round may add no samples (Orbax stores no empty array: rebuilt from the metadata)."""
    model = new_model()
    optimizer = nnx.Optimizer(model, config(0, 1).transform(), wrt=nnx.Param)
    rng = np.random.default_rng(0)
    grown = [
        [jnp.zeros((0, 2)), jnp.zeros((0,), dtype=jnp.int32)],  # round 1 added nothing
        [jnp.asarray(rng.normal(size=(3, 2))), jnp.arange(3, dtype=jnp.int32)],  # 3 samples
    ]
    checkpoints = RunCheckpoints(tmp_path / "ck", "run")
    checkpoints.save(7, model, optimizer, {"epoch": 1}, grown)  # 7, 1: any position
    checkpoints.close()
    reader = RunCheckpoints(tmp_path / "ck", "run")
    meta = reader.restore_latest(model, optimizer)
    reader.close()
    assert meta["epoch"] == 1
    for saved, restored in zip(grown, meta["grown"], strict=True):
        for a, b in zip(saved, restored, strict=True):
            assert a.shape == b.shape and a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)
