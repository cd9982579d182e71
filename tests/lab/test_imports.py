"""The lab package's import graph has no cycle (design-review improvement 2): the handle
lives in lab/lab.py, so no command module imports another one back, not even from inside a
function."""

import ast
from pathlib import Path

LAB = Path(__file__).resolve().parents[2] / "lab"


def lab_imports(path: Path) -> set[str]:
    """The lab modules that `path` imports, anywhere in the file."""
    modules = {p.stem for p in LAB.glob("*.py")} - {"__init__"}
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level == 0 and not (base == "lab" or base.startswith("lab.")):
                continue
            parts = base.split(".")[1:] if node.level == 0 else base.split(".") if base else []
            if parts and parts[0]:
                out.add(parts[0])
            else:  # from . import x, y
                out |= {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            out |= {a.name.split(".")[1] for a in node.names if a.name.startswith("lab.")}
    return out & modules


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One cycle of `graph` as a path [a, b, ..., a], or [] if there is none."""
    done: set[str] = set()

    def visit(m: str, path: list[str]) -> list[str]:
        if m in path:
            return [*path[path.index(m) :], m]
        if m in done:
            return []
        for n in sorted(graph.get(m, ())):
            if cycle := visit(n, [*path, m]):
                return cycle
        done.add(m)
        return []

    for m in sorted(graph):
        if cycle := visit(m, []):
            return cycle
    return []


def test_a_function_level_import_is_an_edge(tmp_path: Path):
    f = tmp_path / "m.py"
    f.write_text("from . import proc\nimport lab.node\n\ndef g():\n    from .up import up\n")
    assert lab_imports(f) == {"proc", "node", "up"}


def test_find_cycle():
    assert find_cycle({"up": {"status"}, "status": {"up", "layout"}}) == ["status", "up", "status"]
    assert find_cycle({"up": {"status", "lab"}, "status": {"lab"}, "lab": set()}) == []


def test_lab_package_import_graph_has_no_cycle():
    graph = {p.stem: lab_imports(p) for p in LAB.glob("*.py") if p.stem != "__init__"}
    assert graph["up"], "the parser sees no import in lab/up.py"
    cycle = find_cycle(graph)
    assert not cycle, "import cycle in lab/: " + " -> ".join(cycle)
