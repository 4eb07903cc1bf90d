"""The package is built in layers, one folder per concern, and imports point only down them.

``python -m tests.test_layers`` prints the layers with what each imports. The test fails on an
import from a lower layer into a higher one, on a cycle between modules (discovery's imports by
package name count, ``if TYPE_CHECKING:`` imports do not: they never run), on a module longer
than ``MAX_MODULE_LINES`` and on a function longer than ``MAX_FUNCTION_LINES``; and the guide's
layout section names every package.
"""

from __future__ import annotations

import ast
import sys

from tests.conftest import REPO
from tests.import_graph import PACKAGE, SRC, direct_imports, module_path

#: bottom to top; a unit is a package (folder) or a top-level module of ``ml4dynamics``
LAYERS = (
    "core",  # errors, validation, discovery, atomic writes, layout, outputs, provenance, tracking
    "systems",  # the PDEs, their solvers and the rollout
    "config",  # params.yaml as typed configuration
    "datasets",  # generating and storing trajectories, training pairs
    "simulation",  # hybrid rollouts, downstream simulation
    "models",  # networks and their checkpoints
    "learning",  # estimators, training, the manifold model, DAgger
    "evaluation",  # scores of hybrid rollouts, the typed result
    "registry",  # the MLflow model registry, gates, promotion
    "reporting",  # results page, figures, experiments table
    "studies",  # sweeps, linear theory, benches, speed-up
    "pipeline",  # the DVC stages
    "cli",  # the `ml4d` command
)
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80


def modules() -> list[str]:
    names = []
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def unit(module: str) -> str | None:
    """The layer a module belongs to (None: the package root, which sits below every layer)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def runtime_imports(module: str) -> set[str]:
    """``direct_imports`` without those under ``if TYPE_CHECKING:`` (annotations only)."""
    found = direct_imports(module)
    tree = ast.parse(module_path(module).read_text())
    typing_only: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in node.body:
                if isinstance(inner, ast.ImportFrom) and inner.module:
                    typing_only |= {inner.module} | {
                        f"{inner.module}.{a.name}" for a in inner.names
                    }
    # a module imported at run time elsewhere in the file stays
    return found - (typing_only - _imported_outside_type_checking(tree))


def _imported_outside_type_checking(tree: ast.Module) -> set[str]:
    guarded = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for inner in node.body
    }
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and id(node) not in guarded:
            out |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return out


def graph() -> dict[str, set[str]]:
    return {m: {d for d in runtime_imports(m) if d != m} for m in modules()}


def upward_imports(edges: dict[str, set[str]]) -> list[str]:
    rank = {name: i for i, name in enumerate(LAYERS)}
    bad = []
    for module, deps in edges.items():
        here = unit(module)
        for dep in deps:
            there = unit(dep)
            if here is None or there is None:
                if there is not None:  # the root package imports no layer
                    bad.append(f"{module} -> {dep}")
                continue
            if rank[there] > rank[here]:
                bad.append(f"{module} ({here}) -> {dep} ({there})")
    return sorted(bad)


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    sys.setrecursionlimit(10_000)

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in edges:
        if v not in index:
            visit(v)
    return found


def long_definitions() -> list[str]:
    out = []
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        text = path.read_text()
        where = path.relative_to(REPO)
        if len(text.splitlines()) > MAX_MODULE_LINES:
            out.append(f"{where}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    out.append(f"{where}: {node.name} has {length} lines")
    return out


def test_every_module_belongs_to_a_layer():
    assert {unit(m) for m in modules()} - {None} == set(LAYERS)


def test_imports_point_down_the_layers():
    bad = upward_imports(graph())
    assert not bad, "upward imports:\n" + "\n".join(bad)


def test_an_upward_import_is_caught():
    """Negative control: a core module importing evaluation is named."""
    edges = graph()
    edges["ml4dynamics.core.errors"] = {"ml4dynamics.evaluation"}
    assert upward_imports(edges) == [
        "ml4dynamics.core.errors (core) -> ml4dynamics.evaluation (evaluation)"
    ]


def test_no_import_cycles():
    found = cycles(graph())
    assert not found, f"import cycles: {found}"


def test_a_cycle_is_caught():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(edges) == [["a", "b", "c"]]


def test_modules_and_functions_stay_readable_in_a_sitting():
    too_long = long_definitions()
    assert not too_long, "\n".join(too_long)


def test_the_guide_names_every_package():
    guide = (REPO / "docs" / "guide.md").read_text()
    start = guide.index("## Layout")
    end = guide.find("\n## ", start + 1)
    section = guide[start : end if end > 0 else len(guide)]
    missing = [
        name for name in LAYERS if (SRC / PACKAGE / name).is_dir() and f"{name}/" not in section
    ]
    assert not missing, f"docs/guide.md's Layout section does not name: {missing}"


def main() -> None:
    edges = graph()
    for name in LAYERS:
        members = [m for m in edges if unit(m) == name]
        below = sorted({unit(d) for m in members for d in edges[m]} - {name, None})
        print(f"{name:<11} {len(members):>3} modules  imports: {', '.join(below) or '-'}")
    problems = upward_imports(edges) + [" -> ".join(c) for c in cycles(edges)]
    problems += long_definitions()
    print("\n".join(problems) or "no upward import, no cycle, nothing too long")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
