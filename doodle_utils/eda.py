"""Exploratory data analysis of a packed store: per-class and per-country tables, plots.

Everything is computed from the store's arrays with vectorised numpy (offsets, labels,
country and recognized flags, raw times), so the same calls run on the synthetic default
and on the full competition (~50M drawings). The tables stream over the store in chunks of
:data:`CHUNK_ROWS` drawings, adding up per-class histograms of the stroke and point counts
(exact quantiles come from them), so their memory does not grow with the store: at Kaggle's
49.7M drawings whole-store int64 arrays and a sort took notebook 01 to 2.3 GB (the full-size
rehearsal, ``python -m benchmarks scale``); durations (stores with times) are histogrammed in
whole milliseconds the same way (:func:`duration_histograms`). Only the plots of individual drawings (example grids) and the pen
speed read drawings, from a random sample.

Per-drawing arrays: :func:`strokes_per_drawing`, :func:`points_per_drawing`,
:func:`durations_s`, :func:`pen_speed`; helpers :func:`count_histograms` and
:func:`histogram_quantiles` (per-class histograms streamed over the store, and their exact
quantiles) and :func:`robust_z` (the outlier rule). Tables: :func:`class_table`,
:func:`country_table`; the notebook's metrics: :func:`summary`.
Figures (each returns a :class:`matplotlib.figure.Figure`, made without pyplot so nothing is
left open): :func:`plot_class_counts`, :func:`plot_recognized_share`,
:func:`plot_countries`, :func:`plot_distributions`, :func:`plot_examples`,
:func:`plot_by_country`; :func:`draw_drawing` draws one drawing on an Axes.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .data import Drawings
from .data.store import Store
from .paths import store_path

CHUNK_ROWS = 4_000_000  # drawings per step of the streamed tables (~150 MB of temporaries)
DURATION_CAP_MS = 60_000  # durations are histogrammed in whole ms up to here (the game allowed 20 s;
# the longest of the real sample's 9,570 raw drawings: 42 s): at most 164 MB of counts for 340 classes
OUTLIER_Z = 3.5  # modified z-score above which a class count is an outlier (Iglewicz & Hoaglin)
RECOGNIZED_COLOR, UNRECOGNIZED_COLOR, OUTLIER_COLOR = "tab:blue", "tab:orange", "tab:red"


# --------------------------------------------------------------------------- stores and per-drawing arrays

def open_stores(store_dir: str | Path) -> tuple[Store, Store | None]:
    """The labelled ``train`` store and a store with times: the ``raw`` store when one was packed
    (Google's raw ndjson), else ``train`` itself when its points carry times (kinds "timed" and
    "raw", from Kaggle's raw files), else None."""
    store_dir = Path(store_dir)
    raw = store_path(store_dir, "raw")
    train = Store(store_path(store_dir, "train"))
    if (raw / "manifest.json").exists():
        return train, Store(raw)
    return train, (train if train.timed else None)


def strokes_per_drawing(st: Store) -> np.ndarray:
    """Strokes of every drawing, (D,) int64."""
    return st.stroke_counts()


def points_per_drawing(st: Store) -> np.ndarray:
    """Points of every drawing, (D,) int64."""
    return st.point_counts()


def durations_s(raw: Store, idx: np.ndarray | None = None) -> np.ndarray:
    """Seconds from a drawing's first to its last point (the last point's ``t``), float64, for
    the drawings at ``idx`` (every drawing without: one float64 each, 0.4 GB at Kaggle's size;
    the tables use :func:`duration_histograms` instead). NaN for a drawing without points."""
    return raw.durations_ms(idx) / 1000.0


def _duration_ms(raw: Store, idx: np.ndarray) -> np.ndarray:
    """Whole milliseconds first to last point, at most :data:`DURATION_CAP_MS`; -1 without points."""
    ms = raw.durations_ms(idx)
    return np.where(np.isnan(ms), -1, np.minimum(np.round(ms), DURATION_CAP_MS)).astype(np.int64)


def duration_histograms(raw: Store) -> np.ndarray:
    """Per class (the last row: unlabelled), how many drawings last each whole millisecond
    (:func:`count_histograms`; longer than :data:`DURATION_CAP_MS` counted there, which moves a
    median only where most of a class lasts that long; drawings without points left out)."""
    return count_histograms(raw, lambda idx: _duration_ms(raw, idx))


def pen_speed(d: Drawings) -> np.ndarray:
    """Mean pen speed of each drawing of a raw batch: ink length / pen-down time, px per second
    (screen pixels for raw points; for a timed store's simplified points, pixels of the 0..255
    frame).

    Pen-down time is the sum over strokes of last minus first ``t``; NaN where it is zero.
    """
    so, do = d.stroke_offsets, d.drawing_offsets
    stroke_of_point = np.repeat(np.arange(len(so) - 1), np.diff(so))
    drawing_of_stroke = np.repeat(np.arange(len(d)), np.diff(do))
    xy = d.xy.astype(np.float64)
    seg = np.hypot(*np.diff(xy, axis=0).T)
    inside = stroke_of_point[1:] == stroke_of_point[:-1]  # segments within one stroke
    ink = np.bincount(drawing_of_stroke[stroke_of_point[1:][inside]], seg[inside], minlength=len(d))
    nonempty = np.flatnonzero(np.diff(so) > 0)
    t = d.t.astype(np.float64)
    down = np.bincount(drawing_of_stroke[nonempty], t[so[nonempty + 1] - 1] - t[so[nonempty]], minlength=len(d))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(down > 0, ink / (down / 1000.0), np.nan)


def _chunks(n: int) -> Iterator[np.ndarray]:
    for a in range(0, n, CHUNK_ROWS):
        yield np.arange(a, min(a + CHUNK_ROWS, n))


def _class_groups(st: Store, idx: np.ndarray) -> np.ndarray:
    """Class index of each drawing at ``idx``; ``len(st.words)`` for one without a label."""
    g = st.labels(idx).astype(np.int64)
    g[g < 0] = len(st.words)
    return g


def count_histograms(st: Store, per_drawing: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``(len(st.words) + 1, max + 1)`` int64: per class (the last row: drawings without a
    label), how many drawings have each value of an integer ``per_drawing(idx)`` (e.g.
    ``st.stroke_counts``; a negative value leaves the drawing out), streamed over the store
    :data:`CHUNK_ROWS` at a time."""
    n = len(st.words)
    hist = np.zeros((n + 1, 1), np.int64)
    for idx in _chunks(len(st)):
        v = np.asarray(per_drawing(idx), np.int64)
        g = _class_groups(st, idx)
        if len(v) and v.min() < 0:
            g, v = g[v >= 0], v[v >= 0]
        width = max(hist.shape[1], int(v.max()) + 1 if len(v) else 1)
        if width > hist.shape[1]:
            hist = np.pad(hist, ((0, 0), (0, width - hist.shape[1])))
        hist += np.bincount(g * width + v, minlength=hist.size).reshape(hist.shape)
    return hist


def histogram_quantiles(hist: np.ndarray, qs: Sequence[float]) -> np.ndarray:
    """Quantiles of each row of a histogram of integer values (``hist[g, v]`` = how many times
    ``v``), interpolated linearly like :func:`numpy.quantile`; NaN for an empty row."""
    cum = np.cumsum(hist, axis=1)
    out = np.full((len(hist), len(qs)), np.nan)
    for g in np.flatnonzero(cum[:, -1] > 0):
        pos = np.asarray(qs, np.float64) * (cum[g, -1] - 1)
        lo = np.floor(pos)
        a = np.searchsorted(cum[g], lo, side="right")  # the value at rank r: first v with cum > r
        b = np.searchsorted(cum[g], np.ceil(pos), side="right")
        out[g] = a + (b - a) * (pos - lo)
    return out


def robust_z(x: np.ndarray) -> np.ndarray:
    """Modified z-score ``0.6745 (x - median) / MAD`` (Iglewicz & Hoaglin 1993).

    When the MAD is 0 (most values equal) the mean absolute deviation is used instead,
    ``(x - median) / (1.253314 MeanAD)``; all values equal gives all zeros.
    """
    x = np.asarray(x, np.float64)
    dev = x - np.median(x) if len(x) else x
    mad = np.median(np.abs(dev)) if len(x) else 0.0
    if mad > 0:
        return 0.6745 * dev / mad
    mean_ad = np.mean(np.abs(dev)) if len(x) else 0.0
    return dev / (1.253314 * mean_ad) if mean_ad > 0 else np.zeros_like(x)


# --------------------------------------------------------------------------- tables

def _flag_counts(st: Store, groups_of: Callable[[np.ndarray], np.ndarray], n: int) -> tuple[np.ndarray, ...]:
    """Per group (``groups_of(idx)``, in ``[0, n)``), drawings, drawings whose recognized flag
    is known, and recognized drawings, streamed over the store."""
    total, known, yes = (np.zeros(n, np.int64) for _ in range(3))
    for idx in _chunks(len(st)):
        g = np.asarray(groups_of(idx), np.int64)
        rec = np.asarray(st.recognized[idx[0]:idx[-1] + 1])
        total += np.bincount(g, minlength=n)
        known += np.bincount(g[rec >= 0], minlength=n)
        yes += np.bincount(g[rec == 1], minlength=n)
    return total, known, yes


def _share(yes: np.ndarray, known: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return yes / known


def class_table(st: Store, raw: Store | None = None) -> pd.DataFrame:
    """One row per class of a labelled store, indexed by word.

    Columns: ``drawings``, ``recognized_share`` (among drawings whose flag is known),
    ``strokes_median``/``strokes_p90``, ``points_median``/``points_p90`` and, with a raw
    store, ``duration_median_s`` (matched to the class by word; NaN for classes it lacks).
    ``robust_z`` is the modified z-score of the class's count (:func:`robust_z`) and
    ``outlier`` flags ``|robust_z| > 3.5``: a class far more or less frequent than the rest.

    Args:
        st: labelled store (kind "simplified" or "raw").
        raw: optional raw store of the same drawings, for durations.
    """
    n = len(st.words)
    counts, known, yes = _flag_counts(st, lambda idx: _class_groups(st, idx), n + 1)
    strokes, points = count_histograms(st, st.stroke_counts), count_histograms(st, st.point_counts)
    s, p = histogram_quantiles(strokes[:n], (0.5, 0.9)), histogram_quantiles(points[:n], (0.5, 0.9))
    t = pd.DataFrame({
        "drawings": counts[:n],
        "recognized_share": _share(yes[:n], known[:n]),
        "strokes_median": s[:, 0], "strokes_p90": s[:, 1],
        "points_median": p[:, 0], "points_p90": p[:, 1],
    }, index=pd.Index(st.words, name="word"))
    # every drawing's (labelled or not) histograms and flags, for summary()
    t.attrs.update(strokes=strokes.sum(axis=0), points=points.sum(axis=0), flags=(int(known.sum()), int(yes.sum())))
    if raw is not None:
        dur = duration_histograms(raw)
        med = histogram_quantiles(dur[:len(raw.words)], (0.5,))[:, 0] / 1000.0
        t["duration_median_s"] = pd.Series(med, index=raw.words).reindex(t.index).to_numpy()
        t.attrs["durations"] = dur.sum(axis=0)  # every drawing's, for summary()
    t["robust_z"] = robust_z(counts[:n])
    t["outlier"] = np.abs(t["robust_z"]) > OUTLIER_Z
    return t


def country_table(st: Store, top: int = 15, word: str | None = None) -> pd.DataFrame:
    """The ``top`` countries by number of drawings, indexed by country code ("" = unknown).

    Columns: ``drawings``, ``share`` (of all drawings considered) and ``recognized_share``.

    Args:
        st: a store.
        top: how many countries (the most frequent).
        word: only drawings of this class.
    """
    n = max(len(st.countries), 1)
    want = None if word is None else st.words.index(word)

    def groups(idx: np.ndarray) -> np.ndarray:  # another class's drawings to the extra group n
        c = np.asarray(st.country[idx[0]:idx[-1] + 1], np.int64)
        return c if want is None else np.where(st.labels(idx) == want, c, n)

    counts, known, yes = (a[:n] for a in _flag_counts(st, groups, n + 1))
    t = pd.DataFrame({"drawings": counts, "share": counts / max(counts.sum(), 1),
                      "recognized_share": _share(yes, known)},
                     index=pd.Index(st.countries or [""], name="country"))
    return t[t.drawings > 0].sort_values("drawings", ascending=False, kind="stable").head(top)


def summary(st: Store, table: pd.DataFrame, raw: Store | None = None) -> dict:
    """Headline numbers of the EDA (what the notebook records): counts, shares and medians."""
    if {"strokes", "points", "flags"} <= set(table.attrs):  # class_table's whole-store counts
        strokes, points, (known, yes) = table.attrs["strokes"], table.attrs["points"], table.attrs["flags"]
    else:
        strokes = count_histograms(st, st.stroke_counts).sum(axis=0)
        points = count_histograms(st, st.point_counts).sum(axis=0)
        _, k, y = _flag_counts(st, lambda idx: np.zeros(len(idx), np.int64), 1)
        known, yes = int(k[0]), int(y[0])
    countries = np.zeros(max(len(st.countries), 1), np.int64)
    for idx in _chunks(len(st)):
        countries += np.bincount(np.asarray(st.country[idx[0]:idx[-1] + 1], np.int64), minlength=len(countries))
    out = {
        "n_drawings": len(st), "n_classes": len(st.words),
        "n_countries": int(np.count_nonzero(countries)),
        "recognized_share": float(yes / max(known, 1)),
        "median_strokes": float(histogram_quantiles(strokes[None], (0.5,))[0, 0]),
        "median_points": float(histogram_quantiles(points[None], (0.5,))[0, 0]),
        "n_outlier_classes": int(table.outlier.sum()),
        "outlier_classes": table.index[table.outlier].tolist(),
    }
    if raw is not None:
        dur = table.attrs["durations"] if "durations" in table.attrs else duration_histograms(raw).sum(axis=0)
        out["median_duration_s"] = float(histogram_quantiles(dur[None], (0.5,))[0, 0] / 1000.0)
    return out


# --------------------------------------------------------------------------- plots of the tables

def _names(t: pd.DataFrame, column: str, fmt: str, k: int = 10) -> str:
    items = [f"{w} ({v:{fmt}})" for w, v in zip(t.index[:k], t[column].iloc[:k])]
    return ", ".join(items) + (", …" if len(t) > k else "")


def _class_axis(ax: Axes, t: pd.DataFrame, column: str, fmt: str, first: str, last: str,
                extra: str = "", max_labels: int = 60) -> None:
    """Name every class on the x axis when there are few; else list the extremes under it."""
    ax.set_xlim(-0.7, len(t) - 0.3)
    if len(t) <= max_labels:
        ax.set_xticks(np.arange(len(t)), t.index.tolist(), rotation=90, fontsize=8)
        return
    ax.set_xticks([])
    ax.set_xlabel(f"{len(t)} classes, sorted{extra}\n{first}: {_names(t, column, fmt, 5)}\n"
                  f"{last}: {_names(t.iloc[::-1], column, fmt, 5)}", fontsize=9)


def plot_class_counts(table: pd.DataFrame) -> Figure:
    """Drawings per class, sorted, outlier classes (see :func:`class_table`) in red."""
    t = table.sort_values("drawings", ascending=False, kind="stable")
    fig = Figure(figsize=(min(4 + 0.22 * len(t), 16), 4.5), layout="constrained")
    ax = fig.subplots()
    colors = np.where(t.outlier, OUTLIER_COLOR, RECOGNIZED_COLOR)
    ax.bar(np.arange(len(t)), t.drawings, color=colors, width=0.8)
    ax.axhline(t.drawings.median(), color="0.3", ls="--", lw=1, label=f"median {t.drawings.median():,.0f}")
    out = t[t.outlier]
    _class_axis(ax, t, "drawings", ",", "largest", "smallest",
                f" · outliers: {_names(out, 'drawings', ',')}" if len(out) else "")
    ax.set_ylabel("drawings")
    ax.set_title(f"Drawings per class ({len(t)} classes, {int(t.outlier.sum())} outliers in red: "
                 f"|robust z| > {OUTLIER_Z})")
    ax.legend(loc="upper right")
    return fig


def plot_recognized_share(table: pd.DataFrame) -> Figure:
    """Share of drawings Google's classifier recognized, per class, sorted."""
    t = table.sort_values("recognized_share", kind="stable")
    fig = Figure(figsize=(min(4 + 0.22 * len(t), 16), 4.5), layout="constrained")
    ax = fig.subplots()
    ax.bar(np.arange(len(t)), t.recognized_share, color=RECOGNIZED_COLOR, width=0.8)
    overall = np.average(t.recognized_share.fillna(0), weights=t.drawings) if t.drawings.sum() else np.nan
    ax.axhline(overall, color="0.3", ls="--", lw=1, label=f"all drawings {overall:.1%}")
    _class_axis(ax, t, "recognized_share", ".0%", "lowest", "highest")
    ax.set_ylim(max(0.0, float(t.recognized_share.min()) - 0.05), 1.0)
    ax.yaxis.set_major_formatter("{x:.0%}")
    ax.set_ylabel("recognized (axis zoomed)")
    ax.set_title("Share of drawings recognized by Google's classifier, per class")
    ax.legend(loc="upper left")
    return fig


def plot_countries(ct: pd.DataFrame) -> Figure:
    """Drawings (log scale) and recognized share of the countries of :func:`country_table`."""
    names = [f"{c or '(none)'}  {s:.1%}" for c, s in zip(ct.index, ct.share)]
    fig = Figure(figsize=(9, 1.2 + 0.3 * len(ct)), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2, sharey=True)
    y = np.arange(len(ct))
    ax1.barh(y, ct.drawings, color=RECOGNIZED_COLOR)
    ax1.set_xscale("log")
    ax1.set_yticks(y, names)
    ax1.invert_yaxis()
    ax1.set_xlabel("drawings (log scale)")
    ax2.barh(y, ct.recognized_share, color=UNRECOGNIZED_COLOR)
    ax2.set_xlim(max(0.0, float(ct.recognized_share.min()) - 0.05), 1.0)
    ax2.xaxis.set_major_formatter("{x:.0%}")
    ax2.set_xlabel("recognized")
    fig.suptitle(f"Top {len(ct)} countries: drawings (share of all) and share recognized")
    return fig


# --------------------------------------------------------------------------- distributions

def _density(ax: Axes, values: np.ndarray, rec: np.ndarray, bins: np.ndarray, log: bool) -> None:
    """Normalised histograms of recognized and unrecognized drawings as step lines."""
    for mask, label, color in ((rec == 1, "recognized", RECOGNIZED_COLOR),
                               (rec == 0, "unrecognized", UNRECOGNIZED_COLOR)):
        v = values[mask & np.isfinite(values)]
        if len(v):
            h, _ = np.histogram(np.clip(v, bins[0], bins[-1]), bins, density=True)
            ax.stairs(h, bins, color=color, label=f"{label} (median {np.median(v):.3g})")
    if log:
        ax.set_xscale("log")
    ax.legend(fontsize=8)


def _log_bins(values: np.ndarray, n: int = 40, integer: bool = False) -> np.ndarray:
    """``n`` log-spaced bins over the 0.1-99.9 percentiles; for counts, edges at half-integers."""
    v = values[np.isfinite(values) & (values > 0)]
    lo, hi = np.quantile(v, [0.001, 0.999]) if len(v) else (1.0, 10.0)
    lo = max(lo, 1e-3)
    if integer:
        return np.unique(np.round(np.geomspace(lo, hi + 1, n + 1))) - 0.5
    return np.geomspace(lo, max(hi, lo * 1.01), n + 1)


DENSITY_SAMPLE = 2_000_000  # drawings behind the distribution plots (all of a smaller store)


def _density_rows(n: int, rng: np.random.Generator) -> np.ndarray:
    """Every row of a store up to :data:`DENSITY_SAMPLE`, else that many at random, sorted."""
    return np.arange(n) if n <= DENSITY_SAMPLE else np.unique(rng.integers(0, n, DENSITY_SAMPLE))


def plot_distributions(st: Store, raw: Store | None = None, sample: int = 20_000,
                       rng: np.random.Generator | None = None) -> Figure:
    """Strokes and points per drawing; with a raw store also duration and pen speed.

    Recognized and unrecognized drawings are drawn as separate densities. Values beyond the
    0.1/99.9 percentiles are clipped into the end bins. Strokes, points and durations use
    every drawing of a store up to :data:`DENSITY_SAMPLE` drawings, else that many drawn at
    random (the densities do not change visibly; the memory stays bounded at Kaggle's size);
    pen speed (ink length / pen-down time) a random ``sample`` of raw drawings.
    """
    rng = rng or np.random.default_rng(0)
    fig = Figure(figsize=(11, 7.5 if raw is not None else 3.8), layout="constrained")
    axes = fig.subplots(2 if raw is not None else 1, 2, squeeze=False).ravel()
    some = _density_rows(len(st), rng)
    rec = np.asarray(st.recognized[some])
    s = st.stroke_counts(some)
    hi = max(int(np.quantile(s, 0.999)) if len(s) else 1, 1)
    of = "" if len(some) == len(st) else f"; {len(some):,} of {len(st):,} drawings"
    _density(axes[0], s.astype(np.float64), rec, np.arange(0.5, hi + 1.5), log=False)
    axes[0].set(xlabel=f"strokes per drawing (clipped at {hi}{of})", ylabel="density")
    p = st.point_counts(some).astype(np.float64)
    _density(axes[1], p, rec, _log_bins(p, integer=True), log=True)
    axes[1].set(xlabel=f"points per drawing ({st.kind}, log scale{of})", ylabel="density")
    if raw is not None:
        some_raw = _density_rows(len(raw), rng)
        rrec = np.asarray(raw.recognized)
        d = durations_s(raw, some_raw)
        _density(axes[2], d, rrec[some_raw], _log_bins(d), log=True)
        axes[2].set(xlabel="duration, first to last point (s, log scale)", ylabel="density")
        idx = np.sort(rng.choice(len(raw), size=min(sample, len(raw)), replace=False))
        v = pen_speed(raw.drawings(idx))
        _density(axes[3], v, rrec[idx], _log_bins(v), log=True)
        axes[3].set(xlabel=f"pen speed (px/s, log scale; {len(idx):,} drawings)", ylabel="density")
    fig.suptitle("Per-drawing distributions, recognized vs unrecognized")
    return fig


# --------------------------------------------------------------------------- drawings

def draw_drawing(ax: Axes, d: Drawings, i: int, lw: float = 1.5, title: str | None = None) -> None:
    """Draw drawing ``i`` of a batch on ``ax``: one line per stroke, each its own colour, y down."""
    for k, stroke in enumerate(d.strokes(i)):
        ax.plot(stroke[:, 0].astype(np.float64), stroke[:, 1].astype(np.float64), color=f"C{k % 10}", lw=lw,
                solid_capstyle="round", marker="o" if len(stroke) == 1 else None, ms=lw)
    ax.set_aspect("equal", adjustable="datalim")
    ax.invert_yaxis()
    ax.set_xticks([])
    ax.set_yticks([])
    for side in ax.spines.values():
        side.set_color("0.85")
    if title:
        ax.set_title(title, fontsize=8)


def _sample(candidates: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    return np.sort(rng.choice(candidates, size=min(n, len(candidates)), replace=False))


def _grid(nrows: int, ncols: int, cell: float = 1.7) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(max(ncols, 2) * cell, nrows * cell + 0.6), layout="constrained")
    return fig, fig.subplots(nrows, ncols, squeeze=False)


def _caption(country: str, strokes: int) -> str:
    return f"{country or '?'} · {strokes} stroke{'s' if strokes != 1 else ''}"


def plot_examples(st: Store, word: str, recognized: bool, n: int = 12,
                  rng: np.random.Generator | None = None, ncols: int = 6) -> Figure:
    """A grid of up to ``n`` random drawings of ``word``, recognized or not.

    One Axes per drawing shown (fewer than ``n`` when the class has fewer such drawings),
    titled with the country and the number of strokes.
    """
    rng = rng or np.random.default_rng(0)
    pool = np.flatnonzero((st.labels() == st.words.index(word)) & (np.asarray(st.recognized) == int(recognized)))
    idx = _sample(pool, n, rng)
    ncols = max(1, min(ncols, len(idx)))
    fig, axes = _grid(max(1, math.ceil(len(idx) / ncols)), ncols)
    d, meta = st.drawings(idx), st.meta(idx)
    for k, ax in enumerate(axes.ravel()):
        if k < len(idx):
            draw_drawing(ax, d, k, title=_caption(meta.countrycode[k], len(d.strokes(k))))
        else:
            fig.delaxes(ax)
    what = "recognized" if recognized else "unrecognized"
    fig.suptitle(f"“{word}”, {what}: {len(idx)} of {len(pool):,} drawings")
    return fig


def plot_by_country(st: Store, word: str, countries: Sequence[str], n: int = 6,
                    rng: np.random.Generator | None = None, recognized: bool | None = None) -> Figure:
    """Random drawings of ``word``: one row per country, ``n`` columns (blank where fewer).

    Args:
        recognized: only recognized (True) or unrecognized (False) drawings; None: all.
    """
    rng = rng or np.random.default_rng(0)
    fig, axes = _grid(max(len(countries), 1), n)
    keep = st.labels() == st.words.index(word)
    if recognized is not None:
        keep &= np.asarray(st.recognized) == int(recognized)
    country = np.asarray(st.country)
    for row, c in zip(axes, countries):
        code = st.countries.index(c) if c in st.countries else -1
        pool = np.flatnonzero(keep & (country == code))
        idx = _sample(pool, n, rng)
        d = st.drawings(idx)
        for k, ax in enumerate(row):
            if k < len(idx):
                draw_drawing(ax, d, k)
            else:
                ax.axis("off")
        row[0].set_title(f"{c or '(none)'}: {len(idx)} of {len(pool):,}", fontsize=9, loc="left")
    what = {None: "", True: ", recognized", False: ", unrecognized"}[recognized]
    fig.suptitle(f"“{word}” by country{what}")
    return fig
