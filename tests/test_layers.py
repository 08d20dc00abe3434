"""The package's walls (issue 15): imports run one way. Read from the sources' import
statements (module level and inside functions alike), not from what happens to be imported."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

PACKAGE = ROOT / "doodle_utils"


def _modules() -> dict[str, Path]:
    return {p.stem: p for p in sorted(PACKAGE.glob("*.py")) if p.stem != "__main__"}


def _imports(path: Path) -> list[tuple[str, list[str], bool, int, str]]:
    """(module imported, names, inside a function, line, source line) of each of the
    package's own imports in ``path``."""
    source = path.read_text()
    lines = source.splitlines()
    tree = ast.parse(source)
    top = {id(n) for n in tree.body}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names = [a.name for a in node.names]
            targets = [node.module.split(".")[0]] if node.module else names
            for t in targets:
                out.append((t, names if node.module else [], id(node) not in top, node.lineno,
                            lines[node.lineno - 1]))
    return out


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {m: {t for t, *_ in _imports(p) if t in mods} for m, p in mods.items()}


def test_the_import_graph_has_no_circle():
    graph = _graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles = []

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycles.append(path[path.index(n):] + [n])
            elif n not in state:
                visit(n, path + [n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, "import circles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_no_module_imports_another_modules_private_name():
    bad = [f"{m}:{line} imports {n} from .{t}" for m, p in _modules().items()
           for t, names, _, line, _ in _imports(p) for n in names if n.startswith("_")]
    assert not bad, bad


def test_function_level_imports_of_the_package_say_why():
    """An import of the package's own module inside a function is allowed only with its reason
    beside it (``# lazy: ...``), or in cli.py, whose docstring gives it for the whole file."""
    bad = [f"{m}:{line}: {src.strip()}" for m, p in _modules().items() if m != "cli"
           for _, _, inner, line, src in _imports(p) if inner and "# lazy:" not in src]
    assert not bad, bad
    assert "imported inside each subcommand" in (PACKAGE / "cli.py").read_text()


def test_every_module_imports_in_a_fresh_interpreter():
    """The static graph above has no circle; this imports each module for real, the ones at the
    top of the layers first (what a circle would break), in one fresh interpreter."""
    graph = _graph()
    order = sorted(graph, key=lambda m: -sum(m in deps for deps in graph.values()))
    code = "; ".join(f"import doodle_utils.{m}" for m in reversed(order))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_where_stores_and_runs_live_is_known_in_paths_only():
    """Every module asks `paths` for the stores' and runs' folders instead of joining the
    names itself (`store_dir / "train"`, `run / "preds"`, ...)."""
    import re

    join = re.compile(r'/ *"(train|test|raw|preds|snapshots|ensemble)"')
    bad = [f"{m}:{i}: {line.strip()}" for m, p in _modules().items() if m != "paths"
           for i, line in enumerate(p.read_text().splitlines(), 1) if join.search(line)]
    assert not bad, bad
