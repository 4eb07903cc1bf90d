"""Oracle rollouts: the hybrid rollout path with the exact closure reproduces the generated data.

This is the first test of every system (docs/design.md §1): the reference code's rollout was not its
generator's scheme, and part of its published gap was that artefact. The closure is wrapped in a
new function, as a trained network would be, so the generic hybrid path (``rollout``) is what is
exercised, not the generator's. A system with an exact closure (``ExactClosure``) is rolled out
under it; a coarse grid closed by a fine solver (``CoarseGridClosure``) has no closure of a state,
so its stored labels, looked up by time, play the network. Both lists come from the registry, the
data from the conformance suite's tiny settings (every step stored) on the training split, which
holds every group of sample parameters a system sweeps there (ns_channel's Reynolds numbers);
other splits replay alike (the conformance suite's ood cases).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ml4dynamics.config import parse_params
from ml4dynamics.datasets import open_dataset
from ml4dynamics.datasets.pairs import system_groups
from ml4dynamics.systems import SYSTEMS, CoarseGridClosure, ExactClosure, make_system
from ml4dynamics.systems.rollout import rollout
from tests.conftest import small_params
from tests.test_conformance import generated as tiny_split

EXACT = sorted(n for n, cls in SYSTEMS.items() if issubclass(cls, ExactClosure))
COARSE = sorted(n for n, cls in SYSTEMS.items() if issubclass(cls, CoarseGridClosure))
# the same arithmetic as the generator's, compiled in another program: round-off only (measured
# 0 for linear and rd, 1.2e-16 for ns_channel, 1.1e-15 to 2.1e-15 for the coarse grids); 1e-12
# leaves room for its growth
ORACLE_RTOL = 1e-12


def relative_errors(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    axes = tuple(range(2, true.ndim))
    return np.sqrt(((pred - true) ** 2).sum(axis=axes) / (true**2).sum(axis=axes))


def hybrid_rollouts(ds, closure_of) -> np.ndarray:
    """Every stored trajectory rolled out from its first stored frame with the closure function
    ``closure_of(system bound to the sample's parameters, the sample's stored labels)``, built
    inside the traced rollout (a new function object, as a network's would be)."""
    n_steps, store_every = ds.attrs["steps"], ds.attrs["store_every"]
    t0 = float(ds.time[0])
    pred = np.empty_like(ds.u.values)
    for system, idx, q in system_groups(ds):

        def one(u0, labels, qi, system=system):
            closure = closure_of(system.bind(qi), labels)
            return rollout(system, closure, u0, t0, n_steps, store_every, q=qi)

        q = {k: jnp.asarray(v) for k, v in q.items()}
        u0, labels = jnp.asarray(ds.u.values[idx, 0]), jnp.asarray(ds.y.values[idx])
        pred[idx] = np.asarray(jax.jit(jax.vmap(one))(u0, labels, q))
    return pred


@pytest.mark.parametrize("name", EXACT)
def test_oracle_rollout_reproduces_generated_data(name):
    split = "train"
    ds = tiny_split(name, split)

    def exact(system, labels):
        return lambda u, t: system.closure(u, t)

    errors = relative_errors(hybrid_rollouts(ds, exact), ds.u.values)
    assert errors.shape[1] == ds.sizes["time"]  # the whole stored horizon is compared
    assert errors.max() <= ORACLE_RTOL, f"{name}/{split}: drifts by {errors.max():.3e}"


@pytest.mark.parametrize("name", COARSE)
def test_stored_labels_rolled_out_as_a_closure_reproduce_a_coarse_grid(name):
    """The correction closure's labels, looked up by time inside the generic rollout, give back
    the restricted fine trajectory; the coarse solver alone (zero labels) does not."""
    split = "train"
    ds = tiny_split(name, split)
    times = jnp.asarray(ds.time.values)

    def stored(system, labels):
        return lambda u, t: labels[jnp.argmin(jnp.abs(times - t))]

    def zero(system, labels):
        return lambda u, t: jnp.zeros(system.closure_shape)

    errors = relative_errors(hybrid_rollouts(ds, stored), ds.u.values)
    assert errors.max() <= ORACLE_RTOL, f"{name}/{split}: drifts by {errors.max():.3e}"
    alone = relative_errors(hybrid_rollouts(ds, zero), ds.u.values)
    assert alone[:, -1].min() > 1e-6  # the labels matter (measured 0.27 to 1.2)


@pytest.mark.parametrize("name", EXACT)
def test_labels_are_the_exact_closure(name):
    ds = tiny_split(name, "train")
    for system, idx, q in system_groups(ds):
        for j, i in enumerate(idx):
            bound = system.bind({k: jnp.asarray(v[j]) for k, v in q.items()} or None)
            times = jnp.asarray(ds.time.values)
            exact = jax.vmap(bound.closure)(jnp.asarray(ds.u.values[i]), times)
            scale = np.abs(ds.y.values[i]).max()
            np.testing.assert_allclose(ds.y.values[i], exact, rtol=0, atol=1e-12 * scale)


def test_oracle_check_fails_for_a_different_scheme(generated):
    """Negative control: rolling out with another Laplacian than the generator's is caught."""
    ds = open_dataset(generated / "rd" / "test.zarr")
    setup = parse_params(small_params()).setup("rd")
    other = make_system(type(setup.system)(**{**setup.system.__dict__, "laplacian": "spectral"}))
    u0, t0, steps = jnp.asarray(ds.u.values[:, 0]), float(ds.time[0]), ds.attrs["steps"]
    pred = jax.vmap(lambda u: rollout(other, other.closure, u, t0, steps, ds.attrs["store_every"]))(
        u0
    )
    assert relative_errors(pred, ds.u.values)[:, 1:].max() > 1e-6


@pytest.mark.parametrize("split", ("train", "val", "test", "ood"))
def test_linear_data_match_the_closed_form(generated, split):
    ds = open_dataset(generated / "linear" / f"{split}.zarr")
    system, _, _ = system_groups(ds)[0]
    u = ds.u.values
    for i in range(u.shape[0]):
        for k in (1, u.shape[1] - 1):
            np.testing.assert_allclose(
                u[i, k], system.exact_solution(u[i, 0], k), rtol=1e-13, atol=1e-15
            )


def test_linear_labels_carry_the_declared_noise(generated):
    """The linear toy's labels are C u plus U[0, 1e-3) noise, as in the paper: inside the
    interval and spread over it."""
    ds = open_dataset(generated / "linear" / "train.zarr")
    system, _, _ = system_groups(ds)[0]
    exact = jax.vmap(jax.vmap(system.closure, in_axes=(0, None)), in_axes=(0, None))(
        jnp.asarray(ds.u.values), 0.0
    )
    noise = ds.y.values - np.asarray(exact)
    width = ds.attrs["label_noise"]
    assert width > 0
    assert noise.min() >= -1e-15 and noise.max() < width
    assert noise.std() > 0.2 * width
