"""No import cycles in ``humanizer`` and ``humanizer_operator``, between modules or between subpackages.

The graph is built from the source (``ast``), not by importing it. Every ``import`` statement counts, wherever
it is: at the top of a module, inside a function, under ``if TYPE_CHECKING:``. A function-level import is still
a dependency (it runs the first time the function is called), and deferring an import is the usual way to hide
a cycle instead of removing one: the cycles this test was written against (``cli`` ↔ ``demo``,
``providers.base`` ↔ its implementations) were both function-level. What is not an import statement does not
count (a module named in a string, such as the Celery app's ``include``), nor does the implicit import of a
package's ``__init__`` when one of its modules is imported.

Two graphs are checked: modules (``humanizer.jobs.dispatch`` → ``humanizer.broker``), and subpackages, where
every module of ``humanizer.jobs`` is the node ``humanizer.jobs`` and a top-level module is its own node
(``jobs`` → ``worker`` → ``jobs`` is a cycle even if no two modules import each other).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"humanizer": ROOT / "service" / "humanizer", "humanizer_operator": ROOT / "operator" / "humanizer_operator"}


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    where: str  # path:line of the import


def modules() -> dict[str, tuple[Path, bool]]:
    """Every module of the packages: dotted name → (file, is a package ``__init__``)."""
    found = {}
    for package, root in PACKAGES.items():
        for path in sorted(root.rglob("*.py")):
            parts = [package, *path.relative_to(root).with_suffix("").parts]
            is_package = parts[-1] == "__init__"
            found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


def import_edges() -> list[Edge]:
    mods = modules()

    def resolve(name: str) -> str | None:  # the module a dotted name lives in (a name imported from it: its module)
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    edges = []
    for name, (path, is_package) in mods.items():
        package = name if is_package else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the package, up level - 1
                    parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join([*parts, *([node.module] if node.module else [])])
                targets = [f"{base}.{alias.name}" for alias in node.names]
            for target in targets:
                module = resolve(target)
                if module is not None and module != name:
                    where = f"{path.relative_to(ROOT)}:{node.lineno}"
                    edges.append(Edge(name, module, where))
    return edges


def subpackage(module: str) -> str:
    """``humanizer.jobs.store`` → ``humanizer.jobs``; ``humanizer.cli`` → itself."""
    return ".".join(module.split(".")[:2])


def cycles(edges: Iterable[Edge]) -> list[list[Edge]]:
    """One cycle (as its edges) per strongly connected component with more than one node (Tarjan)."""
    graph: dict[str, dict[str, Edge]] = {}
    for e in edges:
        graph.setdefault(e.source, {}).setdefault(e.target, e)
        graph.setdefault(e.target, {})
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_a_cycle(graph, sorted(c)[0], c) for c in components]


def _a_cycle(graph: dict[str, dict[str, Edge]], start: str, component: set[str]) -> list[Edge]:
    """A shortest path from ``start`` back to itself inside its component (breadth first)."""
    paths: dict[str, list[Edge]] = {start: []}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w, e in sorted(graph[v].items()):
            if w == start:
                return [*paths[v], e]
            if w in component and w not in paths:
                paths[w] = [*paths[v], e]
                queue.append(w)
    raise AssertionError(f"no cycle through {start}")


def describe(found: list[list[Edge]]) -> str:
    return "\n".join(
        " → ".join([cycle[0].source, *(e.target for e in cycle)])
        + "".join(f"\n    {e.source} imports {e.target} at {e.where}" for e in cycle)
        for cycle in found
    )


def test_the_graph_is_built_from_every_module() -> None:
    edges = import_edges()
    sources = {e.source for e in edges}
    assert {"humanizer.cli", "humanizer.jobs.submit", "humanizer_operator.handlers.jobs"} <= sources
    assert Edge("humanizer.jobs.dispatch", "humanizer.broker", "") in {Edge(e.source, e.target, "") for e in edges}
    assert len(modules()) > 100


def test_no_cycle_between_modules() -> None:
    found = cycles(import_edges())
    assert not found, "import cycles between modules:\n" + describe(found)


def test_no_cycle_between_subpackages() -> None:
    edges = [Edge(subpackage(e.source), subpackage(e.target), f"{e.where} ({e.source} → {e.target})")
             for e in import_edges() if subpackage(e.source) != subpackage(e.target)]
    found = cycles(edges)
    assert not found, "import cycles between subpackages:\n" + describe(found)


def test_cycles_are_found_and_shown() -> None:
    """The detector itself: a function-level import back is a cycle, and the message names the lines."""
    edges = [Edge("a", "b", "a.py:1"), Edge("b", "c", "b.py:2"), Edge("c", "a", "c.py:30"), Edge("c", "d", "c.py:4")]
    found = cycles(edges)
    assert len(found) == 1 and [e.source for e in found[0]] == ["a", "b", "c"]
    assert describe(found).splitlines()[0] == "a → b → c → a" and "c imports a at c.py:30" in describe(found)
    assert cycles([Edge("a", "b", ""), Edge("b", "c", "")]) == []
