"""The import graph: no cycles (counting imports inside functions), and imports flow one way."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "ov_explain"
#: The layers, lowest first: a module imports only modules of its own layer or below (the package's own
#: ``__init__`` re-exports and is not a layer). Front ends (the CLI, the notebook UI) are the top.
LAYERS = ["core", "render", "explain", "evaluate", "runs", "tools", "export", "cli|widgets"]


def layer_of(module: str) -> int:
    part = module.split(".")[1]
    return next(i for i, names in enumerate(LAYERS) if part in names.split("|"))


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """Modules of the package that ``path`` imports, wherever in the file the import is."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")
            base = base[: len(base) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                found.add(candidate if candidate in modules else target)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m in modules and m != name}


def graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imports_of(p, modules) for p in paths}


def test_the_import_graph_has_no_cycle():
    edges, state, cycles = graph(), {}, []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for target in sorted(edges[node]):
            if state.get(target) == "open":
                cycles.append(trail[trail.index(target):] + [target] if target in trail else [node, target])
            elif target not in state:
                visit(target, trail + [target])
        state[node] = "done"

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_every_module_is_in_a_layer():
    modules = [m for m in graph() if m != "ov_explain"]
    assert all(layer_of(m) >= 0 for m in modules)  # layer_of raises StopIteration for a module outside LAYERS


def test_imports_flow_down_the_layers():
    edges = graph()
    upward = {m: sorted(t for t in targets if t != "ov_explain" and layer_of(t) > layer_of(m))
              for m, targets in edges.items() if m != "ov_explain"}
    assert {m: t for m, t in upward.items() if t} == {}


def test_the_core_imports_nothing_above_it():
    edges = graph()
    core = {m for m in edges if m.startswith("ov_explain.core")}
    assert {m: sorted(edges[m] - core) for m in core if edges[m] - core} == {}


def test_only_the_command_line_reads_the_exports():
    edges = graph()
    readers = {m for m, targets in edges.items() if any(t.startswith("ov_explain.export") for t in targets)}
    assert {m for m in readers if not m.startswith("ov_explain.export")} == {"ov_explain.cli.export"}


def test_the_report_reads_the_folder_not_the_audit():
    assert "ov_explain.runs.audit.run" not in graph()["ov_explain.runs.report"]
