"""Trajectories of a system under its exact closure, as xarray Datasets (DESIGN §4).

For each trajectory: a random initial state from the split's seed, ``warmup_steps`` steps that
are not stored, then ``steps`` steps of which every ``store_every``-th state is stored with its
label ``y = phi(u) (+ U[0, label_noise) noise)``. Random streams are derived from the split seed
and the sample index only, so a split is reproducible on its own and splits never share states.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from ml4dynamics.config import SystemSetup, jsonable
from ml4dynamics.rollout import rollout
from ml4dynamics.systems import System, make_system

#: the code a generated dataset depends on: exactly the deps of the DVC stage ``generate``
#: (tests/test_pipeline.py checks the two agree); its git revision goes into the attributes
GENERATION_CODE = (
    "src/ml4dynamics/systems",
    "src/ml4dynamics/datasets",
    "src/ml4dynamics/rollout.py",
    "src/ml4dynamics/config.py",
    "src/ml4dynamics/validation.py",
    "src/ml4dynamics/provenance.py",
)

# independent random streams under one split seed
_STREAM_INITIAL_STATE, _STREAM_LABEL_NOISE = 0, 1


@partial(jax.jit, static_argnames=("system", "warmup_steps", "steps", "store_every"))
def _trajectories(
    system: System, u0: jax.Array, warmup_steps: int, steps: int, store_every: int
) -> tuple[jax.Array, jax.Array]:
    """States ``(batch, frames, *state_shape)`` and exact labels ``(batch, frames, *closure)``."""

    def one(u: jax.Array) -> tuple[jax.Array, jax.Array]:
        if warmup_steps:
            u = rollout(system, system.closure, u, 0.0, warmup_steps, warmup_steps)[-1]
        t0 = warmup_steps * system.dt
        states = rollout(system, system.closure, u, t0, steps, store_every)
        times = t0 + jnp.arange(states.shape[0]) * (store_every * system.dt)
        return states, jax.vmap(system.closure)(states, times)

    return jax.vmap(one)(u0)


def frame_times(setup: SystemSetup, split: str) -> np.ndarray:
    """Times of the stored frames; the first is the end of the warm-up."""
    data = setup.data
    n = getattr(data, split).steps // data.store_every + 1
    return (data.warmup_steps + np.arange(n) * data.store_every) * setup.system.dt


def generate_split(setup: SystemSetup, split: str, provenance: dict[str, str]) -> xr.Dataset:
    """Generate one split of ``setup`` as a Dataset with variables ``u`` and ``y``."""
    data = setup.data
    cfg = getattr(data, split)
    root = jax.random.key(cfg.seed)
    variants = setup.variants(split)
    states, labels, sample_params = [], [], []
    for v, (overrides, config) in enumerate(variants):
        system = make_system(config)
        index = v * cfg.trajectories + jnp.arange(cfg.trajectories)
        ic_keys = jax.vmap(
            partial(jax.random.fold_in, jax.random.fold_in(root, _STREAM_INITIAL_STATE))
        )(index)
        u0 = jax.vmap(system.initial_state)(ic_keys)
        u, y = _trajectories(system, u0, data.warmup_steps, cfg.steps, data.store_every)
        if data.label_noise > 0:
            noise_keys = jax.vmap(
                partial(jax.random.fold_in, jax.random.fold_in(root, _STREAM_LABEL_NOISE))
            )(index)
            y = y + jax.vmap(
                lambda k, shape=y.shape[1:]: jax.random.uniform(
                    k, shape, dtype=jnp.float64, maxval=data.label_noise
                )
            )(noise_keys)
        states.append(np.asarray(u))
        labels.append(np.asarray(y))
        sample_params += [overrides] * cfg.trajectories
    system = make_system(variants[0][1])
    return _as_dataset(setup, split, system, states, labels, sample_params, provenance)


def _as_dataset(
    setup: SystemSetup,
    split: str,
    system: System,
    states: list[np.ndarray],
    labels: list[np.ndarray],
    sample_params: list[dict[str, Any]],
    provenance: dict[str, str],
) -> xr.Dataset:
    cfg = getattr(setup.data, split)
    u = np.concatenate(states)
    y = np.concatenate(labels)
    coords: dict[str, Any] = {
        "sample": np.arange(u.shape[0]),
        "time": frame_times(setup, split),
        **system.coords(),
    }
    attrs = {
        **system.attrs(),
        "split": split,
        "seed": cfg.seed,
        "trajectories_per_variant": cfg.trajectories,
        "steps": cfg.steps,
        "store_every": setup.data.store_every,
        "warmup_steps": setup.data.warmup_steps,
        "label_noise": setup.data.label_noise,
        "time_origin": "t = 0 at the random initial state; the warm-up precedes the first frame",
        **provenance,
    }
    for name in cfg.system:  # per-sample parameters: coordinate along sample, all values in attrs
        values = [jsonable(p[name]) for p in sample_params]
        if not all(isinstance(v, int | float) for v in values):
            values = np.asarray([str(v) for v in values], dtype=object)  # strings, matrices
        coords[name] = ("sample", np.asarray(values))
        attrs[f"system.{name}"] = jsonable(list(cfg.system[name]))
    ds = xr.Dataset(
        {
            "u": (("sample", "time", *system.state_dims), u),
            "y": (("sample", "time", *system.closure_dims), y),
        },
        coords=coords,
        attrs=attrs,
    )
    ds["u"].attrs["long_name"] = "state"
    ds["y"].attrs["long_name"] = "closure label: exact closure of the state" + (
        f" plus U[0, {setup.data.label_noise}) noise" if setup.data.label_noise else ""
    )
    ds["time"].attrs["units"] = "simulation time"
    return ds
