"""Trajectories of a system under its exact closure, as xarray Datasets (DESIGN §4).

For each trajectory: a random initial state from the split's seed, ``warmup_steps`` steps that
are not stored, then ``steps`` steps of which every ``store_every``-th state is stored with its
label ``y = phi(u) (+ U[0, label_noise) noise)``. Random streams are derived from the split seed
and the sample index only, so a split is reproducible on its own and splits never share states.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from ml4dynamics.config import SystemSetup, jsonable
from ml4dynamics.datasets.pairs import system_groups
from ml4dynamics.systems import System, make_system

#: the code that computes a generated dataset: the deps of the DVC stage ``generate`` without the
#: command's glue (CLI table, layout, stage module; tests/test_dvc_dependencies.py checks the two
#: agree); its git revision goes into the attributes
GENERATION_CODE = (
    "src/ml4dynamics/__init__.py",
    "src/ml4dynamics/atomic.py",
    "src/ml4dynamics/faults.py",
    "src/ml4dynamics/errors.py",
    "src/ml4dynamics/validation.py",
    "src/ml4dynamics/discovery.py",
    "src/ml4dynamics/fields.py",
    "src/ml4dynamics/rollout.py",
    "src/ml4dynamics/config.py",
    "src/ml4dynamics/provenance.py",
    "src/ml4dynamics/systems",
    "src/ml4dynamics/datasets",
)

# independent random streams under one split seed
_STREAM_INITIAL_STATE, _STREAM_LABEL_NOISE, _STREAM_PARAMS = 0, 1, 2


@partial(jax.jit, static_argnames=("system", "warmup_steps", "steps", "store_every"))
def _trajectories(
    system: System,
    keys: jax.Array,
    q: dict[str, jax.Array],
    warmup_steps: int,
    steps: int,
    store_every: int,
) -> tuple[jax.Array, jax.Array]:
    """States ``(batch, frames, *state_shape)`` and labels ``(batch, frames, *closure)`` from the
    initial-state keys and the sample parameters ``q`` of every trajectory (the system's own
    reference data: by default its exact closure)."""

    def one(key: jax.Array, qi: dict[str, jax.Array]) -> tuple[jax.Array, jax.Array]:
        return system.reference_trajectory(key, qi, warmup_steps, steps, store_every)

    return jax.vmap(one)(keys, q)


def initial_keys(seed: int, index: jax.Array) -> jax.Array:
    """The initial-state keys of the trajectories numbered ``index`` of a split with ``seed``
    (the sample index of the dataset: variants follow one another)."""
    stream = partial(
        jax.random.fold_in, jax.random.fold_in(jax.random.key(seed), _STREAM_INITIAL_STATE)
    )
    return jax.vmap(stream)(index)


@partial(jax.jit, static_argnames=("system", "warmup_steps", "steps", "store_every", "seed"))
def _noisy_trajectories(system, keys, q, warmup_steps, steps, store_every, sigma, seed):
    def one(key: jax.Array, qi: dict[str, jax.Array]) -> jax.Array:
        return system.reference_with_noise(key, qi, warmup_steps, steps, store_every, (sigma, seed))

    return jax.vmap(one)(keys, q)


def noisy_references(ds: xr.Dataset, sigma: float, seed: int = 0) -> np.ndarray:
    """Every trajectory of the generated split ``ds`` run again from its own random start with
    the ablation's noise ``(σ, seed)`` (``System.reference_with_noise``): states shaped like
    ``ds.u``, equal to them for σ = 0. For systems whose exact closure needs more than the
    stored state (a coarse grid closed by a fine solver)."""
    out = np.empty_like(ds.u.values)
    for system, idx, q in system_groups(ds):
        if not system.has_reference_with_noise:
            raise ValueError(f"{system.name} has no reference run with the ablation's noise")
        keys = initial_keys(int(ds.attrs["seed"]), jnp.asarray(idx))
        q = {name: jnp.asarray(v) for name, v in q.items()}
        states = _noisy_trajectories(
            system,
            keys,
            q,
            int(ds.attrs["warmup_steps"]),
            int(ds.attrs["steps"]),
            int(ds.attrs["store_every"]),
            sigma,
            seed,
        )
        out[idx] = np.asarray(states)
    return out


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
    drawn: dict[str, list[np.ndarray]] = {}
    # one compiled simulation for every variant that differs only in sample parameters
    static = make_system(_without_sample_params(variants[0][1], setup.system))
    for v, (overrides, config) in enumerate(variants):
        system = make_system(_without_sample_params(config, setup.system))
        index = v * cfg.trajectories + jnp.arange(cfg.trajectories)
        ic_keys = initial_keys(cfg.seed, index)
        variant = make_system(config)
        param_stream = partial(jax.random.fold_in, jax.random.fold_in(root, _STREAM_PARAMS))
        q = jax.vmap(variant.trajectory_params)(jax.vmap(param_stream)(index))
        u, y = _trajectories(system, ic_keys, q, data.warmup_steps, cfg.steps, data.store_every)
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
        for name, values in q.items():
            drawn.setdefault(name, []).append(np.asarray(values, dtype=np.float64))
    q_all = {name: np.concatenate(values) for name, values in drawn.items()}
    return _as_dataset(setup, split, static, states, labels, sample_params, q_all, provenance)


def _without_sample_params(config, base):
    """``config`` with its sample-parameter fields reset to ``base``'s: variants that differ only
    in those are one static system (their values are traced, see ``systems.base``)."""
    cls = type(make_system(base))
    fields = {f.name for f in dataclasses.fields(config)}
    reset = {n: getattr(base, n) for n in cls.sample_params if n in fields}
    return dataclasses.replace(config, **reset)


def _as_dataset(
    setup: SystemSetup,
    split: str,
    system: System,
    states: list[np.ndarray],
    labels: list[np.ndarray],
    sample_params: list[dict[str, Any]],
    q: dict[str, np.ndarray],
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
        if name in q:
            attrs[f"system.{name}"] = jsonable(list(cfg.system[name]))
            continue  # a sample parameter: its coordinate is written below
        values = [jsonable(p[name]) for p in sample_params]
        if not all(isinstance(v, int | float) for v in values):
            values = np.asarray([str(v) for v in values], dtype=object)  # strings, matrices
        coords[name] = ("sample", np.asarray(values))
        attrs[f"system.{name}"] = jsonable(list(cfg.system[name]))
    for name, values in q.items():  # sample parameters: the values each trajectory ran with
        coords[name] = ("sample", values)
    ds = xr.Dataset(
        {
            "u": (("sample", "time", *system.state_dims), u),
            "y": (("sample", "time", *system.closure_dims), y),
        },
        coords=coords,
        attrs=attrs,
    )
    ds["u"].attrs["long_name"] = "state"
    ds["y"].attrs["long_name"] = f"closure label: {system.label_description}" + (
        f" plus U[0, {setup.data.label_noise}) noise" if setup.data.label_noise else ""
    )
    ds["time"].attrs["units"] = "simulation time"
    return ds
