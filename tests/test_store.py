"""Packed store: conversion, O(1) access, resumability, split, and detection of damage."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from conftest import consistent_edit
from doodle_utils import data
from doodle_utils.data import store

CLASSES = ["apple", "banana", "bear", "bee"]


@pytest.fixture()
def kaggle_dir(sample_dir, tmp_path):
    """A small Kaggle-layout folder made from real simplified drawings."""
    src = tmp_path / "comp"
    metas, draws = [], []
    for w in CLASSES:
        meta, d, _ = data.read_file(sample_dir / "simplified" / f"{w}.ndjson")
        data.write_csv(src / "train_simplified" / f"{w}.csv", meta, d)
        metas.append(meta.iloc[:5])
        draws.append(d.take(np.arange(5)))
    import pandas as pd
    tm = pd.concat(metas, ignore_index=True)
    tm["key_id"] = tm["key_id"] + 1  # test key_ids differ from train
    data.write_csv(src / "test_simplified.csv", tm, data.Drawings.concat(draws), test=True)
    return src


def _pack(src, out, **kw):
    kw.setdefault("workers", 1)
    kw.setdefault("progress", None)
    return store.pack_competition(src, out, **kw)


def test_pack_and_random_access_match_the_source(kaggle_dir, tmp_path):
    res = _pack(kaggle_dir, tmp_path / "st", valid_frac=0.2)
    st = store.Store(tmp_path / "st" / "train")
    assert st.words == CLASSES and len(st) == res["train"]["drawings"] == 100
    expected = []
    for w in CLASSES:
        meta, d, _ = data.read_file(kaggle_dir / "train_simplified" / f"{w}.csv")
        expected += [(int(k), w, d.strokes(i)) for i, k in enumerate(meta.key_id)]
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(st))[:30]
    batch = st.drawings(idx)
    meta = st.meta(idx)
    for j, i in enumerate(idx):
        key, word, strokes = expected[i]
        assert meta.key_id[j] == key and meta.word[j] == word
        got = batch.strokes(j)
        assert len(got) == len(strokes)
        for a, b in zip(got, strokes):
            np.testing.assert_array_equal(a, b)
    assert st.drawing(7)[0].dtype == np.uint8
    test = store.Store(tmp_path / "st" / "test")
    assert len(test) == 20 and (test.labels() == -1).all() and not test.valid.any()
    assert test.meta().recognized.isna().all()


def test_stratified_split(kaggle_dir, tmp_path):
    _pack(kaggle_dir, tmp_path / "st", valid_frac=0.2, seed=3)
    st = store.Store(tmp_path / "st" / "train")
    counts = np.bincount(st.labels(st.valid_idx), minlength=len(CLASSES))
    assert counts.tolist() == [5, 5, 5, 5]  # 20% of 25 per class
    assert len(st.train_idx) + len(st.valid_idx) == len(st)
    _pack(kaggle_dir, tmp_path / "st2", valid_frac=0.2, seed=3)
    assert (store.Store(tmp_path / "st2" / "train").valid_idx == st.valid_idx).all()
    _pack(kaggle_dir, tmp_path / "st3", valid_frac=0.2, seed=4)
    assert (store.Store(tmp_path / "st3" / "train").valid_idx != st.valid_idx).any()


def test_split_positions_are_narrow_and_found_a_chunk_at_a_time(kaggle_dir, tmp_path, monkeypatch):
    """The splits' positions come in the narrowest type (int32 at Kaggle's 49.7M drawings,
    where int64 took 400 MB more) and the same with chunks that split the store anywhere."""
    _pack(kaggle_dir, tmp_path / "st", valid_frac=0.2, blend_frac=0.12, seed=3)
    st = store.Store(tmp_path / "st" / "train")
    valid, blend = np.asarray(st.valid), np.asarray(st.blend)
    want = {"train_idx": np.flatnonzero(~(valid | blend)), "valid_idx": np.flatnonzero(valid),
            "blend_idx": np.flatnonzero(blend)}
    for rows in (store.MERGE_ROWS, 1):  # chunks of 16 rows: every chunk boundary crossed
        monkeypatch.setattr(store, "MERGE_ROWS", rows)
        for name, ref in want.items():
            got = getattr(st, name)
            assert got.dtype == np.int16 and got.tolist() == ref.tolist(), name
    assert [store.index_dtype(n) for n in (0, 32_767, 32_768, 49_700_000, 2**31)] == \
        [np.int16, np.int16, np.int32, np.int32, np.int64]


def test_blend_split_is_stratified_disjoint_and_leaves_validation_as_it_was(kaggle_dir, tmp_path):
    _pack(kaggle_dir, tmp_path / "plain", valid_frac=0.2, seed=3)
    _pack(kaggle_dir, tmp_path / "st", valid_frac=0.2, blend_frac=0.12, seed=3)
    plain, st = store.Store(tmp_path / "plain" / "train"), store.Store(tmp_path / "st" / "train")
    assert (st.valid_idx == plain.valid_idx).all() and len(plain.blend_idx) == 0
    assert np.bincount(st.labels(st.blend_idx), minlength=len(CLASSES)).tolist() == [3, 3, 3, 3]  # 12% of 25
    assert not np.intersect1d(st.blend_idx, st.valid_idx).size
    assert np.union1d(np.union1d(st.train_idx, st.valid_idx), st.blend_idx).size == len(st) == \
        len(st.train_idx) + len(st.valid_idx) + len(st.blend_idx)
    assert st.manifest["blend"] == {"frac": 0.12, "seed": 3, "count": 12}
    assert (store.Store(tmp_path / "plain" / "test").blend_idx.size == 0)
    # a profile that asks for another blend split packs again
    sources, _ = store.find_sources(kaggle_dir)
    assert store.current_manifest(tmp_path / "st" / "train", sources, blend_frac=0.12) is not None
    assert store.current_manifest(tmp_path / "st" / "train", sources, blend_frac=0.0) is None
    assert store.current_manifest(tmp_path / "plain" / "train", sources, blend_frac=0.0) is not None


def test_a_drawing_in_both_held_out_splits_is_refused(kaggle_dir, tmp_path):
    _pack(kaggle_dir, tmp_path / "st", valid_frac=0.2, blend_frac=0.1)
    folder = tmp_path / "st" / "train"
    valid = np.load(folder / "valid.npy")

    def both(blend):
        blend[np.flatnonzero(valid)[0]] = True

    consistent_edit(folder, "blend", both)
    with pytest.raises(store.StoreError, match="in both the validation and the blend split"):
        store.Store(folder)


def test_compact_relative_to_csv(kaggle_dir, tmp_path):
    res = _pack(kaggle_dir, tmp_path / "st")
    csv_bytes = sum(p.stat().st_size for p in (kaggle_dir / "train_simplified").glob("*.csv"))
    store_bytes = sum(a["bytes"] for a in res["train"]["arrays"].values())
    assert store_bytes <= 0.4 * csv_bytes


def test_resume_skips_finished_files_and_redoes_changed_ones(kaggle_dir, tmp_path):
    out = tmp_path / "st" / "train"
    sources, _ = store.find_sources(kaggle_dir)
    lines: list[str] = []
    store.pack(sources, out, workers=1, keep_parts=True, progress=lines.append)
    first = store.Store(out).manifest
    lines.clear()
    # simulate a killed run: one part unfinished, one source changed since
    (out / ".parts" / "banana.csv" / "done.json").unlink()
    bee = kaggle_dir / "train_simplified" / "bee.csv"
    os.utime(bee, ns=(bee.stat().st_atime_ns, bee.stat().st_mtime_ns + 10**9))
    store.pack(sources, out, workers=1, progress=lines.append)
    skipped = [l for l in lines if "already packed" in l]
    assert sorted(l.split(":")[0].strip() for l in skipped) == ["apple.csv", "bear.csv"]
    again = store.Store(out).manifest
    assert again["arrays"] == first["arrays"]
    assert not (out / ".parts").exists()


@pytest.mark.parametrize("first, second", [
    ({"kind": "raw"}, {"kind": "simplified"}),           # float32 parts must not be read as uint8
    ({"kind": "simplified"}, {"kind": "raw"}),
    ({"lenient": True}, {"lenient": False}),             # a strict rerun does not inherit lenient skips
    ({"words": ["ant", "cat"]}, {"words": ["ant", "cat", "dog"]}),
])
def test_resume_reuses_only_parts_made_with_the_same_options(sample_dir, tmp_path, first, second):
    src = [sample_dir / "raw" / f"{w}.ndjson" for w in ("ant", "cat")]
    out = tmp_path / "st"
    store.pack(src, out, workers=1, keep_parts=True, progress=None, **{"lenient": True, **first})
    (out / "manifest.json").unlink()  # as if killed before the merge
    lines: list[str] = []
    kw = {"lenient": True, **second}
    m = store.pack(src, out, workers=1, progress=lines.append, **kw)
    assert not any("already packed" in line for line in lines)
    assert sum("not reused: packed with other options" in line for line in lines) == 2
    fresh = store.pack(src, tmp_path / "fresh", workers=1, progress=None, **kw)
    assert m["arrays"] == fresh["arrays"]
    assert store.Store(out, verify="full").kind == kw.get("kind", "simplified")


def test_parallel_workers_give_the_same_store(kaggle_dir, tmp_path):
    a = _pack(kaggle_dir, tmp_path / "a", workers=1)["train"]
    b = _pack(kaggle_dir, tmp_path / "b", workers=2)["train"]
    assert a["arrays"] == b["arrays"]


def test_raw_store_keeps_times(sample_dir, tmp_path):
    src = [sample_dir / "raw" / f"{w}.ndjson" for w in ("ant", "cat")]
    m = store.pack(src, tmp_path / "raw", kind="raw", workers=1, progress=None)
    st = store.Store(tmp_path / "raw")
    assert st.raw and st.xy.dtype == np.float32 and m["kind"] == "raw"
    meta, d, _ = data.read_file(src[0])
    np.testing.assert_array_equal(st.drawings([0]).t, d.take(np.array([0])).t)
    # the same raw files packed as simplified go through Google's simplification
    st2_m = store.pack(src, tmp_path / "simp", workers=1, progress=None)
    st2 = store.Store(tmp_path / "simp")
    assert st2.xy.dtype == np.uint8 and st2_m["points"] < m["points"]


def test_duplicate_key_across_files(kaggle_dir, tmp_path):
    meta, d, _ = data.read_file(kaggle_dir / "train_simplified" / "apple.csv")
    bmeta, bd, _ = data.read_file(kaggle_dir / "train_simplified" / "banana.csv")
    bmeta.loc[3, "key_id"] = meta.key_id[10]
    data.write_csv(kaggle_dir / "train_simplified" / "banana.csv", bmeta, bd)
    with pytest.raises(data.DataError) as e:
        _pack(kaggle_dir, tmp_path / "st")
    assert e.value.reason == "duplicate_key_id" and str(meta.key_id[10]) in str(e.value)
    assert "banana.csv" in str(e.value) and "apple.csv" in str(e.value)
    res = _pack(kaggle_dir, tmp_path / "st", lenient=True)
    assert res["train"]["skipped"] == {"duplicate_key_id": 1} and res["train"]["drawings"] == 99
    st = store.Store(tmp_path / "st" / "train")
    assert len(np.unique(st.key_id)) == len(st)


def test_lenient_pack_counts_bad_rows(kaggle_dir, tmp_path):
    p = kaggle_dir / "train_simplified" / "bear.csv"
    lines = p.read_text().splitlines()
    lines[2] = lines[2].replace('"[[[', '"[[[[', 1)
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(data.DataError, match="bear.csv, line 3"):
        _pack(kaggle_dir, tmp_path / "st")
    res = _pack(kaggle_dir, tmp_path / "st2", lenient=True)
    assert res["train"]["skipped"] == {"bad_json": 1} and res["train"]["drawings"] == 99


@pytest.fixture()
def packed(kaggle_dir, tmp_path):
    _pack(kaggle_dir, tmp_path / "st")
    return tmp_path / "st" / "train"


def test_truncated_store_is_detected(packed):
    with open(packed / "xy.npy", "r+b") as f:
        f.truncate(os.path.getsize(packed / "xy.npy") - 10)
    with pytest.raises(store.StoreError, match=r"xy.npy: \d+ bytes, manifest says \d+ \(truncated"):
        store.Store(packed)


def test_corrupted_store_is_detected(packed):
    path = packed / "stroke_len.npy"
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(store.StoreError, match="stroke_len.npy: checksum mismatch"):
        store.Store(packed)
    store.Store(packed, verify="none")  # sizes still agree: opening unverified works


def test_missing_manifest_and_missing_array(packed):
    (packed / "valid.npy").unlink()
    with pytest.raises(store.StoreError, match="valid.npy: missing"):
        store.Store(packed)
    (packed / "manifest.json").unlink()
    with pytest.raises(store.StoreError, match="no manifest.json"):
        store.Store(packed)


def test_out_of_range_index(packed):
    st = store.Store(packed)
    with pytest.raises(IndexError):
        st.drawings([len(st)])


def test_manifest_records_sources_and_counts(packed, kaggle_dir):
    m = json.loads((packed / "manifest.json").read_text())
    assert [os.path.basename(s["source"]) for s in m["sources"]] == [f"{w}.csv" for w in CLASSES]
    assert m["class_counts"] == [25, 25, 25, 25]
    assert all(len(a["sha256"]) == 64 for a in m["arrays"].values())


# --------------------------------------------------------------------------- verified where read

@pytest.mark.parametrize("name, change, said", [
    ("stroke_off", lambda a: a.__setitem__(3, a[5]), "inconsistent"),           # non-monotonic
    ("point_off", lambda a: a.__setitem__(7, a[7] ^ (1 << 40)), "inconsistent"),  # one flipped high bit
    ("stroke_len", lambda a: a.__setitem__(2, a[2] + 1), "inconsistent"),       # lengths do not add up
    ("word", lambda a: a.__setitem__(4, 99), "outside the 4 classes"),
    ("country", lambda a: a.__setitem__(0, 9999), "outside the"),
])
def test_quick_verify_refuses_consistent_edits(kaggle_dir, tmp_path, name, change, said):
    _pack(kaggle_dir, tmp_path / "st")
    folder = tmp_path / "st" / "train"
    consistent_edit(folder, name, change)
    with pytest.raises(store.StoreError, match=said):
        store.Store(folder)
    store.Store(folder, verify="none").drawings([0])  # "none" is for a store already checked


def test_manifest_checksum_and_vocabulary(kaggle_dir, tmp_path):
    _pack(kaggle_dir, tmp_path / "st")
    folder = tmp_path / "st" / "train"
    man = json.loads((folder / "manifest.json").read_text())
    man["words"] = man["words"][::-1]  # every label silently renamed
    (folder / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(store.StoreError, match="manifest checksum mismatch"):
        store.Store(folder)
    man["checksum"] = store.manifest_checksum({**man, "words": ["apple"] * 4})
    man["words"] = ["apple"] * 4
    (folder / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(store.StoreError, match="distinct class names"):
        store.Store(folder)


def test_large_arrays_are_checked_by_sampled_chunks(kaggle_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(store, "CHUNK_BYTES", 256)
    monkeypatch.setattr(store, "QUICK_CHECKSUM_BYTES", 0)  # every array counts as large
    _pack(kaggle_dir, tmp_path / "st")
    folder = tmp_path / "st" / "train"
    store.Store(folder)
    path = folder / "xy.npy"
    raw = bytearray(path.read_bytes())
    raw[200] ^= 1  # in the first chunk, which a quick open always checks
    path.write_bytes(bytes(raw))
    with pytest.raises(store.StoreError, match="xy.npy: checksum mismatch in bytes 0..256"):
        store.Store(folder)


def test_training_reads_only_a_checked_store(kaggle_dir, tmp_path):
    from doodle_utils.training.loaders import Source

    _pack(kaggle_dir, tmp_path / "st")
    folder = tmp_path / "st" / "train"
    assert len(Source(folder, split="train")) > 0
    path = folder / "word.npy"
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 1  # one label changed
    path.write_bytes(bytes(raw))
    os.utime(folder / "manifest.json")  # another moment: this process checks it again
    with pytest.raises(store.StoreError, match="word.npy: checksum mismatch"):
        Source(folder, split="train")


def test_doodle_verify_takes_what_doodle_pack_wrote(kaggle_dir, tmp_path, capsys):
    from doodle_utils.cli import main

    _pack(kaggle_dir, tmp_path / "st")
    assert main(["verify", str(tmp_path / "st")]) == 0
    out = capsys.readouterr().out
    assert "train: ok" in out and "test: ok" in out
