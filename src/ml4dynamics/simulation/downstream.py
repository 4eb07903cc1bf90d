"""A downstream hybrid simulation: a closure network inside its system's own solver.

The model's ``model.json`` names its system and every parameter, so the simulation runs with the
system's own step S — the one the training data came from — and the network as the closure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from ml4dynamics import __version__
from ml4dynamics.core.errors import ML4DError
from ml4dynamics.datasets import open_dataset
from ml4dynamics.datasets.pairs import sample_params
from ml4dynamics.simulation.hybrid import network_closure
from ml4dynamics.systems.rollout import rollout


def initial_state(
    system,
    seed: int | None,
    init: Path | None,
    sample: int,
    warmup: int | None,
    meta: dict,
    params: dict[str, float] | None = None,
) -> tuple[jax.Array, float, dict[str, jax.Array], str]:
    """(u0, t0, sample parameters, description): the last frame of a stored trajectory (with its
    sample parameters), or a random state from ``seed`` advanced ``warmup`` steps by the system's
    reference solver (default: the training data's warm-up); ``params`` overrides sample
    parameters."""
    params = dict(params or {})
    unknown = set(params) - set(system.sample_params)
    if unknown:
        known = ", ".join(system.sample_params) or "none"
        raise ML4DError(
            f"--param {', '.join(sorted(unknown))}: not a sample parameter of {system.name} "
            f"(those are: {known})"
        )
    if init is not None:
        ds = open_dataset(init)
        if ds.attrs["system"] != system.name or tuple(ds.u.shape[2:]) != system.state_shape:
            raise ML4DError(
                f"{init} holds {ds.attrs['system']} states of shape {tuple(ds.u.shape[2:])}; "
                f"the model closes {system.name} with states of shape {system.state_shape}"
            )
        if not 0 <= sample < ds.sizes["sample"]:
            raise ML4DError(f"--sample {sample} is out of range: {init} has {ds.sizes['sample']}")
        u0 = jnp.asarray(ds.u.values[sample, -1])
        stored = {k: v[0] for k, v in sample_params(ds, np.array([sample])).items()}
        q = _as_params({**stored, **params})
        return u0, float(ds.time.values[-1]), q, f"last frame of sample {sample} of {init}"
    if warmup is None:
        warmup = int(meta.get("data", {}).get("warmup_steps", 0))
    if warmup < 0:
        raise ML4DError(f"--warmup must be >= 0, got {warmup}")
    key = jax.random.key(seed)
    q = _as_params({**system.trajectory_params(jax.random.fold_in(key, 1)), **params})
    # the system's own reference data (its exact closure, or a fine solver) for the warm-up
    states, _ = jax.jit(system.reference_trajectory, static_argnums=(2, 3, 4))(key, q, warmup, 0, 1)
    return states[-1], warmup * system.dt, q, f"seed {seed}, {warmup} reference warm-up steps"


def _as_params(q: dict) -> dict[str, jax.Array]:
    return {name: jnp.asarray(float(v), dtype=jnp.float64) for name, v in q.items()}


def hybrid_simulation(
    model,
    system,
    u0: jax.Array,
    t0: float,
    q: dict[str, jax.Array],
    steps: int,
    store_every: int,
    attrs: dict[str, Any],
) -> xr.Dataset:
    """Roll ``model`` out as the closure of ``system`` from ``u0``; the trajectory (states and the
    predicted closures) as a one-sample dataset, or a clear error if it blows up."""
    frames = np.asarray(rollout(system, network_closure(model), u0, t0, steps, store_every, q=q))
    finite = np.isfinite(frames).reshape(len(frames), -1).all(axis=1)
    if not finite.all():
        first = int(np.argmin(finite))
        raise ML4DError(
            f"the hybrid simulation with {attrs.get('model_uri')} blew up: frame {first} "
            f"(step {first * store_every}) is not finite; nothing written"
        )
    y = np.concatenate(
        [np.asarray(model(jnp.asarray(frames[i : i + 64]))) for i in range(0, len(frames), 64)]
    )
    times = t0 + np.arange(len(frames)) * store_every * system.dt
    ds = xr.Dataset(
        {
            "u": (("sample", "time", *system.state_dims), frames[None]),
            "y": (("sample", "time", *system.closure_dims), y[None]),
        },
        coords={
            "sample": [0],
            "time": times,
            **system.coords(),
            **{name: ("sample", [float(v)]) for name, v in q.items()},
        },
        attrs={**system.attrs(), "ml4dynamics_version": __version__, **attrs},
    )
    ds["y"].attrs["long_name"] = "closure predicted by the network"
    return ds
