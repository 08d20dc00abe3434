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
