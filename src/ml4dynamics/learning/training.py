"""A minibatch training loop with deterministic resume from Orbax checkpoints.

Determinism: the batch order of epoch e is a permutation drawn from (seed, e) and the noise key
of step s from (seed, e, s), so a run resumed at (e, s) replays exactly what an uninterrupted run
does and ends with bit-identical parameters. SIGINT and SIGTERM stop the run after the current
step (or between two rounds), save a checkpoint at that position and raise ``Interrupted``.

Rounds (DAgger): the training set may grow between rounds of ``epochs`` epochs each; epochs are
counted globally across rounds, and the samples added so far are saved with every checkpoint, so a
resumed run never asks for a round's samples twice (``rounds``: what a round adds, the set it
trains on, a checkpoint's position).
"""

from __future__ import annotations

import dataclasses
import signal
from collections.abc import Callable
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from tqdm import tqdm

from ml4dynamics.core.errors import ML4DError
from ml4dynamics.core.faults import kill_point
from ml4dynamics.core.validation import require, require_positive
from ml4dynamics.learning.rounds import (
    Batch,
    Grow,
    RoundData,
    Schedule,
    check_rounds,
    grown_leaves,
    round_data,
)
from ml4dynamics.models.checkpoints import RunCheckpoints

LossFn = Callable[[nnx.Module, Batch, jax.Array], tuple[jax.Array, dict[str, jax.Array]]]


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """``batch_size: 0`` means full batch; checkpoints every ``checkpoint_every`` epochs.
    ``schedule``: a constant learning rate, or ``cosine`` decay from ``lr`` to zero over the
    whole training (so that a fixed budget of steps ends at a plateau instead of mid-descent)."""

    optimizer: Literal["adam", "sgd"]
    lr: float
    epochs: int
    batch_size: int
    seed: int
    checkpoint_every: int
    schedule: Literal["constant", "cosine"] = "constant"

    def __post_init__(self) -> None:
        require_positive(self.lr, "lr", "the learning rate")
        require(self.epochs >= 1, "epochs", "must be >= 1", "set a positive number of epochs")
        require(self.batch_size >= 0, "batch_size", "must be >= 0", "use 0 for full batch")
        require(self.seed >= 0, "seed", "must be >= 0", "set a non-negative integer seed")
        require(self.checkpoint_every >= 1, "checkpoint_every", "must be >= 1", "e.g. 1 (epoch)")

    def transform(
        self, total_steps: int = 1, clip: float | None = None
    ) -> optax.GradientTransformation:
        """The optimiser; ``total_steps`` (all epochs) sets the length of a cosine decay;
        ``clip``: clip the gradients to this global norm first."""
        lr = (
            optax.cosine_decay_schedule(self.lr, max(total_steps, 1))
            if self.schedule == "cosine"
            else self.lr
        )
        opt = optax.adam(lr) if self.optimizer == "adam" else optax.sgd(lr)
        return opt if clip is None else optax.chain(optax.clip_by_global_norm(clip), opt)


class Interrupted(ML4DError):
    """Training was stopped by a signal after saving a checkpoint."""

    def __init__(self, signum: int, epoch: int, step: int):
        self.signum = signum
        name = signal.Signals(signum).name
        super().__init__(
            f"training interrupted by {name}; checkpoint saved at epoch {epoch}, step {step}; "
            "run the same command again to resume"
        )


class _SignalFlag:
    """Turn SIGINT/SIGTERM into a flag checked between steps (restored on exit)."""

    def __enter__(self) -> _SignalFlag:
        self.signum: int | None = None
        self._old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        for s in self._old:
            signal.signal(s, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.signum = signum

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._old.items():
            signal.signal(s, handler)


@dataclasses.dataclass
class History:
    """Per-epoch metrics, in order; survives resume through the checkpoint metadata."""

    epochs: list[dict[str, float]] = dataclasses.field(default_factory=list)


#: a training whose best validation misfit still fell by more than this fraction over its last
#: quarter of epochs has not reached a plateau (``convergence``)
STILL_FALLING = 0.1
#: a last validation misfit this many times the best of the training: it collapsed
COLLAPSED = 10.0


def convergence(epochs: list[dict[str, float]], key: str = "val_misfit") -> dict[str, Any]:
    """Has training reached a plateau of the validation misfit? ``drop``: how much the best
    value fell over the last quarter of the epochs, relative to the best before it (≤ 0 when it
    did not improve; ``None`` with fewer than 4 epochs); ``plateau``: drop ≤ ``STILL_FALLING``.
    The best value, not the last, so that one noisy epoch neither hides nor fakes progress.

    ``collapsed``: the last value is more than ``COLLAPSED`` times the best (``best``, at epoch
    ``best_epoch``) — the optimiser jumped out of the minimum and never came back (a learning
    rate too high for the batch), which the best-value ``drop`` would call a plateau."""
    values = [float(e[key]) for e in epochs if key in e]
    if not values:
        return {"drop": None, "plateau": None, "epochs": 0, "collapsed": None}
    best = min(values)
    collapse = {
        "collapsed": values[-1] > COLLAPSED * best,
        "best": best,
        "best_epoch": values.index(best),
    }
    if len(values) < 4:
        return {"drop": None, "plateau": None, "epochs": len(values)} | collapse
    cut = len(values) - max(1, len(values) // 4)
    before, tail = min(values[:cut]), min(values[cut:])
    drop = (before - tail) / before if before > 0 else 0.0
    return {"drop": drop, "plateau": drop <= STILL_FALLING, "epochs": len(values)} | collapse


def convergence_warning(converged: dict[str, Any], who: str, lr: str, epochs: str) -> str | None:
    """The one warning line a training's ``convergence`` calls for, or ``None``: a collapse
    (lower the learning rate, the knob named ``lr``) before a validation misfit still falling
    (train longer, ``epochs``). ``who`` names the training at the start of the line."""
    if converged.get("collapsed"):
        return (
            f"{who}: training collapsed: the validation misfit ended over {COLLAPSED:g}× its best "
            f"({converged['best']:.3g} at epoch {converged['best_epoch']}); lower {lr}"
        )
    if converged.get("plateau") is False:
        return (
            f"{who}: the validation misfit still fell {converged['drop']:.0%} over the last "
            f"quarter of training (> {STILL_FALLING:.0%}): no plateau yet; train longer ({epochs})"
        )
    return None


def make_step(loss_fn: LossFn, regulariser: Callable[[nnx.Module], jax.Array] | None = None):
    """The compiled optimisation step ``step(model, optimizer, data, idx, key)``: gathers the
    batch ``data[idx]``, adds ``regulariser(model)`` to the loss, updates in place, and returns
    (loss, parts). Shared by ``fit`` and the benchmark, so both time the same computation."""

    def total_loss(m: nnx.Module, batch: Batch, key: jax.Array):
        loss, parts = loss_fn(m, batch, key)
        if regulariser is not None:
            loss = loss + regulariser(m)
        return loss, parts

    @nnx.jit
    def step(m, opt, data, idx, key):
        batch = jax.tree.map(lambda a: a[idx], data)
        (loss, parts), grads = nnx.value_and_grad(total_loss, has_aux=True)(m, batch, key)
        opt.update(m, grads)
        return loss, parts

    return step


def _accumulate(running: dict[str, float], pending: list[dict[str, jax.Array]]) -> None:
    """Add the steps' values in ``pending`` to ``running`` in order (as Python floats, so the
    sum is the same as adding each as it came) and empty ``pending``."""
    for parts in pending:
        for name, value in parts.items():
            running[name] = running.get(name, 0.0) + float(value)
    pending.clear()


@dataclasses.dataclass
class _Progress:
    """What a checkpoint keeps besides the model and the optimiser: the history, the position
    to resume at (``epoch``, ``step``), the running sums of that epoch's steps, and the arrays
    each round r >= 1 added, in order."""

    history: History = dataclasses.field(default_factory=History)
    epoch: int = 0
    step: int = 0
    running: dict[str, float] = dataclasses.field(default_factory=dict)
    grown: list[list[jax.Array]] = dataclasses.field(default_factory=list)


def _restore(
    checkpoints: RunCheckpoints | None, model: nnx.Module, optimizer: nnx.Optimizer
) -> _Progress:
    """The progress of the latest checkpoint, whose model and optimiser state it restores in
    place; a fresh start without one."""
    meta = None if checkpoints is None else checkpoints.restore_latest(model, optimizer)
    if meta is None:
        return _Progress()
    grown = meta.get("grown", [])
    return _Progress(History(meta["history"]), meta["epoch"], meta["step"], meta["running"], grown)


def _epoch_metrics(
    running: dict[str, float], per_epoch: int, validation: dict[str, float]
) -> dict[str, float]:
    """An epoch's metrics: each running sum over its steps as a mean per step, ``train_``
    prefixed, then the ``validation`` metrics."""
    metrics = {f"train_{k}": v / per_epoch for k, v in running.items()}
    metrics.update(validation)
    return metrics


@dataclasses.dataclass
class _Run:
    """One call of ``fit`` under way: the model, its optimiser and compiled ``step``, where the
    run stands (``state``: what ``save`` checkpoints), its progress bar and the signal flag
    checked between steps. The bar is closed before the run stops with an error."""

    model: nnx.Module
    optimizer: nnx.Optimizer
    step: Callable
    checkpoints: RunCheckpoints | None
    schedule: Schedule
    state: _Progress
    bar: Any
    flag: _SignalFlag

    def save(self, epoch: int, step_in_epoch: int) -> None:
        """Checkpoint the model, the optimiser and ``state`` at (``epoch``, ``step_in_epoch``)."""
        if self.checkpoints is not None:
            meta = {
                "epoch": epoch,
                "step": step_in_epoch,
                "history": self.state.history.epochs,
                "running": self.state.running,
            }
            position = self.schedule.position(epoch, step_in_epoch, self.state.grown)
            self.checkpoints.save(position, self.model, self.optimizer, meta, self.state.grown)

    def stop_if_signalled(self, epoch: int, step_in_epoch: int) -> None:
        """After a signal, raise ``Interrupted`` at the position just saved."""
        if self.flag.signum is not None:
            self.bar.close()
            raise Interrupted(self.flag.signum, epoch, step_in_epoch)

    def enter_round(
        self, epoch: int, r: int, train: Batch, grow: Grow | None, grow_size: int | None
    ) -> RoundData:
        """Round ``r``'s training set; first its new samples, drawn and saved before any
        training on them, unless a resumed run already has them."""
        grown = self.state.grown
        if len(grown) < r:
            grown.append(grown_leaves(grow(self.model, r), train, r, grow_size))
            self.save(epoch, 0)
            self.stop_if_signalled(epoch, 0)
        return round_data(train, grown[:r], self.schedule.batch_size)

    def train_epoch(
        self, epoch: int, first: int, current: RoundData, roots: tuple[jax.Array, jax.Array]
    ) -> None:
        """Steps ``first`` to the last of epoch ``epoch``, their values added to the running
        sums (reset at step 0); after a signal, save after the step under way and stop."""
        shuffle_root, noise_root = roots
        # the epoch's order on the host: slicing it per step dispatches nothing
        order = np.asarray(
            jax.random.permutation(jax.random.fold_in(shuffle_root, epoch), current.n)
        )
        epoch_key = jax.random.fold_in(noise_root, epoch)
        if first == 0:
            self.state.running = {}
        pending: list[dict[str, jax.Array]] = []
        for s in range(first, current.per_epoch):
            idx = order[s * current.size : (s + 1) * current.size]
            key = jax.random.fold_in(epoch_key, s)
            loss, parts = self.step(self.model, self.optimizer, current.data, idx, key)
            # kept on the device until the epoch ends: reading a value each step would wait
            # for it, and the next step could not be dispatched while this one runs
            pending.append({"loss": loss, **parts})
            if self.flag.signum is not None:
                _accumulate(self.state.running, pending)
                self.save(epoch, s + 1)
                self.stop_if_signalled(epoch, s + 1)
        _accumulate(self.state.running, pending)

    def require_finite(self, epoch: int, metrics: dict[str, float]) -> None:
        """One clear error when training diverged: an epoch's metric is not finite."""
        if not all(jnp.isfinite(v) for v in metrics.values()):
            self.bar.close()
            raise ML4DError(
                f"training diverged at epoch {epoch}: {metrics}; lower the learning rate"
            )


def fit(
    model: nnx.Module,
    loss_fn: LossFn,
    train: Batch,
    config: OptimConfig,
    checkpoints: RunCheckpoints | None = None,
    evaluate: Callable[[nnx.Module], dict[str, float]] | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    regulariser: Callable[[nnx.Module], jax.Array] | None = None,
    progress: bool = True,
    description: str = "train",
    grow: Grow | None = None,
    rounds: int = 1,
    grow_size: int | None = None,
    clip: float | None = None,
) -> History:
    """Train ``model`` in place; return the metrics of every epoch.

    ``train`` maps names to arrays with a common leading sample axis; batches are gathered inside
    the compiled step. ``regulariser(model)`` (e.g. weight decay) is added to the loss.
    ``evaluate(model)`` gives extra metrics after each epoch; ``on_epoch`` receives all of them.

    ``rounds`` rounds of ``config.epochs`` epochs each: round 0 trains on ``train``; every round
    r >= 1 first appends ``grow(model, r)`` (new samples, same keys, trailing shapes and dtypes)
    and keeps it, then trains on everything so far. Epochs are numbered globally; with
    ``rounds > 1`` each history entry also has its ``round``. Checkpoints are taken every
    ``checkpoint_every`` (global) epochs, at the end of every round and right after ``grow``.
    A cosine schedule decays over the whole training, so it needs the number of steps in
    advance: give ``grow_size``, the samples every round adds (``grow`` must return exactly
    that many); otherwise rounds need ``schedule: constant``. ``clip``: the gradients' global
    norm is clipped to this before each update.
    """
    check_rounds(rounds, grow, config.schedule, grow_size)
    epochs, total = config.epochs, rounds * config.epochs
    schedule = Schedule(jax.tree.leaves(train)[0].shape[0], epochs, rounds, config.batch_size)
    optimizer = nnx.Optimizer(
        model, config.transform(schedule.planned_steps(grow_size), clip), wrt=nnx.Param
    )
    root = jax.random.key(config.seed)
    roots = jax.random.fold_in(root, 1), jax.random.fold_in(root, 2)  # shuffling, noise
    step = make_step(loss_fn, regulariser)
    state = _restore(checkpoints, model, optimizer)
    bar = tqdm(
        total=total,
        initial=state.epoch,
        desc=description,
        disable=not progress,
        unit="epoch",
        leave=False,
    )
    with _SignalFlag() as flag:
        run = _Run(model, optimizer, step, checkpoints, schedule, state, bar, flag)
        for epoch in range(state.epoch, total):
            r = epoch // epochs
            if epoch == state.epoch or epoch == r * epochs:  # entering (or resuming) round r
                current = run.enter_round(epoch, r, train, grow, grow_size)
            run.train_epoch(epoch, state.step if epoch == state.epoch else 0, current, roots)
            validation = evaluate(model) if evaluate is not None else {}
            metrics = _epoch_metrics(state.running, current.per_epoch, validation)
            run.require_finite(epoch, metrics)
            state.history.epochs.append(
                {"epoch": epoch, **({"round": r} if rounds > 1 else {}), **metrics}
            )
            if on_epoch is not None:
                on_epoch(epoch, metrics)
            bar.set_postfix(loss=f"{metrics['train_loss']:.3e}")
            bar.update(1)
            end_of_round = (epoch + 1) % epochs == 0
            if (epoch + 1) % config.checkpoint_every == 0 or end_of_round:
                run.save(epoch + 1, 0)
            kill_point("epoch")  # fault-injection tests: a kill after an epoch's checkpoint
            if end_of_round and epoch + 1 < total:
                run.stop_if_signalled(epoch + 1, 0)  # between rounds: before the next grow
    bar.close()
    return state.history
