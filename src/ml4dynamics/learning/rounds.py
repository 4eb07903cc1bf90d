"""The training set of ``training.fit`` across rounds (DAgger): what a round adds, the set each
round trains on, and how many optimisation steps the rounds take.

Round 0 trains on the data; every round r >= 1 first appends ``grow(model, r)``. A run's
position (what numbers its checkpoints) counts the optimisation steps so far plus the rounds
grown, so that it increases through every save, the saves right after ``grow`` included.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from ml4dynamics.core.errors import ML4DError

Batch = dict[str, jax.Array]
#: ``grow(model, r)``: the samples added to the training set before round r >= 1
Grow = Callable[[nnx.Module, int], Batch]
#: the arrays (leaves of a ``Batch``) each round r >= 1 added, in order
Grown = Sequence[Sequence[jax.Array]]


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Optimisation steps in an epoch of ``n`` samples (``batch_size`` 0: full batch; a
    remainder smaller than a batch is left out of the epoch)."""
    return 1 if batch_size in (0, n) or batch_size > n else n // batch_size


@dataclasses.dataclass(frozen=True)
class Schedule:
    """``rounds`` rounds of ``epochs`` epochs each, on ``n0`` samples plus, from round r on,
    those the rounds before it added; steps of ``batch_size`` samples (0: full batch)."""

    n0: int
    epochs: int
    rounds: int
    batch_size: int

    def planned_steps(self, grow_size: int | None) -> int:
        """Every optimisation step of the training (the length of a cosine decay) when each
        round adds ``grow_size`` samples (``None``: none)."""
        added = grow_size or 0
        return sum(
            self.epochs * steps_per_epoch(self.n0 + r * added, self.batch_size)
            for r in range(self.rounds)
        )

    def per_epoch(self, r: int, grown: Grown) -> int:
        """Steps per epoch of round ``r``, whose set is the data plus ``grown[:r]``."""
        return steps_per_epoch(self.n0 + sum(g[0].shape[0] for g in grown[:r]), self.batch_size)

    def position(self, epoch: int, step_in_epoch: int, grown: Grown) -> int:
        """A checkpoint's number: optimisation steps so far plus rounds grown (increasing,
        and ``epoch * per_epoch + step`` for a single round)."""
        r = min(epoch // self.epochs, self.rounds)
        done = sum(self.epochs * self.per_epoch(i, grown) for i in range(r))
        if epoch > r * self.epochs or step_in_epoch:
            done += (epoch - r * self.epochs) * self.per_epoch(r, grown) + step_in_epoch
        return done + len(grown)


def check_rounds(rounds: int, grow: Grow | None, schedule: str, grow_size: int | None) -> None:
    """One clear error for rounds ``fit`` cannot run: fewer than one, several without ``grow``,
    or several of unknown size under a learning-rate ``schedule`` that needs the total steps."""
    if rounds < 1:
        raise ML4DError(f"rounds must be >= 1, got {rounds}")
    if rounds > 1 and grow is None:
        raise ML4DError(f"rounds={rounds} needs a grow function: round r >= 1 adds grow(model, r)")
    if rounds > 1 and schedule != "constant" and grow_size is None:
        raise ML4DError(
            f"schedule {schedule!r} decays over a known number of steps, but rounds grow "
            "the data (more steps per epoch each round): use schedule: constant with rounds, "
            "or a grow of a fixed size (grow_size)"
        )


def grown_leaves(new: Batch, train: Batch, r: int, size: int | None = None) -> list[jax.Array]:
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


@dataclasses.dataclass(frozen=True)
class RoundData:
    """The training set of a round, its ``n`` samples, its steps per epoch and the samples of
    one step (all ``n`` for a single step)."""

    data: Batch
    n: int
    per_epoch: int
    size: int


def round_data(train: Batch, grown: Grown, batch_size: int) -> RoundData:
    """The set of the round after ``grown``: ``train`` with every grown batch appended."""
    data = train
    if grown:
        leaves = jax.tree.leaves(train)
        joined = [jnp.concatenate([a, *(g[i] for g in grown)]) for i, a in enumerate(leaves)]
        data = jax.tree.unflatten(jax.tree.structure(train), joined)
    n = jax.tree.leaves(data)[0].shape[0]
    per_epoch = steps_per_epoch(n, batch_size)
    return RoundData(data, n, per_epoch, n if per_epoch == 1 else batch_size)
