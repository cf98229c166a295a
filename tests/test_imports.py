"""The package's import graph: no cycles (imports inside functions included), data/ below model/,
and imports inside functions only for optional dependencies."""
from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "adagrpo_core"
OPTIONAL = {"dask", "distributed", "jupytext"}     # extras: imported where they are used, with a comment


def _module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def _resolve(module: str, node: ast.ImportFrom | ast.Import) -> list[str]:
    """The package modules an import statement in ``module`` loads."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name in MODULES]
    is_pkg = MODULES[module].name == "__init__.py"
    base = module.split(".") if is_pkg else module.split(".")[:-1]
    if node.level:
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    if target not in MODULES:
        return []
    out = [target]
    for a in node.names:                       # from .pkg import module
        if f"{target}.{a.name}" in MODULES:
            out.append(f"{target}.{a.name}")
    return out


def _imports(module: str) -> list[tuple[ast.stmt, bool]]:
    """Every import statement of a module, with whether it sits inside a function."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    out = []

    def walk(node, in_func):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                out.append((child, in_func))
            walk(child, in_func or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))
    walk(tree, False)
    return out


def import_graph() -> dict[str, set[str]]:
    graph = {}
    for m in MODULES:
        edges = set()
        for node, _ in _imports(m):
            edges.update(t for t in _resolve(m, node) if t != m)
        graph[m] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as [a, b, ..., a], or None."""
    state, stack = {}, []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for t in sorted(graph.get(n, ())):
            if state.get(t) == 1:
                return stack[stack.index(t):] + [t]
            if t not in state:
                c = visit(t)
                if c:
                    return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state:
            c = visit(n)
            if c:
                return c
    return None


def test_cycle_finder_finds_a_cycle_and_accepts_a_tree():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_resolver_reads_relative_and_nested_imports():
    graph = import_graph()
    assert "adagrpo_core.rl.gate" in graph["adagrpo_core.rl.step"]
    assert "adagrpo_core.common.checks" in graph["adagrpo_core.rl.gate"]
    assert "adagrpo_core.configs" in graph["adagrpo_core.cli"]


def test_package_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_data_does_not_import_model():
    graph = import_graph()
    bad = {m: sorted(t for t in ts if t.startswith("adagrpo_core.model"))
           for m, ts in graph.items() if m.startswith("adagrpo_core.data")}
    assert not any(bad.values()), f"data/ imports model/: {bad}"


def test_imports_inside_functions_are_only_optional_dependencies():
    nested = []
    for m in MODULES:
        for node, in_func in _imports(m):
            if not in_func:
                continue
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            if node.__dict__.get("level", 0) or not all(n.split(".")[0] in OPTIONAL for n in names):
                nested.append(f"{m}:{node.lineno} {ast.unparse(node)}")
    assert not nested, "imports inside functions (only optional dependencies may be):\n" + "\n".join(nested)


def test_layers_read_bottom_up():
    """common imports nothing else of the package; the pipeline (data, model, reward, rl, train,
    eval, runs, pipeline, configs) never imports the analysis layer (suite) or the CLI; the suite
    never imports the CLI; and the package's top level holds at most six modules."""
    graph = import_graph()
    layer = lambda m: m.split(".")[1] if m.count(".") else ""   # noqa: E731
    bad = []
    for m, ts in graph.items():
        for t in ts:
            if layer(m) == "common" and layer(t) != "common":
                bad.append(f"{m} -> {t} (common imports only common)")
            if layer(m) not in ("suite", "cli") and layer(t) in ("suite", "cli"):
                bad.append(f"{m} -> {t} (the pipeline never imports the analysis layer)")
            if layer(m) == "suite" and layer(t) == "cli":
                bad.append(f"{m} -> {t} (the suite never imports the CLI)")
    assert not bad, "\n".join(bad)
    top = [p.stem for p in PKG.glob("*.py") if p.name != "__init__.py"]
    assert len(top) <= 6, f"top-level modules: {sorted(top)}"
