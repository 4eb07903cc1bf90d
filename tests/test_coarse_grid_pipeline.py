"""The coarse grids closed by a fine solver (ks, kolmogorov) through every stage a user runs, at a
tiny size, in one process (the commands' own ``main``): generate → fit-manifold → train (OLS and
TR) → evaluate (beside the coarse solver alone, scored at the report time: both are chaotic) →
promote (registered as ``<system>-closure``) → simulate and speedup from the registry."""

from __future__ import annotations

import json

import pytest

from ml4dynamics.cli import main as cli
from ml4dynamics.datasets import open_dataset
from tests.conftest import small_params, write_params


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    write_params(tmp_path / "params.yaml", small_params())
    return tmp_path


def run(args: list[str], capsys) -> str:
    code = cli(args)
    out, err = capsys.readouterr()
    assert code == 0, f"ml4d {' '.join(args)}: {err}"
    return out


@pytest.mark.parametrize("system", ["ks", "kolmogorov"])
def test_a_coarse_grid_closure_goes_through_the_pipeline(system, workdir, capsys):
    run(["generate", system], capsys)
    inspected = run(["inspect", str(workdir / "data" / system / "train.zarr")], capsys)
    assert "closure label energy by wavenumber band" in inspected  # where the correction works
    run(["fit-manifold", system], capsys)
    for estimator in ("ols", "tr-projector"):
        run(["train", system, "--estimator", estimator], capsys)
        run(["evaluate", system, "--estimator", estimator], capsys)
        result = json.loads((workdir / f"metrics/{system}/evaluate/{estimator}.json").read_text())
        # scored at the report time (kolmogorov at its own: its splits end at t = 0.8)
        report_time = {"ks": 2.0, "kolmogorov": 0.4}[system]
        assert result["chaotic"] and result["score_metric"] == f"error_t{report_time:g}"
        for split in ("val", "test", "ood"):
            # the ablation from the reference run with noise (the correction closure), and the
            # coarse solver alone beside the closure
            noisy, own = result[split]["ablation"], result[split]["error_horizon"]
            assert noisy["misfit_std"] > 0 and noisy["error_horizon"] > 0
            ratio = None if own is None else pytest.approx(own / noisy["error_horizon"])
            assert result[split]["error_vs_ablation"] == ratio
            base = result[split]["coarse_alone"]
            assert base["stable_fraction"] == 1.0 and base["error_horizon"] > 0
            # the statistics a decorrelated hybrid can keep, from the report time on (none
            # for a blow-up)
            assert base["spectrum_error"] > 0
            stable = result[split]["stable_fraction"] == 1.0
            assert (result[split]["spectrum_error"] is not None) == stable
    printed = run(["promote", system], capsys)
    promotion = json.loads((workdir / f"metrics/{system}/promotion.json").read_text())
    assert promotion["registered_model"] == f"{system}-closure"
    assert set(promotion["candidates"]) == {"ols", "tr-projector"}
    for entry in promotion["candidates"].values():
        assert "beats_coarse_solver" in entry["gates"] and entry["decision"] in printed
    uri = f"models:/{system}-closure/{promotion['candidates']['ols']['version']}"
    out = workdir / "run.zarr"
    run(["simulate", "--model", uri, "--steps", "4", "--out", str(out), "--warmup", "4"], capsys)
    assert open_dataset(out).sizes["time"] == 5
    spacing = "0.5" if system == "ks" else "0.08"  # (frames: multiples of the time step)
    args = ["speedup", uri, "--ladder", "16,24", "--trajectories", "2", "--horizon", "2"]
    printed = run([*args, "--spacing", spacing, "--steps", "2", "--repeats", "1"], capsys)
    assert "speed-up" in printed and (workdir / f"bench/{system}_speedup.json").is_file()
