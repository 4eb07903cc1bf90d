"""Hybrid rollouts: a closure inside its system's own solver, from stored initial frames.

What learning (DAgger rolls its closure out to find the states it visits) and evaluation (the
a-posteriori scores) both run. ``closure_fn(u, t) -> y`` acts on a single sample; trajectories of
one parameter combination are ``vmap``-ped together, in float64, with the system's own step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from ml4dynamics.datasets.pairs import system_groups
from ml4dynamics.systems.rollout import rollout


def network_closure(model) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """A trained closure network as the rollout's ``closure_fn(u, t)`` (single sample)."""
    from flax import nnx

    graphdef, state = nnx.split(model)
    return lambda u, t: nnx.merge(graphdef, state)(u[None])[0]


def frame_stride(ds: xr.Dataset, dt: float) -> int:
    """Solver steps between two stored frames of ``ds``."""
    spacing = float(ds.time.values[1] - ds.time.values[0])
    return round(spacing / dt)


def zero_closure(system) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """The closure ``y = 0``: for a coarse grid closed by a fine solver, the coarse solver alone."""
    return lambda u, t: jnp.zeros(system.closure_shape, dtype=u.dtype)


def hybrid_rollouts(
    ds: xr.Dataset,
    closure_fn,
    noise: tuple[float, int] | None = None,
    closure_of: Callable[[Any], Callable[[jax.Array, jax.Array], jax.Array]] | None = None,
) -> np.ndarray:
    """Roll out ``closure_fn`` (None: the exact closure; ``noise`` added at every step, see
    ``rollout``; ``closure_of(system)``, when given, builds it per group of trajectories instead)
    from the first frame of every trajectory of ``ds`` over its whole horizon, with the system of
    each trajectory; frames at the stored times, like ``ds.u``."""
    out = np.empty_like(ds.u.values)
    n_frames = ds.sizes["time"]
    for system, idx, q in system_groups(ds):
        if closure_of is not None:
            closure_fn = closure_of(system)
        stride = frame_stride(ds, system.dt)
        u0 = jnp.asarray(ds.u.values[idx, 0])
        t0 = jnp.full((len(idx),), float(ds.time.values[0]))
        n_steps = (n_frames - 1) * stride

        def run(u, t, qi, system=system, n_steps=n_steps, stride=stride, closure_fn=closure_fn):
            return rollout(system, closure_fn, u, t, n_steps, stride, q=qi, noise=noise)

        q = {name: jnp.asarray(v) for name, v in q.items()}
        out[idx] = np.asarray(jax.vmap(run)(u0, t0, q))
    return out


def blown_up(pred: np.ndarray, truth: np.ndarray, bound: float) -> np.ndarray:
    """(sample, time) mask of frames that are non-finite or beyond ``bound`` × the truth's max."""
    axes = tuple(range(2, pred.ndim))
    with np.errstate(invalid="ignore", over="ignore"):
        finite = np.isfinite(pred).all(axis=axes)
        peak = np.abs(np.where(np.isfinite(pred), pred, 0.0)).max(axis=axes)
        limit = bound * np.abs(truth).max(axis=(1, *axes))[:, None]
        bad = ~finite | (peak > limit)
    return np.logical_or.accumulate(bad, axis=1)  # once blown up, always blown up
