"""Rolling a system forward with any closure: data generation, oracle checks and hybrids.

``closure_fn(u, t) -> y`` is either the system's exact closure or a trained network; the
step is always the system's own ``S``. Everything here acts on a single sample (``vmap`` for
batches) and is jit-compiled with the system and the closure as static arguments.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp

if TYPE_CHECKING:  # the systems import this module (their default reference data roll out)
    from ml4dynamics.systems.base import System

Closure = Callable[[jax.Array, jax.Array], jax.Array]
Params = dict[str, jax.Array]  # a trajectory's sample parameters (see systems.base)


def displacement(
    system: System, u: jax.Array, y: jax.Array, t: jax.Array, q: Params | None = None
) -> jax.Array:
    """The discrete vector field V(u) = (S(u, y) − u) / Δt of the hybrid (docs/design.md §1),
    with the trajectory's sample parameters ``q`` (if the system has any)."""
    return (system.bind(q).step(u, y, t) - u) / system.dt


@partial(jax.jit, static_argnames=("system", "closure_fn", "n_steps", "store_every", "noise"))
def rollout(
    system: System,
    closure_fn: Closure | None,
    u0: jax.Array,
    t0: jax.Array | float,
    n_steps: int,
    store_every: int = 1,
    q: Params | None = None,
    noise: tuple[float, int] | None = None,
) -> jax.Array:
    """Advance ``u0`` by ``n_steps`` steps of ``S(u, closure_fn(u, t))`` from time ``t0``.

    ``closure_fn=None`` is the system's exact closure; ``q`` the trajectory's sample parameters
    (traced, so one compilation serves every trajectory). ``noise = (σ, seed)`` adds independent
    N(0, σ²) noise to every element of the closure at every step (drawn from ``seed`` and the step
    number: the paper's ablation, an exact closure with a per-step error of a given size).

    Returns the states at ``t0 + j·store_every·Δt`` for ``j = 0 … n_steps // store_every``,
    shape ``(n_steps // store_every + 1, *state_shape)``; the first frame is ``u0`` itself.
    Step ``k`` starts at ``t0 + k·Δt`` (computed, not accumulated, so time is exact in float64).
    """
    if n_steps < 0 or store_every < 1 or n_steps % store_every:
        raise ValueError(
            f"n_steps={n_steps} must be >= 0 and a multiple of store_every={store_every} >= 1"
        )
    t0 = jnp.asarray(t0, dtype=jnp.float64)
    bound = system.bind(q)
    if closure_fn is None:
        closure_fn = bound.closure

    def advance(k: jax.Array, u: jax.Array) -> jax.Array:
        t = t0 + k * system.dt
        y = closure_fn(u, t)
        if noise is not None:
            sigma, seed = noise
            y = y + sigma * jax.random.normal(jax.random.fold_in(jax.random.key(seed), k), y.shape)
        return bound.step(u, y, t)

    def frame(u: jax.Array, j: jax.Array) -> tuple[jax.Array, jax.Array]:
        u = jax.lax.fori_loop(0, store_every, lambda i, v: advance(j * store_every + i, v), u)
        return u, u

    _, frames = jax.lax.scan(frame, u0, jnp.arange(n_steps // store_every))
    return jnp.concatenate([u0[None], frames])
