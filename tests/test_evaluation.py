"""A-posteriori metrics and promotion gates, checked against cases with known answers."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import xarray as xr

from ml4dynamics.core.errors import ML4DError
from ml4dynamics.datasets import open_dataset
from ml4dynamics.datasets.pairs import system_groups
from ml4dynamics.evaluation.metrics import correlation
from ml4dynamics.evaluation.result import (
    UNMEASURED,
    CoarseAlone,
    EvaluationResult,
    SplitSummary,
    headline,
    score_metric,
    split_score,
)
from ml4dynamics.evaluation.scoring import score_split
from ml4dynamics.registry.gates import GATES, Champion, check, refusal
from ml4dynamics.simulation.hybrid import hybrid_rollouts
from ml4dynamics.systems import ExactClosure
from tests.conftest import REPO
from tests.results import result, summary


def synthetic(truth: np.ndarray, dt: float = 0.5) -> xr.Dataset:
    """A dataset-shaped container: (sample, time, field, x) with times 3, 3.5, ..."""
    times = 3.0 + dt * np.arange(truth.shape[1])
    return xr.Dataset({"u": (("sample", "time", "field", "x"), truth)}, coords={"time": times})


def test_oracle_hybrid_rollouts_score_zero_error_on_every_split(generated):
    """The exact closure through the evaluation path: error 0 to round-off, correlation 1,
    stable everywhere — also on the ood split, rolled out with one system per γ_u."""
    for split in ("test", "ood"):
        ds = open_dataset(generated / "rd" / f"{split}.zarr")
        groups = system_groups(ds)
        assert len(groups) == (2 if split == "ood" else 1)  # ood holds γ_u = 0.1 and 0.2
        system = groups[0][0]
        pred = hybrid_rollouts(ds, system.closure if split == "test" else _exact(groups))
        summary, curves = score_split(ds, pred, bound=10.0, report_time=2.0, spatial_axes=2)
        assert summary.error_horizon < 1e-12  # the same S and closure: round-off only
        assert summary.stable_fraction == 1.0
        assert summary.corr_censored_95 == summary.trajectories  # never decorrelates
        assert np.all(curves["correlation"] > 1 - 1e-12)


def _exact(groups):
    """An exact closure that works for every group: the closure is the same function of u for
    every γ_u (only the diffusion, inside S, depends on it)."""
    return groups[0][0].closure


def test_known_errors_correlations_and_times():
    rng = np.random.default_rng(0)
    truth = rng.normal(size=(2, 5, 1, 16)) + 3.0  # a mean that centring must remove
    pred = truth.copy()
    pred[:, 1:] *= 1.1  # 10 % amplitude error: relative error exactly 0.1 everywhere
    pred[1, 3:] = -truth[1, 3:]  # trajectory 1 anti-correlated from frame 3 on
    ds = synthetic(truth)
    summary, curves = score_split(ds, pred, bound=10.0, report_time=1.0, spatial_axes=1)
    err = np.linalg.norm((pred - truth).reshape(2, 5, -1), axis=2) / np.linalg.norm(
        truth.reshape(2, 5, -1), axis=2
    )
    assert summary.error_horizon == pytest.approx(err[:, -1].mean(), rel=1e-12)
    assert summary.error_report == pytest.approx(err[:, 2].mean(), rel=1e-12)  # t = 1: frame 2
    assert "error_t1" in summary.to_json()  # (the report time names it)
    assert summary.error_sq_horizon == pytest.approx((err[:, -1] ** 2).mean(), rel=1e-12)
    np.testing.assert_allclose(curves["rel_error"][:2], 0.1, rtol=1e-12)
    # trajectory 0 stays correlated (censored at the horizon 2.0); 1 drops at frame 3 (t = 1.5)
    assert summary.corr_time_90 == pytest.approx((2.0 + 1.5) / 2)
    assert summary.corr_censored_90 == 1
    # centred: a constant offset does not change the correlation, a scale does not either
    rho = correlation(truth[:, :2] * 2 + 5, truth[:, :2], spatial_axes=1)
    np.testing.assert_allclose(rho, 1.0, rtol=1e-12)


def test_blow_up_is_detected_and_poisons_only_what_follows():
    truth = np.ones((2, 6, 1, 4))
    pred = truth.copy()
    pred[0, 3] = 50.0  # beyond 10 x max|truth| at frame 3 (t = 1.5) ...
    pred[0, 4] = 1.0  # ... and back: still counted as blown up from there on
    pred[1, 5] = np.nan  # non-finite at the last frame
    summary, curves = score_split(synthetic(truth), pred, bound=10.0, report_time=0.5)
    assert summary.stable_fraction == 0.0
    assert summary.stability_horizon == 1.0  # last good frame of trajectory 0: t = 1.0
    assert summary.error_horizon is None  # not finite: reported as null
    assert summary.error_report == pytest.approx(0.0)  # (t = 0.5)
    assert split_score([summary], chaotic=False) is None
    good, _ = score_split(synthetic(truth), truth * 1.23456, bound=10.0, report_time=0.5)
    top = headline(_evaluated({"val": good, "test": good, "ood": summary}))
    assert top == {  # each error named with its time: the report time 0.5, the horizon 2.5
        "val_t2_5": 0.235,
        "test_t0_5": 0.235,  # three digits
        "test_t2_5": 0.235,
        "ood_t0_5": 0.0,
        "stable": 0.0,  # the worse split's
        "shift": None,  # blown up: not defined
    }
    # a chaotic system's λ is chosen on the validation error at the report time, and its
    # horizon error and its shift (decorrelated: round-off decides them) are left out
    chaotic = headline(_evaluated({"val": good, "test": good, "ood": summary}, chaotic=True))
    assert list(chaotic) == ["val_t0_5", "test_t0_5", "ood_t0_5", "stable"]


def _evaluated(splits, chaotic: bool = False) -> EvaluationResult:
    return result(splits, chaotic, "ks" if chaotic else "rd")


def test_gates_pass_fail_and_say_why(thresholds):
    # within params.yaml's thresholds: the error at 40 % of its bound, the shift at 25 %
    error, shift = 0.4 * thresholds["max_error"], 0.25 * thresholds["max_shift"]
    split = summary(stability_horizon=10.0, error_horizon=error, excess_shift=shift)
    good = result({"test": split, "ood": split})
    assert good.score == pytest.approx(error)  # the mean over test and ood
    assert all(g.passed for g in check(good, thresholds))
    assert all(g.passed for g in check(good, thresholds, Champion(2 * error, "v1")))
    worse = check(good, thresholds, Champion(error / 2, "v1"))  # the champion scores better
    assert [g.name for g in worse if not g.passed] == ["not_worse_than_champion"]
    ood = summary(stable_fraction=0.5, stability_horizon=3.0, error_horizon=None)
    blown = result({"test": split, "ood": ood})
    assert blown.score is None  # a blown-up closure has no score
    failed = check(blown, thresholds, Champion(0.1, "v1"))
    assert [g.name for g in failed] == list(GATES)  # every registered gate, in order
    assert {g.name for g in failed if not g.passed} == {
        "finite_and_bounded",
        "error_at_horizon",
        "not_worse_than_champion",
    }
    reason = refusal(failed)
    assert "ood: 1 of 2 trajectories blow up (first after t = 3)" in reason
    assert f"ood error at horizon not finite > {thresholds['max_error']:g}" in reason


def test_the_ablation_is_the_exact_closure_plus_noise_of_the_misfits_size(generated):
    """The ablation rollout: with σ = 0 it is the oracle (error 0 to round-off); on the linear
    toy its deviation from the truth is linear in the noise, so doubling σ doubles the error
    exactly (same draws); a closure off by a constant c in every element has misfit_std |c|."""
    import jax.numpy as jnp

    from ml4dynamics.evaluation.baselines import ablation, misfit_std

    ds = open_dataset(generated / "linear" / "test.zarr")
    zero, _ = ablation(ds, 0.0, bound=10.0, report_time=2.0, spatial=0)
    assert zero.error_horizon < 1e-13 and zero.misfit_std == 0.0
    once, curves = ablation(ds, 1e-3, bound=10.0, report_time=2.0, spatial=0)
    twice, _ = ablation(ds, 2e-3, bound=10.0, report_time=2.0, spatial=0)
    assert once.error_horizon > 1e-6  # the noise does move the hybrid
    assert twice.error_horizon == pytest.approx(2 * once.error_horizon, rel=1e-9)
    assert curves["rel_error"].shape == (ds.sizes["time"] - 1,)

    system = system_groups(ds)[0][0]
    offset = lambda u: jnp.stack([system.closure(v, 0.0) for v in u]) + 0.25  # noqa: E731
    # the labels of the linear data carry U[0, 1e-3) noise: the misfit is 0.25 minus its mean
    assert misfit_std(offset, ds) == pytest.approx(0.25 - 5e-4, abs=1e-4)


def test_a_system_without_an_exact_closure_is_scored_beside_the_coarse_solver_alone():
    """ks has labels only along its fine-solver trajectories: its evaluation rolls the closure
    out and scores it beside the coarse solver alone (its ablation comes from its reference run:
    tests/test_coarse_grid_ablation.py)."""
    import jax.numpy as jnp

    from ml4dynamics.config import parse_params
    from ml4dynamics.datasets import generate_split
    from ml4dynamics.evaluation.rollouts import evaluate_splits
    from tests.conftest import small_params

    setup = parse_params({"ks": small_params()["ks"]}).setup("ks")
    ds = generate_split(setup, "test", {"ml4dynamics_version": "t", "git_revision": "t"})
    assert not isinstance(system_groups(ds)[0][0], ExactClosure)

    def zero(u):  # the coarse solver alone (a closure network maps batches of states)
        return jnp.zeros_like(u)

    summaries, curves, frames = evaluate_splits({"test": ds}, zero, report_time=2.0)
    test = summaries["test"]
    assert test.stable_fraction == 1.0 and test.error_horizon > 1e-3  # it drifts off
    assert frames["test"].shape == ds.u.shape
    # ... beside the coarse solver alone, which this zero network is: the same rollout
    base = test.coarse_alone
    assert base.error_horizon == pytest.approx(test.error_horizon, rel=1e-12)
    assert base.corr_time_80 == test.corr_time_80
    assert base.spectrum_error == pytest.approx(test.spectrum_error, rel=1e-12)
    assert test.spectrum_error > 1e-6  # the coarse solver's spectrum is not the truth's
    np.testing.assert_allclose(
        curves["test"]["coarse_alone_rel_error"], curves["test"]["rel_error"]
    )


def test_a_chaotic_system_is_scored_at_the_report_time_and_against_the_coarse_solver(thresholds):
    """ks: every hybrid decorrelates before the horizon, so the error gate and the score read
    the error at the report time; beats_coarse_solver refuses a closure that decorrelates sooner
    or errs more than the coarse solver alone, and says so for each split."""
    assert score_metric(10.0, chaotic=True) == "error_t10"
    assert score_metric(10.0, chaotic=False) == "error_horizon"

    def split(corr, err, base_corr, base_err):
        base = CoarseAlone(
            error_horizon=1.4,
            stable_fraction=1.0,
            corr_time_80=base_corr,
            corr_time_95=base_corr / 2,
            corr_censored_80=0,
            report_time=10.0,
            error_report=base_err,
        )
        # decorrelated at the horizon t = 100: an error of ~sqrt(2) for everyone
        return summary(
            horizon=100.0, error_horizon=1.4, error_report=err, corr_time_80=corr, coarse_alone=base
        )

    good = _ks({"test": split(40.0, 0.03, 12.0, 0.2), "ood": split(18.0, 0.1, 9.0, 0.3)})
    assert good.score_metric == "error_t10" and good.score == pytest.approx(0.065)
    outcome = {g.name: g for g in check(good, thresholds)}
    assert all(g.passed for g in outcome.values()), refusal(list(outcome.values()))
    assert "error at t = 10 (chaotic" in outcome["error_at_horizon"].detail
    assert "test correlated (rho >= 0.8) for 40 vs 12" in outcome["beats_coarse_solver"].detail
    # decorrelates before the coarse solver
    worse = _ks({"test": split(40.0, 0.03, 12.0, 0.2), "ood": split(8.0, 0.1, 9.0, 0.3)})
    assert [g.name for g in check(worse, thresholds) if not g.passed] == ["beats_coarse_solver"]
    # longer, but a larger error at t = 10
    erring = _ks({"test": split(40.0, 0.3, 12.0, 0.2), "ood": split(18.0, 0.1, 9.0, 0.3)})
    assert [g.name for g in check(erring, thresholds) if not g.passed] == ["beats_coarse_solver"]
    # with an exact closure (rd, ns_channel) there is no coarse solver to beat: the gate passes
    rd_like = result(
        {s: dataclasses.replace(own, coarse_alone=UNMEASURED) for s, own in good.splits.items()}
    )
    beats = {g.name: g for g in check(rd_like, thresholds)}["beats_coarse_solver"]
    assert beats.passed and "no coarse solver to beat" in beats.detail


def _ks(splits) -> EvaluationResult:
    return result(splits, chaotic=True, system="ks")


def test_a_system_can_have_its_own_report_time():
    from ml4dynamics.core.errors import ConfigError
    from ml4dynamics.core.validation import parse
    from ml4dynamics.evaluation.config import EvaluateConfig

    raw = {"bound": 10.0, "report_time": 10.0, "report_times": {"kolmogorov": 2.0}}
    config = parse(EvaluateConfig, raw, "evaluate")
    assert config.for_system("kolmogorov").report_time == 2.0
    assert config.for_system("ks").report_time == 10.0  # the default elsewhere
    assert config.as_dict() == raw
    plain = parse(EvaluateConfig, {"bound": 10.0, "report_time": 10.0}, "evaluate")
    assert plain.report_times == {} and plain.as_dict() == {"bound": 10.0, "report_time": 10.0}
    with pytest.raises(ConfigError, match="report_times.kolmo.*is not a system"):
        parse(EvaluateConfig, {**raw, "report_times": {"kolmo": 2.0}}, "evaluate")
    with pytest.raises(ConfigError, match="report_times.ks.*must be a time > 0"):
        parse(EvaluateConfig, {**raw, "report_times": {"ks": -1.0}}, "evaluate")


def test_a_chaotic_hybrid_shifts_only_beyond_the_furthest_true_frame():
    """After decorrelation the true frame at the same time is an unrelated state: a dip of its
    F must not count as the hybrid's shift; going beyond the truth's furthest frame does."""
    truth = np.ones((2, 6, 1, 4))
    truth[0, 3] = 1e-3  # the truth dips toward the manifold at one frame (F = 1e-6)
    ds = synthetic(truth)

    def log10_f(u):  # F(u) = mean u²: the distance from the manifold {0}
        return np.log10(np.mean(u**2, axis=(2, 3)))

    same = np.ones_like(truth)  # as far out as the truth's usual frames
    chaotic, _ = score_split(ds, same, 10.0, 0.5, log10_f, chaotic=True)
    assert chaotic.excess_shift == pytest.approx(0.0, abs=1e-12)
    assert chaotic.excess_shift_same_frame == pytest.approx(6.0)  # the dip, not a shift
    plain, _ = score_split(ds, same, 10.0, 0.5, log10_f)
    assert plain.excess_shift == pytest.approx(6.0)
    assert plain.excess_shift_same_frame is UNMEASURED  # (and not in its JSON)
    assert "excess_shift_same_frame" not in plain.to_json()
    beyond = same.copy()
    beyond[1, 4] = 30.0  # three decades of F beyond the truth's furthest frame
    far, _ = score_split(ds, beyond, 100.0, 0.5, log10_f, chaotic=True)  # (not blown up)
    assert far.excess_shift == pytest.approx(np.log10(900.0))


COMMITTED = sorted(
    [*REPO.glob("metrics/*/evaluate/*.json"), *REPO.glob("bench/*_pipeline/evaluate/*.json")]
)


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: str(p.relative_to(REPO)))
def test_a_committed_evaluation_reads_and_writes_back_to_the_byte(path):
    """The typed result is the file: read and written back (as the evaluate stage writes it),
    every committed evaluation is the same bytes, its headline too, and its recorded score is
    the one ``split_score`` defines (at the report time for a chaotic system)."""
    evaluation = EvaluationResult.read(path)
    assert json.dumps(evaluation.to_json(), indent=2, sort_keys=True) + "\n" == path.read_text()
    headline_file = path.parent.parent / "headline" / path.name
    if headline_file.is_file():
        assert json.loads(headline_file.read_text()) == headline(evaluation)
    scored = [evaluation.splits[s] for s in ("test", "ood")]
    assert evaluation.score == split_score(scored, evaluation.chaotic)
    assert evaluation.score_metric == score_metric(evaluation.report_time, evaluation.chaotic)


def test_a_result_tells_what_was_not_measured_from_what_blew_up():
    """``UNMEASURED`` has no key in the JSON, a blow-up is ``null``; a key the result does not
    know, or one it needs and lacks, is one clear error naming it."""
    blown = summary(spectrum_error=None, ablation=None, error_vs_ablation=None)
    data = blown.to_json()
    assert data["spectrum_error"] is None and data["ablation"] is None
    assert "coarse_alone" not in data and "log10_f_true_final" not in data
    back = SplitSummary.from_json(data)
    assert back == blown and back.coarse_alone is UNMEASURED and back.ablation is None
    with pytest.raises(ML4DError, match=r"keys this version does not know: \['mystery'\]"):
        SplitSummary.from_json({**data, "mystery": 0.1}, "x")
    with pytest.raises(ML4DError, match="x has no single error at the report time"):
        SplitSummary.from_json({**data, "error_t99": 0.1}, "x")
    with pytest.raises(ML4DError, match="x has no 'corr_time_90'"):
        SplitSummary.from_json({k: v for k, v in data.items() if k != "corr_time_90"}, "x")
    with pytest.raises(ML4DError, match="is not an evaluation"):
        EvaluationResult.from_json({"test": data})


def test_the_chaotic_headline_survives_a_round_off_perturbation():
    """ks as params.yaml sets it up (64 points closed by 512, scored at t = 10): the headline
    the evaluate stage commits is the same to its last digit when every rollout starts from a
    state perturbed by 1e-7 of its size (the relative difference another CPU's float32 training
    leaves in a closure's weights), and it holds no error at the horizon and no shift, which a
    chaotic rollout's differences decide once they have grown."""
    import jax.numpy as jnp
    import yaml
    from flax import nnx

    from ml4dynamics.config import parse_params
    from ml4dynamics.datasets import generate_split
    from ml4dynamics.evaluation.config import EvaluateConfig
    from ml4dynamics.evaluation.rollouts import evaluate_closure
    from tests.conftest import REPO

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for split in ("test", "ood"):
        params["ks"]["data"][split].update(trajectories=2, steps=200)  # to t = 50
    setup = parse_params(params).setup("ks")
    data = {s: generate_split(setup, s, {"git_revision": "t"}) for s in ("test", "ood")}

    class Nothing(nnx.Module):  # the alias-free solver alone: the rollout code, no network
        def __call__(self, u):
            return jnp.zeros_like(u)

    config = EvaluateConfig(bound=10.0, report_time=params["evaluate"]["report_time"])
    result, curves, _ = evaluate_closure(data, Nothing(), config, with_ablation=False)
    noise = np.random.default_rng(0)
    perturbed = {}
    for split, ds in data.items():
        u = ds.u.values.copy()
        u[:, 0] *= 1 + 1e-7 * noise.standard_normal(u[:, 0].shape)
        perturbed[split] = ds.copy(data={"u": u, **{k: ds[k].values for k in ds if k != "u"}})
    again, curves_again, _ = evaluate_closure(perturbed, Nothing(), config, with_ablation=False)
    assert headline(again) == headline(result)
    assert "test_t10" in headline(result) and "test_t50" not in headline(result)
    assert "shift" not in headline(result)
    # the perturbation did reach the rollouts: it grows along them
    late = np.abs(curves["test"]["rel_error"][-1] - curves_again["test"]["rel_error"][-1])
    assert late > 0
