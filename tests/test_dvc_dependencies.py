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
from pathlib import Path

import pytest
import yaml

from ml4dynamics.cli import COMMANDS
from tests.conftest import REPO

SRC = REPO / "src"
PACKAGE = "ml4dynamics"


def module_path(name: str) -> Path | None:
    """The source file of module ``name`` of the package (None if it is not one)."""
    base = SRC.joinpath(*name.split("."))
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def package_modules(package: str) -> set[str]:
    folder = SRC.joinpath(*package.split("."))
    return {f"{package}.{p.stem}" for p in folder.glob("*.py") if p.stem != "__init__"}


def direct_imports(name: str) -> set[str]:
    """Modules of the package that ``name`` imports anywhere in its source."""
    path = module_path(name)
    tree = ast.parse(path.read_text())
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                parts = name.split(".")[: len(name.split(".")) - node.level + is_package]
                base = ".".join(parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}  # submodules
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "id", getattr(node.func, "attr", None)) == "concrete_subclasses"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            found |= package_modules(node.args[0].value)
    return {m for m in found if m.split(".")[0] == PACKAGE and module_path(m) is not None}


def imported_closure(roots: Iterable[str]) -> set[str]:
    """Every package module reached from ``roots`` (parent packages included: importing
    ``a.b.c`` runs ``a/__init__.py`` and ``a/b/__init__.py``)."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            parent = ".".join(parts[:i])
            if parent not in seen and module_path(parent) is not None:
                seen.add(parent)
                todo.append(parent)
        todo += [m for m in direct_imports(name) if m not in seen]
    return seen


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
    assert "src/ml4dynamics/estimators" in deps
    dropped = [d for d in deps if d != "src/ml4dynamics/estimators"]
    missing = undeclared(cmd, dropped)
    assert "src/ml4dynamics/estimators/least_squares.py" in missing
    assert "src/ml4dynamics/estimators/tangent_space.py" in missing  # found by discovery


def test_stage_modules_never_import_one_another():
    """Stages are glue: a module under pipeline/ imports library code only."""
    stages = package_modules("ml4dynamics.pipeline")
    for name in sorted(stages):
        others = {m for m in direct_imports(name) if m.startswith("ml4dynamics.pipeline")}
        assert not others, f"{name} imports {sorted(others)}"


def test_generation_provenance_is_the_generate_stage_code_without_its_glue():
    """The git revision written into datasets is that of the code that computes them: the
    generate stage's code deps minus the command glue (CLI table, layout, the stage module).
    If the two drift apart, a fresh clone no longer reproduces dvc.lock (see provenance.py)."""
    from ml4dynamics.datasets.generation import GENERATION_CODE

    stage = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["generate"]["do"]
    code = {d for d in stage["deps"] if d.startswith("src/")}
    glue = {
        "src/ml4dynamics/cli.py",
        "src/ml4dynamics/layout.py",
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
    assert importing and set(importing) == {"ml4dynamics/solver_bench.py (in a function)"}, (
        importing
    )
