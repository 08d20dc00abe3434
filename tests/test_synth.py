"""Tests of the synthetic doodle generator and the mini-competition it writes."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from doodle_utils import data
from doodle_utils.data import synth
from doodle_utils.data.simplify import simplify_packed, simplify_strokes
from doodle_utils.paths import answers_file

SMALL = dict(classes=3, per_class=15, test_per_class=4, unrecognized=0.2)


def check_raw(strokes: list[np.ndarray]) -> None:
    """A valid raw drawing: (n, 3) float strokes, positive pixels, integer ms from 0, non-decreasing."""
    assert len(strokes) >= 1
    for s in strokes:
        assert isinstance(s, np.ndarray) and s.dtype == np.float64
        assert s.ndim == 2 and s.shape[1] == 3 and len(s) >= 1
        assert np.isfinite(s).all()
        assert (s[:, :2] >= 0).all() and (s[:, :2] < 5000).all()
    t = np.concatenate([s[:, 2] for s in strokes])
    assert t[0] == 0
    assert (np.diff(t) >= 0).all()
    assert (t == np.round(t)).all()


def check_simplified(strokes: list[np.ndarray]) -> None:
    assert len(strokes) >= 1
    for s in strokes:
        assert s.dtype == np.uint8 and s.ndim == 2 and s.shape[1] == 2 and len(s) >= 1


# --------------------------------------------------------------------------- drawing

def test_registry_has_enough_classes():
    assert len(synth.CLASSES) >= 12
    assert synth.CLASSES == tuple(synth.REGISTRY)
    assert len(set(synth.CLASSES)) == len(synth.CLASSES)


def test_classes_are_real_quickdraw_words(sample_dir: Path):
    real = {p.stem for p in (sample_dir / "raw").glob("*.ndjson")}
    assert set(synth.CLASSES) <= real


@pytest.mark.parametrize("word", synth.CLASSES)
def test_every_class_draws_valid_strokes(word: str):
    for seed in range(4):
        strokes = synth.draw(word, np.random.default_rng(seed))
        check_raw(strokes)
        check_simplified(simplify_strokes(strokes))


def test_scribbles_and_abandoned_drawings_are_valid():
    rng = np.random.default_rng(0)
    for _ in range(20):
        check_raw(synth.scribble(rng))
        check_raw(synth._unrecognized("house", rng))


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**63), word=st.sampled_from(synth.CLASSES))
def test_draw_is_valid_for_any_seed(seed: int, word: str):
    check_raw(synth.draw(word, np.random.default_rng(seed)))


def test_draw_is_deterministic_and_varied():
    a = synth.draw("house", np.random.default_rng(7))
    b = synth.draw("house", np.random.default_rng(7))
    c = synth.draw("house", np.random.default_rng(8))
    assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))
    assert len(a) != len(c) or any(not np.array_equal(x, y) for x, y in zip(a, c))


def test_unknown_class_raises():
    with pytest.raises(KeyError, match="no synthetic class"):
        synth.draw("unicorn", np.random.default_rng(0))


def test_square_comes_in_one_two_or_four_strokes():
    rng = np.random.default_rng(0)
    counts = {len(synth.draw("square", rng)) for _ in range(200)}
    assert {1, 2, 4} <= counts


# --------------------------------------------------------------------------- competition

@pytest.fixture(scope="module")
def comp(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("comp")
    return out, synth.make_competition(out, seed=1, **SMALL)


def first_line(path: Path) -> str:
    with open(path) as f:
        return f.readline().rstrip("\n")


def test_competition_is_kaggles_exact_file_set(comp):
    out, summary = comp
    words = synth.CLASSES[:SMALL["classes"]]
    assert summary["classes"] == list(words)
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == sorted(["test_raw.csv", "test_simplified.csv", "sample_submission.csv",
                            *(f"train_{k}/{w}.csv" for k in ("raw", "simplified") for w in words)])
    for w in words:
        for kind in ("simplified", "raw"):
            assert first_line(out / f"train_{kind}" / f"{w}.csv") == "countrycode,drawing,key_id,recognized,timestamp,word"
    assert first_line(out / "test_simplified.csv") == first_line(out / "test_raw.csv") == "key_id,countrycode,drawing"
    assert first_line(out / "sample_submission.csv") == "key_id,word"
    # the answers lie outside the folder a kernel attaches
    assert answers_file(out).parent == out.parent / f"{out.name}_answers"
    assert first_line(answers_file(out)) == "key_id,word"
    assert summary["test_rows"] == SMALL["classes"] * SMALL["test_per_class"]
    assert summary["files"]["test_simplified.csv"] == summary["test_rows"]
    assert not list(out.rglob("*.tmp"))


def test_competition_reads_back_strictly(comp):
    out, summary = comp
    words = summary["classes"]
    keys = []
    n_unrec = 0
    for w in words:
        meta, d, report = data.read_file(out / "train_simplified" / f"{w}.csv", words=words)
        assert report.total == 0 and len(meta) == SMALL["per_class"]
        assert (meta["word"] == w).all()
        assert meta["timestamp"].str.match(r"^2017-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ UTC$").all()
        assert meta["countrycode"].str.fullmatch(r"[A-Z]{2}").all()
        n_unrec += int((~meta["recognized"]).sum())
        keys.append(meta["key_id"].to_numpy())
        raw_meta, raw, _ = data.read_file(out / "train_raw" / f"{w}.csv", raw=data.has_times(out / "train_raw" / f"{w}.csv"))
        assert raw.raw and not data.has_times(out / "train_simplified" / f"{w}.csv")
        pd.testing.assert_frame_equal(raw_meta, meta)
        # the CSV drawings are Google's simplification of the raw ones as written
        xy, so, do = simplify_packed(raw.xy.astype(np.float64), raw.stroke_offsets, raw.drawing_offsets)
        assert np.array_equal(xy, d.xy) and np.array_equal(so, d.stroke_offsets)
        assert np.array_equal(do, d.drawing_offsets)
    assert n_unrec == summary["train_unrecognized"] > 0
    test_meta, test_d, report = data.read_file(out / "test_simplified.csv")
    assert report.total == 0 and len(test_d) == summary["test_rows"]
    keys.append(test_meta["key_id"].to_numpy())
    raw_test_meta, raw_test, _ = data.read_file(out / "test_raw.csv", raw=True)
    pd.testing.assert_frame_equal(raw_test_meta, test_meta)  # the same drawings, in the same order
    xy, so, do = simplify_packed(raw_test.xy.astype(np.float64), raw_test.stroke_offsets, raw_test.drawing_offsets)
    assert np.array_equal(xy, test_d.xy) and np.array_equal(so, test_d.stroke_offsets)
    all_keys = np.concatenate(keys)
    assert len(np.unique(all_keys)) == len(all_keys)
    assert ((all_keys >= 10**15) & (all_keys < 10**16)).all()


def test_competition_test_set_is_balanced_and_labelled(comp):
    out, summary = comp
    test = pd.read_csv(out / "test_simplified.csv")
    labels = pd.read_csv(answers_file(out))
    sub = pd.read_csv(out / "sample_submission.csv")
    assert labels["key_id"].tolist() == test["key_id"].tolist() == sub["key_id"].tolist()
    assert labels["word"].value_counts().to_dict() == {w: SMALL["test_per_class"] for w in summary["classes"]}
    assert labels["word"].tolist() != sorted(labels["word"])  # shuffled
    assert sub["word"].nunique() == 1 and len(sub["word"][0].split(" ")) == 3


def test_competition_is_deterministic(tmp_path: Path):
    kw = dict(classes=2, per_class=5, test_per_class=2)
    synth.make_competition(tmp_path / "a", seed=3, **kw)
    synth.make_competition(tmp_path / "b", seed=3, **kw)
    synth.make_competition(tmp_path / "c", seed=4, **kw)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) == 2 * 2 + 3
    files += [Path("..") / "a_answers" / "test_labels.csv"]
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    assert any((tmp_path / "a" / f).read_bytes() != (tmp_path / "c" / f).read_bytes() for f in files)


@pytest.mark.parametrize("classes", [0, len(synth.CLASSES) + 1])
def test_competition_rejects_bad_class_count(tmp_path: Path, classes: int):
    with pytest.raises(ValueError, match="classes"):
        synth.make_competition(tmp_path, classes=classes)


def test_submission_words_replace_inner_spaces():
    assert synth.submission_words(["The Eiffel Tower", "airplane", "smiley face"]) == \
        "The_Eiffel_Tower airplane smiley_face"


def test_labels_keep_spaces_in_words(tmp_path: Path):
    k = synth.CLASSES.index("smiley face")
    synth.make_competition(tmp_path / "c", classes=k + 1, per_class=0, test_per_class=1)
    assert "smiley face" in set(pd.read_csv(answers_file(tmp_path / "c"))["word"])
    assert not list((tmp_path / "c").glob("train_*/*"))


def test_competition_with_googles_ndjson(tmp_path: Path):
    synth.make_competition(tmp_path, classes=2, per_class=3, test_per_class=1, raw_format="ndjson")
    assert sorted(p.name for p in (tmp_path / "train_raw").iterdir()) == ["circle.ndjson", "square.ndjson"]
    assert not (tmp_path / "test_raw.csv").exists()
    with pytest.raises(ValueError, match="raw_format"):
        synth.make_competition(tmp_path / "x", classes=1, raw_format="json")


# --------------------------------------------------------------------------- statistics

def test_drawing_stats_by_hand():
    strokes = [np.array([[0, 0, 0], [10, 0, 20], [20, 5, 40]], float), np.array([[0, 9, 300], [5, 9, 320]], float)]
    stats = synth.drawing_stats(data.Drawings.from_strokes([strokes], dtype=np.float32))
    assert stats["strokes"]["median"] == 2
    assert stats["raw_points"]["median"] == 5
    assert stats["duration_ms"]["median"] == 320
    assert 4 <= stats["simplified_points"]["median"] <= 5


FACTOR = 1.6  # per class, synthetic medians within this factor of the real sample's


def test_distribution_close_to_real_sample(sample_dir: Path):
    df = synth.compare_with_real(sample_dir / "raw", seed=0, per_class=60)
    assert set(df["word"]) == set(synth.CLASSES)
    med = df.pivot_table(index="word", columns=["metric", "source"], values="median")
    for metric in ("strokes", "raw_points", "simplified_points", "duration_ms"):
        syn, real = med[(metric, "synthetic")], med[(metric, "real")]
        if metric == "strokes":  # small counts: compare 1 + median (1 vs 2 strokes is fine)
            syn, real = syn + 1, real + 1
        ratio = syn / real
        bad = ratio[~ratio.between(1 / FACTOR, FACTOR)]
        assert bad.empty, (metric, bad.to_dict())
        assert 0.8 < np.exp(np.log(ratio).mean()) < 1.25, metric  # no overall bias
    table = synth.stats_table_markdown(df)
    assert table.count("\n") == len(synth.CLASSES) + 2 and "| circle |" in table
