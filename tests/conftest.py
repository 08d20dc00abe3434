"""Shared fixtures: the real Quick, Draw! sample (outside the repo) and small helpers."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from doodle_utils.data import Drawings, synth
from doodle_utils.data.simplify import simplify_packed
from doodle_utils.render import RENDERERS, RenderSpec
from doodle_utils.render._torch import INK_THRESHOLD

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT.parent / "shared" / "quickdraw_sample"


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    """``../shared/quickdraw_sample`` (Google's real drawings); tests skip without it."""
    if not (SAMPLE / "raw").is_dir():
        pytest.skip(f"real Quick, Draw! sample not found at {SAMPLE}")
    return SAMPLE


def packed_competition(folder: Path, classes: int, per_class: int, test_per_class: int, seed: int,
                       kind: str = "simplified") -> tuple[Path, Path]:
    """A synthetic competition packed into ``folder/store``: (train store, test store)."""
    from doodle_utils.data.store import pack_competition
    from doodle_utils.data.synth import make_competition

    make_competition(folder / "data", classes=classes, per_class=per_class, test_per_class=test_per_class, seed=seed)
    pack_competition(folder / "data", folder / "store", workers=1, valid_frac=0.2, seed=0, kind=kind)
    return folder / "store" / "train", folder / "store" / "test"


@pytest.fixture(scope="session")
def six_class_stores(tmp_path_factory) -> tuple[Path, Path]:
    """The training tests' synthetic competition, packed once per session: (train, test)."""
    return packed_competition(tmp_path_factory.mktemp("six_classes"), classes=6, per_class=50, test_per_class=8, seed=1)


@pytest.fixture(scope="session")
def four_class_stores(tmp_path_factory) -> tuple[Path, Path]:
    """A smaller one for the device and fault tests, packed once per session: (train, test)."""
    return packed_competition(tmp_path_factory.mktemp("four_classes"), classes=4, per_class=30, test_per_class=4, seed=2)


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """`make demo` once per session, into a scratch folder: (its run folder, the runner's results).
    The demo's data and stores lie beside the run folder (``data/``, ``store/``)."""
    from doodle_utils import pipeline

    tmp = tmp_path_factory.mktemp("smoke")
    results = pipeline.run(ROOT / "params" / "smoke.yaml", output_root=tmp,
                           overrides={"data_dir": str(tmp / "data"), "store_dir": str(tmp / "store")})
    return tmp / "smoke", results


def tiny_train_config(stores: tuple[Path, Path], out: Path, **kw):
    """A training configuration small enough for a CPU test (a tiny ResNet, two short epochs)."""
    from doodle_utils.training import TrainConfig

    base = dict(store_dir=str(stores[0]), out_dir=str(out), arch="test_resnet", size=32, bs=16,
                schedule="one_cycle", epochs=2, epoch_size=64, lr=2e-3, augment={}, progress=False, resume=False)
    return TrainConfig(**{**base, **kw})


def consistent_edit(folder: Path, name: str, change) -> None:
    """Edit array ``name`` of a store and rewrite its checksums and the manifest's own, as a
    careful forger would: only the structure checks can then tell."""
    import hashlib
    import json

    import numpy as np

    from doodle_utils.data import store

    path = folder / f"{name}.npy"
    a = np.load(path)
    change(a)
    np.save(path, a)
    man = json.loads((folder / "manifest.json").read_text())
    raw = path.read_bytes()
    man["arrays"][name] = {"bytes": len(raw), "sha256": hashlib.sha256(raw).hexdigest(),
                           "chunks": [hashlib.sha256(raw[i:i + store.CHUNK_BYTES]).hexdigest()
                                      for i in range(0, len(raw), store.CHUNK_BYTES)]}
    man["checksum"] = store.manifest_checksum(man)
    (folder / "manifest.json").write_text(json.dumps(man))


FAULT_PROBES: Counter = Counter()  # (kind, "run" | "handled") -> probes of test_faults.py


def pytest_terminal_summary(terminalreporter) -> None:
    """Print the fault-injection counts (the README's reliability section records them)."""
    kinds = sorted({k for k, _ in FAULT_PROBES})
    if not kinds:
        return
    terminalreporter.section("fault probes")
    for k in kinds:
        terminalreporter.write_line(f"{k}: {FAULT_PROBES[k, 'handled']} of {FAULT_PROBES[k, 'run']} handled")
    total = sum(FAULT_PROBES[k, "run"] for k in kinds)
    handled = sum(FAULT_PROBES[k, "handled"] for k in kinds)
    terminalreporter.write_line(f"all: {handled} of {total} handled")


# --------------------------------------------------------------------------- render helpers

SIZES = (32, 64, 128)  # the render agreement checks' image sizes


def simplified(*strokes) -> Drawings:
    return Drawings.from_strokes([[np.array(s, np.uint8) for s in strokes]])


def raw(*strokes) -> Drawings:
    return Drawings.from_strokes([[np.array(s, np.float64) for s in strokes]], dtype=np.float64)


@pytest.fixture(scope="module")
def batches() -> dict[str, Drawings]:
    """36 synthetic drawings (3 of each of 12 classes): raw with times, and Google-simplified."""
    rng = np.random.default_rng(7)
    strokes = [synth.draw(synth.CLASSES[i % 12], rng) for i in range(36)]
    r = Drawings.from_strokes(strokes, dtype=np.float64)
    xy, so, do = simplify_packed(r.xy, r.stroke_offsets, r.drawing_offsets)
    return {"raw": r, "simplified": Drawings(xy, None, so, do)}


def spec_grid(antialias: bool) -> list[RenderSpec]:
    """The agreement checks' specs: every size of SIZES, drawn directly and on a 256 base."""
    return [RenderSpec(size=size, antialias=antialias, base=base) for size in SIZES for base in (None, 256)]


def batch_for(batches, variant: str) -> Drawings:
    return batches["raw" if RENDERERS[variant].needs_time else "simplified"]


def agreement(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Mean absolute difference (0..255) and IoU of the inked masks (any channel > threshold)."""
    mad = float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())
    ma, mb = (a > INK_THRESHOLD).any(axis=1), (b > INK_THRESHOLD).any(axis=1)
    union = (ma | mb).sum()
    return mad, float((ma & mb).sum() / union) if union else 1.0


def make_nb(path: Path, params: str, *body: str) -> Path:
    """A small notebook: a ``parameters`` cell, then one code cell per ``body`` string."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell("# test notebook"),
                nbformat.v4.new_code_cell(params, metadata={"tags": ["parameters"]}),
                *[nbformat.v4.new_code_cell(b) for b in body]]
    nbformat.write(nb, path)
    return path


def build_wheel(tmp_path: Path) -> Path:
    """The project's wheel, built from a clean copy (setuptools' build/ would keep stale files),
    without build isolation (no download)."""
    import shutil
    import subprocess
    import sys

    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".venv", ".git", "outputs", "build", "*.egg-info",
                                                             "__pycache__", "benchmarks", "docs", "tests"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "wheel"), str(src)], check=True, capture_output=True)
    return next((tmp_path / "wheel").glob("doodle_utils-*.whl"))
