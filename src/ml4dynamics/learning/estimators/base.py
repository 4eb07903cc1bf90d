"""The estimator protocol and the quantities every estimator shares (docs/design.md §1).

An estimator kind is one class: its frozen config (``kind`` and only the keys it uses), its loss
per batch, and any preparation of the training data it needs. Per sample, averaged over the batch
(``‖·‖²`` sums over every element of a sample). Subclasses live in the modules of this package and
are found by discovery (``ml4dynamics.learning.estimators.ESTIMATORS``): a new kind is one new
module.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from ml4dynamics.systems.rollout import displacement

Reconstruct = Callable[[jax.Array], jax.Array]  # u ↦ D(E(u)), single sample
BatchClosure = Callable[[jax.Array], jax.Array]  # (B, *state) ↦ (B, *closure)
Batch = Mapping[str, Any]  # u (B, *state), y (B, *closure), t (B,), q {name: (B,)}, ...


def squared_norm(x: jax.Array) -> jax.Array:
    return jnp.sum(x**2)


def data_misfit(closure: BatchClosure, u: jax.Array, y: jax.Array) -> jax.Array:
    """Mean over the batch of ‖y − φ_θ(u)‖²."""
    return jnp.mean(jax.vmap(squared_norm)(y - closure(u)))


#: samples per call of the network in validation: XLA's CPU convolutions over hundreds of states
#: at once run ~3× slower per state than over batches of this size (a U-Net on rd's 602
#: validation states: 0.84 s at once, 0.28 s in chunks of 32 or 8)
VALIDATION_CHUNK = 32


def in_chunks(closure: BatchClosure, u: jax.Array, size: int) -> jax.Array:
    """``closure(u)`` computed ``size`` samples at a time (the last call takes the remainder):
    the same values as one call, in less time and memory for large batches."""
    if size < 1:
        raise ValueError(f"chunk size must be >= 1, got {size}")
    if u.shape[0] <= size:
        return closure(u)
    whole = (u.shape[0] // size) * size
    head = jax.lax.map(closure, u[:whole].reshape(whole // size, size, *u.shape[1:]))
    parts = [head.reshape(whole, *head.shape[2:])]
    if whole < u.shape[0]:
        parts.append(closure(u[whole:]))
    return jnp.concatenate(parts)


def evaluated_once(closure: BatchClosure, u: jax.Array, chunk: int | None = None) -> BatchClosure:
    """``closure`` evaluated on the batch ``u`` once, as a closure that returns that output for
    ``u``: a loss with two terms of φ_θ(u) (a misfit and a penalty) runs the network forward and
    backward once instead of twice (XLA does not merge the two). Only for the batch ``u``.
    ``chunk``: evaluate it that many samples at a time (``in_chunks``). A closure already
    evaluated on ``u`` is returned as it is."""
    if getattr(closure, "evaluated_on", None) is u:
        return closure
    out = closure(u) if chunk is None else in_chunks(closure, u, chunk)

    def same(v: jax.Array) -> jax.Array:
        if v is not u:
            raise ValueError("a closure evaluated once answers only for the batch it was given")
        return out

    same.evaluated_on = u
    return same


def reconstruction_error(reconstruct: Reconstruct, u: jax.Array) -> jax.Array:
    """F(u) = ‖u − D(E(u))‖², ≈ 0 on the data manifold."""
    return squared_norm(u - reconstruct(u))


def hybrid_field(system, closure: BatchClosure, batch: Batch) -> jax.Array:
    """V_θ(u) = (S(u, φ_θ(u)) − u)/Δt per sample, with the system's own step and each sample's
    sample parameters (a Reynolds sweep, a random inflow)."""
    u, t, q = batch["u"], batch["t"], batch.get("q", {})
    return jax.vmap(lambda ui, yi, ti, qi: displacement(system, ui, yi, ti, qi))(
        u, closure(u), t, q
    )


def projector_penalty(reconstruct: Reconstruct, u: jax.Array, v: jax.Array) -> jax.Array:
    """‖(I − J_{D∘E}(u)) V‖² for one sample: one JVP of the autoencoder."""
    _, jv = jax.jvp(reconstruct, (u,), (v,))
    return squared_norm(v - jv)


def mean_projector_penalty(
    system, closure: BatchClosure, batch: Batch, reconstruct: Reconstruct
) -> jax.Array:
    """Mean over the batch of the projector-form tangent penalty of the hybrid field."""
    v = hybrid_field(system, closure, batch)
    return jnp.mean(jax.vmap(lambda ui, vi: projector_penalty(reconstruct, ui, vi))(batch["u"], v))


class Estimator(abc.ABC):
    """One estimator kind. ``config_class`` is a frozen dataclass with ``kind`` and exactly the
    keys the estimator uses; keys listed in ``shared_keys`` come from the params.yaml section
    ``shared_section`` instead of the estimator's own entry (so that e.g.
    ``dvc exp run -S reg.rd.lam=...`` reruns the rd TR models only; ``reg.lam`` multiplies every
    system's ``lam``)."""

    kind: ClassVar[str]
    config_class: ClassVar[type]
    shared_section: ClassVar[str | None] = None
    shared_keys: ClassVar[tuple[str, ...]] = ()
    #: whether training needs the frozen autoencoder (the tangent-space estimators)
    needs_manifold: ClassVar[bool] = False
    #: whether it trains on windows of consecutive frames (``datasets.pairs.as_windows``) along
    #: a curriculum of window lengths (``train.<system>.unroll``) instead of on pairs
    unrolled: ClassVar[bool] = False

    def __init__(self, config: Any):
        self.config = config

    @property
    def rounds(self) -> int:
        """Rounds of training; more than one grows the training set between rounds with the
        hybrid's own states (``dagger``, ``ml4dynamics.learning.aggregation``)."""
        return 1

    @property
    def label(self) -> str:
        """Short name for runs and tables (``ols``, ``tr-projector``, ...)."""
        return self.kind

    def prepare(self, data: Batch, reconstruct: Reconstruct | None) -> Batch:
        """The training (or validation) set with whatever the loss needs precomputed."""
        return data

    @abc.abstractmethod
    def loss(
        self,
        system,
        closure: BatchClosure,
        batch: Batch,
        key: jax.Array,
        reconstruct: Reconstruct | None,
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """The loss on a batch and its named parts (``misfit`` at least)."""

    def regulariser(self) -> Callable[[Any], jax.Array] | None:
        """A term of the parameters added to the loss (weight decay), or None."""
        return None

    def penalty(
        self, system, closure: BatchClosure, batch: Batch, reconstruct: Reconstruct
    ) -> jax.Array:
        """The tangent-space penalty reported for every estimator, so that runs compare on one
        scale: the projector form unless the estimator trains with another."""
        return mean_projector_penalty(system, closure, batch, reconstruct)

    def floor(self, system, batch: Batch, reconstruct: Reconstruct) -> jax.Array:
        """The penalty of the exact closure (the labels ``y``) on ``batch``: the manifold model's
        own error, below which no closure's penalty carries a tangency signal
        (docs/design.md §1)."""
        return self.penalty(system, lambda _u: batch["y"], batch, reconstruct)

    def validation(
        self, system, closure: BatchClosure, batch: Batch, reconstruct: Reconstruct | None
    ) -> dict[str, jax.Array]:
        """``val_misfit``, ``val_tr_penalty`` (with an autoencoder) and ``val_loss``: the
        estimator's objective on held-out data, without its randomness or weight decay."""
        closure = evaluated_once(closure, batch["u"], chunk=VALIDATION_CHUNK)
        out = {"val_misfit": data_misfit(closure, batch["u"], batch["y"])}
        if reconstruct is not None:
            out["val_tr_penalty"] = self.penalty(system, closure, batch, reconstruct)
        out["val_loss"] = out["val_misfit"]
        return out
