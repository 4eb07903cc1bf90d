"""The stages take their paths from one layout, and dvc.yaml declares exactly those outputs."""

from __future__ import annotations

import shlex

import pytest

from ml4dynamics.cli import build_parser
from ml4dynamics.core.errors import ML4DError
from ml4dynamics.core.layout import Layout
from tests.conftest import REPO


def resolved_stages() -> dict[str, tuple[str, set[str]]]:
    """address → (command, declared outputs: outs, metrics and plots) as DVC resolves them."""
    from dvc.repo import Repo

    with Repo(str(REPO)) as repo:
        return {
            s.addressing: (s.cmd, {str(o.def_path) for o in s.outs})
            for s in repo.index.stages
            if s.cmd
        }


STAGES = resolved_stages()


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_dvc_outputs_are_the_layouts(stage):
    cmd, declared = STAGES[stage]
    argv = shlex.split(cmd)[1:]
    args = build_parser(argv[0]).parse_args(argv)
    system = args.system if isinstance(getattr(args, "system", None), str) else None
    expected = Layout().outputs(args.command, system, getattr(args, "estimator", None))
    assert declared == {str(p) for p in expected}, stage


def test_layout_paths_follow_the_root(tmp_path):
    layout = Layout(tmp_path)
    assert layout.closure("rd", "ols") == tmp_path / "models/rd/closures/ols"
    assert layout.split("rd", "ood") == tmp_path / "data/rd/ood.zarr"
    with pytest.raises(KeyError, match="not a pipeline command"):
        layout.outputs("simulate")


def test_stages_read_the_evaluations_of_the_listed_models_only(tmp_path, capsys):
    """A model removed from dvc.yaml leaves its evaluation behind (DVC keeps a removed stage's
    outputs); promote, report and shift_correlation must not treat it as current."""
    (tmp_path / "dvc.yaml").write_text(
        "vars:\n"
        "  - systems: [rd]\n"
        "  - models:\n"
        "      rd-ols: {system: rd, estimator: ols, weights: estimators.ols, scale: estimators.ols}\n"
        "      ns_channel-aols: {system: ns_channel, estimator: aols, weights: estimators.aols}\n"
    )
    layout = Layout(tmp_path)
    layout.evaluations("rd").mkdir(parents=True)
    for estimator in ("ols", "aols"):
        layout.evaluate_metrics("rd", estimator).write_text("{}")
    assert layout.current_evaluations("rd") == [layout.evaluate_metrics("rd", "ols")]
    note = capsys.readouterr().err
    assert note.startswith("ml4d: note: skipping") and "aols.json" in note
    assert note.count("\n") == 1
    with pytest.raises(ML4DError, match="no evaluations of ns_channel"):
        layout.current_evaluations("ns_channel")  # listed, but never evaluated
    (tmp_path / "dvc.yaml").unlink()  # no pipeline (a library user's folder): every file counts
    assert len(Layout(tmp_path).current_evaluations("rd")) == 2
