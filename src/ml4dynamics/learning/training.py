"""A minibatch training loop with deterministic resume from Orbax checkpoints.

Determinism: the batch order of epoch e is a permutation drawn from (seed, e) and the noise key
of step s from (seed, e, s), so a run resumed at (e, s) replays exactly what an uninterrupted run
does and ends with bit-identical parameters. SIGINT and SIGTERM stop the run after the current
step (or between two rounds), save a checkpoint at that position and raise ``Interrupted``.

Rounds (DAgger): the training set may grow between rounds of ``epochs`` epochs each; epochs are
counted globally across rounds, and the samples added so far are saved with every checkpoint, so a
resumed run never asks for a round's samples twice.
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
from ml4dynamics.models.checkpoints import RunCheckpoints

Batch = dict[str, jax.Array]
#: ``grow(model, r)``: the samples added to the training set before round r >= 1
Grow = Callable[[nnx.Module, int], Batch]
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

    def transform(self, total_steps: int = 1) -> optax.GradientTransformation:
        """The optimiser; ``total_steps`` (all epochs) sets the length of a cosine decay."""
        lr = (
            optax.cosine_decay_schedule(self.lr, max(total_steps, 1))
            if self.schedule == "cosine"
            else self.lr
        )
        return optax.adam(lr) if self.optimizer == "adam" else optax.sgd(lr)


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


def _batches(n: int, batch_size: int) -> int:
    return 1 if batch_size in (0, n) or batch_size > n else n // batch_size


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


def _grown_leaves(new: Batch, train: Batch, r: int, size: int | None = None) -> list[jax.Array]:
    """The arrays of ``grow``'s batch for round ``r``, checked against the training set."""
    where = f"grow(model, {r})"
    if jax.tree.structure(new) != jax.tree.structure(train):
        raise ML4DError(
            f"{where} returned {jax.tree.structure(new)}; it must have the keys of the training "
            f"set, {jax.tree.structure(train)}"
        )
    leaves = [jnp.asarray(a) for a in jax.tree.leaves(new)]
    for a, b in zip(jax.tree.leaves(train), leaves, strict=True):
        if a.shape[1:] != b.shape[1:] or a.dtype != b.dtype:
            raise ML4DError(
                f"{where} returned an array of shape {b.shape} ({b.dtype}) for one of shape "
                f"(N, {', '.join(map(str, a.shape[1:]))}) ({a.dtype}); return samples like the "
                "training set's"
            )
    if len({b.shape[0] for b in leaves}) > 1:
        raise ML4DError(f"{where} returned arrays with different numbers of samples")
    if size is not None and leaves[0].shape[0] != size:
        raise ML4DError(
            f"{where} returned {leaves[0].shape[0]} samples, but the schedule was laid out for "
            f"grow_size={size}; return exactly that many"
        )
    return leaves


def _accumulate(running: dict[str, float], pending: list[dict[str, jax.Array]]) -> None:
    """Add the steps' values in ``pending`` to ``running`` in order (as Python floats, so the
    sum is the same as adding each as it came) and empty ``pending``."""
    for parts in pending:
        for name, value in parts.items():
            running[name] = running.get(name, 0.0) + float(value)
    pending.clear()


def _concatenate(train: Batch, grown: list[list[jax.Array]]) -> Batch:
    """The training set of the round after ``grown``: ``train`` with every grown batch appended."""
    if not grown:
        return train
    leaves = jax.tree.leaves(train)
    joined = [jnp.concatenate([a, *(g[i] for g in grown)]) for i, a in enumerate(leaves)]
    return jax.tree.unflatten(jax.tree.structure(train), joined)


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
    that many); otherwise rounds need ``schedule: constant``.
    """
    if rounds < 1:
        raise ML4DError(f"rounds must be >= 1, got {rounds}")
    if rounds > 1 and grow is None:
        raise ML4DError(f"rounds={rounds} needs a grow function: round r >= 1 adds grow(model, r)")
    if rounds > 1 and config.schedule != "constant" and grow_size is None:
        raise ML4DError(
            f"schedule {config.schedule!r} decays over a known number of steps, but rounds grow "
            "the data (more steps per epoch each round): use schedule: constant with rounds, "
            "or a grow of a fixed size (grow_size)"
        )
    epochs, total = config.epochs, rounds * config.epochs
    n0 = jax.tree.leaves(train)[0].shape[0]
    added = grow_size or 0
    steps = sum(epochs * _batches(n0 + r * added, config.batch_size) for r in range(rounds))
    optimizer = nnx.Optimizer(model, config.transform(steps), wrt=nnx.Param)
    root = jax.random.key(config.seed)
    shuffle_root, noise_root = jax.random.fold_in(root, 1), jax.random.fold_in(root, 2)

    step = make_step(loss_fn, regulariser)
    history, start_epoch, start_step, running = History(), 0, 0, {}
    grown: list[list[jax.Array]] = []  # the arrays each round r >= 1 added, in order
    if checkpoints is not None:
        meta = checkpoints.restore_latest(model, optimizer)
        if meta is not None:
            history.epochs = meta["history"]
            start_epoch, start_step, running = meta["epoch"], meta["step"], meta["running"]
            grown = meta.get("grown", [])

    def per_epoch_of(r: int) -> int:
        return _batches(n0 + sum(g[0].shape[0] for g in grown[:r]), config.batch_size)

    def position(epoch: int, step_in_epoch: int) -> int:
        """The checkpoint's number: optimisation steps so far plus rounds grown (increasing,
        and ``epoch * per_epoch + step`` for a single round)."""
        r = min(epoch // epochs, rounds)
        done = sum(epochs * per_epoch_of(i) for i in range(r))
        if epoch > r * epochs or step_in_epoch:
            done += (epoch - r * epochs) * per_epoch_of(r) + step_in_epoch
        return done + len(grown)

    def save(epoch: int, step_in_epoch: int) -> None:
        if checkpoints is not None:
            meta = {
                "epoch": epoch,
                "step": step_in_epoch,
                "history": history.epochs,
                "running": running,
            }
            checkpoints.save(position(epoch, step_in_epoch), model, optimizer, meta, grown)

    bar = tqdm(
        total=total,
        initial=start_epoch,
        desc=description,
        disable=not progress,
        unit="epoch",
        leave=False,
    )
    data, n, per_epoch, size = train, n0, 0, 0  # of the current round, set on entering it
    with _SignalFlag() as flag:
        for epoch in range(start_epoch, total):
            r = epoch // epochs
            if epoch == start_epoch or epoch == r * epochs:  # entering (or resuming) round r
                if len(grown) < r:
                    grown.append(_grown_leaves(grow(model, r), train, r, grow_size))
                    save(epoch, 0)  # the new samples are kept before any training on them
                    if flag.signum is not None:
                        bar.close()
                        raise Interrupted(flag.signum, epoch, 0)
                data = _concatenate(train, grown[:r])
                n = jax.tree.leaves(data)[0].shape[0]
                per_epoch = _batches(n, config.batch_size)
                size = n if per_epoch == 1 else config.batch_size
            # the epoch's order on the host: slicing it per step dispatches nothing
            order = np.asarray(jax.random.permutation(jax.random.fold_in(shuffle_root, epoch), n))
            epoch_key = jax.random.fold_in(noise_root, epoch)
            first = start_step if epoch == start_epoch else 0
            if first == 0:
                running = {}
            pending: list[dict[str, jax.Array]] = []
            for s in range(first, per_epoch):
                idx = order[s * size : (s + 1) * size]
                loss, parts = step(model, optimizer, data, idx, jax.random.fold_in(epoch_key, s))
                # kept on the device until the epoch ends: reading a value each step would wait
                # for it, and the next step could not be dispatched while this one runs
                pending.append({"loss": loss, **parts})
                if flag.signum is not None:
                    _accumulate(running, pending)
                    save(epoch, s + 1)
                    bar.close()
                    raise Interrupted(flag.signum, epoch, s + 1)
            _accumulate(running, pending)
            metrics = {f"train_{k}": v / per_epoch for k, v in running.items()}
            if evaluate is not None:
                metrics.update(evaluate(model))
            if not all(jnp.isfinite(v) for v in metrics.values()):
                bar.close()
                raise ML4DError(
                    f"training diverged at epoch {epoch}: {metrics}; lower the learning rate"
                )
            history.epochs.append(
                {"epoch": epoch, **({"round": r} if rounds > 1 else {}), **metrics}
            )
            if on_epoch is not None:
                on_epoch(epoch, metrics)
            bar.set_postfix(loss=f"{metrics['train_loss']:.3e}")
            bar.update(1)
            end_of_round = (epoch + 1) % epochs == 0
            if (epoch + 1) % config.checkpoint_every == 0 or end_of_round:
                save(epoch + 1, 0)
            kill_point("epoch")  # fault-injection tests: a kill after an epoch's checkpoint
            if end_of_round and epoch + 1 < total and flag.signum is not None:
                bar.close()  # stopped between rounds: the next round's samples are not drawn
                raise Interrupted(flag.signum, epoch + 1, 0)
    bar.close()
    return history
