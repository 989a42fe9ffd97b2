"""The package's import graph, read from its source: no circles, and no lower layer importing a higher one.

Every import counts, at module level or inside a function, except those under ``if TYPE_CHECKING:``
(annotations only, never run).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "dcgan"

# what the bottom layers may import of the package: the networks nothing at module level (a loader
# when asked to load), the data its own modules and the small utilities
ALLOWED = {
    "dcgan.models": {"dcgan.loading"},
    "dcgan.data": {"dcgan.data", "dcgan.errors", "dcgan.cache", "dcgan.fileio"},
}
HIGHER = ("dcgan.train", "dcgan.step", "dcgan.hooks", "dcgan.metrics", "dcgan.cli", "dcgan.benchmarks", "dcgan.options")


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ("dcgan", *path.relative_to(PACKAGE).with_suffix("").parts)
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _type_checking_only(tree: ast.AST) -> set[int]:
    """The ids of import nodes under ``if TYPE_CHECKING:``."""
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING":
            skipped |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return skipped


def _imports(name: str, path: Path, modules: dict[str, Path]) -> dict[str, bool]:
    """The package modules ``name`` imports, each with whether the import is at module level."""
    tree = ast.parse(path.read_text())
    skipped = _type_checking_only(tree)
    top_level = {id(node) for node in tree.body}
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: dict[str, bool] = {}
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)) or id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            # "from .data import load" imports dcgan.data; "from . import checkpoint" imports dcgan.checkpoint
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        for target in targets:
            while target not in modules and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in modules and target != name:
                found[target] = found.get(target, False) or id(node) in top_level
    return found


GRAPH = {name: _imports(name, path, _modules()) for name, path in _modules().items()}


def _cycles(graph: dict[str, dict[str, bool]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return components


def test_the_reader_sees_the_imports():
    # the graph this file checks is the real one: known edges are found, lazy ones included
    assert GRAPH["dcgan.step"]["dcgan.models"] is True
    assert "dcgan.loading" in GRAPH["dcgan.models"] and GRAPH["dcgan.models"]["dcgan.loading"] is False
    assert "dcgan.models" not in GRAPH["dcgan.loading"]  # its one import of models is for annotations


def test_no_import_circles():
    assert _cycles(GRAPH) == []


def test_a_circle_would_be_found():
    graph = {"a": {"b": True}, "b": {"c": False}, "c": {"a": True}, "d": {"a": True}}
    assert _cycles(graph) == [["a", "b", "c"]]


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_the_bottom_layers_import_no_higher_code(layer):
    for name, imports in GRAPH.items():
        if name != layer and not name.startswith(layer + "."):
            continue
        outside = {t for t in imports if t not in ALLOWED[layer] and not t.startswith(tuple(ALLOWED[layer]))}
        assert not outside, f"{name} imports {sorted(outside)}"
        assert not any(t.startswith(HIGHER) for t in imports), name


def test_the_networks_import_nothing_of_the_package_when_imported():
    assert not any(GRAPH["dcgan.models"].values())  # only inside from_checkpoint / from_pretrained
