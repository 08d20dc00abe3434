"""The exported model's preprocessing in plain numpy: a reference to port to another language.

An ONNX model written by ``doodle export RUN model.onnx`` takes tensors, not drawings. What
turns a drawing into those tensors is written in its metadata (key ``doodle``, JSON: the
words, the countries, the store ``kind``, the ``input``, the render ``variant`` and settings,
the point budget) and, here, done: Google's form in (a list of strokes ``[xs, ys]`` or
``[xs, ys, ts]``), the graph's inputs out. This file imports numpy and the standard library
only and nothing of the suite, so it can be copied beside a client as it is, read as a
specification, or ported line by line (loops over strokes and segments, no batching tricks).
Run as a script it is a complete client with ONNX Runtime::

    python reference_preprocessing.py model.onnx drawings.ndjson [--top 3]

Steps (:func:`model_inputs` runs them for a list of drawings):

1. :func:`prepare`: bring each drawing to the form the model was trained on. ``kind``
   ``"simplified"``: Google's simplification (:func:`simplify`: align to 0, scale the longer
   side to 255, resample at 1 px, Ramer-Douglas-Peucker at 2.0, round half to even), unless
   the drawing is already integers in 0..255 without times; ``"timed"``: the same points, each
   with its time; ``"raw"``: the points as drawn, aligned and scaled to 0..255 (float).
2. ``input == "image"``: :func:`render` draws every segment with an anti-aliased pen in the
   variant's colours (``mono``, ``palette`` with the metadata's 256-colour ``palette`` table,
   ``strokes3``, ``time3``), later strokes over earlier ones, and scales to 0..1
   (``float32 (N, C, size, size)``). ``input == "points"``: :func:`point_features` gives
   ``float32 (N, points, 8)`` features and a ``bool (N, points)`` mask.
3. ``country``: the index of the drawing's country code in ``countries``, ``len(countries)``
   when unknown or not given (``int64 (N,)``).

The graph outputs ``probabilities`` (softmax, ``float32 (N, len(words))``).

Agreement with the suite (tests/test_reference_preprocessing.py, tests/test_onnx.py):
:func:`simplify` equals the suite's compiled pipeline bit for bit, and Google's own simplified
files on the real sample; :func:`point_features` equals the loader's features (float32, to
1e-6); :func:`render` follows the pen rules of the suite's numba and torch engines and equals
the numba engine's pixels (the rare one-level differences come from float rounding). Those
engines approximate OpenCV's anti-aliased lines, which the CPU training path draws: against
OpenCV only pixels at line edges differ (mean absolute difference about 1-2 levels of 255 at
64 px, falling as 1/size). Against ``doodle predict`` on the same exported model and
drawings, this client's probabilities are the same numbers for the point model and within
0.001 for an image model on the tests' drawings (so only near-ties can swap ranks).

Why a second implementation: the suite's own preprocessing is vectorised over CSR-packed
batches and compiled (numba, torch, Triton), which no client in JavaScript, Swift or Kotlin can
read off; ONNX has no operator for drawing thick anti-aliased lines, so the rendering cannot be
exported into the graph.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Sequence

import numpy as np

EPSILON = 2.0  # Google's Ramer-Douglas-Peucker tolerance, in 0..255 pixels
FEATURES = ("x", "y", "dx", "dy", "time", "dt", "pen_down", "stroke_end")  # the point model's columns


# --------------------------------------------------------------------------- 1. the training form

def simplify(strokes: Sequence[np.ndarray], times: Sequence[np.ndarray] | None = None):
    """Google's raw -> simplified pipeline for one drawing, as plainly as possible: every
    resampled point materialised, then RDP over all of them (the recursive ``rdp`` package's
    rules), then rounding. ``strokes``: (n, 2) float arrays of raw points.

    Returns one int64 (m, 2) array per stroke; with ``times`` (one array of raw times per
    stroke) also each kept point's time (interpolated on its raw segment at the position's
    fraction, the stroke's first raw time for its first point and its last for the last,
    rounded): ``(points, times)``. Steps and the tie rules: :mod:`doodle_utils.data.simplify`.
    """
    pts = np.concatenate(strokes)
    mn = pts.min(axis=0)
    ext = (pts.max(axis=0) - mn).max()
    out, out_t = [], []
    for si, a in enumerate(strokes):
        v = (a - mn) * 255.0 / ext if ext > 0 else a - mn  # this operation order breaks ties as Google's
        n = len(v)
        tr = None if times is None else np.asarray(times[si], dtype=np.float64)
        if n == 1:
            r = v[[0, 0]]
            rt = None if tr is None else tr[[0, 0]]
        else:  # points at arc length 0, 1, 2, ... (< the stroke's length), then its last point
            d = np.diff(v, axis=0)
            seg = np.sqrt(d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1])
            cum = np.concatenate([[0.0], np.cumsum(seg)])
            s = np.arange(0.0, cum[-1], 1.0)
            if len(s) == 0:
                s = np.zeros(1)
            g = np.minimum(np.searchsorted(cum, s, side="right") - 1, n - 2)
            with np.errstate(divide="ignore", invalid="ignore"):
                t = np.where(seg[g] > 0, (s - cum[g]) / seg[g], 0.0)[:, None]
            r = np.vstack([v[g] * (1.0 - t) + v[g + 1] * t, v[-1]])
            if tr is not None:
                rt = np.concatenate([tr[g] + (tr[g + 1] - tr[g]) * t[:, 0], tr[-1:]])
                rt[0] = tr[0]
        keep = np.zeros(len(r), bool)
        keep[[0, -1]] = True
        stack = [(0, len(r) - 1)]
        while stack:
            i, j = stack.pop()
            if j - i < 2:
                continue
            (sx, sy), p = r[i], r[i + 1:j]
            cx, cy = r[j] - r[i]
            if cx == 0 and cy == 0:
                dist = np.sqrt((p[:, 0] - sx) * (p[:, 0] - sx) + (p[:, 1] - sy) * (p[:, 1] - sy))
            else:
                cross = cx * (sy - p[:, 1]) - cy * (sx - p[:, 0])
                dist = np.abs(cross) / np.sqrt(cx * cx + cy * cy)
            k = int(np.argmax(dist))  # the first of equal maxima
            if dist[k] > EPSILON:
                keep[i + 1 + k] = True
                stack += [(i, i + 1 + k), (i + 1 + k, j)]
        out.append(np.round(r[keep]).astype(np.int64))
        if tr is not None:
            out_t.append(np.round(rt[keep]).astype(np.int64))
    return out if times is None else (out, out_t)


def prepare(drawing: Sequence, meta: dict) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
    """One drawing in Google's form -> (strokes as float64 (n, 2) arrays in the 0..255 frame,
    their times or None), in the form of the model's training store (``meta["kind"]``).

    ValueError when the drawing is malformed, or lacks times the model reads."""
    if not isinstance(drawing, (list, tuple)):
        raise ValueError(f"expected a list of strokes [xs, ys] or [xs, ys, ts], got {type(drawing).__name__}")
    strokes = []
    for j, st in enumerate(drawing):
        try:
            a = np.asarray(st, dtype=np.float64)
        except (TypeError, ValueError):  # ragged lists, strings
            a = np.zeros(0)
        if a.ndim != 2 or a.shape[0] not in (2, 3) or a.shape[1] == 0 or not np.isfinite(a).all():
            raise ValueError(f"stroke {j}: expected [xs, ys] or [xs, ys, ts] of equal, non-zero length")
        strokes.append(a)
    if not strokes:
        raise ValueError("a drawing needs at least one stroke")
    widths = {a.shape[0] for a in strokes}
    if len(widths) > 1:
        raise ValueError("strokes mix [xs, ys] and [xs, ys, ts]")
    xy = [a[:2].T for a in strokes]
    times = [a[2] for a in strokes] if widths == {3} else None
    kind = meta["kind"]
    if kind not in ("simplified", "timed", "raw"):
        raise ValueError(f"unknown store kind {kind!r} in the model's metadata")
    if kind in ("timed", "raw") and times is None:
        if meta["times_needed"]:
            raise ValueError(f"this model reads each point's time (trained on a {kind!r} store): "
                             f"give strokes as [xs, ys, ts]")
        kind = "simplified"
    if kind == "simplified":
        simple = times is None and all(((a == np.round(a)) & (a >= 0) & (a <= 255)).all() for a in xy)
        return ([a.copy() for a in xy] if simple else [s.astype(np.float64) for s in simplify(xy)]), None
    if kind == "timed":
        pts, ts = simplify(xy, times)
        return [s.astype(np.float64) for s in pts], [t.astype(np.float64) for t in ts]
    # raw: as drawn, each drawing's minimum moved to 0 and its longer side scaled to 255
    allp = np.concatenate(xy)
    lo = allp.min(axis=0)
    ext = (allp.max(axis=0) - lo).max()
    factor = 255.0 / ext if ext > 0 else 0.0
    return [(a - lo) * factor for a in xy], times


# --------------------------------------------------------------------------- 2a. images

def _ramp(pos: float, total: float, lo: float = 32.0, hi: float = 255.0) -> int:
    """lo -> hi as pos goes 0 -> total - 1 (hi when total is 1), rounded half to even."""
    frac = pos / max(total - 1, 1) if total > 1 else 1.0
    return int(np.rint(lo + (hi - lo) * frac))


def _segment_values(strokes: list[np.ndarray], times: list[np.ndarray] | None, meta: dict):
    """Every segment of the drawing in drawing order: (start point, end point, stroke, values).
    A stroke of n > 1 points has segments i -> i + 1; a one-point stroke a dot (p -> p)."""
    variant, spec = meta["variant"], meta["render"]
    n_strokes = len(strokes)
    if variant == "time3":
        if times is None:
            raise ValueError("time3 needs drawings with times")
        t0 = times[0][0]
        dur = max(times[-1][-1] - t0, 1.0)
    out = []
    for s, (a, ts) in enumerate(zip(strokes, times or [None] * n_strokes)):
        n = len(a)
        for i in range(max(n - 1, 1)):
            j = i + 1 if n > 1 else i
            if variant == "mono":
                vals = [255 - 13 * min(s, 10) if spec["fade"] else 255]
            elif variant == "palette":
                vals = list(meta["palette"][_ramp(s, n_strokes, 0, 255)])
            elif variant == "strokes3":
                vals = [255, _ramp(i, n - 1), _ramp(s, n_strokes)]
            elif variant == "time3":
                speed = math.hypot(*(a[j] - a[i])) / max(ts[j] - ts[i], 1.0)  # 0..255 units per ms
                vals = [_ramp(ts[i] - t0, dur + 1), int(np.rint(32 + 223 * min(max(speed / 2.0, 0.0), 1.0))),
                        _ramp(s, n_strokes)]
            else:
                raise ValueError(f"unknown render variant {variant!r}")
            out.append((a[i], a[j], s, vals))
    return out


def _pen(thickness: int) -> tuple[np.float32, np.float32]:
    """OpenCV's anti-aliased line of this thickness (canvas pixels): (reach, slope) of the
    coverage ``clip((reach - distance) * slope, 0, 1)``; fitted to OpenCV on whole drawings."""
    if thickness == 1:
        return np.float32(1.15), np.float32(1.0)
    half = (thickness + (thickness & 1)) / 2  # OpenCV widens an odd line's polygon to (t + 1) / 2
    return np.float32(half + 1.25), np.float32(0.9)


def _coverage(p0: np.ndarray, p1: np.ndarray, reach: np.float32, slope: np.float32, canvas: int):
    """The 8-bit coverage (0..255) of one segment on the pixels of its bounding box (grown by
    the pen's reach): (coverage, row slice, column slice). float32 throughout; the end points
    are rounded to 1/16 pixel (OpenCV's 4 fractional bits); pixel (x, y) is at its integer
    coordinates."""
    f16 = np.float32(16)
    x0, y0 = np.rint(np.float32(p0[0]) * f16) / f16, np.rint(np.float32(p0[1]) * f16) / f16
    x1, y1 = np.rint(np.float32(p1[0]) * f16) / f16, np.rint(np.float32(p1[1]) * f16) / f16
    dx, dy = x1 - x0, y1 - y0
    len2 = dx * dx + dy * dy
    inv_len2 = np.float32(1) / len2 if len2 > 0 else np.float32(0)
    c0, c1 = max(math.floor(min(x0, x1) - reach), 0), min(math.ceil(max(x0, x1) + reach), canvas - 1)
    r0, r1 = max(math.floor(min(y0, y1) - reach), 0), min(math.ceil(max(y0, y1) + reach), canvas - 1)
    px = np.arange(c0, c1 + 1, dtype=np.float32)[None, :] - x0
    py = np.arange(r0, r1 + 1, dtype=np.float32)[:, None] - y0
    tau = np.clip((px * dx + py * dy) * inv_len2, np.float32(0), np.float32(1))  # nearest point on the segment
    ex, ey = px - tau * dx, py - tau * dy
    cover = (reach - np.sqrt(ex * ex + ey * ey)) * slope
    q = np.rint(np.clip(cover, np.float32(0), np.float32(1)) * np.float32(255)).astype(np.int64)
    return q, slice(r0, r1 + 1), slice(c0, c1 + 1)


def _area_resize(img: np.ndarray, size: int) -> np.ndarray:
    """(C, canvas, canvas) uint8 -> (C, size, size) by area averaging (OpenCV's INTER_AREA):
    each output pixel the mean of the canvas pixels it covers, rounded half to even (exact
    integer arithmetic for integer factors; fractional overlaps weighted otherwise)."""
    canvas = img.shape[1]
    if canvas % size == 0:
        f = canvas // size
        total = img.astype(np.int64).reshape(img.shape[0], size, f, size, f).sum(axis=(2, 4))
        area = f * f
        level, rest = total // area, total % area
        return (level + ((2 * rest > area) | ((2 * rest == area) & (level % 2 == 1)))).astype(np.uint8)
    w = np.zeros((size, canvas))  # w[o, i]: the share of canvas pixel i in output pixel o
    step = canvas / size
    for o in range(size):
        lo, hi = o * step, (o + 1) * step
        for i in range(int(math.floor(lo)), min(int(math.ceil(hi)), canvas)):
            w[o, i] = (min(hi, i + 1) - max(lo, i)) / step
    return np.rint(w @ img.astype(np.float64) @ w.T).clip(0, 255).astype(np.uint8)


def render(strokes: list[np.ndarray], times: list[np.ndarray] | None, meta: dict) -> np.ndarray:
    """One prepared drawing -> the image the model reads: float32 (C, size, size) in 0..1.

    Per segment, in drawing order, the pen's coverage q (0..255) of each pixel near it.
    Consecutive segments of one stroke with equal values form a run (what OpenCV draws as one
    polyline): a run inks a pixel with its largest q. Later runs cover earlier ones; each
    pixel keeps its top run and the strongest one beneath it (on equal q, the later), and is
    ``top * w1 + beneath * w2 * (1 - w1)`` with ``w = q / 255`` in float32, rounded half to
    even. With ``base`` the drawing is made on that canvas and area-averaged to ``size``.
    """
    spec = meta["render"]
    if not spec["antialias"]:
        raise ValueError("this reference draws anti-aliased lines only (the suite trains with them)")
    size = spec["size"]
    canvas = spec["base"] or size
    pad = spec["pad"] * canvas / size
    scale = (canvas - 1 - 2 * pad) / 255.0
    reach, slope = _pen(max(1, int(round(spec["line_width"] * canvas / size))))
    segs = _segment_values(strokes, times, meta)
    channels = len(segs[0][3])
    values = np.asarray([v for *_, v in segs], np.float32)
    top_q = np.zeros((canvas, canvas), np.int64)  # 0: no ink yet
    top_run = np.full((canvas, canvas), -1)
    low_q = np.zeros((canvas, canvas), np.int64)
    low_run = np.full((canvas, canvas), -1)
    run_value = []  # each run's channel values
    for k, (a, b, stroke, _) in enumerate(segs):
        if k == 0 or stroke != segs[k - 1][2] or (values[k] != values[k - 1]).any():
            run_value.append(values[k])
        run = len(run_value) - 1
        p0 = (a * scale + pad).astype(np.float32)  # canvas pixels
        p1 = (b * scale + pad).astype(np.float32)
        q, rows, cols = _coverage(p0, p1, reach, slope, canvas)
        tq, tr, lq, lr = top_q[rows, cols], top_run[rows, cols], low_q[rows, cols], low_run[rows, cols]
        inked = q > 0
        again = inked & (tr == run)  # the same run: its largest coverage
        pushed = inked & (tr != run) & (tq > 0)  # a later run: the old top may become the layer beneath
        beneath = pushed & (tq >= lq)
        lq[beneath], lr[beneath] = tq[beneath], tr[beneath]
        tq[again] = np.maximum(tq[again], q[again])
        fresh = inked & ~again
        tq[fresh], tr[fresh] = q[fresh], run
    run_value = np.asarray(run_value, np.float32)
    img = np.zeros((channels, canvas, canvas), np.uint8)
    ink = top_q > 0
    w1 = top_q[ink].astype(np.float32) / np.float32(255)
    w2 = (low_q[ink].astype(np.float32) / np.float32(255)) * (np.float32(1) - w1)
    v1 = run_value[top_run[ink]]
    v2 = np.where((low_run[ink] >= 0)[:, None], run_value[np.maximum(low_run[ink], 0)], v1)
    img[:, ink] = np.rint(v1 * w1[:, None] + v2 * w2[:, None]).T.astype(np.uint8)
    if canvas != size:
        img = _area_resize(img, size)
    return img.astype(np.float32) / np.float32(255)


# --------------------------------------------------------------------------- 2b. points

def _even(count: int, budget: int) -> np.ndarray:
    """At most ``budget`` of ``count`` items, evenly spaced, first and last kept (indices)."""
    k = min(count, budget)
    step = (count - 1) / max(k - 1, 1) if k > 1 else 0.0
    return np.rint(np.arange(k) * step).astype(np.int64)


def point_features(strokes: list[np.ndarray], times: list[np.ndarray] | None, meta: dict):
    """One prepared drawing -> (float32 (points, 8) features, bool (points,) mask).

    Which points (``meta["resample"]``): ``"length"`` keeps every stroke's first and last point
    and spreads the rest of the budget at equal arc-length steps along the pen-down path
    (interpolated), in drawing order, then thins evenly if still over the budget; ``"index"``
    keeps the drawing's own points, evenly thinned. Columns (:data:`FEATURES`): x, y / 255;
    the move from the previous kept point (0 for the first); time since the first point over
    the drawing's duration (with times), else (stroke index + position along the stroke) /
    strokes; its change; pen down (0 at a stroke's first point); stroke end.
    """
    budget = meta["points"]
    xy = np.concatenate(strokes)
    stroke = np.concatenate([np.full(len(a), s) for s, a in enumerate(strokes)])
    if times is not None:
        t = np.concatenate(times).astype(np.float64)
        time = (t - t.min()) / max(t.max() - t.min(), 1.0)
    else:
        time = np.concatenate([(s + np.arange(len(a)) / max(len(a) - 1, 1)) / len(strokes)
                               for s, a in enumerate(strokes)])
    if meta["resample"] == "index":
        keep = _even(len(xy), budget)
        sel_xy, sel_time, sel_stroke = xy[keep], time[keep], stroke[keep]
    else:
        first = np.r_[0, np.cumsum([len(a) for a in strokes])[:-1]]  # each stroke's first point
        same = np.r_[stroke[1:] == stroke[:-1], False]  # point i and i + 1 on one stroke
        seg = np.zeros(len(xy))
        seg[:-1] = np.where(same[:-1], np.hypot(*(xy[1:] - xy[:-1]).T), 0.0)
        arc = np.r_[0.0, np.cumsum(seg)[:-1]]  # pen-down distance before each point
        total = arc[-1]
        starts = set(first.tolist())
        ends = [f + len(a) - 1 for f, a in zip(first, strokes) if len(a) > 1]
        m = max(budget - len(first) - len(ends), 0) if total > 0 else 0
        rows = [(0, arc[f], stroke[f], xy[f], time[f]) for f in first]  # (kind, arc, stroke, xy, time)
        rows += [(2, arc[e], stroke[e], xy[e], time[e]) for e in ends]
        for j in range(m):
            u = total * j / max(m - 1, 1)
            p = min(int(np.searchsorted(arc, u, side="right")) - 1, len(xy) - 1)
            w = min(max((u - arc[p]) / seg[p], 0.0), 1.0) if same[p] and seg[p] > 0 else 0.0
            if w == 0 and (p in starts or not same[p]):
                continue  # on a stroke's first or last point, which is kept anyway
            nxt = min(p + 1, len(xy) - 1)
            rows.append((1, arc[p] + w * seg[p], stroke[p], xy[p] + w * (xy[nxt] - xy[p]),
                         time[p] + w * (time[nxt] - time[p])))
        rows.sort(key=lambda r: (r[2], r[1], r[0]))  # by stroke, then along it; a start before a sample
        rows = [rows[i] for i in _even(len(rows), budget)]
        sel_stroke = np.array([r[2] for r in rows])
        sel_xy, sel_time = np.array([r[3] for r in rows]), np.array([r[4] for r in rows], np.float64)
    n = len(sel_xy)
    pos = (sel_xy / 255.0).astype(np.float32)
    prev = np.r_[pos[:1], pos[:-1]]
    new_stroke = np.r_[True, sel_stroke[1:] != sel_stroke[:-1]]
    end_stroke = np.r_[sel_stroke[1:] != sel_stroke[:-1], True]
    dt = np.r_[0.0, sel_time[1:] - sel_time[:-1]]
    feats = np.zeros((budget, len(FEATURES)), np.float32)
    feats[:n] = np.column_stack([pos, pos - prev, sel_time, dt, ~new_stroke, end_stroke]).astype(np.float32)
    mask = np.zeros(budget, bool)
    mask[:n] = True
    return feats, mask


# --------------------------------------------------------------------------- 3. the graph's inputs

def model_inputs(drawings: Sequence[Sequence], meta: dict, countrycodes: Sequence[str | None] | None = None,
                 names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Drawings in Google's form (and their country codes) -> the exported graph's inputs by
    name (``meta["inputs"]``), ready for ``session.run``. ValueError naming the drawing
    (``names[i]``, else ``drawing i``) that cannot be prepared."""
    codes = {c: k for k, c in enumerate(meta["countries"])}
    country = np.array([codes.get(c, len(codes)) for c in (countrycodes or [None] * len(drawings))], np.int64)
    prepared = []
    for i, d in enumerate(drawings):
        try:
            prepared.append(prepare(d, meta))
        except ValueError as e:
            raise ValueError(f"{names[i] if names else f'drawing {i}'}: {e}") from None
    if meta["input"] == "points":
        pairs = [point_features(s, t, meta) for s, t in prepared]
        return {"features": np.stack([f for f, _ in pairs]), "mask": np.stack([m for _, m in pairs]),
                "country": country}
    return {"image": np.stack([render(s, t, meta) for s, t in prepared]), "country": country}


def top_words(probs: np.ndarray, words: Sequence[str], top: int = 3) -> list[list[tuple[str, float]]]:
    """Per drawing, the ``top`` most probable words with their probabilities (ties: lower class first)."""
    order = np.argsort(-probs, axis=1, kind="stable")[:, :top]
    return [[(words[c], float(p[c])) for c in row] for row, p in zip(order, probs)]


def main(argv: Sequence[str] | None = None) -> int:
    """A complete client: an exported model, an ndjson file of drawings (one per line: a
    Google row with ``drawing`` and optionally ``countrycode`` and ``key_id``, or a bare stroke
    list) -> a CSV of the top words on standard output."""
    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("model", help="an ONNX model written by `doodle export`")
    ap.add_argument("drawings", help="ndjson: one drawing per line")
    ap.add_argument("--top", type=int, default=3)
    args = ap.parse_args(argv)
    if args.top < 1:
        ap.error(f"--top must be at least 1, got {args.top}")
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
        meta = json.loads(session.get_modelmeta().custom_metadata_map["doodle"])
    except Exception as e:  # ONNX Runtime's own exception types; a model without the metadata
        print(f"error: {args.model}: not a model written by `doodle export` ({str(e).splitlines()[0]})",
              file=sys.stderr)
        return 2
    ids, drawings, codes, lines = [], [], [], []
    try:
        with open(args.drawings, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError as e:
                    raise ValueError(f"line {n}: not JSON ({e})") from None
                row = row if isinstance(row, dict) else {"drawing": row}
                if "drawing" not in row:
                    raise ValueError(f"line {n}: a row without a 'drawing' key")
                ids.append(str(row.get("key_id", n)))
                drawings.append(row["drawing"])
                codes.append(row.get("countrycode"))
                lines.append(f"line {n}")
        if not drawings:
            raise ValueError("no drawings")
        inputs = model_inputs(drawings, meta, codes, lines)
    except (OSError, ValueError) as e:
        print(f"error: {args.drawings}: {e.strerror if isinstance(e, OSError) else e}", file=sys.stderr)
        return 2
    probs = session.run([meta["output"]], inputs)[0]
    words = meta["words"]
    print("key_id," + ",".join(f"word_{k + 1},prob_{k + 1}" for k in range(args.top)))  # as `doodle predict`
    for i, row in zip(ids, top_words(probs, words, args.top)):
        print(i + "," + ",".join(f"{w},{p:.4f}" for w, p in row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
