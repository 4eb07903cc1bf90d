"""`ml4d sweep`, the paper-style table, on a tiny grid: real data, training and rollouts."""

from __future__ import annotations

import json
import math

import pytest

from ml4dynamics.core.errors import ML4DError
from ml4dynamics.studies import trial_compare
from ml4dynamics.studies.sweep import run
from ml4dynamics.studies.trial_compare import compare
from ml4dynamics.studies.trial_records import merge, render
from ml4dynamics.studies.trial_tables import (
    choose,
    choose_lam,
    choose_trial,
    cost_table,
    stability_table,
    table,
)
from tests.conftest import run_cli, small_params, write_params


def test_sweep_trains_rolls_out_and_tabulates(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = write_params(tmp_path / "params.yaml", small_params())
    out = tmp_path / "sweep" / "table.json"
    result = run(
        str(params),
        [0.05],
        [0],
        ["ols", "tr-projector"],
        out,
        n=16,
        epochs=1,
        batch_size=8,
        lr=0.01,
        lams=[0.0, 10.0],
    )
    runs = result["runs"]
    # TR once per λ of the grid, OLS once
    assert len(runs) == 1 + 2
    assert {r["lam"] for r in runs if r["estimator"] == "ols"} == {None}
    assert all(math.isfinite(r["error"]) and r["stable_fraction"] == 1.0 for r in runs)
    assert all(r["floor_ratio"] > 0 and r["ablation_error"] >= 0 for r in runs)
    assert result["settings"]["n"] == 16 and result["settings"]["epochs"] == 1
    assert result["settings"]["optim"]["batch_size"] == 8
    assert result["settings"]["optim"]["lr"] == 0.01
    assert result["settings"]["names"] == ["ols", "tr-projector"]  # the baseline first
    assert result["settings"]["test_samples"] >= result["settings"]["test_trajectories"]
    assert json.loads(out.read_text())["runs"] == runs
    # λ is the one with the lowest mean *validation* error, whatever the test errors say
    for choice in result["chosen_lam"]:
        rows = [
            r
            for r in runs
            if r["estimator"] == "tr-projector" and r["gamma_u"] == choice["gamma_u"]
        ]
        mean = {lam: sum(r["val_score"] for r in rows if r["lam"] == lam) for lam in (0.0, 10.0)}
        assert choice["lam"] == min(mean, key=mean.get)
    lines = out.with_suffix(".md").read_text().splitlines()
    assert lines[0] == "| γ_u | ols | tr-projector | floor ratio (ols) | ablation (ols) |"
    assert "(λ = " in lines[2] and len(lines[: lines.index("")]) == 3  # one row per γ_u
    blocks = out.with_suffix(".md").read_text().split("\n\n")
    assert blocks[1].startswith("| γ_u | estimator | test: stable fraction | test: time until")
    assert blocks[2].startswith("| γ_u | estimator | λ | validation error")

    # every run keeps its test curves to the horizon, and the trial draws them
    for r in runs:
        c = r["curves"]
        assert len(c["time"]) == len(c["rel_error"]) == len(c["stable_fraction"])
        assert len(c["shift"]) == len(c["ablation_rel_error"]) == len(c["time"])
        assert c["time"][-1] == pytest.approx(result["settings"]["horizon"])
        assert c["stable_fraction"] == [1.0] * len(c["time"])
        assert all(e is not None and e > 0 for e in c["rel_error"])
        assert r["blowup_times"] == [None] * result["settings"]["test_samples"]
    figure = tmp_path / "sweep" / "table_curves.png"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # the tables and the figure are rewritten from the recorded runs alone (`--render`)
    written = out.with_suffix(".md").read_text()
    out.with_suffix(".md").unlink()
    figure.unlink()
    assert render(out)["table"] == result["table"]
    assert out.with_suffix(".md").read_text() == written
    assert figure.is_file()
    recorded = json.loads(out.read_text())
    for r in recorded["runs"]:
        r["error"] = None  # as if every test rollout had blown up
    out.write_text(json.dumps(recorded))
    assert "blew up in 1/1" in render(out)["table"]

    # more seeds later (`--merge`): one trial from both, λ chosen again on every seed's
    # validation — here seed 1 makes the λ seed 0 did not choose the better on average
    first = result["chosen_lam"][0]["lam"]
    other = json.loads(json.dumps(result))
    for r in other["runs"]:
        r["seed"] = 1
        if r["lam"] is not None:
            r["val_score"] = 1e3 if r["lam"] == first else 0.0
    (tmp_path / "more.json").write_text(json.dumps(other))
    merged = merge([out, tmp_path / "more.json"], tmp_path / "all_table.json")
    assert merged["runs"] == recorded["runs"] + other["runs"]
    assert [c["lam"] for c in merged["chosen_lam"]] == [10.0 if first == 0.0 else 0.0]
    assert (tmp_path / "all_table.md").read_text().count("±") > 0
    assert (tmp_path / "all_curves.png").is_file()
    with pytest.raises(ML4DError, match="ran a seed twice"):
        merge([out, out], tmp_path / "twice_table.json")
    other["settings"]["epochs"] = 2
    (tmp_path / "more.json").write_text(json.dumps(other))
    with pytest.raises(ML4DError, match=r"other settings than .* \(epochs\)"):
        merge([out, tmp_path / "more.json"], tmp_path / "x_table.json")
    assert not (tmp_path / "twice_table.json").exists() and not (tmp_path / "x_table.json").exists()

    # more of the λ grid later (the ends of a grid that was too narrow): the same seeds, TR only
    ends = json.loads(json.dumps(result))
    ends["settings"]["names"], ends["settings"]["lams"] = ["tr-projector"], [100.0]
    ends["settings"]["estimators"]["tr-projector"]["lam"] = 100.0  # params.yaml's λ then
    del ends["settings"]["estimators"]["ols"]
    ends["runs"] = [dict(r, lam=100.0, val_score=-1.0) for r in runs if r["lam"] == first]
    (tmp_path / "ends.json").write_text(json.dumps(ends))
    wider = merge([tmp_path / "ends.json", out], tmp_path / "wide_table.json")
    assert wider["settings"]["names"] == ["ols", "tr-projector"]  # the baseline still first
    assert wider["settings"]["lams"] == [0.0, 10.0, 100.0]
    assert [c["lam"] for c in wider["chosen_lam"]] == [100.0]  # chosen again, over every λ
    assert "| 100 |" in (tmp_path / "wide_table.md").read_text()
    ends["runs"][0]["seed"] = 1  # λ = 100 on seed 1 only: not comparable with the others
    (tmp_path / "ends.json").write_text(json.dumps(ends))
    with pytest.raises(ML4DError, match=r"λ = 0 on \[0\]; λ = 10 on \[0\]; λ = 100 on \[1\]"):
        merge([out, tmp_path / "ends.json"], tmp_path / "y_table.json")
    ends["runs"][0]["seed"] = 0
    ends["settings"]["estimators"]["tr-projector"]["eps"] = 1.0
    (tmp_path / "ends.json").write_text(json.dumps(ends))
    with pytest.raises(ML4DError, match=r"\(estimator tr-projector\)"):
        merge([out, tmp_path / "ends.json"], tmp_path / "z_table.json")
    assert not (tmp_path / "y_table.json").exists() and not (tmp_path / "z_table.json").exists()


def test_lam_is_chosen_on_validation_never_on_test():
    runs = [
        {"gamma_u": 0.05, "estimator": "tr", "lam": 1.0, "val_score": 0.2, "error": 0.9},
        {"gamma_u": 0.05, "estimator": "tr", "lam": 10.0, "val_score": 0.3, "error": 0.1},
        {"gamma_u": 0.05, "estimator": "tr", "lam": 100.0, "val_score": None, "error": 0.0},
    ]
    assert choose_lam(runs) == {(0.05, "tr"): 1.0}


def test_an_unrolled_estimators_window_is_chosen_on_validation_like_lam(tmp_path):
    """Every stage of an unrolled run is a candidate: (λ, k) with the lowest mean validation
    score over seeds wins, whatever the test says; the tables name the choice and set the
    validation scores of every k beside each other."""
    runs = [
        {"setting": None, "seed": seed, "estimator": e, "lam": lam, "window": k}
        | {"val_score": val + 0.01 * seed, "error": err, "val_stable_time": 10.0}
        for seed in (0, 1)
        for e, lam, k, val, err in (
            ("unrolled", None, 1, 0.5, 0.01),
            ("unrolled", None, 4, 0.2, 0.9),
            ("unrolled", None, 16, 0.3, 0.1),
            ("unrolled-tr", 0.1, 4, 0.4, 0.1),
            ("unrolled-tr", 1.0, 4, 0.1, 0.9),
            ("unrolled-tr", 1.0, 16, 0.1, 0.9),  # a tie: the shorter window
        )
    ] + [{"setting": None, "seed": 0, "estimator": "ols", "lam": None, "val_score": 9.0}]
    assert choose(runs, "setting") == {
        (None, "unrolled"): (None, 4),
        (None, "unrolled-tr"): (1.0, 4),
    }
    assert choose_lam(runs, "setting") == {(None, "unrolled-tr"): 1.0}
    for r in runs:
        r["error"] = r.get("error", 0.5)
    settings = {"system": "ks", "parameter": None, "report_time": 2.0, "val_score": "error_t2"}
    settings |= {"estimators": {"ols": {}, "unrolled": {}, "unrolled-tr": {}}, "lams": [0.1, 1.0]}
    result = render_runs(tmp_path / "u_table.json", settings, runs)
    assert result["chosen_lam"] == [
        {"setting": None, "estimator": "unrolled", "lam": None, "window": 4},
        {"setting": None, "estimator": "unrolled-tr", "lam": 1.0, "window": 4},
    ]
    first, _, row = result["table"].splitlines()
    assert first == "| setting | ols | unrolled | unrolled-tr |"
    assert row == "| params.yaml | 0.5 ± 0 | 0.9 ± 0 (k = 4) | 0.9 ± 0 (λ = 1, k = 4) |"
    lam_lines = result["lam_table"].splitlines()
    assert lam_lines[0].startswith("| setting | estimator | λ | k | validation error (error_t2) |")
    assert lam_lines[2].startswith("| params.yaml | unrolled | – | 1 | 0.505 ± 0.005 |")
    assert len(lam_lines) == 2 + 6


def render_runs(out, settings, runs):
    out.write_text(json.dumps({"settings": settings, "runs": runs}))
    return render(out)


def test_when_every_lam_blew_up_the_one_whose_validation_lasted_longest_is_chosen():
    """All validation rollouts blew up at every λ: the error cannot rank them, the time they
    lasted can (mean over seeds); test still plays no part."""
    runs = [
        {"setting": None, "estimator": "tr", "lam": lam, "val_score": None, "val_stable_time": t}
        | {"error": None}
        for lam, t in ((0.1, 1.0), (0.1, 1.4), (1.0, 2.5), (1.0, 0.5), (10.0, 1.2), (10.0, 1.0))
    ]
    assert choose_lam(runs, "setting") == {(None, "tr"): 1.0}  # 1.5 on average, against 1.2, 1.1
    runs[4]["val_score"] = runs[5]["val_score"] = 0.9  # a finite error beats any lasting time
    assert choose_lam(runs, "setting") == {(None, "tr"): 10.0}


def test_the_shift_of_blown_up_runs_is_reported_as_such_not_averaged_over_the_survivors():
    rows = [
        {"setting": None, "estimator": e, "stable_fraction": f, "corr_time_80": 3.0}
        | {"excess_shift": shift, "error_horizon": None if shift is None else 0.2, "error": 0.1}
        for e, f, shift in (
            ("ols", 1.0, 0.5),
            ("ols", 1.0, 0.7),
            ("tr", 1.0, 0.1),
            ("tr", 0.5, None),
        )
    ]
    lines = stability_table(rows, ["ols", "tr"], [None], "setting").splitlines()
    assert "| test error (horizon) | test: excess shift |" in lines[0]
    assert lines[2].endswith("| 0.2 ± 0 | 0.6 ± 0.1 | 0.1 ± 0 | – |")
    assert lines[3].endswith("| blew up in 1/2 | none: blew up in 1/2 seeds | 0.1 ± 0 | – |")


def test_every_estimator_shows_its_error_beside_its_own_ablation():
    """The stability table sets each estimator's test error at the report time beside the
    ablation of its own misfit (not only the baseline's, as the first table does): an ablation
    that blew up is reported as such, not dropped; runs without one are counted, not hidden."""
    base = {"setting": None, "stable_fraction": 1.0, "corr_time_80": 3.0, "error_horizon": 0.2}
    base |= {"floor_ratio": 0.1}
    rows = [
        base
        | {"estimator": e, "error": err, "ablation_error": abl}
        | ({"ablation_stable_fraction": ran} if ran is not None else {})
        for e, err, abl, ran in (
            ("ols", 0.9, 0.2, 1.0),
            ("ols", 1.1, 0.4, 1.0),
            ("tr", 0.5, 0.3, 1.0),
            ("tr", 0.6, None, 0.5),  # its ablation blew up
            ("filter", 0.7, 0.1, 1.0),
            ("filter", 0.8, None, None),  # no ablation at all (a record from before it)
        )
    ]
    lines = stability_table(rows, ["ols", "tr", "filter"], [None], "setting").splitlines()
    assert lines[0].endswith("| test error (report time) | its ablation (report time) |")
    assert lines[2].endswith("| 1 ± 0.1 | 0.3 ± 0.1 |")
    assert lines[3].endswith("| 0.55 ± 0.05 | blew up in 1/2 |")
    assert lines[4].endswith("| 0.75 ± 0.05 | 0.1 ± 0 (1 of 2 seeds) |")
    # the first table's baseline column uses the same rule
    first = table(rows, ["tr", "ols"], [None], None, "setting").splitlines()[-1]
    assert first.endswith("| blew up in 1/2 |")


def _trial(epochs, optim, runs):
    settings = {"parameter": None, "val_score": "error_horizon", "epochs": epochs}
    settings |= {"names": ["ols", "tr"], "estimators": {"ols": {}, "tr": {}}}
    settings |= {"manifold": {"kind": "pca", "rank": 896, "shifts": 16, "energy": 0.9}}
    return {"settings": settings | ({"optim": optim} if optim else {}), "runs": runs}


def test_trials_compare_side_by_side_with_each_trials_own_lam_choice(tmp_path, monkeypatch):
    """`ml4d sweep --compare`: one row per trial and estimator, TR at the λ the trial's own
    validation chose (here not the one with the better test error), mean ± std over seeds, the
    change of the validation misfit and of the validation loss (the estimator's own objective)
    from the trial before; the validation loss curves of the same runs drawn beside it."""

    def row(estimator, lam, val, test, misfit, seed):
        return {"setting": None, "estimator": estimator, "lam": lam, "seed": seed}, {
            "val_score": val,
            "val_stable_time": 4.0,
            "val_misfit": misfit,
            "error": test,
            "error_horizon": 2 * test,
            "excess_shift": 0.1,
            "stable_fraction": 1.0 if seed == 0 else 0.5,
            "floor_ratio": 0.05,
            "seconds": 60.0,
            # OLS's loss is its misfit; TR's adds λ·penalty
            "val_loss_curve": [10 * misfit, misfit if estimator == "ols" else 3 * misfit],
        }

    runs = [
        a | b
        for a, b in (
            row("ols", None, 0.2, 0.1, 4e-4, 0),
            row("ols", None, 0.2, 0.3, 2e-4, 1),
            row("tr", 1.0, 0.1, 0.5, 3e-4, 0),
            row("tr", 10.0, 0.3, 0.01, 5e-4, 0),
        )
    ]
    optim = {"optimizer": "adam", "lr": 0.003, "batch_size": 4, "schedule": "cosine"}
    paths = [tmp_path / "a_60_table.json", tmp_path / "a_120_table.json"]
    paths[0].write_text(json.dumps(_trial(60, None, runs)))
    paths[1].write_text(json.dumps(_trial(120, optim, runs)))
    out = tmp_path / "cmp.md"
    drawn = {}
    draw = trial_compare.trial_figures.budget_curves
    monkeypatch.setattr(
        trial_compare.trial_figures,
        "budget_curves",
        lambda p, c, t: drawn.update(c) or draw(p, c, t),
    )
    text = compare(paths, out, "ml4d sweep --compare …")
    assert (tmp_path / "cmp.png").is_file()
    expected = {"ols": [[10 * 4e-4, 4e-4], [10 * 2e-4, 2e-4]], "tr": [[10 * 3e-4, 9e-4]]}  # λ = 1
    assert drawn == {"a_60": expected, "a_120": expected}
    assert out.read_text() == text and text.startswith("Generated by `ml4d sweep --compare …`.")
    lines = text.splitlines()[2:]
    assert lines[0].startswith("| trial | epochs (optimiser) | manifold model | setting |")
    assert len(lines) == 2 + 2 * 2 + 5  # header, rule, two estimators per trial; the choice
    assert lines[2].startswith("| a_60 | 60 (optimiser not recorded) | pca (rank 896, shifts 16) ")
    # misfit and loss (no change: the first trial), validation's score and time stable, then
    # test's error at the report time and the horizon
    cells = (
        "| 0.0003 ± 0.0001 | – | 0.0003 ± 0.0001 | – | 0.2 ± 0 | 4 ± 0 | 0.2 ± 0.1 | 0.4 ± 0.2 |"
    )
    assert f"| ols | – {cells}" in lines[2]
    cells = "| 0.0003 ± 0 | – | 0.0009 ± 0 | – | 0.1 ± 0 | 4 ± 0 | 0.5 ± 0 | 1 ± 0 |"
    assert f"| tr | 1 {cells}" in lines[3]  # λ = 1
    # equal validation scores: the fewer epochs are chosen
    assert lines[-2:] == ["- ols: **a_60** (of a_60, a_120)", "- tr: **a_60** (of a_60, a_120)"]
    assert lines[4].startswith("| a_120 | 120 (adam, batch 4, lr 0.003, cosine) |")
    # the same misfit and loss as the trial before: a plateau across the two budgets
    within = "+0% (within 10%)"
    assert f"| ols | – | 0.0003 ± 0.0001 | {within} | 0.0003 ± 0.0001 | {within} |" in lines[4]
    with pytest.raises(ML4DError, match="the comparison is Markdown"):
        compare(paths, tmp_path / "cmp.json", "")
    # an estimator that trains in rounds (dagger) spends its epochs once per round
    rounds = _trial(20, optim, [dict(runs[0], estimator="dagger")])
    rounds["settings"] |= {"names": ["dagger"], "estimators": {"dagger": {"rounds": 3}}}
    paths.append(tmp_path / "d_table.json")
    paths[-1].write_text(json.dumps(rounds))
    table_rows = [line for line in compare(paths, out, "").splitlines() if line.startswith("|")]
    assert table_rows[-1].startswith("| d | 3 rounds × 20 (adam, batch 4, lr 0.003, cosine) |")
    # a longer budget that still lowered the misfit (and OLS's loss; TR's loss at its plateau),
    # and one that collapsed
    lower = [dict(r, val_misfit=r["val_misfit"] / 2) for r in runs]
    lower = [
        dict(r, val_loss_curve=[c / 2 for c in r["val_loss_curve"]])
        if r["estimator"] == "ols"
        else r
        for r in lower
    ]
    dead = [dict(r, val_misfit=7.0) for r in runs]
    for name, trial_runs in (("b", lower), ("c", dead)):
        paths.append(tmp_path / f"{name}_table.json")
        paths[-1].write_text(json.dumps(_trial(240, optim, trial_runs)))
    lines = [line for line in compare(paths, out, "").splitlines() if line.startswith("|")]
    assert "| ols | – | 0.00015 ± 5e-05 | -50% | 0.00015 ± 5e-05 | -50% |" in lines[-4]
    assert f"| tr | 1 | 0.00015 ± 0 | -50% | 0.0009 ± 0 | {within} |" in lines[-3]
    assert "| ols | – | 7 ± 0 | ×4.7e+04 |" in lines[-2]
    # a trial whose validation chose another λ trained another loss: no change is computed
    other_lam = [dict(r, val_score=0.05) if r["lam"] == 10.0 else r for r in lower]
    paths.append(tmp_path / "e_table.json")
    paths[-1].write_text(json.dumps(_trial(480, optim, other_lam)))
    lines = [line for line in compare(paths, out, "").splitlines() if line.startswith("|")]
    assert "| tr | 10 | 0.00025 ± 0 | – | 0.0015 ± 0 | – |" in lines[-1]


def test_validation_chooses_the_trial_like_lam_among_trials_of_the_same_seeds():
    """The budget (any trial) is chosen by λ's rule on validation only: a validation blow-up is
    infinite (the trial with the better test error loses), then the longest-lasting validation
    rollouts, then the fewer epochs; a trial on other seeds is left out, not compared."""

    def trial(name, epochs, scores, lasted, seeds=(0, 1), test=0.5):
        rows = [
            {"seed": s, "val_score": v, "val_stable_time": t, "error": test}
            for s, v, t in zip(seeds, scores, lasted, strict=True)
        ]
        validation = ["error_horizon", 2, 4.0, 4.0]
        return {"trial": name, "epochs": epochs, "seeds": list(seeds)} | {
            "validation": validation,
            "rows": rows,
        }

    short = trial("short", 100, [0.3, 0.3], [4.0, 4.0])
    long = trial("long", 400, [0.1, None], [4.0, 2.0], test=0.01)  # best test, a val blow-up
    other = trial("one_seed", 800, [0.01], [4.0], seeds=(0,))
    assert choose_trial([short, long, other]) == ("short", ["short", "long"], ["one_seed"])
    # every trial blew up somewhere: the validation rollouts that lasted longest
    worse = trial("worse", 50, [None, 0.1], [3.0, 4.0])
    assert choose_trial([worse, long])[0] == "worse"
    # equal in everything validation sees: the fewer epochs
    again = trial("again", 200, [0.3, 0.3], [4.0, 4.0])
    assert choose_trial([again, short])[0] == "short"


def test_coarse_grid_tables_set_the_coarse_solver_alone_beside_the_closures():
    """On a coarse grid the solver without a closure is the bar: the first table ends with its
    test error at the report time, the stability table with its row (once per setting, not once
    per estimator); a system with an exact closure (no ``coarse_alone``) has neither."""
    base = {"error_t2": 0.31, "stable_fraction": 1.0, "corr_time_80": 4.6}
    base |= {"error_horizon": 1.15, "excess_shift": 0.13}
    runs = [
        {"setting": None, "estimator": e, "seed": seed, "error": err, "coarse_alone": base}
        | {"stable_fraction": 1.0, "corr_time_80": 2.0, "error_horizon": 1.4, "excess_shift": 0.3}
        for e, seed, err in (("ols", 0, 1.5), ("ols", 1, 1.7), ("tr", 0, 0.6), ("tr", 1, 0.6))
    ]
    head, _, row = table(runs, ["ols", "tr"], [None], None, "setting", "error_t2").splitlines()
    assert head == "| setting | ols | tr | coarse solver alone (alias-free) |"
    assert row == "| params.yaml | 1.6 ± 0.1 | 0.6 ± 0 | 0.31 ± 0 |"
    lines = stability_table(runs, ["ols", "tr"], [None], "setting").splitlines()
    assert len(lines) == 5
    assert (
        lines[-1]
        == "| params.yaml | coarse solver alone (alias-free) | 1 ± 0 | 4.6 ± 0 | 1.15 ± 0 | 0.13 ± 0 | – | – |"
    )
    plain = [{k: v for k, v in r.items() if k != "coarse_alone"} for r in runs]
    assert "coarse" not in table(plain, ["ols", "tr"], [None], None, "setting", "error_t2")
    assert "coarse" not in stability_table(plain, ["ols", "tr"], [None], "setting")


def test_table_reports_blow_ups_instead_of_averaging_them():
    runs = [
        {"gamma_u": 0.05, "estimator": "ols", "error": 0.1},
        {"gamma_u": 0.05, "estimator": "ols", "error": None},
        {"gamma_u": 0.05, "estimator": "tr", "error": 0.2},
        {"gamma_u": 0.05, "estimator": "tr", "error": 0.4},
    ]
    row = table(runs, ["ols", "tr"], [0.05]).splitlines()[-1]
    assert row == "| 0.05 | blew up in 1/2 | 0.3 ± 0.1 |"


def test_sweep_of_a_chaotic_system_chooses_lam_on_the_validation_error_at_the_report_time(
    tmp_path, monkeypatch
):
    """ks at params.yaml's settings (no parameter varied): λ is chosen on the validation error
    at the report time — at the horizon every chaotic rollout has decorrelated."""
    monkeypatch.chdir(tmp_path)
    params = write_params(tmp_path / "params.yaml", small_params())
    out = tmp_path / "sweep" / "ks.json"
    result = run(
        str(params),
        None,
        [0],
        ["ols", "tr-projector"],
        out,
        epochs=1,
        lams=[0.0, 10.0],
        system_name="ks",
        param=None,
    )
    runs = result["runs"]
    assert result["settings"]["val_score"] == "error_t2"
    assert len(runs) == 3 and all(r["setting"] is None for r in runs)
    assert all(
        math.isfinite(r["val_score"]) and r["val_score"] != r["val_error_horizon"] for r in runs
    )
    tr = {r["lam"]: r["val_score"] for r in runs if r["estimator"] == "tr-projector"}
    assert result["chosen_lam"] == [
        {"setting": None, "estimator": "tr-projector", "lam": min(tr, key=tr.get)}
    ]
    assert all("coarse_alone" in r for r in runs)  # the bar a coarse-grid closure must clear
    assert all(len(r["curves"]["coarse_alone_rel_error"]) == len(r["curves"]["time"]) for r in runs)
    # the ablation from the reference run with noise, on test: a number in the table, not "–"
    assert all(r["ablation_error"] > 0 for r in runs)
    assert all(len(r["curves"]["ablation_rel_error"]) == len(r["curves"]["time"]) for r in runs)
    lines = out.with_suffix(".md").read_text().splitlines()
    assert lines[0].startswith("| setting | ols | tr-projector |")
    assert lines[0].endswith("| coarse solver alone (alias-free) |")
    assert lines[2].startswith("| params.yaml | ")
    assert "| – |" not in lines[2]
    base = runs[0]["coarse_alone"]["error_t2"]
    assert lines[2].endswith(f"| {base:.3g} ± 0 |")
    assert any(
        line.startswith("| params.yaml | coarse solver alone (alias-free) | 1 ± 0 |")
        for line in lines
    )
    assert "validation error (error_t2)" in out.with_suffix(".md").read_text().split("\n\n")[2]


def test_a_sweep_rolls_out_every_stage_of_an_unrolled_curriculum(tmp_path, monkeypatch):
    """One row per window length of the curriculum, counting epochs and seconds from the start;
    the table reports the closure at the k validation chose."""
    monkeypatch.chdir(tmp_path)
    params = small_params()
    params["train"]["ks"]["unroll"] = {"windows": [1, 2], "epochs": [1, 1], "clip": 1.0}
    params["estimators"]["unrolled"] = {"kind": "unrolled", "solver_gradient": True}
    out = tmp_path / "sweep" / "ks_table.json"
    result = run(
        str(write_params(tmp_path / "params.yaml", params)),
        None,
        [0],
        ["ols", "unrolled"],
        out,
        system_name="ks",
        param=None,
    )
    rows = [r for r in result["runs"] if r["estimator"] == "unrolled"]
    assert [(r["window"], r["epochs"]) for r in rows] == [(1, 1), (2, 2)]
    assert rows[0]["seconds"] < rows[1]["seconds"]
    assert rows[0]["val_score"] != rows[1]["val_score"]  # two closures, not one
    best = min(rows, key=lambda r: r["val_score"])
    assert result["chosen_lam"] == [
        {"setting": None, "estimator": "unrolled", "lam": None, "window": best["window"]}
    ]
    assert f"(k = {best['window']})" in result["table"]
    assert "| unrolled | – | 2 |" in result["lam_table"]


def test_sweep_refuses_a_parameter_the_system_does_not_have(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = write_params(tmp_path / "params.yaml", small_params())
    with pytest.raises(ML4DError, match="ks has no parameter 'gamma_u'; vary one of: dt"):
        run(str(params), [0.1], [0], ["ols"], tmp_path / "t.json", system_name="ks")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--system", "ks", "--gamma-u", "0.1"], "--gamma-u sweeps rd's gamma_u"),
        (["--vary", "gamma_u"], "--vary PARAM and --values V [V ...] go together"),
        (["--system", "ks", "--n", "32"], "--n sets rd's grid; ks has no parameter n"),
        (["--batch-size", "-4"], "--batch-size must be >= 0 (0: full batch), got -4"),
        (["--lr", "0"], "--lr must be a positive learning rate, got 0.0"),
        (["--render", "missing.json"], "missing.json does not exist"),
        (["--render", "params.yaml"], "params.yaml is not the JSON of an `ml4d sweep`"),
        (["--compare", "params.yaml"], "--compare writes a Markdown table: give --out PATH.md"),
        (["--compare", "x.json", "--out", "sweep/c.md"], "x.json does not exist"),
    ],
)
def test_sweep_command_line_mistakes_are_one_line_errors(tmp_path, args, message):
    write_params(tmp_path / "params.yaml", small_params())
    result = run_cli(["sweep", *args], cwd=tmp_path)
    assert result.returncode != 0 and result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr
    assert not (tmp_path / "sweep").exists()  # nothing half-written


def test_the_cost_table_sets_each_estimators_epochs_and_seconds_side_by_side():
    """What a run cost, per estimator at its chosen λ, mean ± std over seeds; nothing for runs
    recorded without their seconds."""
    runs = [
        {"setting": None, "estimator": e, "epochs": ep, "seconds": s}
        for e, ep, s in (("ols", 30, 70.0), ("ols", 30, 90.0), ("unrolled", 33, 400.0))
    ]
    lines = cost_table(runs, ["ols", "unrolled", "absent"], [None], "setting").splitlines()
    assert lines[0] == "| setting | estimator | epochs | seconds per run (training and rollouts) |"
    assert lines[2:] == [
        "| params.yaml | ols | 30 ± 0 | 80 ± 10 |",
        "| params.yaml | unrolled | 33 ± 0 | 400 ± 0 |",
    ]
    plain = [{k: v for k, v in r.items() if k != "seconds"} for r in runs]
    assert cost_table(plain, ["ols"], [None], "setting") == ""
