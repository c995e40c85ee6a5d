"""The house's floors (DESIGN.md's module table): no module imports one on a floor above it, lazily
inside a function or not, and no modules import each other in a circle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "gasus"

# Lowest first. A module belongs to the floor of the longest name that prefixes it (gasus.io.read: io).
FLOORS = [
    ("records", "errors", "parsing", "thinking", "distributed", "wording", "hub"),
    ("io",),
    ("prompts", "ahead"),
    ("cache",),
    ("selection", "diagnostics", "testsets", "audit", "agree"),
    ("backends",),
    ("batch", "manifest", "generate"),
    ("grade", "judge", "train"),
    ("report", "pipeline"),
    ("cli", "__main__"),
]


def _modules() -> dict[str, Path]:
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The gasus modules `name` imports anywhere in its file, each as the module it names."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = ".".join(package[:len(package) - node.level + 1] + [node.module or ""]) if node.level else node.module
            base = base.rstrip(".")
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        elif isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target.startswith("gasus") and target != name:
                found.add(target)
    return found


def _floor(name: str) -> int | None:
    parts = name.split(".")[1:]
    for depth in range(len(parts), 0, -1):
        for i, floor in enumerate(FLOORS):
            if ".".join(parts[:depth]) in floor:
                return i
    return None


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def test_every_module_has_a_floor(graph):
    assert [name for name in graph if name != "gasus" and _floor(name) is None] == []


def test_no_module_imports_one_on_a_floor_above_it(graph):
    up = [f"{a} -> {b}" for a, targets in graph.items() for b in targets
          if a != "gasus" and b != "gasus" and _floor(b) > _floor(a)]
    assert up == []


def _circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Each circle met walking the graph depth first, as the path that closes it."""
    state: dict[str, int] = {}  # 1: on the path being walked, 2: done
    circles = []

    def walk(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                circles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                walk(nxt, path + [nxt])
        state[node] = 2

    for start in sorted(edges):
        if start not in state:
            walk(start, [start])
    return circles


def test_no_modules_import_each_other_in_a_circle(graph):
    # A package's __init__ re-exports its own modules: those edges are the package itself, not a circle.
    edges = {a: {b for b in targets if not (b.startswith(a + ".") or a.startswith(b + "."))}
             for a, targets in graph.items()}
    assert _circles(edges) == []


def test_the_check_sees_an_upward_import_and_a_circle():
    """The walkers above find what they look for: the floors of a known pair, a made-up circle."""
    assert _floor("gasus.io.read") == 1 and _floor("gasus.cli.grade") == len(FLOORS) - 1
    assert _floor("gasus.pipeline.stages") > _floor("gasus.grade") > _floor("gasus.cache")
    modules = _modules()
    assert "gasus.errors" in _imports("gasus.io.read", modules["gasus.io.read"], modules)
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert _circles({"a": {"b"}, "b": set(), "c": {"b"}}) == []
