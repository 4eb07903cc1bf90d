"""Unrolled (solver-in-the-loop) estimators: the closure trained through k steps of its hybrid.

A sample is a window of k + 1 consecutive stored frames u_0 … u_k of a trajectory
(``datasets.pairs.as_windows``), frame j + 1 being ``steps`` solver steps after frame j. From
u_0 the hybrid û_{i+1} = S(û_i, φ_θ(û_i)) runs k·steps steps; the loss is the mean over the
window's frames and the batch of

    ‖û_j − u_j‖² / Δt_f²,   Δt_f = steps · Δt  (the frames' spacing)

the state error in units of the vector field: at k = 1 it is ‖V_θ(u) − V(u)‖² over one frame,
field-OLS's misfit, which for a ``correction`` closure (S(u, y) = S_c(u) + Δt·y) is OLS's
‖y − φ_θ(u)‖². Longer windows put the closure's own states, and the compounding of its errors,
into the loss. Three kinds:

- ``unrolled`` with ``solver_gradient: true``: backpropagated through every solver step of the
  window (``lax.scan``, each step rematerialised by ``jax.checkpoint``, so memory grows with k
  by one state per step, not by the step's intermediates).
- ``unrolled`` with ``solver_gradient: false`` (params.yaml's ``unrolled-nog``): each step's
  input is the hybrid's own state with ``stop_gradient``: the closure sees its own states, but
  no gradient reaches earlier steps (the cheaper variant, after the pushforward trick).
- ``unrolled-tr``: ``unrolled`` plus λ times the tangent-space penalty of the hybrid field
  V_θ(û_i) = (S(û_i, φ_θ(û_i)) − û_i)/Δt at every state of the window (data frame u_0
  included), in either normal form (``tangent_space``): the gradient form's normal is computed
  at each hybrid state (û_i is no data state, so it cannot be precomputed). λ and ε from
  ``reg.<system>``, as TR's; at λ = 0 it is ``unrolled``.

Training walks the curriculum ``train.<system>.unroll`` (``closure_training.train_closure``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import ClassVar, Literal

import jax
import jax.numpy as jnp
from flax import nnx

from ml4dynamics.learning.estimators.base import (
    Batch,
    BatchClosure,
    Estimator,
    Reconstruct,
    data_misfit,
    projector_penalty,
)
from ml4dynamics.learning.estimators.tangent_space import (
    TangentConfig,
    TangentSpace,
    gradient_penalty,
    unit_normal,
)

#: a penalty of one batch of states and their hybrid fields: (B, *state) × (B, *state) → scalar
StatePenalty = Callable[[jax.Array, jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class UnrolledConfig:
    kind: Literal["unrolled"]
    solver_gradient: bool  # false: stop_gradient on every step's input (unrolled-nog)


@dataclasses.dataclass(frozen=True)
class UnrolledTangentConfig(TangentConfig):
    """TR's keys (``normal``; ``lam`` and ``eps`` from ``reg.<system>``), under its own kind."""

    kind: Literal["unrolled-tr"]


def pure(closure: BatchClosure) -> BatchClosure:
    """``closure`` as a function of u alone: an ``nnx.Module`` split into its graph and state,
    so that it can be called inside ``jax.checkpoint`` and ``lax.scan`` bodies."""
    if isinstance(closure, nnx.Module):
        graphdef, state = nnx.split(closure)
        return lambda u: nnx.merge(graphdef, state)(u)
    return closure


def hybrid_window(
    system,
    closure: BatchClosure,
    batch: Batch,
    steps: int,
    solver_gradient: bool = True,
    penalty: StatePenalty | None = None,
    remat: bool = True,
) -> tuple[jax.Array, jax.Array]:
    """The hybrid's frames û_1 … û_k from each window's first frame: ``(B, k, *state)``; and the
    mean of ``penalty(û, V_θ(û))`` over the window's solver steps (0 without one). ``remat``:
    recompute each step's intermediates in the backward pass instead of storing them (False
    only to measure what that saves, ``tests/test_unrolled.py``)."""
    u0, t0, q = batch["u"][:, 0], batch["t"][:, 0], batch.get("q", {})
    k = batch["u"].shape[1] - 1
    apply = pure(closure)
    step = jax.vmap(lambda u, y, t, qi: system.bind(qi).step(u, y, t))

    def solver_step(u: jax.Array, i: jax.Array) -> tuple[jax.Array, jax.Array]:
        if not solver_gradient:
            u = jax.lax.stop_gradient(u)
        nxt = step(u, apply(u).astype(u.dtype), t0 + i * system.dt, q)
        p = penalty(u, (nxt - u) / system.dt) if penalty is not None else jnp.zeros(())
        return nxt, p

    if remat:  # the backward pass stores one state per step, not the step's intermediates
        solver_step = jax.checkpoint(solver_step)

    def frame(u: jax.Array, j: jax.Array):
        def one(carry, i):
            v, total = carry
            v, p = solver_step(v, j * steps + i)
            return (v, total + p), None

        (u, total), _ = jax.lax.scan(one, (u, jnp.zeros(())), jnp.arange(steps))
        return u, (u, total)

    _, (frames, totals) = jax.lax.scan(frame, u0, jnp.arange(k))
    return jnp.moveaxis(frames, 0, 1), jnp.sum(totals) / (k * steps)


def frame_errors(system, closure: BatchClosure, batch: Batch, steps: int) -> jax.Array:
    """Mean over the batch of ‖û_j − u_j‖² / Δt_f² for each frame j = 1 … k of the windows:
    ``(k,)``, how the unrolled error grows along a window."""
    frames, _ = hybrid_window(system, closure, batch, steps)
    err = frames - batch["u"][:, 1:]
    per = jnp.sum(err**2, axis=tuple(range(2, err.ndim))) / (steps * system.dt) ** 2
    return jnp.mean(per, axis=0)


def first_frames(batch: Batch) -> Batch:
    """Each window's first frame as a pair (``u``, ``y``, ``t``, ``q``): what the one-step
    metrics (misfit, penalty, floor) read."""
    return {
        "u": batch["u"][:, 0],
        "y": batch["y"][:, 0],
        "t": batch["t"][:, 0],
        "q": batch.get("q", {}),
    }


class Unrolled(Estimator):
    """``unrolled`` / ``unrolled-nog``: the window's state misfit, through the solver or not."""

    kind: ClassVar[str] = "unrolled"
    config_class: ClassVar[type] = UnrolledConfig
    unrolled: ClassVar[bool] = True

    @property
    def label(self) -> str:
        return "unrolled" if self.config.solver_gradient else "unrolled-nog"

    @property
    def through_solver(self) -> bool:
        return self.config.solver_gradient

    def state_penalty(self, reconstruct: Reconstruct | None) -> StatePenalty | None:
        """The penalty added at every state of the window (none here)."""
        return None

    @property
    def weight(self) -> float:
        return 0.0

    def window_loss(
        self, system, closure, batch: Batch, key, reconstruct, steps: int
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """The loss on a batch of windows whose frames are ``steps`` solver steps apart, and its
        parts: ``state_misfit`` (the window's mean), ``last_frame`` (its final frame's),
        ``misfit`` (the one-step closure misfit on the first frames, for comparison with every
        other estimator) and, with a penalty, ``window_tr_penalty``."""
        frames, pen = hybrid_window(
            system, closure, batch, steps, self.through_solver, self.state_penalty(reconstruct)
        )
        err = frames - batch["u"][:, 1:]
        per = jnp.sum(err**2, axis=tuple(range(2, err.ndim))) / (steps * system.dt) ** 2
        state = jnp.mean(per)
        first = first_frames(batch)
        parts = {
            "state_misfit": state,
            "last_frame": jnp.mean(per[:, -1]),
            "misfit": data_misfit(closure, first["u"], first["y"]),
        }
        if self.state_penalty(reconstruct) is not None:
            parts["window_tr_penalty"] = pen
        return state + self.weight * pen, parts

    def loss(self, system, closure, batch, key, reconstruct):
        """``window_loss`` on windows whose frames are one solver step apart (training passes
        the dataset's own spacing, ``datasets.pairs.steps_per_frame``)."""
        return self.window_loss(system, closure, batch, key, reconstruct, 1)

    def window_validation(
        self, system, closure, batch: Batch, reconstruct, steps: int
    ) -> dict[str, jax.Array]:
        """Every estimator's one-step validation metrics on the windows' first frames, plus
        ``val_state_misfit`` (the window loss, without the penalty) and, as ``val_loss``, the
        objective: it is what training lowers."""
        out = Estimator.validation(self, system, closure, first_frames(batch), reconstruct)
        loss, parts = self.window_loss(system, closure, batch, None, reconstruct, steps)
        out["val_state_misfit"] = parts["state_misfit"]
        out["val_last_frame"] = parts["last_frame"]
        out["val_loss"] = loss
        return out


class UnrolledTangent(Unrolled):
    """``unrolled-tr``: the window's state misfit plus λ times the tangent penalty at every
    state of the window. The preparation, the floor and the reported one-step penalty are TR's
    (``tangent_space.TangentSpace`` of the same normal, λ and ε)."""

    kind: ClassVar[str] = "unrolled-tr"
    config_class: ClassVar[type] = UnrolledTangentConfig
    shared_section: ClassVar[str | None] = "reg"
    shared_keys: ClassVar[tuple[str, ...]] = ("lam", "eps")
    needs_manifold: ClassVar[bool] = True

    def __init__(self, config: UnrolledTangentConfig):
        super().__init__(config)
        self.tangent = TangentSpace(TangentConfig("tr", config.normal, config.lam, config.eps))

    @property
    def label(self) -> str:
        return f"unrolled-tr-{self.config.normal}"

    @property
    def through_solver(self) -> bool:
        return True

    @property
    def weight(self) -> float:
        return self.config.lam

    def state_penalty(self, reconstruct):
        if reconstruct is None:
            raise ValueError("the unrolled-tr estimator needs the autoencoder's reconstruction")
        eps = self.config.eps
        if self.config.normal == "projector":

            def one(u: jax.Array, v: jax.Array) -> jax.Array:
                return projector_penalty(reconstruct, u, v)

        else:

            def one(u: jax.Array, v: jax.Array) -> jax.Array:
                return gradient_penalty(unit_normal(reconstruct, u, eps), v)

        return lambda u, v: jnp.mean(jax.vmap(one)(u, v))

    def prepare(self, data, reconstruct):
        """TR's preparation of pairs (the gradient form's normals at the data states)."""
        return self.tangent.prepare(data, reconstruct)

    def penalty(self, system, closure, batch, reconstruct):
        return self.tangent.penalty(system, closure, batch, reconstruct)
