"""The stages take their paths from one layout, and dvc.yaml declares exactly those outputs."""

from __future__ import annotations

import shlex

import pytest

from ml4dynamics.cli import build_parser
from ml4dynamics.layout import Layout
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
