"""Oracle rollouts: the hybrid rollout path with the exact closure reproduces the generated data.

This is the first test of every system (docs/design.md §1): the reference code's rollout was not its
generator's scheme, and part of its published gap was that artefact. The closure is wrapped in a
new function, as a trained network would be, so the generic hybrid path is what is exercised.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ml4dynamics.config import parse_params
from ml4dynamics.datasets import open_dataset
from ml4dynamics.systems import make_system
from ml4dynamics.systems.rollout import rollout
from tests.conftest import small_params

SPLITS = ("train", "val", "test", "ood")


def hybrid_rollout_of_stored(ds, system, closure_fn) -> np.ndarray:
    """Roll every stored trajectory out from its first stored frame, one sample at a time."""
    n_steps = ds.attrs["steps"]
    store_every = ds.attrs["store_every"]
    t0 = float(ds.time[0])
    out = [
        rollout(system, closure_fn, jnp.asarray(ds.u.values[i, 0]), t0, n_steps, store_every)
        for i in range(ds.sizes["sample"])
    ]
    return np.asarray(jnp.stack(out))


def relative_errors(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    axes = tuple(range(2, true.ndim))
    return np.sqrt(((pred - true) ** 2).sum(axis=axes) / (true**2).sum(axis=axes))


def system_for_sample(name: str, ds, i: int):
    """Rebuild the system from the dataset's own parameters (per-sample overrides included)."""
    params = small_params()
    setup = parse_params(params).setup(name)
    overrides = {
        k: ds[k].values[i].item() for k in ds.coords if ds[k].dims == ("sample",) and k != "sample"
    }
    return make_system(type(setup.system)(**{**setup.system.__dict__, **overrides}))


@pytest.mark.parametrize("name", ["linear", "rd"])
@pytest.mark.parametrize("split", SPLITS)
def test_oracle_rollout_reproduces_generated_data(generated, name, split):
    ds = open_dataset(generated / name / f"{split}.zarr")
    worst = 0.0
    for i in range(ds.sizes["sample"]):
        system = system_for_sample(name, ds, i)

        def exact(
            u, t, system=system
        ):  # a new function object: the hybrid path, not the generator's
            return system.closure(u, t)

        pred = hybrid_rollout_of_stored(ds.isel(sample=[i]), system, exact)
        errors = relative_errors(pred, ds.u.values[[i]])
        assert errors.shape[1] == ds.sizes["time"]  # the whole stored horizon is compared
        worst = max(worst, float(errors.max()))
    print(f"{name}/{split}: worst relative error {worst:.2e}")
    assert worst <= 1e-12, f"oracle rollout drifts from the data: max relative error {worst:.3e}"


def test_oracle_check_fails_for_a_different_scheme(generated):
    """Negative control: rolling out with another Laplacian than the generator's is caught."""
    ds = open_dataset(generated / "rd" / "test.zarr")
    setup = parse_params(small_params()).setup("rd")
    other = make_system(type(setup.system)(**{**setup.system.__dict__, "laplacian": "spectral"}))
    pred = hybrid_rollout_of_stored(ds, other, other.closure)
    assert relative_errors(pred, ds.u.values)[:, 1:].max() > 1e-6


@pytest.mark.parametrize("split", SPLITS)
def test_linear_data_match_the_closed_form(generated, split):
    ds = open_dataset(generated / "linear" / f"{split}.zarr")
    system = system_for_sample("linear", ds, 0)
    u = ds.u.values
    for i in range(u.shape[0]):
        for k in (1, u.shape[1] - 1):
            np.testing.assert_allclose(
                u[i, k], system.exact_solution(u[i, 0], k), rtol=1e-13, atol=1e-15
            )


@pytest.mark.parametrize("name", ["linear", "rd"])
def test_labels_are_the_exact_closure_plus_declared_noise(generated, name):
    ds = open_dataset(generated / name / "train.zarr")
    system = system_for_sample(name, ds, 0)
    exact = np.asarray(
        jax.vmap(jax.vmap(system.closure, in_axes=(0, None)), in_axes=(0, None))(
            jnp.asarray(ds.u.values), 0.0
        )
    )
    noise = ds.y.values - exact
    width = ds.attrs["label_noise"]
    if width == 0:
        assert np.abs(noise).max() <= 1e-15
    else:  # U[0, width): inside the interval and actually spread over it
        assert noise.min() >= -1e-15 and noise.max() < width
        assert noise.std() > 0.2 * width
