"""Estimators against closed forms and known manifolds (docs/design.md §1)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import yaml
from flax import nnx

from ml4dynamics.datasets import open_dataset
from ml4dynamics.datasets.pairs import as_pairs, system_of
from ml4dynamics.learning.closure_training import train_closure
from ml4dynamics.learning.estimators import ESTIMATORS, Estimator, parse_estimator
from ml4dynamics.learning.estimators.base import projector_penalty
from ml4dynamics.learning.estimators.tangent_space import gradient_penalty, unit_normal
from ml4dynamics.learning.training import OptimConfig
from ml4dynamics.models import LinearAutoencoder, LinearClosure
from ml4dynamics.studies import linear_theory as lt
from tests.conftest import REPO

#: params.yaml's estimators (name → entry): the tests that hold for every estimator run each of
#: them, so a new kind is covered by its entry there (``test_params_configure_every_kind``)
CONFIGURED = yaml.safe_load((REPO / "params.yaml").read_text())["estimators"]


def test_params_configure_every_kind():
    """Every registered kind has an entry under ``estimators`` in params.yaml, so the lists of
    estimators taken from there (here and in test_training) miss none."""
    assert {entry["kind"] for entry in CONFIGURED.values()} == set(ESTIMATORS)


def reg(kind: str, lam: float = 0.0, wd: float = 0.0, normal: str = "projector") -> Estimator:
    """The estimator ``kind`` as params.yaml would configure it (only the keys it uses)."""
    entry = {"kind": kind, **({"wd": wd} if kind == "mols" else {})}
    entry |= {"normal": normal} if kind == "tr" else {}
    return parse_estimator(entry, f"estimators.{kind}", {"reg": {"lam": lam, "eps": 1e-12}})


@pytest.fixture(scope="module")
def linear_data(generated):
    ds = open_dataset(generated / "linear" / "train.zarr")
    return system_of(ds), as_pairs(ds)


def design_closed_forms(system, u: np.ndarray, y: np.ndarray, lam: float, wd: float):
    """docs/design.md §1 written out independently of the library: Σ on V, Ĉ_OLS = Γ Σ⁺, etc."""
    a, b = np.asarray(system.A), np.asarray(system.B)
    sigma = u.T @ u / len(u)
    c_ols = (y.T @ u / len(u)) @ np.linalg.pinv(sigma)
    p_v = np.outer([1.0, 0.0], [1.0, 0.0])  # V = span(e1)
    p_perp = np.eye(2) - p_v
    c_tr = np.linalg.inv(np.eye(2) + lam * b.T @ p_perp @ b) @ (
        c_ols - lam * b.T @ p_perp @ a @ p_v
    )
    c_mols = c_ols @ sigma @ np.linalg.inv(sigma + wd * np.eye(2))
    return {"ols": c_ols, "tr": c_tr, "mols": c_mols}


@pytest.mark.parametrize("kind", ["ols", "mols", "tr"])
def test_gradient_trained_linear_closures_match_the_closed_forms(linear_data, kind):
    system, data = linear_data
    lam, wd = 3.0, 0.05
    u, y = np.asarray(data["u"]), np.asarray(data["y"])
    expected = design_closed_forms(system, u, y, lam, wd)[kind]
    # full-batch gradient descent from zero with step 1/L (L: the loss's largest curvature)
    s_max = np.linalg.eigvalsh(u.T @ u / len(u)).max()
    curvature = 2 * s_max * (1 + lam) + 2 * wd
    model = LinearClosure(2, 2, rngs=nnx.Rngs(0))
    exact_ae = LinearAutoencoder.exact_projector(jnp.array([[1.0, 0.0]]))
    train_closure(
        system,
        model,
        reg(kind, lam=lam if kind == "tr" else 0.0, wd=wd if kind == "mols" else 0.0),
        OptimConfig(
            optimizer="sgd",
            lr=1 / curvature,
            epochs=600,
            batch_size=0,
            seed=0,
            checkpoint_every=600,
        ),
        data,
        reconstruct=lambda v: exact_ae(v[None])[0],
        progress=False,
    )
    trained = np.asarray(model.C[...])
    np.testing.assert_allclose(trained, expected, rtol=0, atol=1e-6)
    assert trained[0, 1] == trained[1, 1] == 0.0  # the column on V⊥ is never seen: stays at zero


def test_library_closed_forms_equal_design(linear_data):
    system, data = linear_data
    u, y = np.asarray(data["u"]), np.asarray(data["y"])
    sigma, gamma = lt.moments(u, y)
    p_v = lt.subspace_projector(np.array([[1.0, 0.0]]))
    for lam in (0.5, 64.0, 2048.0):
        want = design_closed_forms(system, u, y, lam, lam)
        np.testing.assert_allclose(lt.ols(sigma, gamma), want["ols"], atol=1e-14)
        np.testing.assert_allclose(lt.mols(sigma, gamma, lam), want["mols"], atol=1e-14)
        np.testing.assert_allclose(
            lt.tr_projector(system, sigma, gamma, p_v, lam), want["tr"], atol=1e-14
        )


def circle_projection(u):
    """Exact 'autoencoder' of the unit circle: u ↦ u/‖u‖, so F = (‖u‖ − 1)²."""
    return u / jnp.linalg.norm(u)


@pytest.mark.parametrize("theta", [0.3, 2.0, 4.5])
def test_both_penalties_vanish_for_tangent_fields_and_not_for_normal_ones(theta):
    on = jnp.array([np.cos(theta), np.sin(theta)])
    tangent, normal = jnp.array([-on[1], on[0]]), on
    # projector form, on the manifold: (I − J) kills the tangent direction only
    assert projector_penalty(circle_projection, on, tangent) < 1e-28
    assert projector_penalty(circle_projection, on, normal) == pytest.approx(1.0, rel=1e-12)
    # gradient form, just off the manifold (∇F = 0 exactly on it): n is the radial direction
    off = 1.01 * on
    n = unit_normal(circle_projection, off, eps=1e-12)
    np.testing.assert_allclose(n, on, atol=1e-9)
    assert gradient_penalty(n, tangent) < 1e-18
    assert gradient_penalty(n, normal) == pytest.approx(1.0, rel=1e-8)


def test_penalties_through_the_hybrid_field_of_the_linear_system(linear_data):
    """V_θ(u) = (S(u, φ_θ(u)) − u)/Δt with the system's own step: tangent to V for a closure
    that cancels the e2 dynamics, normal for one that pushes data off V."""
    system, _ = linear_data
    ae = LinearAutoencoder.exact_projector(jnp.array([[1.0, 0.0]]))

    def recon(v):
        return ae(v[None])[0]

    u = jnp.array([[0.7, 1e-3], [-1.2, -2e-3]])  # near V, so that ∇F ≠ 0 for the gradient form
    batch = {"u": u, "t": jnp.zeros(2)}
    a21 = float(system.A[1, 0])  # the coupling of e1 into e2, cancelled or not by Ĉ
    tangent_c = jnp.array([[0.3, 0.0], [-a21, -0.2]])  # A + BĈ − I = diag(0.25, 0): V ∥ e1
    normal_c = jnp.array([[0.05, 0.0], [1.0 - a21, -0.2]])  # A + BĈ − I = [[0, 0], [1, 0]]: e2
    for normal in ("gradient", "projector"):
        r = reg("tr", lam=1.0, normal=normal)
        n = jax.vmap(lambda v: unit_normal(recon, v, 1e-12))(u)
        b = {**batch, "n": n}
        assert r.penalty(system, lambda x: x @ tangent_c.T, b, recon) < 1e-20
        assert r.penalty(system, lambda x: x @ normal_c.T, b, recon) > 0.5


def test_gradient_form_degenerates_on_exact_data(linear_data):
    """On the manifold itself ∇F = 0, so the paper's normal is 0 and the penalty vanishes even
    for a normal field; the projector form still sees it. (Why we offer both.)"""
    system, _ = linear_data
    ae = LinearAutoencoder.exact_projector(jnp.array([[1.0, 0.0]]))

    def recon(v):
        return ae(v[None])[0]

    u = jnp.array([[0.7, 0.0]])
    normal_c = jnp.array([[0.05, 0.0], [1.0, -0.2]])
    n = jax.vmap(lambda v: unit_normal(recon, v, 1e-12))(u)
    batch = {"u": u, "t": jnp.zeros(1), "n": n}
    assert np.all(np.asarray(n) == 0.0)
    assert (
        reg("tr", 1.0, normal="gradient").penalty(system, lambda x: x @ normal_c.T, batch, recon)
        == 0.0
    )
    assert (
        reg("tr", 1.0, normal="projector").penalty(system, lambda x: x @ normal_c.T, batch, recon)
        > 0.4
    )


def test_tr_with_the_exact_manifold_shrinks_ols_toward_the_truth_by_one_over_one_plus_lambda(
    linear_data,
):
    """With B = I and D∘E = P_V exactly, the penalty's zero set on V-data is the exact closure's
    V⊥ row (the truth keeps V invariant), so TR's estimate is (Ĉ_OLS + λ C)/(1 + λ) there, for
    any A, coupled or not: TR's error is OLS's divided by 1 + λ. (Why the linear experiment's
    1/λ law is not evidence beyond the linear theory.)"""
    system, data = linear_data
    assert float(system.A[1, 0]) != 0.0  # the configured toy is coupled: P⊥ A P_V ≠ 0
    u, y = np.asarray(data["u"]), np.asarray(data["y"])
    sigma, gamma = lt.moments(u, y)
    p_v = lt.subspace_projector(np.array([[1.0, 0.0]]))
    c_ols, c = lt.ols(sigma, gamma), np.asarray(system.C)
    for lam in (1.0, 10.0, 1000.0):
        c_tr = lt.tr_projector(system, sigma, gamma, p_v, lam)
        np.testing.assert_allclose(
            c_tr[1, 0] - c[1, 0], (c_ols[1, 0] - c[1, 0]) / (1 + lam), atol=1e-15
        )
        assert c_tr[0, 0] == pytest.approx(c_ols[0, 0], abs=1e-15)  # V's row: data misfit only


def test_field_ols_measures_the_closure_error_through_the_step():
    """field-ols's misfit is ‖V_θ(u) − V(u)‖² = ‖B(Ĉ − C)u‖²/Δt² on the linear toy: 4× the data
    misfit for B = 2I, Δt = 1, and a quarter of that again for Δt = 2."""
    from ml4dynamics.learning.estimators.least_squares import field_misfit
    from ml4dynamics.systems import Linear, LinearConfig

    u = jnp.array([[1.0, 0.0], [-0.5, 0.0], [2.0, 0.0]])
    for dt, factor in ((1.0, 4.0), (2.0, 1.0)):
        system = Linear(
            LinearConfig(
                dt=dt,
                A=((0.95, 0.0), (0.1, 1.2)),
                B=((2.0, 0.0), (0.0, 2.0)),
                C=((-0.025, 0.0), (-0.05, -0.15)),
            )
        )
        batch = {"u": u, "y": u @ system.C.T, "t": jnp.zeros(3)}
        wrong = jnp.array([[0.1, 0.0], [0.3, 0.0]])

        def closure(x, wrong=wrong, system=system):
            return x @ (system.C + wrong).T

        data = float(jnp.mean(jnp.sum((u @ wrong.T) ** 2, axis=1)))
        assert float(field_misfit(system, closure, batch)) == pytest.approx(
            factor * data, rel=1e-12
        )
        loss, parts = reg("field-ols").loss(system, closure, batch, None, None)
        assert float(parts["misfit"]) == pytest.approx(data, rel=1e-12) and loss == parts["field"]
        # ols-field, TR's loss with the identity for (I − J): misfit + λ·field misfit
        loss, parts = reg("ols-field", lam=0.5).loss(system, closure, batch, None, None)
        assert float(parts["field"]) == pytest.approx(factor * data, rel=1e-12)
        assert float(loss) == pytest.approx((1 + 0.5 * factor) * data, rel=1e-12)
        exact, _ = reg("ols-field", lam=0.5).loss(
            system, lambda x, c=system.C: x @ c.T, batch, None, None
        )
        assert float(exact) == 0.0  # no floor: it measures the error against the labels' field


def test_on_a_correction_closure_the_control_is_ols_with_its_loss_scaled():
    """A coarse grid closed by an additive correction (ks, kolmogorov) steps S_c(u) + Δt·y less
    y's mean: the hybrid field's error is the closure's own mean-free error, so for a mean-free
    closure ols-field's loss is (1 + λ)× OLS's, and Adam, whose steps do not see a loss's scale
    (but for its ε), trains the same network. The control separates tangency from a field norm
    only where the closure enters the field through an operator (ns_channel's Δt∇p̂)."""
    import optax

    from ml4dynamics.learning.estimators.least_squares import field_misfit
    from ml4dynamics.systems.coarse_grid import mean_free
    from ml4dynamics.systems.kuramoto_sivashinsky import (
        KuramotoSivashinsky,
        KuramotoSivashinskyConfig,
    )

    system = KuramotoSivashinsky(KuramotoSivashinskyConfig())
    ku, ky, kw = jax.random.split(jax.random.key(0), 3)
    u = jax.random.normal(ku, (6, *system.state_shape))
    batch = {"u": u, "y": jax.vmap(mean_free)(jax.random.normal(ky, u.shape)), "t": jnp.zeros(6)}

    def net(w):
        return lambda x: jax.vmap(mean_free)(jnp.tanh(x * w))

    w0 = 0.5 + 0.1 * jax.random.normal(kw, system.state_shape)
    misfit = float(reg("ols").loss(system, net(w0), batch, None, None)[0])
    assert float(field_misfit(system, net(w0), batch)) == pytest.approx(misfit, rel=1e-10)
    control = reg("ols-field", lam=3.0)
    assert float(control.loss(system, net(w0), batch, None, None)[0]) == pytest.approx(
        4 * misfit, rel=1e-10
    )

    def trained(estimator):
        optimiser, w = optax.adam(1e-2), w0
        state = optimiser.init(w)
        for _ in range(20):
            grad = jax.grad(lambda v: estimator.loss(system, net(v), batch, None, None)[0])(w)
            step, state = optimiser.update(grad, state)
            w = optax.apply_updates(w, step)
        return np.asarray(w)

    np.testing.assert_allclose(trained(control), trained(reg("ols")), rtol=1e-6)
    assert not np.allclose(trained(reg("ols")), np.asarray(w0))  # the steps moved it


@pytest.mark.parametrize("kind", ["tr", "field-ols", "ols-field"])
def test_two_term_losses_run_the_network_once_with_the_same_value_and_gradient(linear_data, kind):
    """TR (misfit + λ·penalty) and field-OLS (field misfit, data misfit reported) both need
    φ_θ(u): the loss evaluates the network once (a forward and a backward pass saved per step),
    and its value and gradient are those of evaluating it in each term."""
    from ml4dynamics.learning.estimators.base import data_misfit, mean_projector_penalty
    from ml4dynamics.learning.estimators.least_squares import field_misfit

    system, data = linear_data
    ae = LinearAutoencoder.exact_projector(jnp.array([[1.0, 0.0]]))

    def recon(v):
        return ae(v[None])[0]

    batch = {"u": jnp.asarray(data["u"][:5]), "y": jnp.asarray(data["y"][:5]), "t": jnp.zeros(5)}
    calls = []

    def closure_of(c):
        def closure(x):
            calls.append(1)
            return x @ c.T

        return closure

    def twice(c):  # each term evaluates the network itself
        net = closure_of(c)
        if kind == "tr":
            return data_misfit(net, batch["u"], batch["y"]) + 1.0 * mean_projector_penalty(
                system, net, batch, recon
            )
        misfit = data_misfit(net, batch["u"], batch["y"])  # field-ols: reported beside it
        field = field_misfit(system, net, batch)
        return misfit + 1.0 * field if kind == "ols-field" else field

    def once(c):
        return reg(kind, lam=1.0).loss(system, closure_of(c), batch, None, recon)[0]

    c = jnp.array([[0.3, -0.1], [0.7, -0.2]])
    calls.clear()
    value, grad = jax.value_and_grad(once)(c)
    assert len(calls) == 1
    calls.clear()
    ref_value, ref_grad = jax.value_and_grad(twice)(c)
    assert len(calls) == 2
    assert float(value) == pytest.approx(float(ref_value), rel=1e-13)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-12, atol=1e-15)


def test_a_closure_evaluated_once_refuses_another_batch():
    from ml4dynamics.learning.estimators.base import evaluated_once

    u = jnp.ones((2, 3))
    once = evaluated_once(lambda x: 2 * x, u)
    assert once(u) is once(u)
    with pytest.raises(ValueError, match="only for the batch it was given"):
        once(jnp.ones((2, 3)))


@pytest.mark.parametrize("n", [5, 32, 40, 64, 70])
def test_in_chunks_gives_one_call_s_values_in_calls_of_at_most_the_chunk(n):
    from ml4dynamics.learning.estimators.base import in_chunks

    u = jax.random.normal(jax.random.key(0), (n, 2, 3))
    sizes = []

    def closure(x):
        sizes.append(x.shape[0])
        return jnp.tanh(x).sum(axis=-1, keepdims=True) * x

    out = in_chunks(closure, u, 32)
    assert max(sizes) <= 32 and out.shape == u.shape
    np.testing.assert_allclose(out, closure(u), rtol=1e-14, atol=1e-15)
    with pytest.raises(ValueError, match="chunk size"):
        in_chunks(closure, u, 0)


@pytest.mark.parametrize("name", CONFIGURED)
def test_validation_runs_the_network_once_in_chunks_with_one_call_s_metrics(
    linear_data, name, monkeypatch
):
    """Validation evaluates the network on the held-out states once, VALIDATION_CHUNK states
    per call (field-OLS's own field misfit reuses that evaluation), and its metrics are those
    of one call on all of them."""
    from ml4dynamics.learning.estimators import base, least_squares

    system, data = linear_data
    ae = LinearAutoencoder.exact_projector(jnp.array([[1.0, 0.0]]))

    def recon(v):
        return ae(v[None])[0]

    n = 45
    batch = {"u": jnp.asarray(data["u"][:n]), "y": jnp.asarray(data["y"][:n]), "t": jnp.zeros(n)}
    estimator = parse_estimator(
        CONFIGURED[name], f"estimators.{name}", {"reg": {"lam": 1.0, "eps": 1e-12}}
    )
    batch = estimator.prepare(batch, recon)  # (TR's gradient form: the normals)
    c = jnp.array([[0.3, -0.1], [0.7, -0.2]])
    sizes = []

    def closure(x):
        sizes.append(x.shape[0])
        return x @ c.T

    monkeypatch.setattr(base, "VALIDATION_CHUNK", 8)
    monkeypatch.setattr(least_squares, "VALIDATION_CHUNK", 8)
    chunked = estimator.validation(system, closure, batch, recon)
    assert sizes == [8, 5]  # one traced call per chunk of the 40, one for the remaining 5
    sizes.clear()
    monkeypatch.setattr(base, "VALIDATION_CHUNK", n)
    monkeypatch.setattr(least_squares, "VALIDATION_CHUNK", n)
    whole = estimator.validation(system, closure, batch, recon)
    assert sizes == [n]
    assert chunked.keys() == whole.keys() and "val_tr_penalty" in whole
    for k in whole:
        assert float(chunked[k]) == pytest.approx(float(whole[k]), rel=1e-13), k
