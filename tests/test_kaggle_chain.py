"""The Kaggle kernels, run as Kaggle runs them: the suite's bundles, in run order, each in a
sandbox with Kaggle's mounts (the competition and attached kernels read-only, an empty
working folder as the current directory, no network), on the synthetic competition in
Kaggle's exact file set; the chain must end with a valid submission at the top of the last
kernel's working folder, scored here on the hidden answers."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import ROOT
from doodle_utils import kaggle
from doodle_utils.data.synth import make_competition
from doodle_utils.kaggle_emulator import can_isolate, rerooted, run_chain
from doodle_utils.metrics import map_at_k_ranked
from doodle_utils.paths import answers_file

CLASSES = 6
# the suite's Kaggle profile with small runs: what changes is the size, not the chain
SMALL = {"01_eda": {"n_examples": 4}, "02_rendering": {"speed_drawings": 50, "sizes": [32]},
         "03_train": {"size": 32, "bs": 64, "epoch_size": 256, "cycles": 2, "num_workers": 0,
                      "channels_last": False},
         "06_point_cnn": {"points": 32, "grid": 8, "bs": 64, "epoch_size": 256, "cycles": 2, "num_workers": 0,
                          "channels_last": False}}


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    root = tmp_path_factory.mktemp("kaggle_chain")
    comp = root / "competition" / kaggle.COMPETITION
    make_competition(comp, classes=CLASSES, per_class=60, test_per_class=10, seed=0)
    prof = yaml.safe_load((ROOT / "params" / "kaggle.yaml").read_text())
    for name, small in SMALL.items():
        prof["notebooks"][name].update(small)
    prof["data"]["pack"].update(workers=2, valid_frac=0.1, blend_frac=0.25)  # enough blend drawings to stack
    (root / "kaggle.yaml").write_text(yaml.safe_dump(prof))
    kaggle.bundle(root / "bundle", root / "kaggle.yaml", user="tester")
    runs = run_chain(root / "bundle", comp, root / "sandbox", timeout=900)
    return {"runs": {r.name: r for r in runs}, "comp": comp, "root": root}


def test_chain_runs_in_order_isolated(chain):
    runs = chain["runs"]
    assert list(runs) == ["01_eda", "02_rendering", "03_train", "06_point_cnn", "04_snapshot_ensemble",
                          "05_balance_submit"]
    assert all(r.isolated == can_isolate() for r in runs.values())
    for r in runs.values():  # the code that ran is the inlined package, not the installed one
        printed = json.dumps(json.loads(r.executed.read_text())["cells"])
        assert "doodle_utils from" in printed and "/kaggle/temp/doodle_utils_" in printed
        assert "library versions: as tested" in printed  # the set-up cell's version check ran


def test_chain_ends_with_a_scored_submission_at_the_top_of_working(chain):
    last = chain["runs"]["05_balance_submit"]
    sub = last.working / "submission.csv"
    assert "submission.csv" in last.output_files
    sample = chain["comp"] / "sample_submission.csv"
    assert kaggle.check_submission(sub, sample) == CLASSES * 10
    got = pd.read_csv(sub, dtype=str)
    truth = pd.read_csv(answers_file(chain["comp"]), dtype=str).set_index("key_id").loc[got.key_id, "word"]
    words = sorted(set(truth))
    ranked = np.array([[words.index(w.replace("_", " ")) for w in row.split()] for row in got.word])
    map3 = map_at_k_ranked(ranked, np.array([words.index(w) for w in truth]))
    chance = (1 + 1 / 2 + 1 / 3) / CLASSES
    assert map3 > 2 * chance, map3


def test_store_is_packed_once_with_the_profiles_settings(chain):
    runs = chain["runs"]
    with_store = [name for name, r in runs.items() if any(f.startswith("store/") for f in r.output_files)]
    assert with_store == ["01_eda"]  # no kernel saves a copy of a store it did not make
    man = json.loads((runs["01_eda"].working / "store" / "train" / "manifest.json").read_text())
    assert man["kind"] == "timed" and man["valid"]["frac"] == 0.1  # the profile's data.pack reached it


def test_timing_models_get_real_times_from_kaggles_raw_files(chain):
    rendering = json.loads((chain["runs"]["02_rendering"].working / "metrics" / "02_rendering.json").read_text())
    assert "time3" in rendering["variants"]
    eda = json.loads((chain["runs"]["01_eda"].working / "metrics" / "01_eda.json").read_text())
    assert eda.get("median_duration_s", 0) > 0


def test_the_stacker_reads_the_drawings_metadata_from_the_packing_kernel(chain):
    """04 stacks (the profile's stack: true) with the drawings' country, counts and times, which
    it reads from the store the packing kernel saved (attached), and 05 submits its output."""
    ens = chain["runs"]["04_snapshot_ensemble"]
    meta = json.loads((chain["root"] / "bundle" / ens.name / "kernel-metadata.json").read_text())
    assert f"tester/{kaggle.kernel_slug(Path('01_eda'))}" in meta["kernel_sources"]  # the packing kernel
    metrics = json.loads((ens.working / "metrics" / "04_snapshot_ensemble.json").read_text())
    assert metrics["submitted"] == "stacker" and metrics["stacker_valid_map3"] > 0
    features = json.loads((ens.working / "ensemble" / "manifest.json").read_text())["stacker"]["features"]
    assert {"country", "strokes", "points", "duration_ms"} <= set(features)


def test_every_kernel_saves_within_kaggles_limit(chain):
    for r in chain["runs"].values():
        assert 0 < r.output_bytes < kaggle.OUTPUT_LIMIT_BYTES, r.name


def test_rerooting_moves_only_kaggle_paths(tmp_path):
    assert rerooted({"a": ["/kaggle/input/x", "/kagglex", "rel"], "b": "/kaggle"}, tmp_path) == \
        {"a": [f"{tmp_path}/kaggle/input/x", "/kagglex", "rel"], "b": f"{tmp_path}/kaggle"}


def _processes_with_tmpdir_under(folder: Path) -> list[int]:
    import psutil

    found = []
    for p in psutil.process_iter(["pid"]):
        try:
            if p.environ().get("TMPDIR", "").startswith(str(folder)):
                found.append(p.pid)
        except (psutil.Error, OSError):
            pass
    return found


def test_a_kernel_past_its_time_limit_is_an_error_line_and_leaves_no_process(tmp_path):
    """Kaggle stops a kernel at 12 hours; the emulator stops it at its --timeout, with the Jupyter
    kernel and workers papermill started, and says which kernel, with no traceback."""
    import subprocess
    import sys

    comp = tmp_path / "competition" / kaggle.COMPETITION
    make_competition(comp, classes=3, per_class=20, test_per_class=2, seed=0)
    kaggle.bundle(tmp_path / "bundle", ROOT / "params" / "kaggle.yaml", user="tester")
    sandbox = tmp_path / "sandbox"
    r = subprocess.run([sys.executable, "-m", "doodle_utils", "kaggle-emulate", str(tmp_path / "bundle"), str(comp),
                        str(sandbox), "--timeout", "6"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stderr
    assert r.stderr.startswith("error: kernel 01_eda was still running after 6s") and "Traceback" not in r.stderr
    assert _processes_with_tmpdir_under(sandbox) == []


def test_the_time_limit_stops_the_kernels_whole_process_group(tmp_path):
    """What the kernel's process started (here a background ``sleep``, as papermill starts a
    Jupyter kernel) is stopped too, not left running after the kernel is given up on."""
    import psutil

    from doodle_utils.kaggle_emulator import _run_group

    marker = tmp_path / "tmp"
    env = {"PATH": "/usr/bin:/bin", "TMPDIR": str(marker)}
    t0 = time.perf_counter()
    assert _run_group(["sh", "-c", "sleep 120 & sleep 120"], tmp_path, env, timeout=1) is None
    assert time.perf_counter() - t0 < 60  # not held until the background sleep ends on its own
    psutil.wait_procs([psutil.Process(p) for p in _processes_with_tmpdir_under(marker)], timeout=5)
    assert _processes_with_tmpdir_under(marker) == []
    done = _run_group(["sh", "-c", "echo out; echo err >&2; exit 3"], tmp_path, env, timeout=30)
    assert (done.returncode, done.stdout, done.stderr) == (3, "out\n", "err\n")


def test_an_interrupted_chain_stops_the_kernels_process_group(tmp_path):
    """Ctrl-C reaches only the emulator (the kernel runs in a session of its own): the kernel's
    processes are stopped with it rather than left running."""
    import signal

    import psutil

    from doodle_utils.kaggle_emulator import _run_group

    class Interrupted(Exception):
        pass

    def interrupt(*_):
        raise Interrupted

    marker = tmp_path / "tmp"
    env = {"PATH": "/usr/bin:/bin", "TMPDIR": str(marker)}
    before = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.alarm(1)
        with pytest.raises(Interrupted):
            _run_group(["sh", "-c", "sleep 120 & sleep 120"], tmp_path, env, timeout=100)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, before)
    psutil.wait_procs([psutil.Process(p) for p in _processes_with_tmpdir_under(marker)], timeout=5)
    assert _processes_with_tmpdir_under(marker) == []
