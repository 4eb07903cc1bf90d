"""The console script as a user meets it."""

from __future__ import annotations

import os

import pytest

from ml4dynamics.cli import build_parser, main
from ml4dynamics.systems import SYSTEMS
from tests.conftest import REPO, run_cli

SUBCOMMANDS = sorted(build_parser()._subparsers._group_actions[0].choices)  # noqa: SLF001


def test_every_subcommand_has_help(tmp_path, capsys):
    assert {"generate", "inspect", "params"} <= set(SUBCOMMANDS)
    top = run_cli(["--help"], cwd=tmp_path)  # the console script itself, once
    assert top.returncode == 0 and all(name in top.stdout for name in SUBCOMMANDS)
    for name in SUBCOMMANDS:  # each command's own help, in process (a subprocess costs ~2 s)
        with pytest.raises(SystemExit) as done:
            main([name, "--help"])
        out = capsys.readouterr().out
        assert done.value.code == 0 and out.startswith(f"usage: ml4d {name}"), out
        description = out.split("\n\n")[1]
        assert len(description) > 40 and "``" not in description  # its module docstring
    for name in ("generate", "train", "timing", "shift-correlation"):  # system names: registry
        sub = build_parser(name)._subparsers._group_actions[0].choices[name]  # noqa: SLF001
        assert f"one of {', '.join(SYSTEMS)}" in " ".join(sub.format_help().split()), name


def test_version_and_instant_top_level_help(tmp_path):
    """`ml4d --help` reads only the command table: no command module, no JAX."""
    script = (
        "import sys; from ml4dynamics.cli import main\n"
        "try: main(['--help'])\nexcept SystemExit: pass\n"
        "assert 'jax' not in sys.modules and 'ml4dynamics.pipeline.train' not in sys.modules\n"
    )
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    version = run_cli(["--version"], cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("ml4d ")


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


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["simulate", "--model", "rd-closure", "--steps", "10", "--out", "r.zarr"],
            "'rd-closure' is not a registry URI; use models:/<system>-closure@champion",
        ),
        (
            [
                "simulate",
                "--model",
                "models:/rd-closure@champion",
                "--steps",
                "-5",
                "--out",
                "r.zarr",
            ],
            "--steps must be >= 1, got -5",
        ),
        (
            [
                "simulate",
                "--model",
                "models:/rd-closure@champion",
                "--steps",
                "10",
                "--out",
                "r.nc",
            ],
            "--out must name a .zarr store",
        ),
        (["golden", "score"], "`ml4d golden score` needs --model"),
        (
            ["golden", "score", "--model", "models:/rd-closure@champion", "--out", "nowhere"],
            "no benchmark at nowhere: fetch it with `dvc pull data.dvc`",
        ),
        (["promote", "rd"], "no evaluations of rd in metrics/rd/evaluate; run `dvc repro`"),
        (["evaluate", "rd", "--estimator", "ridge"], "no estimator 'ridge' under 'estimators'"),
    ],
)
def test_registry_commands_refuse_bad_input_with_one_line(tmp_path, args, message):
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["DVC_ROOT"] = str(tmp_path)
    result = run_cli(args, cwd=tmp_path, env=env)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert not (tmp_path / "r.zarr").exists()


def test_the_old_command_names_still_work_and_say_the_new_one(tmp_path):
    """`bench` and `benchmark` are `timing` and `golden` now; for a release the old names run
    the new commands, after one line naming them."""
    for old, new in (("bench", "timing"), ("benchmark", "golden")):
        result = run_cli([old, "--help"], cwd=tmp_path)
        assert result.returncode == 0 and f"usage: ml4d {new}" in result.stdout
        assert result.stderr == (
            f"ml4d: note: `ml4d {old}` is now `ml4d {new}`; the old name goes in a later release\n"
        )


def test_reading_the_registry_without_a_store_is_one_line_and_creates_nothing(tmp_path):
    """`ml4d simulate` and `ml4d card` outside a repository, MLFLOW_TRACKING_URI unset: the line
    says where it looked and how to point it at a store; the folder stays empty."""
    uri = "models:/rd-closure@champion"
    for args in (["simulate", "--model", uri, "--steps", "10", "--out", "r.zarr"], ["card", uri]):
        result = run_cli(args, cwd=tmp_path)
        assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
        assert "no MLflow store at" in result.stderr and "MLFLOW_TRACKING_URI" in result.stderr
        assert list(tmp_path.iterdir()) == []
