"""The import layers the README draws hold in the code: no cycles, no upward imports, no lazy
imports of the project's own modules but the listed ones, no private names across modules.

The graph is read from the source with ``ast`` (nothing is imported), every import counted:
module level, inside functions (lazy) and under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("explainers", "cache", "dashboard")

#: from the ground up; a module may import its own layer and the layers below. The first
#: matching prefix names a module's layer (a prefix matches the module and its submodules).
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundations", ("explainers.errors", "explainers.params", "explainers.results", "explainers.rng",
                     "explainers.quadrature", "explainers.precision", "explainers.drawing", "cache.store",
                     "cache.loaders", "cache")),
    ("adapters", ("explainers.adapters", "explainers.baselines")),
    ("pooling", ("explainers.pooling",)),
    ("methods", ("explainers.registry", "explainers.methods")),
    ("engine", ("explainers.engine",)),
    ("metrics", ("explainers.metrics",)),
    ("notebook", ("explainers.notebook",)),
    ("models", ("cache.models", "cache.text_model", "cache.tabular_model", "cache.train_text_model")),
    ("api", ("explainers.api",)),
    ("review", ("explainers.review",)),
    ("cli", ("explainers.cli", "explainers.__main__")),
    ("engine facade", ("explainers",)),
    ("dashboard base", ("dashboard.state", "dashboard.render", "dashboard.widgets", "dashboard.models",
                        "dashboard.types", "dashboard")),
    ("dashboard inputs", ("dashboard.inputs", "dashboard.attention_view")),
    ("views", ("dashboard.views",)),
    ("dashboard sections", ("dashboard.export", "dashboard.panels", "dashboard.compare")),
    ("dashboard pages", ("dashboard.review", "dashboard.layout", "dashboard.home", "dashboard.app")),
]

#: the only lazy imports of the project's own modules, and why each is lazy
LAZY_ALLOWED = {
    ("explainers.api", "cache.models"):
        "cache.loaders imports explainers.errors; a top-level cache.models import in the api "
        "would make `import cache.loaders` re-enter it half-loaded",
    ("explainers.review.driver", "explainers.review.ray_engine"): "keeps Ray off every import path but its own",
    ("cache.models", "cache.text_model"): "transformers loads only when the text model does",
}


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    line: int
    lazy: bool
    names: tuple[str, ...]


def module_of(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {module_of(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def absolute(module: str, is_package: bool, level: int, target: str | None) -> str:
    if not level:
        return target or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - level + 1]
    return ".".join(base + ([target] if target else []))


def owner(dotted: str, modules: dict[str, Path]) -> str | None:
    while dotted and dotted not in modules:
        dotted = dotted.rpartition(".")[0]
    return dotted or None


def edges(modules: dict[str, Path]) -> list[Edge]:
    out = []
    for name, path in modules.items():
        is_package = path.name == "__init__.py"

        def visit(node: ast.AST, lazy: bool) -> None:
            for child in ast.iter_child_nodes(node):
                inner = lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
                if isinstance(child, ast.Import):
                    for alias in child.names:
                        target = owner(alias.name, modules)
                        if target and target != name:
                            out.append(Edge(name, target, child.lineno, lazy, ()))
                elif isinstance(child, ast.ImportFrom):
                    base = absolute(name, is_package, child.level, child.module)
                    for alias in child.names:
                        target = owner(f"{base}.{alias.name}", modules) or owner(base, modules)
                        if target and target != name:
                            out.append(Edge(name, target, child.lineno, lazy, (alias.name,)))
                visit(child, inner)

        visit(ast.parse(path.read_text(encoding="utf-8")), False)
    return out


def layer_of(module: str) -> int:
    best = None
    for rank, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                if best is None or len(prefix) > best[1]:
                    best = (rank, len(prefix))
    assert best is not None, f"{module} is in no layer: add it to LAYERS"
    return best[0]


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm: the components with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                part.append(w)
                if w == v:
                    break
            if len(part) > 1:
                found.append(sorted(part))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


@pytest.fixture(scope="module")
def graph() -> tuple[dict[str, Path], list[Edge]]:
    modules = project_modules()
    return modules, edges(modules)


def test_no_import_cycles(graph):
    modules, found = graph
    adjacency: dict[str, set[str]] = {m: set() for m in modules}
    for e in found:
        adjacency[e.source].add(e.target)
    assert strongly_connected(adjacency) == []


def test_imports_go_down_the_layers(graph):
    _, found = graph
    upward = [f"{e.source}:{e.line} imports {e.target} ({LAYERS[layer_of(e.source)][0]} -> "
              f"{LAYERS[layer_of(e.target)][0]})"
              for e in found if layer_of(e.target) > layer_of(e.source)]
    assert upward == []


def test_lazy_imports_are_the_listed_ones(graph):
    _, found = graph
    lazy = {(e.source, e.target) for e in found if e.lazy}
    assert lazy == set(LAZY_ALLOWED)


def test_no_private_names_across_modules(graph):
    _, found = graph
    private = [f"{e.source}:{e.line} imports {n} from {e.target}" for e in found for n in e.names
               if n.startswith("_") and not n.startswith("__")]
    assert private == []


def test_the_checker_sees_a_cycle_and_an_upward_import():
    # the checks above can fail: a two-module cycle is found, and an adapter importing the
    # engine is upward
    assert strongly_connected({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    assert layer_of("explainers.engine") > layer_of("explainers.adapters.text")
    assert layer_of("explainers.review.driver") > layer_of("explainers.api")
