"""The console script as a user meets it."""

from __future__ import annotations

import pytest

from ml4dynamics.cli import build_parser
from tests.conftest import run_cli

SUBCOMMANDS = sorted(build_parser()._subparsers._group_actions[0].choices)  # noqa: SLF001


def test_every_subcommand_has_help(tmp_path):
    assert {"generate", "inspect", "params"} <= set(SUBCOMMANDS)
    top = run_cli(["--help"], cwd=tmp_path)
    assert top.returncode == 0 and all(name in top.stdout for name in SUBCOMMANDS)
    for name in SUBCOMMANDS:
        result = run_cli([name, "--help"], cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(f"usage: ml4d {name}")


@pytest.mark.parametrize("args", [[], ["generate"], ["frobnicate"]])
def test_usage_errors_are_one_line(tmp_path, args):
    result = run_cli(args, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "see `ml4d" in result.stderr, result.stderr


def test_inspect_reports_a_valid_store(generated, tmp_path):
    result = run_cli(["inspect", str(generated / "rd" / "ood.zarr")], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "valid rd dataset, split ood" in result.stdout


def test_inspect_refuses_a_missing_store(tmp_path):
    result = run_cli(["inspect", "data/rd/train.zarr"], cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == (
        "ml4d: error: data/rd/train.zarr does not exist; "
        "run `dvc repro` (or `ml4d generate SYSTEM`) to create it\n"
    )
