"""The package's walls (issue 15): imports run one way. Read from the sources' import
statements (module level and inside functions alike), not from what happens to be imported."""
from __future__ import annotations

import ast
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

from conftest import ROOT

PACKAGE = ROOT / "doodle_utils"


@lru_cache(maxsize=None)
def _modules() -> dict[str, Path]:
    """Every module of the package by its dotted name below ``doodle_utils`` (a subpackage's
    face ``x/__init__.py`` is ``x``; the package's own ``__init__`` is left out)."""
    out = {}
    for p in sorted(PACKAGE.rglob("*.py")):
        parts = list(p.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts and parts != ["__main__"]:
            out[".".join(parts)] = p
    return out


def _package_of(name: str, path: Path) -> str:
    """The package a module's relative imports start from ("" is doodle_utils itself)."""
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def _imports(name: str, path: Path) -> list[tuple[str, list[str], bool, int, str]]:
    """(module imported, names taken from it, inside a function, line, source line) of each
    of the package's own imports in module ``name``; ``from .x import y`` where ``y`` is
    itself a module counts as importing ``x.y``."""
    mods = _modules()
    source = path.read_text()
    lines = source.splitlines()
    tree = ast.parse(source)
    top = {id(n) for n in tree.body}
    out = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.ImportFrom) and node.level >= 1):
            continue
        base = _package_of(name, path).split(".") if _package_of(name, path) else []
        base = base[:len(base) - (node.level - 1)] if node.level > 1 else base
        base_name = ".".join(base + ([node.module] if node.module else []))
        for alias in node.names:
            sub = f"{base_name}.{alias.name}".lstrip(".")
            if sub in mods:
                out.append((sub, [], id(node) not in top, node.lineno, lines[node.lineno - 1]))
            else:
                out.append((base_name, [alias.name], id(node) not in top, node.lineno, lines[node.lineno - 1]))
    return out


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {m: {t for t, *_ in _imports(m, p) if t in mods and t != m} for m, p in mods.items()}


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
    bad = [f"{m}:{line} imports {n} from {t}" for m, p in _modules().items()
           for t, names, _, line, _ in _imports(m, p) for n in names if n.startswith("_")]
    assert not bad, bad


def test_private_modules_are_imported_only_inside_their_package():
    """A subpackage's ``_private`` modules (the render engines, the CSV parser) sit behind its
    face: only modules of the same subpackage import them."""
    bad = []
    for m, p in _modules().items():
        for t, *_, line, _ in _imports(m, p):
            parts = t.split(".")
            for i, part in enumerate(parts):
                holder = ".".join(parts[:i])
                if part.startswith("_") and holder and not (m == holder or m.startswith(holder + ".")):
                    bad.append(f"{m}:{line} imports {t}")
    assert not bad, bad


def test_layers_import_only_downwards():
    """data < render < models < training < postprocess < the modules on top; the foundation
    modules (paths, options, devices, metrics, versions, progress, _files) import no layer."""
    rank = {"data": 1, "render": 2, "models": 3, "training": 4, "postprocess": 5}
    mods = _modules()
    top = 6  # eda, results, pipeline, kaggle, kaggle_emulator, cli
    foundation = {"paths", "options", "devices", "metrics", "versions", "progress", "_files", "_moved"}

    def level(m: str) -> int:
        head = m.split(".")[0]
        return 0 if head in foundation else rank.get(head, top)

    bad = [f"{m} ({level(m)}) imports {t} ({level(t)})" for m, p in mods.items()
           for t, *_ in _imports(m, p) if t in mods and level(t) > level(m)]
    assert not bad, bad


def test_function_level_imports_of_the_package_say_why():
    """An import of the package's own module inside a function is allowed only with its reason
    beside it (``# lazy: ...``), or in cli.py, whose docstring gives it for the whole file."""
    bad = [f"{m}:{line}: {src.strip()}" for m, p in _modules().items() if m != "cli"
           for _, _, inner, line, src in _imports(m, p) if inner and "# lazy:" not in src]
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


def test_the_flat_paths_of_0_1_still_import_with_a_deprecation_warning(tmp_path):
    """``import doodle_utils.store`` (and every other path that moved) gives the new module
    itself, warns once with the new path at the user's own line, and a pickle that names an
    old path (``doodle_utils.train.TrainConfig``) still loads."""
    from doodle_utils._moved import MOVED

    script = tmp_path / "user_script.py"
    script.write_text(
        "import importlib, json, pickle, warnings\n"
        "warnings.simplefilter('always')\n"
        "out = {}\n"
        f"for old, new in {MOVED!r}.items():\n"
        "    with warnings.catch_warnings(record=True) as w:\n"
        "        warnings.simplefilter('always')\n"
        "        mod = importlib.import_module('doodle_utils.' + old)\n"
        "    dep = [x for x in w if issubclass(x.category, DeprecationWarning) and 'doodle_utils.' + new in str(x.message)]\n"
        "    out[old] = [mod is importlib.import_module('doodle_utils.' + new), len(dep),\n"
        "                dep[0].filename if dep else None]\n"
        "from doodle_utils.training import TrainConfig\n"
        "blob = pickle.dumps(TrainConfig, protocol=0).replace(b'doodle_utils.training.config', b'doodle_utils.train')\n"
        "out['pickle'] = pickle.loads(blob) is TrainConfig\n"
        "print(json.dumps(out))\n")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    import json

    out = json.loads(proc.stdout.splitlines()[-1])
    assert out.pop("pickle") is True
    assert set(out) == set(MOVED)
    for old, (same, warned, filename) in out.items():
        assert same and warned == 1, (old, same, warned)
    # importlib.import_module is the caller here: the warning points past the import machinery
    assert {Path(f).name for *_, f in out.values()} <= {"user_script.py", "__init__.py"}
    plain = tmp_path / "old_imports.py"
    plain.write_text("import doodle_utils.store\nfrom doodle_utils import balance\n")
    proc = subprocess.run([sys.executable, "-W", "always::DeprecationWarning", str(plain)], capture_output=True,
                          text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"{plain}:1: DeprecationWarning: doodle_utils.store moved to doodle_utils.data.store" in proc.stderr
    assert f"{plain}:2: DeprecationWarning: doodle_utils.balance moved to doodle_utils.postprocess.balance" in proc.stderr
