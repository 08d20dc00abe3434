"""The set-up promises: pinned dependencies agree everywhere, CI runs the README's test command."""
from __future__ import annotations

import re
import tomllib

import yaml

from conftest import ROOT


def _pins(reqs: list[str]) -> dict[str, str]:
    out = {}
    for r in reqs:
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", r.strip())
        assert m, f"not an exact pin: {r!r}"
        out[m.group(1).lower().replace("_", "-")] = m.group(2)
    return out


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    want = _pins(project["dependencies"] + project["optional-dependencies"]["dev"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    got = _pins([p for p in pip if not p.startswith("-e")])
    assert got == want
    py = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python="))
    major_minor = tuple(int(x) for x in py.split("=")[1].split(".")[:2])
    assert major_minor >= tuple(int(x) for x in project["requires-python"].lstrip(">=").split("."))


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, re.M)
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^test: .*\n\t.*pytest", makefile, re.M)
    assert re.search(r"^demo: .*\n\t.*doodle", makefile, re.M)


def test_package_imports_without_io_or_heavy_modules():
    import subprocess
    import sys

    code = "import sys, doodle_utils; print(sorted(m for m in ('torch','numba','pandas','pyarrow') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/")
    assert out.stdout.strip() == "[]"
