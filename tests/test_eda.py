"""EDA: per-class and per-country tables checked against the files written, plots, and the notebook."""
from __future__ import annotations

import json
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import nbformat  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from doodle_utils import data, eda  # noqa: E402
from doodle_utils.data.store import Store, pack, pack_competition  # noqa: E402
from doodle_utils.data.synth import make_competition  # noqa: E402

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "01_eda.ipynb"
CLASSES, PER_CLASS = 6, 60


@pytest.fixture(scope="module")
def comp(tmp_path_factory) -> dict:
    """A 6-class synthetic competition packed into train/test and raw stores, plus what was written."""
    root = tmp_path_factory.mktemp("eda")
    src, stores = root / "data", root / "store"
    make_competition(src, classes=CLASSES, per_class=PER_CLASS, test_per_class=5, seed=0, raw_format="ndjson")
    pack_competition(src, stores, workers=1, progress=None)
    pack(sorted((src / "train_raw").glob("*.ndjson")), stores / "raw", kind="raw", workers=1, progress=None)
    files = sorted((src / "train_simplified").glob("*.csv"))
    written = {f.stem: data.read_file(f)[:2] for f in files}
    raw = {f.stem: data.read_file(f)[1] for f in sorted((src / "train_raw").glob("*.ndjson"))}
    return {"root": root, "src": src, "stores": stores, "written": written, "raw": raw,
            "meta": pd.concat([m for m, _ in written.values()], ignore_index=True)}


@pytest.fixture(scope="module")
def stores(comp) -> tuple[Store, Store]:
    return eda.open_stores(comp["stores"])


def _last_t_s(d: data.Drawings) -> np.ndarray:
    return d.t[d.stroke_offsets[d.drawing_offsets[1:]] - 1] / 1000.0


# --------------------------------------------------------------------------- tables

def test_class_table_matches_the_files_written(comp, stores):
    st, raw = stores
    t = eda.class_table(st, raw)
    assert list(t.index) == sorted(comp["written"])
    for word, (meta, d) in comp["written"].items():
        row = t.loc[word]
        assert row.drawings == len(meta) == PER_CLASS
        assert row.recognized_share == pytest.approx(meta.recognized.mean())
        assert row.strokes_median == np.median(d.stroke_counts())
        assert row.strokes_p90 == pytest.approx(np.quantile(d.stroke_counts(), 0.9))
        assert row.points_median == np.median(d.point_counts())
        assert row.points_p90 == pytest.approx(np.quantile(d.point_counts(), 0.9))
        assert row.duration_median_s == pytest.approx(np.median(_last_t_s(comp["raw"][word])))
    assert not t.outlier.any() and (t.robust_z == 0).all()  # balanced classes


def test_timed_store_gives_the_same_durations(comp, tmp_path):
    """Kaggle's raw CSVs packed as a timed store: the EDA reads durations from the training store
    itself, equal to the raw drawings' (the last kept point is the stroke's last raw point)."""
    src = tmp_path / "kaggle"
    make_competition(src, classes=CLASSES, per_class=PER_CLASS, test_per_class=5, seed=0)
    pack_competition(src, tmp_path / "store", kind="timed", workers=1, progress=None)
    st, raw = eda.open_stores(tmp_path / "store")
    assert raw is st and st.kind == "timed"
    t = eda.class_table(st, raw)
    for word, d in comp["raw"].items():
        assert t.loc[word].duration_median_s == pytest.approx(np.median(_last_t_s(d)))


def test_class_table_without_raw_has_no_duration(stores):
    assert "duration_median_s" not in eda.class_table(stores[0]).columns


def test_outlier_rule_flags_a_much_bigger_class(comp, tmp_path):
    big = tmp_path / "big"
    make_competition(big, classes=1, per_class=300, test_per_class=0, seed=1)  # the first class, 5x bigger
    files = sorted((comp["src"] / "train_simplified").glob("*.csv"))
    sources = [big / "train_simplified" / files[0].name, *files[1:]]
    pack(sources, tmp_path / "store", workers=1, progress=None)
    t = eda.class_table(Store(tmp_path / "store"))
    assert t.drawings.tolist() == [300] + [PER_CLASS] * (CLASSES - 1)
    # counts 300, 60 x5: median 60, MAD 0, so MeanAD = 240/6 = 40 and z = 240 / (1.253314 * 40)
    assert t.robust_z.iloc[0] == pytest.approx(240 / (1.253314 * 40))
    assert t.outlier.tolist() == [True] + [False] * (CLASSES - 1)


def test_robust_z_by_hand():
    # median 13, |deviations| 3 1 1 87, MAD 2: z = 0.6745 (x - 13) / 2
    np.testing.assert_allclose(eda.robust_z(np.array([10, 12, 14, 100])),
                               0.6745 * np.array([-3, -1, 1, 87]) / 2)
    assert (eda.robust_z(np.full(5, 7)) == 0).all()


def test_country_table_matches_meta(comp, stores):
    st, meta = stores[0], comp["meta"]
    ct = eda.country_table(st, top=5)
    counts = meta.countrycode.value_counts()
    assert len(ct) == 5 and ct.drawings.tolist() == counts.iloc[:5].tolist()
    assert set(ct.index) <= set(counts.index[counts >= ct.drawings.min()])
    for c, row in ct.iterrows():
        assert row.drawings == counts[c] and row.share == pytest.approx(counts[c] / len(meta))
        assert row.recognized_share == pytest.approx(meta.recognized[meta.countrycode == c].mean())
    word = st.words[2]
    ctw = eda.country_table(st, top=100, word=word)
    assert ctw.drawings.sum() == PER_CLASS and ctw.share.sum() == pytest.approx(1.0)
    assert ctw.drawings.to_dict() == meta[meta.word == word].countrycode.value_counts().to_dict()


def test_summary_matches_meta(comp, stores):
    st, raw = stores
    meta = comp["meta"]
    s = eda.summary(st, eda.class_table(st, raw), raw)
    d = data.Drawings.concat([d for _, d in comp["written"].values()])
    assert s["n_drawings"] == len(meta) and s["n_classes"] == CLASSES
    assert s["n_countries"] == meta.countrycode.nunique()
    assert s["recognized_share"] == pytest.approx(meta.recognized.mean())
    assert s["median_strokes"] == np.median(d.stroke_counts())
    assert s["median_points"] == np.median(d.point_counts())
    assert s["median_duration_s"] == pytest.approx(np.median(np.concatenate([_last_t_s(r) for r in comp["raw"].values()])))
    assert s["n_outlier_classes"] == 0 and s["outlier_classes"] == []


def test_pen_speed_by_hand():
    # drawing 0: 5 px in 100 ms, pen up 100 ms (not counted), then 10 px in 100 ms -> 15 px / 0.2 s
    # drawing 1: a single point, no pen-down time -> NaN
    d = data.Drawings.from_strokes([
        [np.array([[0, 0, 0], [3, 4, 100]]), np.array([[10, 10, 200], [10, 20, 300]])],
        [np.array([[5, 5, 0]])],
    ], dtype=np.float32)
    v = eda.pen_speed(d)
    assert v[0] == pytest.approx(75.0) and np.isnan(v[1])


# --------------------------------------------------------------------------- plots

def test_draw_drawing_one_line_per_stroke_y_down():
    d = data.Drawings.from_strokes([[np.array([[0, 0], [10, 10]]), np.array([[5, 0], [5, 9]]),
                                     np.array([[1, 1]])]])
    ax = Figure().subplots()
    eda.draw_drawing(ax, d, 0)
    assert len(ax.lines) == 3 and ax.yaxis_inverted()
    assert len({line.get_color() for line in ax.lines}) == 3


def test_table_plots(stores):
    st, raw = stores
    t = eda.class_table(st, raw)
    fig = eda.plot_class_counts(t)
    assert isinstance(fig, Figure) and len(fig.axes) == 1 and len(fig.axes[0].patches) == CLASSES
    assert len(eda.plot_recognized_share(t).axes[0].patches) == CLASSES
    fig = eda.plot_countries(eda.country_table(st, top=7))
    assert len(fig.axes) == 2 and all(len(ax.patches) == 7 for ax in fig.axes)


def test_distribution_plots(stores):
    st, raw = stores
    fig = eda.plot_distributions(st)
    assert len(fig.axes) == 2
    fig = eda.plot_distributions(st, raw, sample=50)
    assert len(fig.axes) == 4
    assert all(len(ax.patches) == 2 for ax in fig.axes)  # recognized and unrecognized densities
    assert all(ax.get_xscale() == "log" for ax in fig.axes[1:])


def _strokes_in_title(ax) -> int:
    return int(re.search(r"(\d+) strokes?", ax.get_title()).group(1))


def test_example_grid(stores):
    st = stores[0]
    word = st.words[1]
    fig = eda.plot_examples(st, word, recognized=True, n=5, rng=np.random.default_rng(0))
    assert len(fig.axes) == 5
    assert all(len(ax.lines) == _strokes_in_title(ax) > 0 for ax in fig.axes)
    n_unrec = int(((st.labels() == 1) & (np.asarray(st.recognized) == 0)).sum())
    fig = eda.plot_examples(st, word, recognized=False, n=PER_CLASS, rng=np.random.default_rng(0))
    assert len(fig.axes) == n_unrec  # fewer than asked: all there are


def test_by_country_grid(comp, stores):
    st, meta = stores[0], comp["meta"]
    word = st.words[0]
    top = meta[meta.word == word].countrycode.value_counts()
    fig = eda.plot_by_country(st, word, [top.index[0], "XX"], n=3, rng=np.random.default_rng(0))
    assert len(fig.axes) == 6
    drawn = [sum(len(ax.lines) > 0 for ax in fig.axes[r * 3:(r + 1) * 3]) for r in range(2)]
    assert drawn == [min(3, top.iloc[0]), 0]


# --------------------------------------------------------------------------- notebook

def test_notebook_is_committed_clean():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code)
    params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and "store_dir: str" in params[0].source


def test_notebook_runs_and_records_metrics(comp, stores):
    papermill = pytest.importorskip("papermill")
    st, raw = stores
    out = comp["root"] / "run"
    papermill.execute_notebook(str(NOTEBOOK), str(comp["root"] / "01_eda.out.ipynb"), kernel_name="python3",
                               progress_bar=False, parameters={"data_dir": str(comp["src"]), "store_dir": str(comp["stores"]),
                                                               "out_dir": str(out), "n_examples": 4})
    m = json.loads((out / "metrics" / "01_eda.json").read_text())
    expected = eda.summary(st, eda.class_table(st, raw), raw)
    assert m["n_drawings"] == len(comp["meta"]) == CLASSES * PER_CLASS
    assert m["n_classes"] == CLASSES and m["n_countries"] == comp["meta"].countrycode.nunique()
    assert m["recognized_share"] == pytest.approx(comp["meta"].recognized.mean())
    for k in ("median_strokes", "median_points", "median_duration_s", "n_outlier_classes"):
        assert m[k] == pytest.approx(expected[k])
    assert m["example_word"] in st.words
    assert len(m["figures"]) == 7
    assert all((out / "figures" / f"{name}.png").stat().st_size > 1000 for name in m["figures"])
    done = nbformat.read(comp["root"] / "01_eda.out.ipynb", as_version=4)
    images = sum("image/png" in o.get("data", {}) for c in done.cells if c.cell_type == "code" for o in c.outputs)
    assert images == len(m["figures"])  # every figure saved is also shown


def test_histogram_quantiles_match_numpy():
    rng = np.random.default_rng(1)
    v = [rng.integers(0, 50, n) for n in (1, 2, 7, 500)]
    hist = np.zeros((5, 50), np.int64)
    for g, vals in enumerate(v):
        np.add.at(hist[g], vals, 1)
    got = eda.histogram_quantiles(hist, (0.0, 0.1, 0.5, 0.9, 1.0))
    for g, vals in enumerate(v):
        np.testing.assert_allclose(got[g], np.quantile(vals, [0.0, 0.1, 0.5, 0.9, 1.0]))
    assert np.isnan(got[4]).all()


def test_tables_are_the_same_streamed_in_small_chunks(stores, monkeypatch):
    """The tables stream over the store CHUNK_ROWS drawings at a time (bounded memory at
    Kaggle's size); chunks of 37 drawings, which split classes and countries, change nothing."""
    st, raw = stores
    whole = (eda.class_table(st, raw), eda.country_table(st, top=50), eda.country_table(st, top=50, word=st.words[1]))
    s_whole = eda.summary(st, whole[0], raw)
    monkeypatch.setattr(eda, "CHUNK_ROWS", 37)
    assert len(st) > 5 * 37
    parts = (eda.class_table(st, raw), eda.country_table(st, top=50), eda.country_table(st, top=50, word=st.words[1]))
    for a, b in zip(whole, parts, strict=True):
        pd.testing.assert_frame_equal(a, b)
    assert eda.summary(st, parts[0], raw) == s_whole
    # summary without class_table's counts (a table from elsewhere) computes them itself
    bare = parts[0].copy()
    bare.attrs.clear()
    assert eda.summary(st, bare, raw) == s_whole
    # the medians are those of every drawing
    assert s_whole["median_strokes"] == float(np.median(st.stroke_counts()))
    assert s_whole["median_points"] == float(np.median(st.point_counts()))
    ms = raw.durations_ms()
    assert s_whole["median_duration_s"] == pytest.approx(float(np.nanmedian(ms)) / 1000)
    # durations are counted in whole ms up to the cap (the histogram's width), longer ones at it
    cap = int(np.nanmedian(ms)) // 2
    monkeypatch.setattr(eda, "DURATION_CAP_MS", cap)
    dur = eda.duration_histograms(raw)
    assert dur.shape[1] == cap + 1 and dur.sum() == np.count_nonzero(~np.isnan(ms))
    assert dur[:, cap].sum() == np.count_nonzero(np.round(ms) >= cap)
