"""The generated results page: tables built from metrics files, honest about missing numbers."""

from __future__ import annotations

import json

from ml4dynamics.evaluation.result import EvaluationResult
from ml4dynamics.reporting.benches import bench_section
from ml4dynamics.reporting.report import (
    README_END,
    README_START,
    fill_readme,
    generated_text,
    linear_section,
    sweep_settings,
    system_section,
)
from ml4dynamics.reporting.tables import number
from tests.conftest import run_cli
from tests.results import coarse_alone, result, summary


def evaluation(error_horizon, stable=1.0, chaotic=False, **splits) -> EvaluationResult:
    """Every split at t = 30 with ``error_horizon``, 0.1 at the report time t = 10, the shift
    0.5 and 12 times the ablation's error; ``splits`` replaces a split's own numbers."""
    plain = {"error_horizon": error_horizon, "stable_fraction": stable, "error_vs_ablation": 12.0}
    return result(
        {s: summary(**(plain | splits.get(s, {}))) for s in ("val", "test", "ood")},
        chaotic,
        "ks" if chaotic else "rd",
    )


PROMOTION = {
    "candidates": {
        "ols": {"decision": "champion", "gates": {"shift": {"passed": True}}},
        "tr": {
            "decision": "refused",
            "passed": False,
            "reason": "shift: test shift 3.2 > 2",
            "gates": {"shift": {"passed": False}, "e": {"passed": True}},
        },
    }
}


def test_a_system_table_says_which_gates_refused_and_marks_blow_ups():
    text = system_section(
        "rd",
        {"ols": evaluation(0.2), "tr": evaluation(None, stable=0.5)},
        {
            "ols": {
                "manifold": {"floor_ratio": 0.57, "lam_scale": 9.5},
                "convergence": {"drop": 0.02, "plateau": True},
            },
            "tr": {"convergence": {"drop": 0.35, "plateau": False}},
        },
        {"final_val_loss": 1e-4, "val_floor": 1e-4, "rank": 384, "explained_variance": 0.99999},
        PROMOTION,
    )
    rows = {line.split(" | ")[0]: line for line in text.splitlines() if line.startswith("| ")}
    assert "| ols | 0.2 | 0.1 | 0.2 | 0.2 | 1 / 1 | 0.5 | 12 | 0.57 | 9.5 | 2% | champion |" in text
    assert rows["| tr"].endswith("| — | — | 35% (no plateau) | refused: shift |")
    assert "0.5 / 0.5" in rows["| tr"]
    assert "PCA rank 384" in text and "test error (t = 10)" in text
    assert "- tr: shift: test shift 3.2 > 2" in text  # the numbers behind a refusal


def test_a_system_with_an_energy_spectrum_shows_its_error_beside_the_coarse_solver_alone():
    base = coarse_alone(spectrum_error=0.21)
    chaotic = evaluation(  # scored (and λ chosen) at the report time
        1.4,
        chaotic=True,
        val={"error_report": 0.07},
        test={"spectrum_error": 0.05, "coarse_alone": base},
        ood={"error_report": 0.3},
    )
    assert chaotic.score_metric == "error_t10"
    test = {"spectrum_error": None, "coarse_alone": base}
    blown = evaluation(None, stable=0.5, chaotic=True, test=test)
    text = system_section("ks", {"ols": chaotic, "tr": blown}, {}, None, None)
    assert "| test spectrum error (alias-free coarse solver alone) |" in text
    assert "| estimator | val error (t = 10) |" in text and "| ols | 0.07 |" in text
    # the solver alone's errors follow the closure's where it was measured (test here)
    assert "| ood error (t = 10) (alias-free coarse solver alone) |" in text
    assert "| ols | 0.07 | 0.1 (0.1) | 1.4 (0.2) | 0.3 | 1 / 1 |" in text
    assert "| 1 / 1 | 0.05 (0.21) |" in text and "| 0.5 / 0.5 | — (0.21) |" in text
    plain = system_section("rd", {"ols": evaluation(0.2)}, {}, None, None)
    assert "spectrum" not in plain.split("\n\n")[1]  # (no column for a system without one)


def test_numbers_are_rounded_and_missing_ones_shown_as_dashes():
    assert [number(x) for x in (0.123456, None, float("nan"), 3, True)] == [
        "0.123",
        "—",
        "—",
        "3",
        "true",
    ]


#: metrics/linear_theory.json as the linear_theory stage writes it
LINEAR = {
    "horizon": 50,
    "samples": 5,
    "coupling": 0.1,
    "label_noise": 0.001,
    "no_closure": 3867.0,
    "tr_loglog_slope": -0.93,
    "trained_vs_closed_form_max_abs": 5e-17,
    "at_max_lam": {"lam": 2048.0, "ols": 5.66, "mols": 3866.0, "tr": 0.00276},
    "at_max_lam_centred": {"lam": 2048.0, "ols": 0.28, "mols": 3866.0, "tr": 0.000138},
}


def test_the_linear_table_has_both_noises():
    text = linear_section(LINEAR)
    assert "| U[0, 0.001) (the paper's) | 5.66 | 3.87e+03 | 0.00276 | 3.87e+03 |" in text
    assert "| zero-mean, same width | 0.28 |" in text


def test_ml4d_report_writes_the_page_from_the_metrics(tmp_path):
    ev = tmp_path / "metrics" / "rd" / "evaluate"
    ev.mkdir(parents=True)
    (ev / "ols.json").write_text(json.dumps(evaluation(0.2).to_json()))
    sweeps = tmp_path / "sweep"
    sweeps.mkdir()
    for name in ("rd", "ks"):  # every committed sweep gets its section
        (sweeps / f"{name}_table.md").write_text(f"| setting | ols |\n|---|---|\n| {name} | 1 |\n")
        (sweeps / f"{name}_table.json").write_text(json.dumps({"settings": {"system": name}}))
    (sweeps / "rd_curves.png").write_bytes(b"\x89PNG\r\n\x1a\n")  # its figure, where drawn
    (sweeps / "rd_budget_comparison.md").write_text("Generated by `ml4d sweep --compare …`.\n")
    # an opt-in system's pipeline run once, its metrics folder committed under bench/
    snapshot = tmp_path / "bench" / "ns_channel_pipeline"
    (snapshot / "evaluate").mkdir(parents=True)
    blown = evaluation(None, stable=0.8).to_json()
    (snapshot / "evaluate" / "tr.json").write_text(json.dumps(blown))
    refusal = {"passed": False, "reason": "finite_and_bounded: test: 1 of 5 blow up"}
    promotion = {"candidates": {"tr": refusal | {"gates": {}}}}
    (snapshot / "promotion.json").write_text(json.dumps(promotion))
    (tmp_path / "bench" / "empty_pipeline").mkdir()  # (a folder without evaluations: skipped)
    # where a closure is needed (`ml4d resolution`), one section per table
    (tmp_path / "bench" / "ks_resolution.md").write_text("the what line\n\n| 64 | yes |\n")
    result = run_cli(["report", "--system", "rd"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    page = (tmp_path / "docs" / "results.md").read_text()
    assert page.startswith("<!-- generated by `ml4d report`") and "| ols | 0.2 |" in page
    for name in ("rd", "ks"):
        heading = (
            f"## {name} trial over seeds (`ml4d sweep`, committed output `sweep/{name}_table.md`)"
        )
        assert heading in page
        assert f"| {name} | 1 |" in page
    assert "![rd: the test rollouts of every seed](../sweep/rd_curves.png)" in page
    assert "ks_curves.png" not in page
    heading = "## rd_budget: trials side by side (committed output `sweep/rd_budget_comparison.md`)"
    assert heading + "\n\nGenerated by `ml4d sweep --compare …`." in page
    opt_in = "## ns_channel (opt-in: one run of its pipeline, committed output "
    assert opt_in + "`bench/ns_channel_pipeline/`)" in page and "## empty" not in page
    assert "| tr | — |" in page and "- tr: finite_and_bounded: test: 1 of 5 blow up" in page
    heading = "## ks: where a closure is needed (`ml4d resolution`, committed output "
    assert heading + "`bench/ks_resolution.md`)\n\nthe what line\n\n| 64 | yes |" in page
    missing = run_cli(["report", "--system", "ns_channel"], cwd=tmp_path)
    assert missing.returncode != 0 and missing.stderr.count("\n") == 1
    assert "no evaluations of ns_channel" in missing.stderr


def test_the_step_cost_table_has_both_precisions_and_the_ratios():
    record = {
        "what": "one optimisation step of the rd closure, batch 16",
        "model": {"kind": "unet"},
        "repeats": 5,
        "steps_per_repeat": 20,
        "machine": "x86_64, 1 cpu device(s)",
        "ms_per_step_median": {
            "float32": {"ols": 40.0, "tr-projector": 64.0},
            "float64": {"ols": 220.0, "tr-projector": 380.0},
        },
        "ratio_to_ols": {
            "float32": {"ols": 1.0, "tr-projector": 1.6},
            "float64": {"ols": 1.0, "tr-projector": 1.727},
        },
        "float64_over_float32": {"ols": 5.5, "tr-projector": 5.9375},
    }
    text = bench_section("rd", record)
    assert "| estimator | ms per step (float32) | ms per step (float64) |" in text
    assert "| tr-projector | 64 | 380 | 1.6 | 1.73 | 5.94 |" in text


def test_a_committed_sweep_says_which_closure_it_was_run_with():
    settings = {
        "model": {"kind": "local", "hidden": 32},
        "epochs": 30,
        "lams": [0.1, 1.0],
        "val_trajectories": 2,
        "test_trajectories": 4,
        "val_score": "error_t10",
    }
    text = sweep_settings(settings)
    assert text.startswith("Run with the closure `local` (hidden 32), 30 epochs, λ grid [0.1, 1.0]")
    assert "λ chosen on the validation error_t10" in text
    assert "2 validation and 4 test trajectories per parameter combination" in text  # (older)
    totals = sweep_settings({**settings, "val_samples": 2, "test_samples": 5})
    assert "2 validation and 5 test trajectories, λ chosen" in totals
    assert sweep_settings({}) == ""
    manifold = {"kind": "pca", "rank": 640, "shifts": 16, "energy": 0.99999999}
    assert "30 epochs, the manifold model `pca` (rank 640, shifts 16), λ grid" in sweep_settings(
        {**settings, "manifold": manifold}
    )
    optim = {"optimizer": "adam", "lr": 0.003, "batch_size": 4, "schedule": "cosine"}
    assert "30 epochs (adam, batch 4, lr 0.003, cosine), λ grid" in sweep_settings(
        {**settings, "optim": optim}
    )
    # an estimator that trains in rounds, no TR estimator (so no λ to choose)
    dagger = {**settings, "lams": None, "estimators": {"dagger": {"kind": "dagger", "rounds": 3}}}
    text = sweep_settings(dagger)
    assert "30 epochs (dagger: per round, 3 rounds), no λ grid, 2 validation" in text
    assert "chosen" not in text


def test_the_solver_table_shows_each_ratio_of_one_run():
    from ml4dynamics.reporting.benches import solver_bench_section

    record = {
        "repeats": 5,
        "steps_per_repeat": 200,
        "machine": "x86_64, 1 cpu device(s)",
        "jax": "0",
        "ks": {
            "what": "one KS step",
            "ms_per_step_median": {"single": {"ours": 1.0, "exponax": 2.0, "fft_floor": 0.5}},
        },
    }
    table = solver_bench_section(record)
    assert "| ours ÷ exponax | ours ÷ FFT floor |" in table
    assert "| single | 1 | 2 | 0.5 | 0.5 | 2 |" in table
    assert "kolmogorov" not in table  # no row for a system the run did not measure


def test_a_collapsed_training_is_not_called_a_plateau():
    from ml4dynamics.reporting.report import _drop

    dead = {"drop": 0.0, "plateau": True, "collapsed": True, "best": 0.00036, "best_epoch": 80}
    assert _drop(dead) == "collapsed (best 0.00036 at epoch 80)"
    assert _drop({"drop": 0.02, "plateau": True, "collapsed": False}) == "2%"


def test_ml4d_report_rewrites_the_readmes_generated_tables_and_nothing_else(tmp_path):
    """README.md's tables are generated: each block between the line naming its source and the
    end line is rewritten from that file (a trial under its settings, the linear experiment);
    the prose around the blocks stays; a broken block or a missing source is one clear line and
    leaves README.md and the results page as they were."""
    ev = tmp_path / "metrics" / "rd" / "evaluate"
    ev.mkdir(parents=True)
    (ev / "ols.json").write_text(json.dumps(evaluation(0.2).to_json()))
    sweeps = tmp_path / "sweep"
    sweeps.mkdir()
    (sweeps / "rd_table.md").write_text("| setting | ols |\n|---|---|\n| params.yaml | 0.5 |\n")
    settings = {"epochs": 120, "lams": [1.0, 10.0], "model": {"kind": "unet", "width": 8}}
    (sweeps / "rd_table.json").write_text(json.dumps({"settings": settings}))
    (tmp_path / "metrics" / "linear_theory.json").write_text(json.dumps(LINEAR))

    def block(source, body):
        return f"{README_START.format(source=source)}\n{body}\n{README_END}\n"

    prose = "# Project\n\nOur words, kept.\n\n"
    readme = tmp_path / "README.md"
    readme.write_text(
        prose
        + block("sweep/rd_table.md", "| a stale | table |")
        + "\nMore words.\n\n"
        + block("metrics/linear_theory.json", "")
    )
    result = run_cli(["report", "--system", "rd"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    text = readme.read_text()
    assert text.startswith(prose) and "\nMore words.\n" in text and "stale" not in text
    assert "| params.yaml | 0.5 |" in text and "λ grid [1.0, 10.0]" in text  # with its settings
    assert "| U[0, 0.001) (the paper's) | 5.66 | 3.87e+03 | 0.00276 | 3.87e+03 |" in text
    assert text.count(README_END) == 2
    assert fill_readme(text, lambda s: generated_text(s, tmp_path)) == text  # a fixed point
    page = (tmp_path / "docs" / "results.md").read_text()

    # a block without its end line, then a source that is not there: one line, nothing written
    for broken, says in (
        (prose + README_START.format(source="sweep/rd_table.md") + "\n| half |\n", "without"),
        (prose + block("sweep/gone_table.md", ""), "sweep/gone_table.md does not exist"),
    ):
        readme.write_text(broken)
        (tmp_path / "sweep" / "rd_table.md").write_text("| setting | ols |\n|---|---|\n| x | 9 |\n")
        failed = run_cli(["report", "--system", "rd"], cwd=tmp_path)
        assert failed.returncode != 0 and failed.stderr.count("\n") == 1, failed.stderr
        assert "README.md" in failed.stderr and says in failed.stderr
        assert (
            readme.read_text() == broken and (tmp_path / "docs" / "results.md").read_text() == page
        )
