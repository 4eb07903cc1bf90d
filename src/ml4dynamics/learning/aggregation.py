"""Data aggregation (DAgger, Ross et al. 2011) for closures: the hybrid's own states, labelled.

A closure trained on the true trajectories only is evaluated on the states its hybrid visits,
which drift off the training distribution (the distribution shift TR works against). DAgger
instead adds those states to the training set: before each round r >= 1 the current closure is
rolled out from the first frame of every training trajectory over its whole length, exactly as
the a-posteriori evaluation does (``simulation.hybrid.hybrid_rollouts``), and every stored frame
that has not blown up is labelled with the system's *exact* closure at that state and time. It needs
a system whose closure can be computed for any state (an ``ExactClosure``: rd's
reaction, ns_channel's pressure Poisson solve), not one whose labels come from a finer solver.

Each round adds a fixed number of samples (drawn from the valid frames, with replacement when
there are fewer), so that the trainer can lay out a cosine schedule over every round in advance.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from ml4dynamics.core.errors import ML4DError
from ml4dynamics.datasets.pairs import system_groups
from ml4dynamics.learning.training import Grow
from ml4dynamics.simulation.hybrid import blown_up, hybrid_rollouts, network_closure
from ml4dynamics.systems import SYSTEMS, ExactClosure


def hybrid_states(ds: xr.Dataset, model, bound: float) -> dict[str, Any]:
    """The frames the hybrid of ``model`` visits from the first frame of every trajectory of
    ``ds`` (frame 0 excluded: it is the data's own), up to the first with max|û| > ``bound`` ×
    the true trajectory's max or a non-finite value, each labelled with the exact closure.

    Returns samples like ``datasets.pairs.as_pairs``: ``u``, ``y``, ``t`` and ``q`` (sample
    parameters, name → (N,)), N >= 0.
    """
    _require_exact_closure(ds)
    pred = hybrid_rollouts(ds, network_closure(model))
    keep = ~blown_up(pred, ds.u.values, bound)
    keep[:, 0] = False
    times = np.asarray(ds.time.values, dtype=np.float64)
    parts: list[dict[str, Any]] = []
    for system, idx, q in system_groups(ds):
        sample, frame = np.nonzero(keep[idx])
        if not len(sample):
            continue
        u = jnp.asarray(pred[idx][sample, frame])
        t = jnp.asarray(times[frame])
        qs = {name: jnp.asarray(v[sample]) for name, v in q.items()}
        y = jax.jit(jax.vmap(lambda ui, ti, qi, s=system: s.bind(qi).closure(ui, ti)))(u, t, qs)
        parts.append({"u": u, "y": y, "t": t, "q": qs})
    if not parts:
        return {
            "u": jnp.zeros((0, *ds.u.shape[2:]), ds.u.dtype),
            "y": jnp.zeros((0, *ds.y.shape[2:]), ds.y.dtype),
            "t": jnp.zeros((0,), jnp.float64),
            "q": {name: jnp.zeros((0,), jnp.float64) for name in system_groups(ds)[0][2]},
        }
    return jax.tree.map(lambda *a: jnp.concatenate(a), *parts)


def for_estimator(estimator, ds: xr.Dataset, seed: int) -> Grow | None:
    """The ``grow`` of ``closure_training.train_closure`` for ``estimator`` trained on ``ds``
    with seed ``seed``: ``grower`` for an estimator of several rounds, None otherwise. Each round
    adds as many samples as the training set (its pairs, ``as_pairs(ds)``) has."""
    if estimator.rounds == 1:
        return None
    size = ds.sizes["sample"] * ds.sizes["time"]
    return grower(ds, estimator.config.bound, size, seed)


def grower(ds: xr.Dataset, bound: float, size: int, seed: int) -> Grow:
    """``grow(model, r)`` for ``training.fit``: ``size`` of the hybrid's labelled states
    (``hybrid_states``), drawn with a generator seeded by (``seed``, r) — without replacement
    when there are enough, with replacement when fewer. One clear error when the hybrid blows up
    before its first stored frame on every training trajectory (nothing to learn from). A
    system without an exact closure is refused here, before any training."""
    _require_exact_closure(ds)

    def grow(model, r: int) -> dict[str, Any]:
        states = hybrid_states(ds, model, bound)
        n = states["u"].shape[0]
        if n == 0:
            raise ML4DError(
                f"DAgger round {r}: every hybrid rollout from the training trajectories blew up "
                f"(max|u| beyond {bound:g} × the truth's) before its first stored frame; train "
                "the first round longer or raise the estimator's bound"
            )
        rng = np.random.default_rng([seed, r])
        pick = jnp.asarray(rng.choice(n, size, replace=n < size))
        return jax.tree.map(lambda a: a[pick], states)

    return grow


def _require_exact_closure(ds: xr.Dataset) -> None:
    system = system_groups(ds)[0][0]
    if not isinstance(system, ExactClosure):
        exact = ", ".join(n for n, cls in SYSTEMS.items() if issubclass(cls, ExactClosure))
        raise ML4DError(
            f"{system.name} has no exact closure of an arbitrary state (its labels come from a "
            "finer solver), so the hybrid's states cannot be labelled: use dagger on a system "
            f"with one ({exact})"
        )
