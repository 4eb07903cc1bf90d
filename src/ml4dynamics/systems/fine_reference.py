"""The reference runs of a coarse grid closed by a fine solver: the fine solver from a random
state, warmed up onto the attractor, every ``store_every``-th fine state restricted to the coarse
grid and labelled (``stored_fine_run``); the same run with the ablation's noise added to its
coarse modes (``noisy_fine_run``, ``coarse_kick``). Either acts on the fine states in the
representation the system keeps between fine steps (a field or its Fourier coefficients,
``FineRun``). ``mean_free``: a correction that cannot move a conserved mean.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp


def stored_fine_run(
    fine_step: Callable[[jax.Array], jax.Array],
    restrict: Callable[[jax.Array], jax.Array],
    label: Callable[[jax.Array, jax.Array | None], jax.Array],
    start: jax.Array,
    warmup_steps: int,
    steps: int,
    store_every: int,
) -> tuple[jax.Array, jax.Array]:
    """The fine solver from ``start``: ``warmup_steps`` unstored steps onto the attractor, then
    ``steps`` steps; every ``store_every``-th fine state restricted (``restrict``) and labelled
    (``label(state, its fine step)``). The first fine step of each stride is the one the
    correction label needs: passed to it, never taken twice; the last frame's label gets
    ``None`` and steps only if its kind needs it. ``fine_step`` may act in Fourier space, as
    long as ``restrict`` and ``label`` take the same representation."""
    v = jax.lax.fori_loop(0, warmup_steps, lambda _, w: fine_step(w), start)

    def stride(w: jax.Array, _: Any) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
        w_next = fine_step(w)
        frame = (restrict(w), label(w, w_next))
        return jax.lax.fori_loop(1, store_every, lambda _, x: fine_step(x), w_next), frame

    last, (states, labels) = jax.lax.scan(stride, v, None, length=steps // store_every)
    return (
        jnp.concatenate([states, restrict(last)[None]]),
        jnp.concatenate([labels, label(last, None)[None]]),
    )


def noisy_fine_run(
    fine_step: Callable[[jax.Array], jax.Array],
    restrict: Callable[[jax.Array], jax.Array],
    add_coarse: Callable[[jax.Array, jax.Array], jax.Array],
    start: jax.Array,
    warmup_steps: int,
    steps: int,
    store_every: int,
    kick: Callable[[jax.Array], jax.Array],
) -> jax.Array:
    """The states of ``stored_fine_run`` with a coarse field ``kick(k)`` added after step ``k``
    (counted from the first stored frame) to the fine state's coarse modes (``add_coarse``):
    the restricted states follow S_c(ū) + Δt y_exact + ``kick(k)`` while the fine solver keeps
    the sub-grid modes consistent — the exact closure with a per-step error, for a coarse grid
    whose exact closure needs the fine state. A zero kick gives the stored states."""
    v = jax.lax.fori_loop(0, warmup_steps, lambda _, w: fine_step(w), start)

    def stride(w: jax.Array, j: jax.Array) -> tuple[jax.Array, jax.Array]:
        def one(i: jax.Array, x: jax.Array) -> jax.Array:
            return add_coarse(fine_step(x), kick(j * store_every + i))

        return jax.lax.fori_loop(0, store_every, one, w), restrict(w)

    last, states = jax.lax.scan(stride, v, jnp.arange(steps // store_every))
    return jnp.concatenate([states, restrict(last)[None]])


def coarse_kick(
    noise: tuple[float, int], dt: float, shape: tuple[int, ...]
) -> Callable[[jax.Array], jax.Array]:
    """k ↦ Δt · mean_free(σ ξ_k), ξ_k ~ N(0, 1) of ``shape`` drawn from ``seed`` and k as
    ``rollout`` draws the ablation's noise: what a correction closure's noise adds to the coarse
    state at step k (``noise = (σ, seed)``)."""
    sigma, seed = noise

    def kick(k: jax.Array) -> jax.Array:
        xi = jax.random.normal(jax.random.fold_in(jax.random.key(seed), k), shape)
        return dt * mean_free(sigma * xi)

    return kick


def mean_free(y: jax.Array) -> jax.Array:
    """``y`` (``(field, *grid)``) less its spatial mean per field: a correction that cannot
    change a conserved mean (the exact one of a mean-conserving pair of solvers is mean-free)."""
    axes = tuple(range(1, y.ndim))
    return y - jnp.mean(y, axis=axes, keepdims=True)


@dataclasses.dataclass(frozen=True)
class FineRun:
    """A reference run's fine solver, in the representation its fine states keep between steps
    (a field or its Fourier coefficients): the arguments of ``stored_fine_run`` and
    ``noisy_fine_run``, and ``start(key)``, a random fine state."""

    step: Callable[[jax.Array], jax.Array]
    restrict: Callable[[jax.Array], jax.Array]
    label: Callable[[jax.Array, jax.Array | None], jax.Array]
    add_coarse: Callable[[jax.Array, jax.Array], jax.Array]
    start: Callable[[jax.Array], jax.Array]
