"""dvc.yaml cannot under-declare code: every module of ``ml4dynamics`` a stage's command imports,
transitively, is one of the stage's deps (a declared folder covers its files).

Imports are read statically from the source (every ``import`` statement, also those inside
functions, since the CLI imports lazily), plus the packages whose registries import all their
modules by discovery (``concrete_subclasses("<package>", ...)``). A stage command ``ml4d NAME``
runs ``ml4dynamics.cli`` and the module ``cli.COMMANDS[NAME]`` names.
"""

from __future__ import annotations

import ast
import shlex
from collections.abc import Iterable

import pytest
import yaml

from ml4dynamics.cli import COMMANDS
from tests.conftest import REPO
from tests.import_graph import (
    PACKAGE,
    SRC,
    direct_imports,
    imported_closure,
    module_path,
    package_modules,
)


def command_modules(cmd: str) -> set[str]:
    """The package modules the stage command ``ml4d NAME ...`` imports."""
    argv = shlex.split(cmd)
    assert argv[0] == "ml4d" and argv[1] in COMMANDS, f"not an ml4d command: {cmd!r}"
    return imported_closure({"ml4dynamics.cli", COMMANDS[argv[1]].module})


def undeclared(cmd: str, deps: Iterable[str]) -> list[str]:
    """Source files the command imports that no dep covers (a folder covers its files)."""
    declared = [REPO / d for d in deps]
    missing = []
    for name in sorted(command_modules(cmd)):
        path = module_path(name)
        if not any(path == d or d in path.parents for d in declared):
            missing.append(str(path.relative_to(REPO)))
    return missing


def pipeline_stages() -> dict[str, tuple[str, list[str]]]:
    """Every stage of dvc.yaml as DVC resolves it: address → (command, deps)."""
    from dvc.repo import Repo

    with Repo(str(REPO)) as repo:
        return {
            stage.addressing: (stage.cmd, [str(d.def_path) for d in stage.deps])
            for stage in repo.index.stages
            if stage.cmd  # data.dvc (the frozen benchmark) has no command
        }


STAGES = pipeline_stages()


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_imported_module_is_a_declared_dependency(stage):
    cmd, deps = STAGES[stage]
    missing = undeclared(cmd, deps)
    assert not missing, f"dvc.yaml stage {stage} ({cmd}) imports but does not declare: {missing}"


def test_removing_a_declared_dependency_is_caught():
    """Negative control: drop one code dep of the train stage and the check names its files."""
    cmd, deps = STAGES["train@rd-ols"]
    assert "src/ml4dynamics/learning" in deps
    dropped = [d for d in deps if d != "src/ml4dynamics/learning"]
    missing = undeclared(cmd, dropped)
    assert "src/ml4dynamics/learning/estimators/least_squares.py" in missing
    assert "src/ml4dynamics/learning/estimators/tangent_space.py" in missing  # found by discovery


def test_stage_modules_never_import_one_another():
    """Stages are glue: a module under pipeline/ imports library code only (and what the stages
    share from the package itself: the common arguments, JSON output)."""
    stages = package_modules("ml4dynamics.pipeline")
    for name in sorted(stages):
        others = {m for m in direct_imports(name) if m.startswith("ml4dynamics.pipeline.")}
        assert not others, f"{name} imports {sorted(others)}"


def test_generation_provenance_is_the_generate_stage_code_without_its_glue():
    """The git revision written into datasets is that of the code that computes them: the
    generate stage's code deps minus the command glue (the CLI table, the stage module).
    If the two drift apart, a fresh clone no longer reproduces dvc.lock (see provenance.py)."""
    from ml4dynamics.datasets.generation import GENERATION_CODE

    stage = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["generate"]["do"]
    code = {d for d in stage["deps"] if d.startswith("src/")}
    glue = {
        "src/ml4dynamics/cli.py",
        "src/ml4dynamics/pipeline/__init__.py",
        "src/ml4dynamics/pipeline/generate.py",
    }
    assert code == set(GENERATION_CODE) | glue


PEERS = ("exponax", "jax_cfd", "equinox")


def test_the_peers_we_measure_against_are_never_runtime_dependencies():
    """exponax and jax-cfd are the `bench` extra: pyproject's dependencies do not list them and
    no library module imports them but the solver benchmark, inside its functions (so that
    importing it, or anything else, never needs them); tests may."""
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    runtime = " ".join(project["dependencies"]).lower()
    assert not any(peer.replace("_", "-") in runtime for peer in PEERS), runtime
    assert {"exponax==0.2.0", "jax-cfd==0.2.1"} <= set(project["optional-dependencies"]["bench"])
    importing = []
    for path in (SRC / PACKAGE).rglob("*.py"):
        tree = ast.parse(path.read_text())
        top_level = set(map(id, tree.body))
        for node in ast.walk(tree):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            if any(name.split(".")[0] in PEERS for name in names):
                where = "module level" if id(node) in top_level else "in a function"
                importing.append(f"{path.relative_to(SRC)} ({where})")
    # exponax and jax-cfd, each where the benchmark builds its step
    assert importing and set(importing) == {
        "ml4dynamics/studies/solver_bench.py (in a function)"
    }, importing
