"""Google's raw -> simplified Quick, Draw! pipeline, reproduced bit for bit, plus an oracle check.

Google describes its ``full/simplified`` files as (https://github.com/googlecreativelab/quickdraw-dataset):
align the drawing to the top-left corner (minimum 0), uniformly scale it to a maximum of 255,
resample all strokes with 1-pixel spacing, simplify every stroke with Ramer-Douglas-Peucker at
epsilon 2.0. Its code is not published (quickdraw-dataset issue #33). The details below were
settled by trying variants against the pairs in ``../shared/quickdraw_sample`` (raw and Google's
simplified drawing of the same ``key_id``); with them all 1,124 pairs come out identical:

1. Scale: ``x' = ((x - min_x) * 255) / extent`` in float64, likewise ``y'``, where ``min_x``,
   ``min_y`` are the drawing's per-axis minima and ``extent = max(width, height)`` (one factor for
   both axes, so only the longer side reaches 255). The operation order matters for ties in step 3.
   A drawing whose points all coincide (extent 0) maps to the origin instead of dividing by zero.
2. Resample each stroke by arc length: points at distances 0, 1, 2, ... (< total length) along the
   polyline, each as ``a * (1 - t) + b * t`` on its segment ``a -> b``, then the stroke's last raw
   point. The raw vertices themselves are not kept (only first and last). A stroke of one point,
   or of zero length, becomes two copies of its point.
3. RDP with the recursive ``rdp`` package's rules (https://github.com/fhirschmann/rdp):
   perpendicular distance to the infinite line through the sub-range's end points
   (``|cross| / norm``; distance to the point when they coincide), the first of equal maxima,
   split only when the maximum is strictly greater than 2.0, and always at least two points out.
4. Round to the nearest integer, halves to even (``numpy.round``), after RDP. No de-duplication.

Exact floating-point ties are common (raw coordinates are often integers, so resampled points on
a raw segment parallel to a chord are equidistant from it); the order of operations above is what
breaks them the way Google's pipeline did.

Why hand-written: the ``rdp`` package (PyPI) is pure Python, one interpreted loop step and one
small numpy call per point and per recursion level, and simplifies one stroke at a time -- far too
slow for 50 million drawings. ``simplification`` (Rust, PyPI) does RDP fast but on one polyline per
call, with no arc-length resampling or Google's scaling/rounding, and its tie-breaking and
distance arithmetic are not Google's, so agreement would not be exact. Here one numba pass runs
over a whole CSR-packed batch. It never materialises the resampled points: on one raw segment the
distance to a chord is a convex (|affine|) function of the resample index, so only the first and
last resampled point of each segment can be the maximum, and the segment's points are evaluated
one by one only when it is (numerically) parallel to the chord -- the tie case. The values
compared are computed exactly as in the dense algorithm, so the result is identical.
"""
from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Sequence

import numba
import numpy as np

EPSILON = 2.0
SCALE_MAX = 255.0
# A raw segment whose cross product with the chord changes by less than this per resample step
# (units: px^2) is treated as parallel and evaluated point by point. The arithmetic noise of one
# cross product of 0..255 coordinates is below 1e-9, so a slope above this cannot hide a maximum
# in the segment's interior.
_PARALLEL_TOL = 1e-6


@numba.njit(cache=True, inline="always")
def _point(k, vx, vy, cum, seglen, n, count, g):
    """Resampled point ``k`` of a stroke (``g``: its segment; ``k == count`` is the last point)."""
    if k >= count:
        return vx[n - 1], vy[n - 1]
    L = seglen[g]
    if L == 0.0:
        return vx[g], vy[g]
    t = (k - cum[g]) / L
    return vx[g] * (1.0 - t) + vx[g + 1] * t, vy[g] * (1.0 - t) + vy[g + 1] * t


@numba.njit(cache=True, inline="always")
def _seg_of(k, kstart, n):
    """Largest segment ``g`` in ``[0, n - 2]`` with ``kstart[g] <= k`` (binary search)."""
    lo = 0
    hi = n - 2
    while lo < hi:
        mid = (lo + hi + 1) >> 1
        if kstart[mid] <= k:
            lo = mid
        else:
            hi = mid - 1
    return lo


@numba.njit(cache=True, inline="always")
def _to_u8(v):
    r = np.rint(v)  # round half to even, like numpy.round
    if r < 0.0:
        r = 0.0
    elif r > 255.0:
        r = 255.0
    return np.uint8(r)


@numba.njit(cache=True)
def _simplify_kernel(xy, stroke_offsets, drawing_offsets, eps):
    n_strokes = stroke_offsets.shape[0] - 1
    n_draw = drawing_offsets.shape[0] - 1
    cap = xy.shape[0] + 2 * n_strokes + 16
    out = np.empty((cap, 2), dtype=np.uint8)
    out_so = np.empty(n_strokes + 1, dtype=np.int64)
    out_so[0] = 0
    q = 0

    nmax = 1
    for s in range(n_strokes):
        ln = stroke_offsets[s + 1] - stroke_offsets[s]
        if ln > nmax:
            nmax = ln
    vx = np.empty(nmax)
    vy = np.empty(nmax)
    cum = np.empty(nmax)
    seglen = np.empty(nmax)
    kstart = np.empty(nmax, dtype=np.int64)
    stack = np.empty(256, dtype=np.int64)

    for d in range(n_draw):
        s0 = drawing_offsets[d]
        s1 = drawing_offsets[d + 1]
        p0 = stroke_offsets[s0]
        p1 = stroke_offsets[s1]
        mnx = np.inf
        mny = np.inf
        mxx = -np.inf
        mxy = -np.inf
        for p in range(p0, p1):
            x = xy[p, 0]
            y = xy[p, 1]
            mnx = min(mnx, x)
            mxx = max(mxx, x)
            mny = min(mny, y)
            mxy = max(mxy, y)
        ext = max(mxx - mnx, mxy - mny)

        for s in range(s0, s1):
            a = stroke_offsets[s]
            n = stroke_offsets[s + 1] - a
            # 1. align and scale
            for i in range(n):
                if ext > 0.0:
                    vx[i] = ((xy[a + i, 0] - mnx) * 255.0) / ext
                    vy[i] = ((xy[a + i, 1] - mny) * 255.0) / ext
                else:
                    vx[i] = xy[a + i, 0] - mnx
                    vy[i] = xy[a + i, 1] - mny
            if q + n + 2 > out.shape[0]:  # output never exceeds the resampled count; grow lazily
                bigger = np.empty((2 * out.shape[0] + n + 2, 2), dtype=np.uint8)
                bigger[:q] = out[:q]
                out = bigger
            if n == 1:
                u = _to_u8(vx[0])
                w = _to_u8(vy[0])
                out[q, 0] = u
                out[q, 1] = w
                out[q + 1, 0] = u
                out[q + 1, 1] = w
                q += 2
                out_so[s + 1] = q
                continue
            # 2. arc-length resampling (virtual): index k < count is at distance k along the
            # stroke, on segment g = max{g : cum[g] <= k}; index count is the last raw point.
            cum[0] = 0.0
            for g in range(n - 1):
                dx = vx[g + 1] - vx[g]
                dy = vy[g + 1] - vy[g]
                seglen[g] = np.sqrt(dx * dx + dy * dy)
                cum[g + 1] = cum[g] + seglen[g]
            tot = cum[n - 1]
            count = max(int(math.ceil(tot)), 1)
            for g in range(n - 1):
                kstart[g] = min(int(math.ceil(cum[g])), count)
            kstart[n - 1] = count
            last = count  # index of the final point; m = count + 1 points in all

            # 3. RDP over indices 0..last, in order: leaves of the split tree emit their start.
            sp = 0
            stack[0] = 0
            stack[1] = last
            sp = 2
            while sp > 0:
                j = stack[sp - 1]
                i = stack[sp - 2]
                sp -= 2
                if j - i < 2:
                    if q + 2 > out.shape[0]:
                        bigger = np.empty((2 * out.shape[0] + 2, 2), dtype=np.uint8)
                        bigger[:q] = out[:q]
                        out = bigger
                    gi = _seg_of(i, kstart, n)
                    px, py = _point(float(i), vx, vy, cum, seglen, n, count, gi)
                    out[q, 0] = _to_u8(px)
                    out[q, 1] = _to_u8(py)
                    q += 1
                    continue
                gi = _seg_of(i, kstart, n)
                sx, sy = _point(float(i), vx, vy, cum, seglen, n, count, gi)
                gj = _seg_of(j, kstart, n) if j < count else n - 2
                ex, ey = _point(float(j), vx, vy, cum, seglen, n, count, gj)
                cx = ex - sx
                cy = ey - sy
                degenerate = cx == 0.0 and cy == 0.0
                norm = np.sqrt(cx * cx + cy * cy)
                dmax = 0.0
                kbest = -1
                g = _seg_of(i + 1, kstart, n)
                while g <= n - 2 and kstart[g] <= j - 1:
                    lo = max(kstart[g], i + 1)
                    hi = min(kstart[g + 1] - 1, j - 1) if g < n - 2 else min(count - 1, j - 1)
                    if lo <= hi:
                        dense = degenerate
                        if not dense and hi - lo >= 2:
                            ax, ay = _point(float(lo), vx, vy, cum, seglen, n, count, g)
                            bx, by = _point(float(hi), vx, vy, cum, seglen, n, count, g)
                            c_lo = cx * (sy - ay) - cy * (sx - ax)
                            c_hi = cx * (sy - by) - cy * (sx - bx)
                            dense = abs(c_hi - c_lo) <= _PARALLEL_TOL * (hi - lo)
                        k = lo
                        while k <= hi:
                            px, py = _point(float(k), vx, vy, cum, seglen, n, count, g)
                            if degenerate:
                                dd = np.sqrt((px - sx) * (px - sx) + (py - sy) * (py - sy))
                            else:
                                dd = abs(cx * (sy - py) - cy * (sx - px)) / norm
                            if dd > dmax:
                                dmax = dd
                                kbest = k
                            if dense or k == hi:
                                k += 1
                            else:
                                k = hi  # the interior of a non-parallel segment cannot win
                    g += 1
                if dmax > eps:
                    if sp + 4 > stack.shape[0]:
                        bigger_st = np.empty(2 * stack.shape[0], dtype=np.int64)
                        bigger_st[:sp] = stack[:sp]
                        stack = bigger_st
                    stack[sp] = kbest
                    stack[sp + 1] = j
                    stack[sp + 2] = i
                    stack[sp + 3] = kbest
                    sp += 4
                else:
                    if q + 2 > out.shape[0]:
                        bigger = np.empty((2 * out.shape[0] + 2, 2), dtype=np.uint8)
                        bigger[:q] = out[:q]
                        out = bigger
                    out[q, 0] = _to_u8(sx)
                    out[q, 1] = _to_u8(sy)
                    q += 1
            if q + 1 > out.shape[0]:
                bigger = np.empty((2 * out.shape[0] + 2, 2), dtype=np.uint8)
                bigger[:q] = out[:q]
                out = bigger
            out[q, 0] = _to_u8(vx[n - 1])
            out[q, 1] = _to_u8(vy[n - 1])
            q += 1
            out_so[s + 1] = q
    return out[:q].copy(), out_so


def _check_packed(xy: np.ndarray, stroke_offsets: np.ndarray, drawing_offsets: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate a CSR batch; returns contiguous float64/int64 copies or views."""
    xy = np.ascontiguousarray(xy, dtype=np.float64)
    so = np.ascontiguousarray(stroke_offsets, dtype=np.int64)
    do = np.ascontiguousarray(drawing_offsets, dtype=np.int64)
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise ValueError(f"xy must have shape (P, 2), got {xy.shape}")
    if so.ndim != 1 or so.size < 1 or do.ndim != 1 or do.size < 1:
        raise ValueError("stroke_offsets and drawing_offsets must be 1-D with at least one entry")
    if so[0] != 0 or so[-1] != xy.shape[0]:
        raise ValueError(f"stroke_offsets must run from 0 to len(xy) = {xy.shape[0]}, "
                         f"got {so[0]}..{so[-1]}")
    if do[0] != 0 or do[-1] != so.size - 1:
        raise ValueError(f"drawing_offsets must run from 0 to the number of strokes = {so.size - 1}, "
                         f"got {do[0]}..{do[-1]}")
    if np.any(np.diff(so) <= 0):
        raise ValueError(f"empty stroke (no points) at stroke index {int(np.argmax(np.diff(so) <= 0))}")
    if np.any(np.diff(do) <= 0):
        raise ValueError(f"empty drawing (no strokes) at drawing index {int(np.argmax(np.diff(do) <= 0))}")
    if not np.all(np.isfinite(xy)):
        raise ValueError("xy holds non-finite coordinates (nan or inf)")
    return xy, so, do


def simplify_packed(xy: np.ndarray, stroke_offsets: np.ndarray, drawing_offsets: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Simplify a CSR-packed batch of raw drawings the way Google did.

    Args:
        xy: float64 (P, 2), all points of all drawings (x, y).
        stroke_offsets: int64 (S+1,), point index where stroke ``s`` starts; last entry P.
        drawing_offsets: int64 (D+1,), stroke index where drawing ``d`` starts; last entry S.

    Returns:
        ``(xy_out, stroke_offsets_out, drawing_offsets_out)``: uint8 (Q, 2) points, int64 (S+1,)
        and int64 (D+1,) offsets; every stroke keeps its place and has at least two points.

    Raises:
        ValueError: malformed offsets, an empty stroke or drawing, or non-finite coordinates.
    """
    xy, so, do = _check_packed(xy, stroke_offsets, drawing_offsets)
    out, out_so = _simplify_kernel(xy, so, do, EPSILON)
    return out, out_so, do.copy()


def simplify_strokes(strokes: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Simplify one raw drawing the way Google did.

    Args:
        strokes: each a float array of shape (n, 2) (x, y) or (n, 3) (x, y, t; t is ignored).

    Returns:
        One uint8 array of shape (m, 2) per stroke, m >= 2.

    Raises:
        ValueError: no strokes, an empty or wrongly shaped stroke, or non-finite coordinates.
    """
    if len(strokes) == 0:
        raise ValueError("drawing has no strokes")
    parts = []
    for i, st in enumerate(strokes):
        a = np.asarray(st, dtype=np.float64)
        if a.ndim != 2 or a.shape[1] not in (2, 3):
            raise ValueError(f"stroke {i} must have shape (n, 2) or (n, 3), got {a.shape}")
        if a.shape[0] == 0:
            raise ValueError(f"stroke {i} has no points")
        parts.append(a[:, :2])
    so = np.zeros(len(parts) + 1, dtype=np.int64)
    so[1:] = np.cumsum([len(a) for a in parts])
    out, out_so, _ = simplify_packed(np.concatenate(parts), so, np.array([0, len(parts)], dtype=np.int64))
    return [out[out_so[i]:out_so[i + 1]] for i in range(len(parts))]


def _read_ndjson_drawings(folder: Path) -> dict[str, list]:
    found: dict[str, list] = {}
    for path in sorted(Path(folder).glob("*.ndjson")):
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    row = json.loads(line)
                    found[str(row["key_id"])] = row["drawing"]
    return found


def agreement_report(raw_dir: Path, simplified_dir: Path, max_examples: int = 5) -> dict:
    """Pair drawings by key_id, simplify the raw ones, and compare with Google's simplified ones.

    Args:
        raw_dir: folder of Google raw ``*.ndjson`` files.
        simplified_dir: folder of Google simplified ``*.ndjson`` files.
        max_examples: how many differing key_ids to list.

    Returns:
        ``simplified`` (drawings read there), ``unpaired`` (those without a raw twin), ``pairs``,
        ``exact`` / ``exact_fraction``, ``differing`` (count) and ``breakdown``: drawings whose
        stroke count differs, whose point counts differ (same stroke count), or whose coordinates
        differ with equal shapes; ``strokes_differing``, ``points_differing`` (equal-shape strokes),
        ``max_coord_diff`` and example key_ids.
    """
    raw = _read_ndjson_drawings(Path(raw_dir))
    simp = _read_ndjson_drawings(Path(simplified_dir))
    keys = [k for k in simp if k in raw]
    if not keys:
        raise ValueError(f"no key_id of {simplified_dir} is found in {raw_dir}")
    xy_parts, lens, n_strokes = [], [], []
    for k in keys:
        d = raw[k]
        n_strokes.append(len(d))
        for st in d:
            xy_parts.append(np.column_stack([np.asarray(st[0], np.float64), np.asarray(st[1], np.float64)]))
            lens.append(len(st[0]))
    so = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    do = np.concatenate([[0], np.cumsum(n_strokes)]).astype(np.int64)
    out, out_so, out_do = simplify_packed(np.concatenate(xy_parts), so, do)

    kinds: Counter = Counter()
    examples: dict[str, list[str]] = {}
    strokes_diff = points_diff = 0
    max_diff = 0
    for di, k in enumerate(keys):
        ours = [out[out_so[s]:out_so[s + 1]].astype(np.int64) for s in range(out_do[di], out_do[di + 1])]
        goog = [np.asarray(st[:2], dtype=np.int64).T.reshape(-1, 2) for st in simp[k]]
        if len(ours) != len(goog):
            kind = "stroke_count"
        else:
            bad = [(a, b) for a, b in zip(ours, goog) if a.shape != b.shape or np.any(a != b)]
            if not bad:
                continue
            strokes_diff += len(bad)
            if all(a.shape == b.shape for a, b in bad):
                kind = "coords"
                for a, b in bad:
                    points_diff += int(np.any(a != b, axis=1).sum())
                    max_diff = max(max_diff, int(np.abs(a - b).max()))
            else:
                kind = "point_count"
        kinds[kind] += 1
        ex = examples.setdefault(kind, [])
        if len(ex) < max_examples:
            ex.append(k)
    differing = sum(kinds.values())
    return {
        "simplified": len(simp),
        "unpaired": len(simp) - len(keys),
        "pairs": len(keys),
        "exact": len(keys) - differing,
        "exact_fraction": (len(keys) - differing) / len(keys),
        "differing": differing,
        "breakdown": {
            "stroke_count": kinds["stroke_count"],
            "point_count": kinds["point_count"],
            "coords": kinds["coords"],
            "strokes_differing": strokes_diff,
            "points_differing": points_diff,
            "max_coord_diff": max_diff,
            "examples": examples,
        },
    }
