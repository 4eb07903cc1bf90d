"""The paper's ablation on a coarse grid closed by a fine solver (ks, kolmogorov, ...): the exact
correction plus noise needs the fine state, so the reference run is repeated with the noise added
to its coarse modes. Checked: the prolongation that carries the noise is exact, a zero noise
gives the stored data to round-off, one step of noise moves the coarse state by exactly the
hybrid's Δt · mean_free(σ ξ), and the evaluation reports the ablation for the correction closure
(not for the filter closure, whose exact form does not reproduce the fine run)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ml4dynamics.config import parse_params
from ml4dynamics.core.errors import DatasetError
from ml4dynamics.datasets import generate_split
from ml4dynamics.datasets.generation import noisy_references
from ml4dynamics.datasets.pairs import system_groups
from ml4dynamics.evaluation.baselines import ablation
from ml4dynamics.evaluation.result import UNMEASURED
from ml4dynamics.evaluation.rollouts import evaluate_splits
from ml4dynamics.systems import SYSTEMS as REGISTRY
from ml4dynamics.systems import CoarseGridClosure, ExactClosure, make_system
from ml4dynamics.systems.coarse_grid import coarse_kick, mean_free
from ml4dynamics.systems.kolmogorov import Kolmogorov, KolmogorovConfig
from ml4dynamics.systems.kuramoto_sivashinsky import KuramotoSivashinsky, KuramotoSivashinskyConfig
from ml4dynamics.systems.spectral import prolong, prolong2_hat, restrict, restrict2_hat
from tests.conftest import own_sections, small_params

PROVENANCE = {"ml4dynamics_version": "t", "git_revision": "t"}
COARSE = sorted(n for n, cls in REGISTRY.items() if issubclass(cls, CoarseGridClosure))
SYSTEMS = {  # small fine grids: 256 -> 64 points, 64^2 -> 16^2
    "ks": lambda **kw: KuramotoSivashinsky(KuramotoSivashinskyConfig(n_fine=256, **kw)),
    "kolmogorov": lambda **kw: Kolmogorov(KolmogorovConfig(n_fine=64, coarsening=4, **kw)),
}


def test_prolongation_inverts_restriction_and_interpolates_band_limited_fields_exactly():
    """``restrict(prolong(u))`` is u less its Nyquist mode; a trigonometric polynomial of the
    coarse grid's modes, prolonged, is its samples on the fine grid (1D and 2D)."""
    u = jax.random.normal(jax.random.key(0), (3, 16))
    no_nyquist = jnp.fft.irfft(jnp.fft.rfft(u).at[..., 8].set(0.0), n=16)
    np.testing.assert_allclose(restrict(prolong(u, 64), 16), no_nyquist, atol=1e-14)
    x16, x64 = (np.arange(n) / n * 2 * np.pi for n in (16, 64))

    def wave(x):
        return np.sin(3 * x) + 0.5 * np.cos(7 * x)

    np.testing.assert_allclose(prolong(jnp.asarray(wave(x16)), 64), wave(x64), atol=1e-13)

    v = jnp.fft.rfft2(jax.random.normal(jax.random.key(1), (2, 16, 16)))
    np.testing.assert_allclose(
        restrict2_hat(prolong2_hat(v, 64), 16), v.at[..., 8, :].set(0.0).at[..., :, 8].set(0.0)
    )

    def waves2(n):
        a, b = np.meshgrid(*(np.arange(n) / n * 2 * np.pi,) * 2, indexing="ij")
        return np.sin(3 * a + 2 * b) + np.cos(5 * a - 7 * b)

    fine = jnp.fft.irfft2(prolong2_hat(jnp.fft.rfft2(jnp.asarray(waves2(16))), 64), s=(64, 64))
    np.testing.assert_allclose(fine, waves2(64), atol=1e-13)
    with pytest.raises(ValueError, match="cannot prolong"):
        prolong(u, 8)


@pytest.mark.parametrize("name", COARSE)
def test_the_noisy_reference_is_the_stored_run_plus_the_hybrids_noise(name):
    """σ = 0 repeats the reference run to round-off; after one step of noise the coarse state
    is the truth plus Δt · mean_free(σ ξ_0), the noise the hybrid ablation adds (less its coarse
    Nyquist modes, which no restricted state holds); the fine solver carries it on from there.
    Every registered coarse grid, at its small settings (``tests.conftest.own_sections``)."""
    system = make_system(parse_params({name: own_sections(name)[name]}).setup(name).system)
    key = jax.random.key(7)
    states, _ = jax.jit(lambda k: system.reference_trajectory(k, {}, 20, 6, 1))(key)

    def noisy(sigma):
        run = jax.jit(lambda k: system.reference_with_noise(k, {}, 20, 6, 1, (sigma, 3)))
        return np.asarray(run(key))

    scale = float(jnp.linalg.norm(states))
    assert np.linalg.norm(noisy(0.0) - states) / scale < 1e-14
    sigma = 1e-3
    kicked = noisy(sigma)
    expected = coarse_kick((sigma, 3), system.dt, system.closure_shape)(jnp.asarray(0))
    # the hybrid's rollout draws the same ξ_0 for the same seed and step
    xi = jax.random.normal(jax.random.fold_in(jax.random.key(3), 0), system.closure_shape)
    np.testing.assert_allclose(expected, system.dt * mean_free(sigma * xi), atol=1e-18)
    expected = np.asarray(system.resample(expected[0], system.state_shape[-1]))  # no Nyquist
    np.testing.assert_allclose(kicked[1] - states[1], expected[None], atol=1e-14)
    assert np.linalg.norm(kicked[2:] - states[2:]) > 0.1 * np.linalg.norm(expected)


def test_the_filter_closure_has_no_noisy_reference():
    system = SYSTEMS["kolmogorov"](closure_kind="filter")
    assert not system.noisy_reference and not isinstance(system, ExactClosure)
    with pytest.raises(NotImplementedError, match="filter closure does not reproduce"):
        system.reference_with_noise(jax.random.key(0), {}, 0, 2, 1, (0.1, 0))
    assert SYSTEMS["ks"]().noisy_reference


def test_a_coarse_grid_split_gets_its_ablation_from_its_reference_run():
    """ks (correction): the split's trajectories rerun without noise are the stored ones, the
    ablation of σ = 0 has error 0, and the evaluation reports the ablation (from the closure's
    own misfit) beside the coarse solver alone; with the filter closure it stays absent."""
    params = small_params()["ks"]
    ds = generate_split(parse_params({"ks": params}).setup("ks"), "test", PROVENANCE)
    np.testing.assert_allclose(noisy_references(ds, 0.0), ds.u.values, rtol=0, atol=1e-13)
    # a split that does not start where its seed's run starts (other code, another seed) is
    # refused, not scored against the wrong truth
    with pytest.raises(DatasetError, match="regenerate it"):
        noisy_references(ds.assign_attrs(seed=ds.attrs["seed"] + 1), 0.0)
    zero, _ = ablation(ds, 0.0, bound=10.0, report_time=2.0, spatial=1)
    assert zero.error_horizon < 1e-13

    def coarse_alone(u):  # a closure network that predicts nothing: its misfit is the labels'
        return jnp.zeros_like(u)

    summaries, curves, _ = evaluate_splits({"test": ds}, coarse_alone, report_time=2.0)
    test = summaries["test"]
    sigma = float(np.sqrt(np.mean(ds.y.values**2)))
    assert test.ablation.misfit_std == pytest.approx(sigma, rel=1e-12)
    assert 0 < test.ablation.error_horizon < test.error_horizon
    assert test.error_vs_ablation == pytest.approx(
        test.error_horizon / test.ablation.error_horizon, rel=1e-12
    )
    assert curves["test"]["ablation_rel_error"].shape == (ds.sizes["time"] - 1,)
    assert test.coarse_alone is not UNMEASURED

    params_f = {**params, "system": {**params["system"], "closure_kind": "filter"}}
    filtered = generate_split(parse_params({"ks": params_f}).setup("ks"), "test", PROVENANCE)
    assert not system_groups(filtered)[0][0].noisy_reference
    summaries, curves, _ = evaluate_splits({"test": filtered}, coarse_alone, report_time=2.0)
    assert summaries["test"].ablation is None and "ablation_rel_error" not in curves["test"]
