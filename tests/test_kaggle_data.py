"""Kaggle's own file set, packed: the real sample's drawings laid out as Kaggle ships them, under
every class name the sample has (Google's 345, which hold Kaggle's 340, ``strawberry`` among
them), simplified and raw, strict, through ``doodle pack`` and through the runner's
``ensure_stores``."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from doodle_utils import data
from doodle_utils.data.simplify import simplify_packed
from doodle_utils.data.store import Store, find_sources, pack
from doodle_utils.data.synth import submission_words
from doodle_utils.pipeline import ensure_stores

TEST_PER_CLASS = 2


@pytest.fixture(scope="module")
def kaggle_dir(sample_dir: Path, tmp_path_factory) -> Path:
    """The real sample as Kaggle's file set: ``train_raw/<word>.csv`` (raw strokes with times),
    ``train_simplified/<word>.csv`` (Google's simplification of the same rows),
    ``test_raw.csv`` / ``test_simplified.csv`` (the last rows of each class, shuffled)."""
    out = tmp_path_factory.mktemp("kaggle") / "quickdraw-doodle-recognition"
    tests = []
    for path in sorted((sample_dir / "raw").glob("*.ndjson")):
        meta, raw, _ = data.read_file(path, lenient=True)  # the sample's files end mid-line
        xy, so, do = simplify_packed(raw.xy.astype(np.float64), raw.stroke_offsets, raw.drawing_offsets)
        simple = data.Drawings(xy, None, so, do)
        train, test = np.arange(len(meta) - TEST_PER_CLASS), np.arange(len(meta) - TEST_PER_CLASS, len(meta))
        data.write_csv(out / "train_raw" / f"{path.stem}.csv", meta.iloc[train], raw.take(train))
        data.write_csv(out / "train_simplified" / f"{path.stem}.csv", meta.iloc[train], simple.take(train))
        tests.append((meta.iloc[test], raw.take(test), simple.take(test)))
    order = np.random.default_rng(0).permutation(len(tests) * TEST_PER_CLASS)
    test_meta = pd.concat([m for m, _, _ in tests], ignore_index=True).iloc[order].reset_index(drop=True)
    data.write_csv(out / "test_raw.csv", test_meta, data.Drawings.concat([r for _, r, _ in tests]).take(order), test=True)
    data.write_csv(out / "test_simplified.csv", test_meta, data.Drawings.concat([s for _, _, s in tests]).take(order),
                   test=True)
    pd.DataFrame({"key_id": test_meta["key_id"], "word": submission_words(["cat", "dog", "apple"])}).to_csv(
        out / "sample_submission.csv", index=False)
    return out


def test_the_folder_decides_raw_or_simplified_never_the_class_name(kaggle_dir):
    assert (kaggle_dir / "train_simplified" / "strawberry.csv").is_file()
    assert data.has_times(kaggle_dir / "train_raw" / "strawberry.csv") is True
    assert data.has_times(kaggle_dir / "train_simplified" / "strawberry.csv") is False
    assert data.has_times(kaggle_dir / "test_raw.csv") and not data.has_times(kaggle_dir / "test_simplified.csv")
    train, test = find_sources(kaggle_dir)
    assert {p.parent.name for p in train} == {"train_simplified"} and test.name == "test_simplified.csv"
    train, test = find_sources(kaggle_dir, raw=True)
    assert {p.parent.name for p in train} == {"train_raw"} and test.name == "test_raw.csv"


def test_content_decides_outside_kaggles_names(kaggle_dir, tmp_path):
    for name, folder in (("raw_copy.csv", "train_raw"), ("strawberry.csv", "train_simplified")):
        (tmp_path / name).write_bytes((kaggle_dir / folder / "strawberry.csv").read_bytes())
    assert data.has_times(tmp_path / "raw_copy.csv") is True
    assert data.has_times(tmp_path / "strawberry.csv") is False  # "raw" in the name, simplified inside


@pytest.fixture(scope="module")
def packed(kaggle_dir, tmp_path_factory) -> dict[str, Path]:
    """``doodle pack`` of the folder, strict, once per kind: what a user types."""
    out = {}
    for kind in ("simplified", "timed"):
        store = tmp_path_factory.mktemp(f"store_{kind}")
        r = subprocess.run([sys.executable, "-m", "doodle_utils", "pack", str(kaggle_dir), str(store),
                            "--kind", kind, "--workers", "2", "--valid-frac", "0.1"], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        out[kind] = store
    return out


def test_doodle_pack_takes_every_class_strictly(kaggle_dir, packed):
    words = sorted(p.stem for p in (kaggle_dir / "train_simplified").glob("*.csv"))
    assert len(words) == 345 and "strawberry" in words
    counts = {p.stem: sum(1 for _ in open(p)) - 1 for p in (kaggle_dir / "train_simplified").glob("*.csv")}
    for kind, store in packed.items():
        st = Store(store / "train", verify="full")
        assert st.kind == kind and st.words == words and st.manifest["skipped"] == {}
        assert dict(zip(st.words, np.bincount(st.labels(), minlength=len(words)).tolist())) == counts
        test = Store(store / "test", verify="full")
        assert len(test) == 345 * TEST_PER_CLASS and test.kind == kind


def test_timed_store_is_the_simplified_one_with_real_times(kaggle_dir, packed):
    simple, timed = Store(packed["simplified"] / "train"), Store(packed["timed"] / "train")
    for name in ("xy", "stroke_len", "point_off", "stroke_off", "key_id", "word", "valid"):
        assert np.array_equal(np.asarray(getattr(simple, name)), np.asarray(getattr(timed, name))), name
    assert timed.t.dtype == np.uint16  # the sample's longest drawing is 42 s
    # each stroke's first and last kept point carry the raw stroke's first and last time
    meta, raw, _ = data.read_file(kaggle_dir / "train_raw" / "strawberry.csv", raw=True)
    where = {k: i for i, k in enumerate(np.asarray(timed.key_id).tolist())}
    rows = [where[k] for k in meta["key_id"].tolist()]
    d = timed.drawings(rows)
    assert np.array_equal(d.t[d.stroke_offsets[:-1]], raw.t[raw.stroke_offsets[:-1]])
    assert np.array_equal(d.t[d.stroke_offsets[1:] - 1], raw.t[raw.stroke_offsets[1:] - 1])
    sizes = {k: sum(a["bytes"] for a in Store(v / "train").manifest["arrays"].values()) for k, v in packed.items()}
    assert sizes["simplified"] < sizes["timed"] < 2 * sizes["simplified"]


def test_runner_packs_kaggles_files_and_keeps_them_current(kaggle_dir, tmp_path):
    stores = tmp_path / "store"
    made = ensure_stores(kaggle_dir, stores, kind="timed", workers=2, valid_frac=0.1, seed=0)
    assert set(made) == {"train", "test"} and made["train"]["kind"] == "timed"
    before = (stores / "train" / "manifest.json").stat().st_mtime_ns
    ensure_stores(kaggle_dir, stores, workers=2, valid_frac=0.1, seed=0)  # kind: what is there
    assert (stores / "train" / "manifest.json").stat().st_mtime_ns == before
    # other settings repack (a read-only store that would need it is refused: the emulated
    # Kaggle chain mounts the packed store read-only in the kernels after the first)
    ensure_stores(kaggle_dir, stores, kind="simplified", workers=2, valid_frac=0.1, seed=0)
    assert Store(stores / "train").kind == "simplified"


def test_timed_needs_raw_files(kaggle_dir, tmp_path):
    with pytest.raises(ValueError, match="needs raw sources"):
        pack([kaggle_dir / "train_simplified" / "strawberry.csv"], tmp_path / "s", kind="timed", workers=1,
             progress=None)
