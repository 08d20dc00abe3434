"""`make lab`: JupyterLab, started with the Makefile's own options (on loopback), serves the
repository root (notebooks and the outputs beside them) and opens on the notebooks."""
from __future__ import annotations

import json
import os
import secrets
import shlex
import socket
import subprocess
import sys
import time
import urllib.request

from conftest import ROOT


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _make_lab_options() -> list[str]:
    """The ``--Option=value`` arguments `make lab` gives ``jupyter lab`` (from ``make -n``)."""
    out = subprocess.run(["make", "-n", "lab"], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    line = next(x for x in out.splitlines() if "jupyter lab" in x)
    return [a for a in shlex.split(line) if a.startswith("--") and "=" in a]


def test_jupyterlab_lists_the_notebooks(tmp_path):
    port, token = _free_port(), secrets.token_hex(16)
    options = _make_lab_options()
    assert any(o.startswith("--ServerApp.root_dir=") for o in options)
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={token}", *options,
         *(["--allow-root"] if os.geteuid() == 0 else [])], cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin",
                                                                   "JUPYTER_RUNTIME_DIR": str(tmp_path / "rt")})
    try:
        url = f"http://127.0.0.1:{port}/api/contents/notebooks?token={token}"
        deadline = time.time() + 90
        listing = None
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    listing = json.loads(r.read())
                break
            except OSError:
                if proc.poll() is not None:
                    raise AssertionError(f"jupyter lab exited with {proc.returncode}")
                time.sleep(0.5)
        assert listing is not None, "jupyter lab did not answer within 90 s"
        names = sorted(c["name"] for c in listing["content"] if c["type"] == "notebook")
        want = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
        assert names == want and want
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/contents/?token={token}", timeout=10) as r:
            top = {c["name"] for c in json.loads(r.read())["content"]}
        assert {"notebooks", "params", "README.md"} <= top  # the root: outputs/ appears beside them once written
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/?token={token}", timeout=10) as r:
            assert r.status == 200 and r.url.split("?")[0].endswith("/lab/tree/notebooks")  # opens on the notebooks
    finally:
        proc.terminate()
        proc.wait(timeout=30)
