"""The package's shape, checked on its source with `ast`: no import cycle, no import inside a function to dodge
one, and every module importing only from its own layer or the layers below (the floors of ../shared/DESIGN.md,
as the package docstring of peftlab states them)."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import peftlab

PACKAGE = Path(peftlab.__file__).parent

# Bottom to top. A module may import modules of its own layer (without a cycle) and of the layers below.
LAYERS = {
    1: ("errors", "files", "lock", "options", "progress", "quiet", "trackers"),
    2: ("tasks", "models", "methods"),
    3: ("train", "evaluate", "measure", "estimate"),
    4: ("study",),
    5: ("diagnose", "advise", "report", "export"),
    6: ("recipe", "bench"),
    7: ("cli",),
}
LEVEL = {part: level for level, parts in LAYERS.items() for part in parts}

# Imports inside functions that are allowed, with why: none dodges a cycle.
LAZY_IMPORTS = {
    "peftlab": "the public API's names load on first use, so `import peftlab` (and peftlab.errors) stays light",
}


def modules(package: Path = PACKAGE) -> dict[str, Path]:
    found = {}
    for path in package.rglob("*.py"):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imported(module: str, path: Path, node: ast.AST, known: dict[str, Path]) -> list[str]:
    """The peftlab modules an import statement reads names from: `from a.b import c` reads module a.b.c when c is
    a submodule, else a.b (whose package __init__ is what defines c)."""
    if isinstance(node, ast.ImportFrom):
        if node.level:
            base = module.split(".")[: len(module.split(".")) - node.level + (path.name == "__init__.py")]
            name = ".".join(base + ([node.module] if node.module else []))
        else:
            name = node.module or ""
        submodules = [f"{name}.{alias.name}" for alias in node.names if f"{name}.{alias.name}" in known]
        names = submodules + ([name] if len(submodules) < len(node.names) else [])
    else:
        names = [alias.name for alias in node.names]
    return [name for name in names if name in known and name != module]


def import_graph(package: Path = PACKAGE) -> tuple[dict[str, set[str]], list[tuple[str, str, str]]]:
    """(module -> the peftlab modules it imports at module level, [(module, function, import) inside functions])."""
    known = modules(package)
    graph: dict[str, set[str]] = defaultdict(set)
    inner = []
    for module, path in known.items():
        tree = ast.parse(path.read_text())
        nested = set()
        for function in ast.walk(tree):
            if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(function):
                    if isinstance(node, (ast.Import, ast.ImportFrom)) and imported(module, path, node, known):
                        nested.add(id(node))
                        inner.append((module, function.name, ast.unparse(node)))
        for block in ast.walk(tree):  # `if TYPE_CHECKING:` imports are for annotations and never run
            if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test):
                nested.update(id(node) for node in ast.walk(block))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in nested:
                graph[module].update(imported(module, path, node, known))
    return graph, inner


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def level_of(module: str) -> int | None:
    parts = module.split(".")
    return LEVEL.get(parts[1]) if len(parts) > 1 else None


def test_no_import_cycle():
    graph, _ = import_graph()
    assert len(graph) > 50  # the walk found the package
    assert cycles(graph) == []


def test_no_import_inside_a_function():
    _, inner = import_graph()
    dodging = [entry for entry in inner if entry[0] not in LAZY_IMPORTS]
    assert dodging == []


def test_every_module_imports_only_its_layer_and_below():
    graph, _ = import_graph()
    unplaced = sorted({module.split(".")[1] for module in graph if level_of(module) is None and module != "peftlab"})
    assert unplaced == [], "every top-level module or package of peftlab belongs to a layer"
    upward = sorted((module, target) for module, targets in graph.items() for target in targets
                    if level_of(module) is not None and level_of(target) is not None
                    and level_of(target) > level_of(module))
    assert upward == []


def test_the_cycle_finder_finds_cycles():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def summary(package: Path) -> list[str]:
    """The import graph of a peftlab source tree in words: modules per layer, cycles and upward imports counting
    the imports inside functions too (what they hid), and how many imports sit inside functions."""
    graph, inner = import_graph(package)
    known = modules(package)
    everything = {module: set(targets) for module, targets in graph.items()}
    for module, path in known.items():
        for function in ast.walk(ast.parse(path.read_text())):
            if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(function):
                    if isinstance(node, (ast.Import, ast.ImportFrom)):
                        everything.setdefault(module, set()).update(imported(module, path, node, known))
    per_layer = defaultdict(list)
    for module in known:
        per_layer[level_of(module)].append(module)
    lines = [f"layer {level}: {len(per_layer[level])} modules" for level in sorted(LAYERS) if per_layer[level]]
    lines.append(f"modules: {len(known)}")
    lines.append(f"cycles, counting imports inside functions: {cycles(everything)}")
    lines.append(f"peftlab imports inside functions: {len(inner)} "
                 f"({len([entry for entry in inner if entry[0] not in LAZY_IMPORTS])} outside {', '.join(LAZY_IMPORTS)})")
    lines.append("imports from a higher layer: " + str(sorted(
        (module, target) for module, targets in everything.items() for target in targets
        if level_of(module) and level_of(target) and level_of(target) > level_of(module))))
    return lines


if __name__ == "__main__":  # python tests/test_layers.py [path/to/src/peftlab]
    import sys

    print("\n".join(summary(Path(sys.argv[1]) if len(sys.argv) > 1 else PACKAGE)))
