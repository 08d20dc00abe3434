"""One writer at a time: a second pack, run or training of the same folder stops with an
``error:`` naming the holder; pack workers end with the process that started them."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT

HOLD = """
import sys, time
from doodle_utils._files import folder_lock
with folder_lock(sys.argv[1], sys.argv[2]):
    print("ready", flush=True)
    time.sleep(60)
"""


@pytest.fixture()
def holder(tmp_path):
    """Start a process holding the lock of a folder; yields (start(folder, what) -> pid)."""
    procs = []

    def start(folder: Path, what: str) -> int:
        p = subprocess.Popen([sys.executable, "-c", HOLD, str(folder), what], stdout=subprocess.PIPE, text=True)
        assert p.stdout.readline().strip() == "ready"
        procs.append(p)
        return p.pid

    yield start
    for p in procs:
        p.kill()
        p.wait()


def doodle(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "doodle_utils", *args], capture_output=True, text=True, cwd=ROOT)


def test_a_second_pack_of_the_same_store_is_refused(tmp_path, holder):
    from doodle_utils.data.synth import make_competition

    make_competition(tmp_path / "data", classes=2, per_class=5, test_per_class=1)
    pid = holder(tmp_path / "store" / "train", "packing")
    r = doodle("pack", str(tmp_path / "data"), str(tmp_path / "store"), "--workers", "1")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith("error: ") and f"in use by pid {pid}" in r.stderr and "packing" in r.stderr
    assert not (tmp_path / "store" / "train" / "manifest.json").exists()


def test_a_second_run_of_the_same_folder_is_refused(tmp_path, holder):
    import yaml

    prof = tmp_path / "p.yaml"
    prof.write_text(yaml.safe_dump({"run_name": "r", "output_root": str(tmp_path / "out"),
                                    "params": {"seed": 0}}))
    pid = holder(tmp_path / "out" / "r", "running r")
    r = doodle("run", str(prof), "--only", "01")
    assert r.returncode == 2 and f"in use by pid {pid} on " in r.stderr and "running r since" in r.stderr
    assert "Traceback" not in r.stderr


def test_training_into_a_folder_in_use_is_refused(tmp_path, holder):
    from doodle_utils._files import LockedError
    from doodle_utils.training import TrainConfig, train

    pid = holder(tmp_path / "run", "training")
    with pytest.raises(LockedError, match=f"pid {pid}"):
        train(TrainConfig(store_dir=str(tmp_path / "nowhere"), out_dir=str(tmp_path / "run")))


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(d.name))
            except (OSError, IndexError, ValueError):
                pass
    return out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_pack_workers_end_with_their_parent(sample_dir, tmp_path):
    code = (f"from doodle_utils.store import pack\nimport glob\n"
            f"pack(sorted(glob.glob({str(sample_dir / 'raw')!r} + '/*.ndjson')), {str(tmp_path / 's')!r}, "
            f"kind='raw', workers=2, progress=None)")
    parent = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.time() + 60
        workers: list[int] = []
        while time.time() < deadline and len(workers) < 2:
            workers = [c for c in _children(parent.pid) if "spawn_main" in Path(f"/proc/{c}/cmdline").read_text()
                       and "resource_tracker" not in Path(f"/proc/{c}/cmdline").read_text()]
            time.sleep(0.1)
        assert len(workers) == 2, "the pack's workers did not start"
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.time() + 15
        while time.time() < deadline and any(Path(f"/proc/{w}").exists() for w in workers):
            time.sleep(0.1)
        alive = [w for w in workers if Path(f"/proc/{w}").exists()
                 and "Z" not in (Path(f"/proc/{w}/stat").read_text().rsplit(")", 1)[1].split()[:1] or [""])[0]]
        assert not alive, f"workers {alive} outlived their killed parent"
    finally:
        if parent.poll() is None:
            parent.kill()
