"""The package's import graph, read statically from the source: every ``import`` statement (also
those inside functions, since the CLI imports lazily), plus the packages whose registries import
all their modules by discovery (``concrete_subclasses("<package>", ...)``). Shared by the test that
dvc.yaml declares what each stage imports and the test of the layers.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

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
