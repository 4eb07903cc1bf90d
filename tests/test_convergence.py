"""Convergence with resolution (``ml4d convergence``): closures trained at several coarse grids
beside the plain solver and the exact correction, on a tiny ks (64 fine points, L = 32)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ml4dynamics.cli import main as cli
from ml4dynamics.pipeline import convergence as glue
from ml4dynamics.studies.convergence import verdict
from tests.conftest import small_params, write_params

SIZES = ("8", "16", "32")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict:
    """One real run: sizes 8, 16, 32 of a 64-point ks, 2 seeds, 1 epoch of OLS."""
    root = tmp_path_factory.mktemp("convergence")
    params = write_params(root / "params.yaml", small_params())
    out = root / "bench"
    argv = ["convergence", "ks", "--params", str(params), "--coarse", "32,8,16", "--seeds", "2",
            "--epochs", "1", "--out-dir", str(out)]  # fmt: skip
    assert cli(argv) == 0
    paths = {s: out / f"ks_convergence.{s}" for s in ("json", "md", "png")}
    return {
        "argv": argv,
        "out": out,
        "paths": paths,
        "result": json.loads(paths["json"].read_text()),
    }


def test_the_oracle_is_round_off_and_the_plain_solvers_error_falls_with_n(run):
    sizes = run["result"]["sizes"]
    assert sorted(sizes, key=int) == list(SIZES)
    for n in SIZES:
        assert sizes[n]["oracle"]["max_error_to_report"] <= 1e-10, n
        assert sizes[n]["coarsening"] == 64 // int(n)
    # L = 32 on 8, 16, 32 points: the alias-free solver alone resolves ks better on each finer grid
    plain = [sizes[n]["plain"]["error_at_report"] for n in SIZES]
    assert plain[0] > plain[1] > plain[2], plain
    assert plain[2] < 0.1 * plain[0]


def test_the_hybrid_rows_are_test_numbers_per_seed_on_the_plain_solvers_trajectories(run):
    result = run["result"]
    assert result["settings"]["seeds"] == [0, 1] and result["settings"]["epochs"] == 1
    runs = result["runs"]
    assert len(runs) == len(SIZES) * 2 and all(r["estimator"] == "ols" for r in runs)
    for n in SIZES:
        row = result["sizes"][n]
        h = row["hybrids"]["ols"]
        mine = [r for r in runs if r["coarsening"] == 64 // int(n)]
        assert h["seeds"] == [0, 1]
        assert h["error_at_report"] == [r["error"] for r in mine]  # test, not validation
        assert h["error_mean"] == pytest.approx(np.mean(h["error_at_report"]))
        assert h["error_std"] == pytest.approx(np.std(h["error_at_report"]))
        # the sweep's own baseline is the plain solver of the table: the same test trajectories
        assert mine[0]["coarse_alone"]["error_t2"] == pytest.approx(
            row["plain"]["error_at_report"], rel=1e-9
        )
        assert row["labels"]["rms_y"] > 0 and row["labels"]["rms_u"] > 0
        assert row["labels"]["relative"] == pytest.approx(
            row["labels"]["rms_y"] / row["labels"]["rms_u"]
        )
        assert all(v > 0 for v in row["cost_ms_per_time_unit"].values())
        # the closure's validation misfit per point against the size of what it learns
        assert row["labels"]["points"] == int(n)
        assert h["misfit_ratio"] == pytest.approx(
            [np.sqrt(r["val_misfit"] / int(n)) / row["labels"]["rms_y"] for r in mine]
        )
    assert result["fine"]["n"] == 64 and result["fine"]["cost_ms_per_time_unit"] > 0


def test_the_table_figure_and_json_are_written_with_a_row_per_size(run):
    md = run["paths"]["md"].read_text()
    first = md.splitlines()[0]
    assert first.startswith("`ml4d convergence ks --coarse 8,16,32 --seeds 2 --estimators ols ")
    assert "--epochs 1" in first and "fine grid 64" in first
    accuracy, cost = md.split("\n\n")[1:3]
    for block in (accuracy, cost):
        rows = [line.split(" | ")[0] for line in block.splitlines()[2:]]
        assert rows[:3] == [f"| {n}" for n in SIZES], block
    assert cost.splitlines()[-1].startswith("| 64 (fine) |")
    assert run["result"]["verdict"] in md and "ols hybrid's test error at t = 2" in md
    assert run["paths"]["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert run["result"]["command"] in first


def test_existing_outputs_are_kept_without_overwrite_and_replaced_with_it(run, capsys, monkeypatch):
    before = {s: p.read_bytes() for s, p in run["paths"].items()}
    capsys.readouterr()
    assert cli(run["argv"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "exists; pass --overwrite" in err
    assert {s: p.read_bytes() for s, p in run["paths"].items()} == before
    # with --overwrite (the study itself replayed from the record: its cost is not the point)
    recorded = {k: v for k, v in run["result"].items() if k != "command"}
    recorded["verdict"] = "replayed."
    monkeypatch.setattr(glue, "convergence", lambda *a, **k: recorded)
    assert cli([*run["argv"], "--overwrite"]) == 0
    assert run["paths"]["md"].read_text().rstrip().endswith("replayed.")


def test_render_rewrites_the_table_and_figure_from_the_record_alone(run, tmp_path, capsys):
    out = tmp_path / "rendered"
    out.mkdir()
    record = json.loads(run["paths"]["json"].read_text())
    (out / "ks_convergence.json").write_text(json.dumps(record | {"verdict": "from the record."}))
    argv = ["convergence", "ks", "--render", "--out-dir", str(out)]
    assert cli(argv) == 0
    md = (out / "ks_convergence.md").read_text()
    assert md.splitlines()[0].startswith(f"`{record['command']}`")
    assert md.rstrip().endswith(verdict(record))  # derived again from the recorded numbers
    assert json.loads((out / "ks_convergence.json").read_text())["sizes"] == record["sizes"]
    assert (out / "ks_convergence.png").read_bytes()[:4] == b"\x89PNG"
    capsys.readouterr()
    assert cli(argv) == 2 and "exists; pass --overwrite" in capsys.readouterr().err
    assert cli(["convergence", "ks", "--render", "--out-dir", str(tmp_path / "none")]) == 2
    assert "--render: no recorded" in capsys.readouterr().err


def test_a_failure_while_writing_leaves_nothing_half_written(run, tmp_path, monkeypatch, capsys):
    recorded = {k: v for k, v in run["result"].items() if k != "command"}
    monkeypatch.setattr(glue, "convergence", lambda *a, **k: recorded)

    def broken(result, path):
        raise RuntimeError("disk full")

    monkeypatch.setattr(glue, "figure", broken)
    argv = [*run["argv"][:-1], str(tmp_path / "out")]
    with pytest.raises(RuntimeError):
        cli(argv)
    assert not list((tmp_path / "out").glob("*"))  # no JSON or table without the figure


@pytest.mark.parametrize(
    ("system", "extra", "message"),
    [
        ("rd", [], "needs a spectral coarse grid closed by a fine solver"),
        ("ks", ["--coarse", "12,16"], "divide the fine grid (64)"),
        ("ks", ["--coarse", "16,x"], "--coarse '16,x': write coarse sizes as 32,64,128"),
        ("ks", ["--seeds", "0"], "--seeds 0: give the number of training seeds, >= 1"),
        ("ks", ["--estimators", "nope"], "nope"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, system, extra, message):
    params = write_params(tmp_path / "params.yaml", small_params())
    out = tmp_path / "out"
    code = cli(["convergence", system, "--params", str(params), "--out-dir", str(out), *extra])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("ml4d: error:") and err.count("\n") == 1, err
    assert message in err
    assert not out.exists()


def test_the_verdict_says_when_the_hybrid_does_not_converge_or_loses_to_the_plain_solver():
    def result(hybrid, plain):
        return {
            "report_time": 10.0,
            "settings": {"estimators": ["ols"]},
            "sizes": {
                str(n): {"hybrids": {"ols": {"error_mean": h}}, "plain": {"error_at_report": p}}
                for n, h, p in zip((32, 64, 128), hybrid, plain, strict=True)
            },
        }

    good = verdict(result([0.5, 0.1, 1e-4], [5.9, 1.3, 2e-4]))
    assert "falls as n grows" in good and "beats the plain padded solver at every n" in good
    bad = verdict(result([0.5, 0.1, 1e-3], [5.9, 1.3, 2e-4]))
    assert "falls as n grows" in bad and "at n = 32, 64 but not at n = 128" in bad
    flat = verdict(result([0.5, 0.6, None], [5.9, 1.3, 2e-4]))
    assert "does NOT fall monotonically" in flat and "at n = 32, 64 but not at n = 128" in flat
    assert "nowhere" in verdict(result([9.0, 9.0, 9.0], [5.9, 1.3, 2e-4]))
    # where both have decorrelated before the report time, the sentence says so
    decorrelated = result([1.2, 0.05, 2e-3], [5.9, 1.3, 2e-4])
    decorrelated["sizes"]["32"]["hybrids"]["ols"]["time_mean"] = 4.5
    decorrelated["sizes"]["32"]["plain"]["time_above_0.8"] = 4.0
    decorrelated["sizes"]["64"]["plain"]["time_above_0.8"] = 7.1  # the hybrid holds: no note
    assert "(at n = 32 both have lost correlation 0.8 before t = 10" in verdict(decorrelated)


def test_the_glue_imports_no_other_stage():
    source = Path(glue.__file__).read_text()
    assert "ml4dynamics.pipeline." not in source.replace("ml4dynamics.pipeline import", "")
