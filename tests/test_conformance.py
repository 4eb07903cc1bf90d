"""Conformance of every registered system to the System protocol (docs/design.md §1–3).

Parametrised over ``SYSTEMS``, which discovery fills, so a new system file is held to all of this
without being listed here; what a system can do beyond the protocol is asked with ``isinstance``
(``ExactClosure``). Each system's config comes from ``tests.conftest.own_sections``
(``SMALL_PARAMS``, else the repository's params.yaml), or from the YAML file named by
``$ML4D_CONFORMANCE_PARAMS`` when that is set (a system under development brings its own section
that way, see ``tests/test_toy_system.py``). A registered system with no section fails: a silent
skip would let a new system ship untested.

Data are generated through the library (``generate_split``) with the data config shrunk to a few
stored steps, every step stored and no label noise, so the checks see exactly the numbers the
generator produced.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from functools import cache, partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr
import yaml

from ml4dynamics.config import SystemSetup, parse_params
from ml4dynamics.datasets import generate_split
from ml4dynamics.datasets.generation import frame_times
from ml4dynamics.datasets.pairs import system_groups
from ml4dynamics.systems import SYSTEMS, ExactClosure, System, make_system
from tests.conftest import own_sections, run_cli, write_params

PARAMS_ENV = "ML4D_CONFORMANCE_PARAMS"
NAMES = sorted(SYSTEMS)

# The shrunken data config. 20 stored steps let a per-step inconsistency between generator and
# step compound over many steps, yet keep every system's split under a second once compiled;
# a warm-up of at most 20 steps moves a state off its (often special) initial condition; 2
# trajectories per parameter combination make "every trajectory" mean more than one.
STEPS = 20
MAX_WARMUP = 20
MAX_TRAJECTORIES = 2
PROVENANCE = {"ml4dynamics_version": "conformance", "git_revision": "conformance"}

# Replaying the stored labels repeats the generator's arithmetic on the same numbers; what is
# left is round-off (measured over 20 steps: 0, i.e. bit-identical, for linear and rd; <= 5e-16
# for ns_channel, whose step XLA compiles differently inside the generator's scan) plus
# what a non-conforming system adds. 1e-12 leaves three decades for round-off growth.
ORACLE_RTOL = 1e-12
# A closure the step ignores would make the oracle check vacuous: with the labels zeroed the
# replay must leave the data by far more than round-off (measured: >= 4e-3 for ns_channel, whose
# pressure moves a state least per step; 0.2 for rd, 2 for linear).
LABELS_MATTER = 1e-6


def system_section(name: str) -> dict:
    """The ``name`` section (``system`` and ``data``) of the conformance parameters."""
    path = os.environ.get(PARAMS_ENV)
    if path:
        raw = yaml.safe_load(Path(path).read_text()) or {}
        source = f"{PARAMS_ENV}={path} has"
    else:
        raw = own_sections(name)
        source = "tests/conftest.py SMALL_PARAMS and params.yaml have"
    if name not in raw:
        pytest.fail(
            f"system {name!r} is registered but {source} no section {name!r}; add one "
            "with 'system' (every config field) and 'data' keys, as in params.yaml",
            pytrace=False,
        )
    return copy.deepcopy(raw[name])


@cache
def tiny_setup(name: str) -> SystemSetup:
    """The system's setup with a data config small enough for a unit test."""
    setup = parse_params({name: system_section(name)}).setup(name)
    data = setup.data

    def shrink(split):  # keep the split's seed and parameter sweep, shorten the rest
        return dataclasses.replace(
            split, trajectories=min(split.trajectories, MAX_TRAJECTORIES), steps=STEPS
        )

    data = dataclasses.replace(
        data,
        warmup_steps=min(data.warmup_steps, MAX_WARMUP),
        store_every=1,
        label_noise=0.0,
        **{s: shrink(getattr(data, s)) for s in ("train", "val", "test", "ood")},
    )
    return dataclasses.replace(setup, data=data)


@cache
def generated(name: str, split: str) -> xr.Dataset:
    return generate_split(tiny_setup(name), split, PROVENANCE)


@partial(jax.jit, static_argnums=0)
def replay(system: System, u0: jax.Array, labels: jax.Array, times: jax.Array, q: dict):
    """``u_{k+1} = S(u_k, y_k, t_k)`` from ``u0`` with the given labels, batched over samples:
    ``u0 (B, *state)``, ``labels (B, F, *closure)``, ``times (F,)``, ``q`` name → ``(B,)``;
    returns ``(B, F, *state)`` (frame 0 is ``u0``)."""

    def one(u0, labels, q):
        bound = system.bind(q)

        def advance(u, yt):
            u = bound.step(u, *yt)
            return u, u

        _, frames = jax.lax.scan(advance, u0, (labels[:-1], times[:-1]))
        return jnp.concatenate([u0[None], frames])

    return jax.vmap(one)(u0, labels, q)


def frame_errors(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Relative L2 error of every (sample, frame) over the state axes."""
    axes = tuple(range(2, true.ndim))
    norm = np.sqrt((true**2).sum(axis=axes))
    assert np.all(norm > 0), "a stored frame is identically zero: the relative error is undefined"
    return np.sqrt(((pred - true) ** 2).sum(axis=axes)) / norm


@pytest.mark.parametrize("split", ["train", "ood"])
@pytest.mark.parametrize("name", NAMES)
def test_stored_labels_reproduce_the_stored_trajectory(name, split):
    """The oracle invariant: the system's own step, fed the stored labels, reproduces every
    stored frame of every trajectory (ood may sweep parameters: each group with its own S)."""
    ds = generated(name, split)
    times = jnp.asarray(ds.time.values)
    worst, zeroed_gap = 0.0, np.inf
    for system, idx, q in system_groups(ds):
        u, y = ds.u.values[idx], ds.y.values[idx]
        q = {k: jnp.asarray(v) for k, v in q.items()}
        pred = np.asarray(replay(system, jnp.asarray(u[:, 0]), jnp.asarray(y), times, q))
        worst = max(worst, float(frame_errors(pred, u).max()))
        blind = np.asarray(replay(system, jnp.asarray(u[:, 0]), jnp.zeros(y.shape), times, q))
        zeroed_gap = min(zeroed_gap, float(frame_errors(blind, u)[:, 1:].max(axis=1).min()))
    assert worst <= ORACLE_RTOL, f"{name}/{split}: replay leaves the data by {worst:.3e}"
    assert zeroed_gap > LABELS_MATTER, f"{name}/{split}: the step ignores its closure"


@pytest.mark.parametrize("name", NAMES)
def test_float64_policy(name):
    ds = generated(name, "train")
    assert ds.u.dtype == np.float64 and ds.y.dtype == np.float64
    system = make_system(tiny_setup(name).system)
    key = jax.random.key(0)
    q = system.trajectory_params(key)
    initial_state = jax.jit(lambda key, q: system.bind(q).initial_state(key))
    step = jax.jit(lambda u, y, t, q: system.bind(q).step(u, y, t))
    u0 = initial_state(key, q)
    assert u0.dtype == jnp.float64 and u0.shape == system.state_shape
    u1 = step(u0, jnp.asarray(ds.y.values[0, 0]), jnp.asarray(ds.time.values[0]), q)
    assert u1.dtype == jnp.float64 and u1.shape == system.state_shape
    if isinstance(system, ExactClosure):
        y0 = jax.jit(lambda u, t, q: system.bind(q).closure(u, t))(u0, jnp.asarray(0.0), q)
        assert y0.dtype == jnp.float64 and y0.shape == system.closure_shape


@pytest.mark.parametrize("name", NAMES)
def test_shapes_and_named_axes(name):
    setup = tiny_setup(name)
    system = make_system(setup.system)
    assert not {"u", "y"} & {*system.state_dims, *system.closure_dims}  # names of the variables
    assert len(system.state_dims) == len(system.state_shape)
    assert len(system.closure_dims) == len(system.closure_shape)
    for split in ("train", "ood"):
        ds = generated(name, split)
        samples = len(setup.variants(split)) * getattr(setup.data, split).trajectories
        frames = STEPS + 1  # store_every = 1; the first frame is the end of the warm-up
        assert ds.u.dims == ("sample", "time", *system.state_dims)
        assert ds.y.dims == ("sample", "time", *system.closure_dims)
        assert ds.u.shape == (samples, frames, *system.state_shape)
        assert ds.y.shape == (samples, frames, *system.closure_shape)
        for dim in {*ds.u.dims, *ds.y.dims}:
            assert dim in ds.coords, f"{name}: axis {dim!r} has no coordinate"
            assert ds[dim].dims == (dim,) and ds[dim].size == ds.sizes[dim], dim
        np.testing.assert_array_equal(ds.time.values, frame_times(setup, split))
        for dim, values in system.coords().items():
            assert len(values) == ds.sizes[dim], f"{name}: coordinate {dim!r} has the wrong length"
    assert system.state_field.shape == system.state_shape
    assert system.closure_field.shape == system.closure_shape
    assert system.state_field.periodic == system.closure_field.periodic == system.periodic
    assert system.periodic == (system.boundary == "periodic")


@pytest.mark.parametrize("name", NAMES)
def test_generation_is_deterministic(name):
    setup = tiny_setup(name)
    first = generated(name, "train")
    again = generate_split(setup, "train", PROVENANCE)
    assert np.array_equal(first.u.values, again.u.values)
    assert np.array_equal(first.y.values, again.y.values)

    seeds = [getattr(setup.data, s).seed for s in ("train", "val", "test", "ood")]
    other_seed = dataclasses.replace(setup.data.train, seed=max(seeds) + 1)  # splits' seeds differ
    other = generate_split(
        dataclasses.replace(setup, data=dataclasses.replace(setup.data, train=other_seed)),
        "train",
        PROVENANCE,
    )
    assert not np.array_equal(first.u.values, other.u.values)
    assert not np.array_equal(first.y.values, other.y.values)


@pytest.mark.parametrize("fault", ["negative dt", "unknown key"])
@pytest.mark.parametrize("name", NAMES)
def test_bad_config_is_one_line_and_writes_nothing(name, fault, tmp_path):
    section = system_section(name)
    if fault == "negative dt":
        section["system"]["dt"] = -1.0
        key = f"{name}.system.dt"
    else:
        section["system"]["not_a_parameter"] = 1.0
        key = f"{name}.system.not_a_parameter"
    params = write_params(tmp_path / "params.yaml", {name: section})
    before = sorted(tmp_path.rglob("*"))
    result = run_cli(
        ["generate", name, "--params", str(params), "--out", str(tmp_path / "out")],
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr
    lines = (result.stdout + result.stderr).splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("ml4d: error:") and key in lines[0], lines[0]
    assert sorted(tmp_path.rglob("*")) == before  # neither --out nor data/ nor temporaries
