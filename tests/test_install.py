"""Installed, not cloned: the wheel carries the notebooks and profiles, `doodle init` makes a
project of them, and the demo runs there (issue 16)."""
from __future__ import annotations

import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT, build_wheel


def test_the_wheel_lists_every_subpackage():
    """pyproject.toml names the packages one by one (the notebooks and profiles travel as
    package data of doodle_utils._project): a new subpackage must be added there."""
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "doodle_utils").rglob("__init__.py")}
    assert listed - {"doodle_utils._project.notebooks", "doodle_utils._project.params"} == found


@pytest.mark.slow
def test_an_installed_package_runs_the_demo_from_an_empty_folder(tmp_path):
    """A wheel installed into a fresh virtualenv (its dependencies taken from the project's
    environment, nothing downloaded): `doodle init` in an empty folder, then `doodle run
    params/smoke.yaml` there, writes the demo's submission under that folder."""
    wheel = build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    assert "doodle_utils/_project/params/smoke.yaml" in names
    assert "doodle_utils/_project/notebooks/03_train.ipynb" in names
    env = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True, capture_output=True)
    py, doodle = env / "bin" / "python", env / "bin" / "doodle"
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "project_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # not its doodle_utils
    subprocess.run([str(py), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)], check=True,
                   capture_output=True)
    where = subprocess.run([str(py), "-c", "import doodle_utils; print(doodle_utils.__file__)"], capture_output=True,
                           text=True, check=True, cwd=tmp_path).stdout
    assert where.startswith(site), where

    empty = tmp_path / "empty"
    empty.mkdir()
    init = subprocess.run([str(doodle), "init", "proj"], capture_output=True, text=True, cwd=empty)
    assert init.returncode == 0, init.stderr
    assert sorted(p.name for p in (empty / "proj" / "params").iterdir()) == sorted(
        p.name for p in (ROOT / "params").glob("*.yaml"))
    again = subprocess.run([str(doodle), "init", "proj"], capture_output=True, text=True, cwd=empty)
    assert again.returncode == 2 and again.stderr.startswith("error: ") and "--force" in again.stderr
    run = subprocess.run([str(doodle), "run", "params/smoke.yaml"], capture_output=True, text=True,
                         cwd=empty / "proj")
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    out = empty / "proj" / "outputs" / "smoke"
    assert (out / "submission.csv").exists() and (out / "05_balance_submit.ipynb").exists()
    assert "05_balance_submit: ran in" in run.stdout + run.stderr
