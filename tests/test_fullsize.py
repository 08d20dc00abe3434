"""The Kaggle-size competition generator (doodle_utils.data.fullsize), at a small scale:
Kaggle's file set, read back by the suite's own readers and packer, the simplified rows
exactly Google's simplification of the raw ones, distinct key_ids, a balanced hidden test
set, the same bytes for any worker count, and the CLI's errors."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from doodle_utils import data
from doodle_utils.data import fullsize
from doodle_utils.data.simplify import simplify_packed
from doodle_utils.paths import answers_file

from conftest import ROOT

SCALE = 0.0002  # 9,940 training rows over 340 files, 340 test rows


@pytest.fixture(scope="module")
def comp(tmp_path_factory):
    out = tmp_path_factory.mktemp("fullsize") / "comp"
    summary = fullsize.make_kaggle_size(out, scale=SCALE, raw_fraction=0.1, workers=2)
    return out, summary


def test_kaggle_file_set_and_uneven_classes(comp):
    out, s = comp
    assert sorted(p.name for p in out.iterdir()) == ["sample_submission.csv", "test_raw.csv", "test_simplified.csv",
                                                     "train_raw", "train_simplified"]
    files = sorted((out / "train_simplified").glob("*.csv"))
    assert len(files) == 340 == s["words"] and len(list((out / "train_raw").glob("*.csv"))) == 340
    assert s["train_rows"] == round(fullsize.KAGGLE_TRAIN_ROWS * SCALE)
    sizes = np.array(list(s["sizes"].values()))
    assert sizes.sum() == s["train_rows"] and sizes.max() / sizes.min() > 2  # uneven, like Kaggle's
    for c in (0, 123, 339):
        word = list(s["sizes"])[c]
        meta, d, skips = data.read_file(out / "train_simplified" / f"{word}.csv")
        assert skips.total == 0 and len(meta) == s["sizes"][word] and set(meta["word"]) == {word}
        assert d.xy.dtype == np.uint8 and d.xy.max() == 255 or len(d) == 0
    head = (out / "train_simplified" / f"{list(s['sizes'])[0]}.csv").read_text().splitlines()
    assert head[0] == "countrycode,drawing,key_id,recognized,timestamp,word"
    assert '"[[[' in head[1] and "], [" in head[1] and " UTC," in head[1]  # Kaggle's spacing and timestamps


def test_simplified_rows_are_googles_simplification_of_the_raw_rows(comp):
    out, s = comp
    word = list(s["sizes"])[42]
    meta_s, simple, _ = data.read_file(out / "train_simplified" / f"{word}.csv")
    meta_r, raw, skips = data.read_file(out / "train_raw" / f"{word}.csv", raw=True)
    assert skips.total == 0 and 0 < len(meta_r) == int(np.ceil(len(meta_s) * 0.1))
    k = len(meta_r)
    pd.testing.assert_frame_equal(meta_r.reset_index(drop=True), meta_s.iloc[:k].reset_index(drop=True))
    xy, so, do = simplify_packed(raw.xy.astype(np.float64), raw.stroke_offsets, raw.drawing_offsets)
    first = simple.take(np.arange(k))
    assert np.array_equal(xy, first.xy) and np.array_equal(so, first.stroke_offsets)
    for i in range(k):  # times never run backwards within a stroke
        for stroke in raw.strokes(i):
            assert np.all(np.diff(stroke[:, 2]) >= 0)
    assert 0 < (~meta_s["recognized"]).sum() < len(meta_s) // 3 or len(meta_s) < 40


def test_key_ids_distinct_and_test_set_balanced_and_hidden(comp):
    out, s = comp
    keys = [pd.read_csv(p, usecols=["key_id"])["key_id"] for p in (out / "train_simplified").glob("*.csv")]
    test = pd.read_csv(out / "test_simplified.csv")
    test_raw = pd.read_csv(out / "test_raw.csv")
    allk = pd.concat([*keys, test["key_id"]])
    assert allk.is_unique and allk.between(10**15, 10**16 - 1).all()
    assert list(test.columns) == ["key_id", "countrycode", "drawing"] and len(test) == s["test_rows"] == 340
    assert test["key_id"].tolist() == test_raw["key_id"].tolist()
    answers = pd.read_csv(answers_file(out))
    assert answers["key_id"].tolist() == test["key_id"].tolist()
    counts = answers["word"].value_counts()
    assert counts.max() - counts.min() <= 1 and len(counts) == 340
    assert pd.read_csv(out / "sample_submission.csv")["key_id"].tolist() == test["key_id"].tolist()
    # the test drawings' key_ids do not give their class away: no ordering by class
    order = answers.sort_values("key_id")["word"].to_numpy()
    assert (order[1:] == order[:-1]).mean() < 0.05


def test_packs_into_a_store(comp, tmp_path):
    out, s = comp
    from doodle_utils.data.store import Store, pack_competition

    pack_competition(out, tmp_path / "store", workers=1, progress=None)
    st = Store(tmp_path / "store" / "train", verify="full")
    assert len(st) == s["train_rows"] and len(st.words) == 340
    assert len(Store(tmp_path / "store" / "test")) == s["test_rows"]


def test_same_bytes_for_any_worker_count(comp, tmp_path):
    out, _ = comp
    again = tmp_path / "comp"
    fullsize.make_kaggle_size(again, scale=SCALE, raw_fraction=0.1, workers=1)
    for rel in ("test_simplified.csv", "test_raw.csv", "train_simplified/cat.csv", "train_raw/cat.csv"):
        assert (again / rel).read_bytes() == (out / rel).read_bytes(), rel


@pytest.mark.parametrize("args, message", [
    (["--scale", "0"], "scale must be in"),
    (["--raw-fraction", "1.5"], "raw_fraction must be in"),
    (["--workers", "0"], "workers must be at least 1"),
    (["--sample", "/nonexistent"], "no Google ndjson files"),
])
def test_cli_bad_values(tmp_path, args, message):
    r = subprocess.run([sys.executable, "-m", "doodle_utils", "synth", str(tmp_path / "c"), "--kaggle-size", *args],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and r.stderr.startswith("error:") and message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "c").exists()
