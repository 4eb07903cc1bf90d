"""The manifold model's quality as the TR estimator needs it: the floor diagnostic on a known
manifold, and the PCA manifold kind (an exact projector onto the leading principal modes, with
periodic-shift augmentation)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ml4dynamics.core.errors import ML4DError
from ml4dynamics.core.fields import FieldSpec
from ml4dynamics.learning.closure_training import frozen
from ml4dynamics.learning.estimators import parse_estimator
from ml4dynamics.learning.manifold_fitting import fit_pca, random_shift
from ml4dynamics.learning.manifold_quality import FLOOR_RATIO_LIMIT, floor, ratio, warnings
from ml4dynamics.models import LinearAutoencoder, PCAManifoldConfig, build_manifold
from ml4dynamics.systems import Linear, LinearConfig


def linear_batch(system: Linear, n: int = 32) -> dict:
    """States on V = span(e1) with their exact closure y = C u."""
    u = jnp.stack([jnp.linspace(-2.0, 2.0, n), jnp.zeros(n)], axis=1)
    return {"u": u, "y": u @ system.C.T, "t": jnp.zeros(n)}


@pytest.mark.parametrize("normal", ["projector", "gradient"])
def test_the_floor_separates_a_normal_error_from_a_tangent_error(normal):
    """On a known manifold (V = span(e1), the exact projector as the manifold model, plus a small
    model error of the manifold itself), a closure whose error pushes the field off V has a
    penalty far above the floor; a closure whose error stays tangent to V has the floor's penalty
    (ratio ≈ 1): the manifold model cannot tell its error from its own."""
    system = Linear(LinearConfig(A=((0.95, 0.0), (0.0, 1.2)), C=((-0.05, 0.0), (0.0, -0.3))))
    # a slightly wrong manifold: the projector onto a line tilted by 1e-2 from e1
    tilt = jnp.array([[1.0, 1e-2]]) / jnp.sqrt(1.0 + 1e-4)
    reconstruct = frozen(LinearAutoencoder.exact_projector(tilt))
    batch = linear_batch(system)
    estimator = parse_estimator(
        {"kind": "tr", "normal": normal}, "estimators.tr", {"reg": {"lam": 1.0, "eps": 1e-12}}
    )
    prepared = estimator.prepare(batch, reconstruct)
    base = floor(estimator, system, prepared, reconstruct)
    assert base > 0  # the tilted manifold's own error

    def penalty(closure_error):  # B = I: the closure's error is the field's error (dt = 1)
        closure = lambda u: u @ system.C.T + closure_error(u)  # noqa: E731
        return float(estimator.penalty(system, closure, prepared, reconstruct))

    normal_error = penalty(lambda u: 0.1 * u[:, :1] * jnp.array([0.0, 1.0]))  # along e2
    tangent_error = penalty(lambda u: 0.1 * u[:, :1] * jnp.array([1.0, 0.0]))  # along e1
    assert ratio(base, normal_error) < 0.05 * FLOOR_RATIO_LIMIT
    assert ratio(base, tangent_error) > 0.5  # indistinguishable from the floor
    record = {"floor_ratio": ratio(base, tangent_error)}
    (line,) = warnings(record, "linear tr")
    assert "cannot tell this closure's errors from its own" in line
    assert warnings({"floor_ratio": ratio(base, normal_error)}, "linear tr") == []
    assert "lower the floor" in line  # an OLS-type closure: the manifold model is too coarse


def test_a_tr_closure_near_the_floor_is_told_it_used_the_signal_up_not_to_lower_the_floor():
    """TR trains its penalty down towards the floor, so its ratio rises whatever the manifold
    model's quality: the warning says so instead of sending the user to refit the manifold."""
    record = {"floor_ratio": 0.33, "train_floor": 0.1, "below_floor": False}
    (line,) = warnings(record, "rd tr-projector")
    assert "cannot tell this closure's errors from its own" in line
    assert "removed the normal error" in line and "lower the floor" not in line


def test_a_penalty_below_the_floor_is_flagged():
    record = {"floor_ratio": 1.3, "train_floor": 0.1, "below_floor": True}
    lines = warnings(record, "rd tr-gradient")
    assert len(lines) == 2 and "fell below the manifold's floor (0.1)" in lines[1]


PERIODIC = FieldSpec(channels=2, grid=(16, 16), periodic=True)


def travelling_states(n: int, rng) -> np.ndarray:
    """Two-channel fields of three Fourier modes each, random amplitudes and phases."""
    x = np.arange(16) * 2 * np.pi / 16
    xx, yy = np.meshgrid(x, x, indexing="ij")
    out = np.zeros((n, 2, 16, 16))
    for k in range(n):
        for c in range(2):
            for kx, ky in ((1, 0), (0, 2), (1, 1)):
                a, phase = rng.normal(), rng.uniform(0, 2 * np.pi)
                out[k, c] += a * np.cos(kx * xx + ky * yy + phase)
    return out


def test_pca_is_the_exact_projector_onto_the_leading_modes():
    rng = np.random.default_rng(0)
    u = travelling_states(40, rng)  # a 12-dimensional linear space (3 modes x cos/sin x 2)
    model, record = fit_pca(PERIODIC, PCAManifoldConfig("pca", 20, 0.999999, 0), jnp.asarray(u))
    assert record["rank"] == 12 and record["explained_variance"] > 0.999999
    reconstruct = frozen(model)
    new = travelling_states(5, rng)
    for v in new:  # states of the same space: F = 0 to round-off
        np.testing.assert_allclose(reconstruct(jnp.asarray(v)), v, atol=1e-12)
    # D∘E is an orthogonal projector: idempotent and symmetric (its Jacobian)
    w = jnp.asarray(rng.normal(size=(2, 16, 16)))
    p = reconstruct(w)
    np.testing.assert_allclose(reconstruct(p), p, atol=1e-12)
    jac = jax.jacfwd(reconstruct)(w).reshape(512, 512)
    np.testing.assert_allclose(jac, jac.T, atol=1e-12)
    # the energy threshold chooses fewer modes; rows past the rank are zero
    model, record = fit_pca(PERIODIC, PCAManifoldConfig("pca", 20, 0.5, 0), jnp.asarray(u))
    assert 1 <= record["rank"] < 12
    assert np.all(np.asarray(model.basis[...])[record["rank"] :] == 0.0)


def test_periodic_shifts_let_pca_see_translated_patterns():
    """One pattern at a fixed phase spans one mode; with random translations of it, the modes
    cover the translated pattern too (a shifted state is reconstructed)."""
    x = np.arange(16) * 2 * np.pi / 16
    xx, yy = np.meshgrid(x, x, indexing="ij")
    pattern = np.stack([np.cos(xx + 2 * yy), np.sin(yy)])
    u = jnp.asarray(np.stack([a * pattern for a in np.linspace(0.5, 2.0, 8)]))
    shifted = np.roll(pattern, (3, 5), axis=(1, 2))
    plain, _ = fit_pca(PERIODIC, PCAManifoldConfig("pca", 30, 0.999999, 0), u)
    augmented, record = fit_pca(PERIODIC, PCAManifoldConfig("pca", 30, 0.999999, 8), u)
    assert record["fit_states"] == 8 * 9
    f = lambda m: float(jnp.sum((frozen(m)(jnp.asarray(shifted)) - shifted) ** 2))  # noqa: E731
    assert f(plain) > 0.1 * np.sum(shifted**2) and f(augmented) < 1e-20 * np.sum(shifted**2)


def test_random_shift_is_a_periodic_translation():
    u = jnp.arange(2 * 4 * 6, dtype=jnp.float64).reshape(2, 4, 6)
    v = random_shift(u, jax.random.key(3), 2)
    matches = [
        (a, b) for a in range(4) for b in range(6) if np.array_equal(np.roll(u, (a, b), (1, 2)), v)
    ]
    assert len(matches) == 1


def test_pca_configs_are_checked():
    with pytest.raises(ML4DError, match="no bottleneck"):
        build_manifold(PCAManifoldConfig("pca", 512, 0.9, 0), PERIODIC, 0)
    walls = FieldSpec(channels=2, grid=(16, 16), periodic=False)
    with pytest.raises(ML4DError, match="needs a periodic grid; .*use shifts: 0"):
        build_manifold(PCAManifoldConfig("pca", 8, 0.9, 4), walls, 0)
