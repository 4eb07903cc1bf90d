"""Validity envelopes (``evaluation.envelope``): a narrow hole in parameter space is found by the
refinement and marked untrusted, the trusted region answers ``ml4d simulate``'s question, and
every physical parameter a system declares can be set (``System.with_physical``).

The known hole is a resonance of a toy hybrid, rolled out for real: the true dynamics decay,
u_{k+1} = 0.9 u_k, for every parameter p; the solver's resolved part is 0.5 + b(p) with a narrow
bump b(p) = 0.3 exp(-((p - 0.6)/0.05)²), and the closure supplies the rest, 0.4 - b(p). A closure
fitted at p = 0.2 (where b = 0) returns 0.4 u, so the hybrid multiplies by 0.9 + b(p): it grows
where b(p) > 0.1 (|p − 0.6| < 0.052) and errs more than 0.5 at step 20 where b(p) > 0.019 — a
hole about 0.1 wide that no point of the 5-point grid (0, 0.2, 0.25, 0.5, 0.75, 1) falls in."""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest
from flax import nnx

from ml4dynamics.core.errors import ConfigError
from ml4dynamics.evaluation import envelope as env
from ml4dynamics.evaluation.config import EnvelopeConfig
from ml4dynamics.evaluation.envelope_rollouts import score_point
from ml4dynamics.registry.envelope_record import card_lines, summary_tags, with_envelope
from ml4dynamics.systems import SYSTEMS, make_system
from ml4dynamics.systems.kolmogorov import KolmogorovConfig
from ml4dynamics.systems.reaction_diffusion import ReactionDiffusionConfig

TRAINED = 0.2
REPORT_STEP = 20
BOUND = 10.0


def bump(p: float) -> float:
    return 0.3 * math.exp(-(((p - 0.6) / 0.05) ** 2))


def toy_rollouts(values: dict[str, float]) -> dict:
    """Two trajectories of the truth and of the hybrid with the closure fitted at p = 0.2,
    scored as envelope points are: bounded to the report step, mean relative error there."""
    p = values["p"]
    u0 = np.random.default_rng(0).normal(size=(2, 3))
    truth, hybrid = [u0], [u0]
    closure_at_training = 0.4 - bump(TRAINED)
    for _ in range(REPORT_STEP):
        truth.append(0.9 * truth[-1])  # 0.5 + b(p) + (0.4 - b(p))
        hybrid.append((0.5 + bump(p)) * hybrid[-1] + closure_at_training * hybrid[-1])
    truth, hybrid = np.array(truth), np.array(hybrid)
    peak = np.abs(truth).max(axis=(0, 2))
    stable = bool((np.abs(hybrid).max(axis=2) <= BOUND * peak).all())
    err = np.linalg.norm(hybrid[-1] - truth[-1], axis=1) / np.linalg.norm(truth[-1], axis=1)
    return {"stable": stable, "stable_fraction": float(stable), "error": float(err.mean()),
            "shift": None, "plain_error": None}  # fmt: skip


AXIS = env.Axis("p", 0.0, 1.0, points=5)
RULES = env.Rules(max_error=0.5, max_shift=2.0, refinements=6, error_jump=3.0)


def scanned(refinements: int) -> list[dict]:
    rules = env.Rules(**{**RULES.__dict__, "refinements": refinements})
    return env.scan([AXIS], {"p": TRAINED}, toy_rollouts, rules)


def as_envelope(points: list[dict]) -> dict:
    return {
        "parameters": {"p": AXIS.as_dict()},
        "training": {"p": TRAINED},
        "points": points,
        "trusted_range": env.trusted_ranges([AXIS], points, {"p": TRAINED}),
        "holes": env.holes([AXIS], points),
        "settings": {"report_time": 20.0},
        "key": "k",
    }


def test_the_grid_alone_steps_over_the_resonance():
    """The control: without refinement every point is trusted, the hole is invisible."""
    points = scanned(0)
    assert [p["params"]["p"] for p in points] == [0.0, 0.2, 0.25, 0.5, 0.75, 1.0]
    assert all(p["trusted"] for p in points)
    assert env.holes([AXIS], points) == []
    # ... but the error rises towards it: 0.5 errs ~0.13, 0.75 ~1e-3
    errors = {p["params"]["p"]: p["error"] for p in points}
    assert errors[0.5] > 30 * errors[0.75] > 0


def test_refinement_places_a_point_in_the_hole_and_marks_it_untrusted():
    points = scanned(6)
    refined = [p for p in points if p["stage"] == "refined"]
    assert 1 <= len(refined) <= 6
    inside = [p for p in refined if abs(p["params"]["p"] - 0.6) < 0.052]
    assert inside, [p["params"] for p in refined]
    assert all(not p["trusted"] for p in inside)
    assert not inside[0]["stable"] and "blew up" in inside[0]["why"]
    holes = env.holes([AXIS], points)
    assert holes and all(abs(h["p"] - 0.6) < 0.1 for h in holes)
    # the trusted stretch through the training value ends before the hole
    (low, high) = env.trusted_ranges([AXIS], points, {"p": TRAINED})["p"]
    assert low == 0.0 and 0.5 <= high < 0.6 - 0.03


def test_the_verdict_names_the_nearest_trusted_point_outside_the_region():
    envelope = as_envelope(scanned(6))
    hole = env.holes([AXIS], envelope["points"])[0]["p"]
    inside, nearest = env.verdict(envelope, {"p": hole})
    assert not inside and nearest is not None and abs(nearest["p"] - hole) < 0.15
    assert env.verdict(envelope, {"p": 0.3}) == (True, {"p": 0.25})
    assert env.verdict(envelope, {}) == (True, {"p": TRAINED})  # the training point
    assert env.verdict(envelope, {"p": 1.5})[0] is False  # beyond the scanned range
    assert env.verdict(envelope, {"p": 1.5})[1] == {"p": 1.0}


def test_two_parameters_are_refined_along_lines_and_judged_per_point():
    """Trusted iff p + q < 1.2: the refinement splits only intervals that cross the boundary,
    along one parameter at a time, and the verdict follows the points."""

    def evaluate(v):
        bad = v["p"] + v["q"] >= 1.2
        return {"stable": True, "stable_fraction": 1.0, "error": 0.9 if bad else 0.1,
                "shift": None, "plain_error": None}  # fmt: skip

    axes = [env.Axis("p", 0.0, 1.0, points=3), env.Axis("q", 0.0, 1.0, points=3)]
    rules = env.Rules(max_error=0.5, max_shift=2.0, refinements=4)
    points = env.scan(axes, {"p": 0.0, "q": 0.0}, evaluate, rules)
    assert len(points) == 9 + 4
    for p in points[9:]:
        on_grid = [p["params"][a] in (0.0, 0.5, 1.0) for a in ("p", "q")]
        assert sum(on_grid) == 1  # a midpoint along exactly one line
    envelope = {
        "parameters": {a.name: a.as_dict() for a in axes},
        "training": {"p": 0.0, "q": 0.0},
        "points": points,
    }
    assert env.verdict(envelope, {"p": 0.1, "q": 0.1})[0]
    assert not env.verdict(envelope, {"p": 0.95, "q": 0.95})[0]
    ranges = env.trusted_ranges(axes, points, {"p": 0.0, "q": 0.0})
    assert ranges == {"p": [0.0, 1.0], "q": [0.0, 1.0]}  # along the axes through (0, 0)


def test_a_point_where_the_reference_fails_is_untrusted_and_says_why():
    scores = {"stable": False, "error": None, "shift": None, "plain_error": None}
    failed = RULES.judge(scores | {"reference_failed": True})
    assert failed == (False, "the reference solver does not stay finite here")
    assert RULES.judge(scores) == (False, "blew up before the report time")
    beaten = {"stable": True, "error": 0.3, "shift": 0.1, "plain_error": 0.2}
    assert RULES.judge(beaten) == (False, "the plain solver errs less (0.2 <= 0.3)")
    assert RULES.judge(beaten | {"plain_error": 0.4}) == (True, "within the gates")
    assert RULES.judge(beaten | {"plain_error": None, "shift": 2.5})[1] == "shift 2.5 > 2"


def test_axes_scan_on_their_scale_with_the_training_value_on_the_grid():
    log = env.Axis("gamma_u", 0.0125, 0.4, log=True, points=5)
    grid = log.grid(0.05)
    assert grid[0] == 0.0125 and grid[-1] == 0.4 and 0.05 in grid and len(grid) == 6
    ratios = np.diff(np.log([g for g in grid if g != 0.05]))
    assert np.allclose(ratios, ratios[0], rtol=1e-4)  # evenly spaced in log
    assert math.isclose(log.value(log.unit(0.1)), 0.1)
    whole = env.Axis("k", 2, 6, integer=True, points=3)
    assert whole.grid(4) == [2.0, 4.0, 6.0]
    # between neighbouring whole numbers there is nothing to refine
    points = [{"params": {"k": k}, "trusted": k < 3, "stable": True, "error": 0.1} for k in (2, 3)]
    assert env._widest_change([whole], points, RULES) is None


def test_every_declared_physical_parameter_can_be_set_and_checked():
    for name, cls in SYSTEMS.items():
        for param, spec in cls.physical_params.items():
            assert param in cls.config_class.__dataclass_fields__, (name, param)
            assert spec.low < spec.high
    rd = make_system(ReactionDiffusionConfig(n=16))
    moved = rd.with_physical({"gamma_u": 0.3})
    assert moved.config.gamma_u == 0.3 and moved.config.n == 16 and rd.config.gamma_u == 0.05
    assert moved.physical_values() == {"gamma_u": 0.3, "alpha": rd.config.alpha}
    with pytest.raises(ConfigError, match="nonsense: is not a physical parameter of rd"):
        rd.with_physical({"nonsense": 1.0})
    with pytest.raises(ConfigError, match="n: is not a physical parameter"):
        rd.with_physical({"n": 64})  # the grid is not: a closure is trained for one grid
    with pytest.raises(ConfigError, match="gamma_u"):
        rd.with_physical({"gamma_u": -1.0})  # the config's own check
    kolmogorov = make_system(KolmogorovConfig(n_fine=32, coarsening=2))
    assert kolmogorov.with_physical({"forcing_wavenumber": 3.0}).config.forcing_wavenumber == 3
    with pytest.raises(ConfigError, match="whole number"):
        kolmogorov.with_physical({"forcing_wavenumber": 3.5})


def test_the_envelope_section_of_params_is_checked():
    EnvelopeConfig(
        trajectories=2, seed=1, refinements=0, error_jump=2.0, points={"rd": {"alpha": 3}}
    )
    bad = [
        ({"points": {"nowhere": {"alpha": 3}}}, "is not a system"),
        ({"points": {"rd": {"n": 3}}}, "not a physical parameter of rd"),
        ({"points": {"rd": {"alpha": 1}}}, "whole number >= 2"),
        ({"error_jump": 1.0}, "must be > 1"),
    ]
    base = {"trajectories": 2, "seed": 1, "refinements": 0, "error_jump": 2.0}
    for change, message in bad:
        with pytest.raises(ConfigError, match=message):
            EnvelopeConfig(**{**base, **change})


def test_the_table_has_a_row_per_point_and_says_how_it_was_scanned():
    envelope = as_envelope(scanned(6)) | {
        "model": {"name": "toy-closure", "version": 3},
        "settings": {"report_time": 20.0, "trajectories": 2, "seed": 91, "max_error": 0.5,
                     "max_shift": 2.0},
        "plain_solver": "none: the reference solver is the plain solver",
    }  # fmt: skip
    text = env.markdown(envelope)
    head, table = text.split("\n\n")
    assert head.startswith("The validity envelope of toy-closure v3 (trained at p=0.2): 12 points")
    assert "6 of them placed by refinement" in head and "Holes: p=0.53125; " in head
    rows = table.strip().splitlines()[2:]
    assert len(rows) == 12 and [r.split(" | ")[0] for r in rows][:2] == ["| 0", "| 0.2"]
    assert sum(r.endswith("| yes |") for r in rows) == 8
    assert all("| no: blew up" in r or "| no: error" in r for r in rows if "| no" in r)


def test_the_model_card_carries_the_envelope_paragraph_once():
    envelope = as_envelope(scanned(6))
    tags = summary_tags(envelope)
    assert tags["envelope.trusted.p"].startswith("0..0.5")
    holes = [float(h.removeprefix("p=")) for h in tags["envelope.holes"].split("; ")]
    assert holes and all(abs(h - 0.6) < 0.1 for h in holes)
    assert tags["envelope.untrusted"] == str(len(holes)) and tags["envelope.points"] == "12"
    card = (
        "# rd-closure v2\n\n**System**: ...\n\n"
        + "\n".join(card_lines({}))
        + "\n\n**Known limits**:\n"
    )
    assert "not measured yet" in card
    updated = with_envelope(card, tags)
    assert "not measured" not in updated and updated.count("**Validity envelope**") == 1
    assert "p 0..0.5" in updated and updated.endswith("**Known limits**:\n")
    assert with_envelope(updated, tags) == updated
    assert with_envelope("# old card\n", tags).count("**Validity envelope**") == 1


class ExactAt(nnx.Module):
    """The exact rd closure of one parameter value, as a closure network: what a perfectly
    trained closure at that value would return anywhere."""

    def __init__(self, system):
        self.system = system

    def __call__(self, u):
        return jax.vmap(lambda x: self.system.closure(x, 0.0))(u)


def test_rd_crossing_from_spots_to_uniform_decay_is_found_and_untrusted():
    """A closure exact at alpha = 0.001 (spots: the uniform state is Turing-unstable) keeps
    forming spots where the true dynamics decay to the uniform state (|alpha| above ~0.005,
    tests/test_reaction_diffusion.py): the scan over alpha in [0, 0.02] finds the change between
    its grid points 0.001 and 0.02 and refines towards it, real rollouts throughout."""
    trained = make_system(ReactionDiffusionConfig(n=16, alpha=0.001))
    axis = env.Axis("alpha", 0.0, 0.02, points=2)
    rules = env.Rules(max_error=0.5, max_shift=2.0, refinements=2)

    def evaluate(values):
        return score_point(
            ExactAt(trained), trained, values, data={"warmup_steps": 50, "store_every": 50},
            trajectories=1, seed=5, report_time=10.0, bound=10.0,
        )  # fmt: skip

    points = env.scan([axis], {"alpha": 0.001}, evaluate, rules)
    by_alpha = {p["params"]["alpha"]: p for p in points}
    assert by_alpha[0.001]["error"] == 0.0 and by_alpha[0.001]["trusted"]  # the oracle
    assert by_alpha[0.0]["trusted"] and not by_alpha[0.02]["trusted"]
    refined = sorted(p["params"]["alpha"] for p in points if p["stage"] == "refined")
    assert len(refined) == 2 and all(0.001 < a < 0.02 for a in refined)
    # errors grow with the distance from the training value past the transition
    ordered = [by_alpha[a]["error"] for a in sorted(by_alpha) if a >= 0.001]
    assert ordered == sorted(ordered)
    (low, high) = env.trusted_ranges([axis], points, {"alpha": 0.001})["alpha"]
    assert low == 0.0 and high < 0.0106  # the decaying regime is not trusted
