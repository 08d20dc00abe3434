"""Shared fixtures: the real Quick, Draw! sample (outside the repo) and small helpers."""
from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT.parent / "shared" / "quickdraw_sample"


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    """``../shared/quickdraw_sample`` (Google's real drawings); tests skip without it."""
    if not (SAMPLE / "raw").is_dir():
        pytest.skip(f"real Quick, Draw! sample not found at {SAMPLE}")
    return SAMPLE


def packed_competition(folder: Path, classes: int, per_class: int, test_per_class: int, seed: int) -> tuple[Path, Path]:
    """A synthetic competition packed into ``folder/store``: (train store, test store)."""
    from doodle_utils.store import pack_competition
    from doodle_utils.synth import make_competition

    make_competition(folder / "data", classes=classes, per_class=per_class, test_per_class=test_per_class, seed=seed)
    pack_competition(folder / "data", folder / "store", workers=1, valid_frac=0.2, seed=0)
    return folder / "store" / "train", folder / "store" / "test"


def tiny_train_config(stores: tuple[Path, Path], out: Path, **kw):
    """A training configuration small enough for a CPU test (a tiny ResNet, two short epochs)."""
    from doodle_utils.train import TrainConfig

    base = dict(store_dir=str(stores[0]), out_dir=str(out), arch="test_resnet", size=32, bs=16,
                epochs=2, epoch_size=64, lr=2e-3, progress=False, resume=False)
    return TrainConfig(**{**base, **kw})
