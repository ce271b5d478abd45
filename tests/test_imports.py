"""The import graph: no cycles (counting imports inside functions), and imports flow one way."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "ov_explain"
#: Front ends: they may import everything, and nothing below them may import them.
FRONTS = {"ov_explain.cli", "ov_explain.widgets", "ov_explain.report", "ov_explain.audit", "ov_explain.drift"}


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


def test_the_core_never_imports_a_front_end():
    edges = graph()
    offenders = {m: sorted(edges[m] & FRONTS) for m in edges if m not in FRONTS and m != "ov_explain"}
    assert {m: f for m, f in offenders.items() if f} == {}
    assert "ov_explain.audit" not in edges["ov_explain.report"]  # the report reads the folder, not the audit


def test_only_the_command_line_reads_the_exports():
    edges = graph()
    readers = {m for m, targets in edges.items() if any(t.startswith("ov_explain.export") for t in targets)}
    assert {m for m in readers if not m.startswith("ov_explain.export")} == {"ov_explain.cli"}
