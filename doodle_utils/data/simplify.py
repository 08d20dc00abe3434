"""Google's raw -> simplified Quick, Draw! pipeline, reproduced bit for bit, plus an oracle check.

Holds :func:`simplify_strokes` (one drawing), :func:`simplify_packed` (a CSR-packed batch, one
compiled pass), :func:`simplify_packed_timed` (the same points, each with its time taken from its
raw twin, for a "timed simplified" store) and :func:`agreement_report` (our output against
Google's simplified files).

Google describes its ``full/simplified`` files
(https://github.com/googlecreativelab/quickdraw-dataset) as:
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

Exact drawings out of 1,124 with one detail changed: no resampling 4; resampling that keeps the raw
vertices 4; distance to the segment instead of the line 280; the last of equal maxima 1,020;
``>=`` epsilon 1,123; halves rounded up 1,083; scale as ``x * (255 / extent)`` or
``x / extent * 255`` 1,054; interpolation as ``a + (b - a) * t`` 1,068; a zero-length stroke as
one point 1,015; consecutive duplicates removed after rounding 955.

Exact floating-point ties are common (raw coordinates are often integers, so resampled points on
a raw segment parallel to a chord are equidistant from it); the operation order above is what
breaks them the way Google's pipeline did. With these steps, ``rdp.rdp(..., algo="rec")`` of the
``rdp`` 0.8 package on our resampled strokes also reproduces the sampled pairs, which suggests that
Google used that package.

Why hand-written: the ``rdp`` package (https://pypi.org/project/rdp/) is pure Python, with an
interpreted loop step and small numpy calls per point and per recursion level, one stroke per
call; on the resampled strokes (about 1,000 points a drawing) it managed about 5 drawings/s here.
``simplification`` (https://pypi.org/project/simplification/, Rust) runs RDP fast, but on one
linestring per Python call, without arc-length resampling, Google's scaling or rounding (and it
returns a 1-point line unaltered, where Google doubles the point); we did not check that its
distance and tie arithmetic match, which exact agreement would also need. Here one numba pass runs
over a whole CSR-packed batch and never materialises the resampled points: on one raw segment the
distance to a chord is |affine| in the resample index, so a sub-range's maximum lies at the first
or last resampled point of some segment. The fast path (``_rdp_fast``) runs RDP over those
candidates only and proves, with margins far above rounding noise, that its choice is the dense
scan's; where it cannot (near ties, parallel segments, tiny chords; ~2.5% of strokes in the
sample) the stroke goes through ``_rdp``, which evaluates, in index order and with the exact
arithmetic, every resampled point that could tie. Both give the dense algorithm's output bit for
bit (checked against a plain dense implementation in the tests). On the raw sample (189 points,
4.8 strokes a drawing) it runs at about 130,000 drawings/s on one core.

Timed variant: both RDP paths also record each kept point's resample index (its arc position) and
raw segment (two more columns of their ``kept`` rows), so :func:`simplify_packed_timed` can give
every kept point the raw time at the same place (interpolated on the segment at the position's
fraction) in the same pass, without touching the points. Recording them costs the untimed path
0-3% (within this shared machine's noise); the timed path runs about 5% slower than the untimed.
"""
from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Sequence

import numba
import numpy as np

EPSILON = 2.0  # Google's RDP epsilon, in 0..255 pixels
# A raw segment whose cross product with the chord changes by less than this per resample step
# (units: px^2) is treated as parallel and evaluated point by point. The arithmetic noise of one
# cross product of 0..255 coordinates is below 1e-9, so a slope above this cannot hide a maximum
# in the segment's interior.
_PARALLEL_TOL = 1e-6
# The fast path's chords join approximate candidates (off by ~1e-13); one shorter than this may be
# a degenerate chord (a point distance, in the exact arithmetic), so it goes to the general path.
_MIN_CHORD2 = 1e-18
# The untimed kernel's ``times``: never read; int32 like raw ``Drawings.t``, so that the untimed
# call and the usual timed one share one compiled specialisation.
_NO_TIMES = np.empty(0, dtype=np.int32)
_INT32 = np.iinfo(np.int32)


@numba.njit(cache=True, inline="always")
def _lerp(k, x0, y0, x1, y1, c0, seg_len):
    """Point at arc length ``k`` of segment ``(x0, y0) -> (x1, y1)`` (which starts at ``c0``)."""
    if seg_len == 0.0:
        return x0, y0
    t = (k - c0) / seg_len
    return x0 * (1.0 - t) + x1 * t, y0 * (1.0 - t) + y1 * t


@numba.njit(cache=True, inline="always")
def _seg_of(k, kstart, n):
    """Segment of resampled point ``k``: the largest ``g <= n - 2`` with ``kstart[g] <= k``."""
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
def _dist(px, py, sx, sy, cx, cy, norm, degenerate):
    """Distance of ``p`` to the line through ``s`` along ``c`` (to ``s`` itself if degenerate), with
    the arithmetic of ``rdp.pldist``: ``|cross(c, s - p)| / norm``."""
    if degenerate:
        return np.sqrt((px - sx) * (px - sx) + (py - sy) * (py - sy))
    cross = abs(cx * (sy - py) - cy * (sx - px))
    if norm == 0.0:  # a chord whose squared length underflows: x / 0 as numpy (rdp) gives it
        return np.inf if cross > 0.0 else 0.0
    return cross / norm


@numba.njit(cache=True, inline="always")
def _pair_bound(ax, ay, bx, by, sx, sy, cx, cy, kc, degenerate):
    """The larger chord distance of two resampled points (|cross| form, or plain distance to
    the start point for a degenerate chord): the bound of a segment's run between them."""
    if degenerate:
        return max(np.sqrt((ax - sx) * (ax - sx) + (ay - sy) * (ay - sy)),
                   np.sqrt((bx - sx) * (bx - sx) + (by - sy) * (by - sy)))
    return max(abs(kc - (cx * ay - cy * ax)), abs(kc - (cx * by - cy * bx)))


@numba.njit(cache=True, inline="always")
def _to_u8(v):
    """Round half to even (Python's ``round``, like ``numpy.round``) and clip to 0..255."""
    return np.uint8(min(max(round(v), 0), 255))


@numba.njit(cache=True)
def _rdp(vx, vy, cum, seglen, inv_len, kstart, ends, segv, n, count, eps, istack, fstack, kept):
    """RDP over the virtual resampled stroke (points ``0..count``); returns how many it keeps.

    Writes the kept points, in order, to ``kept``: columns x, y (exact coordinates), k (resample
    index, i.e. arc position; ``count`` for the stroke's last point) and g (raw segment; ``n - 2``
    for the last point, which only its index tells from a resampled point), k and g as floats
    (exact). ``ends`` (4, n) holds, for each segment, an approximation of its first and last
    resampled point (x0, y0, x1, y1) -- for a segment without any, a copy of the previous point.
    ``segv`` is scratch of length n. ``istack``/``fstack``/``kept`` (4 columns) need ``count + 2``
    rows.

    Each sub-range is scanned over raw segments, not resampled points: on one segment the value is
    |affine| in the index (convex), so only its first and last point can be the maximum, unless the
    segment is parallel to the chord and its points tie up to rounding. Pass 1 finds the maximum
    with cheap approximate values (error < 1e-9) at the segments' ends; pass 2 computes exact
    ``rdp``-style distances, in index order, only on segments within ``_PARALLEL_TOL`` of it, and
    point by point on a parallel one, so ties resolve exactly as a dense scan would (first maximum
    wins).
    """
    nk = 0
    # a range on the stack: indices i, j, their segments gi, gj; coordinates of points i and j
    g = _seg_of(0, kstart, n)
    istack[0, 0] = 0
    istack[0, 1] = count
    istack[0, 2] = g
    istack[0, 3] = n - 2
    fstack[0, 0], fstack[0, 1] = _lerp(0.0, vx[g], vy[g], vx[g + 1], vy[g + 1], cum[g], seglen[g])
    fstack[0, 2] = vx[n - 1]
    fstack[0, 3] = vy[n - 1]
    sp = 1
    while sp > 0:
        sp -= 1
        i = istack[sp, 0]
        j = istack[sp, 1]
        gi = istack[sp, 2]
        gj = istack[sp, 3]
        sx = fstack[sp, 0]
        sy = fstack[sp, 1]
        ex = fstack[sp, 2]
        ey = fstack[sp, 3]
        if j - i < 2:
            kept[nk, 0] = sx
            kept[nk, 1] = sy
            kept[nk, 2] = i
            kept[nk, 3] = gi
            nk += 1
            continue
        cx = ex - sx
        cy = ey - sy
        degenerate = cx == 0.0 and cy == 0.0
        kc = cx * sy - cy * sx  # cross(c, s - p) = kc - (cx * py - cy * px)

        # pass 1: approximate values at the segments' ends (bounds for their interiors)
        ga = gi  # segment of i + 1
        while ga < n - 2 and kstart[ga + 1] <= i + 1:
            ga += 1
        gb = gj  # segment of j - 1
        while kstart[gb] > j - 1:
            gb -= 1
        amax = 0.0
        for g in range(ga + 1, gb):
            ax = ends[0, g]
            ay = ends[1, g]
            bx = ends[2, g]
            by = ends[3, g]
            v = _pair_bound(ax, ay, bx, by, sx, sy, cx, cy, kc, degenerate)
            segv[g] = v
            amax = max(amax, v)
        for g in (ga, gb):  # the two outer segments, clipped by the range
            lo = max(kstart[g], i + 1)
            hi = min(kstart[g + 1] - 1, j - 1)
            if lo > hi:
                segv[g] = -1.0
                continue
            dx = vx[g + 1] - vx[g]
            dy = vy[g + 1] - vy[g]
            t = (lo - cum[g]) * inv_len[g]
            ax = vx[g] + dx * t
            ay = vy[g] + dy * t
            t = (hi - cum[g]) * inv_len[g]
            bx = vx[g] + dx * t
            by = vy[g] + dy * t
            v = _pair_bound(ax, ay, bx, by, sx, sy, cx, cy, kc, degenerate)
            segv[g] = v
            amax = max(amax, v)
        # split unless clearly nothing is beyond epsilon; values are |cross| = distance * norm,
        # or plain distances for a degenerate chord
        bound = amax + _PARALLEL_TOL
        if degenerate:
            split = bound >= eps
        else:
            split = bound * bound >= eps * eps * (cx * cx + cy * cy)
        if split:
            # pass 2: exact values, in index order, on the segments near the maximum
            norm = np.sqrt(cx * cx + cy * cy)
            bar = amax - _PARALLEL_TOL
            g_first = ga
            while segv[g_first] < bar:
                g_first += 1
            g_last = gb
            while segv[g_last] < bar:
                g_last -= 1
            dmax = 0.0
            kbest = -1
            gbest = -1
            pbx = 0.0
            pby = 0.0
            for g in range(g_first, g_last + 1):
                if segv[g] < bar:
                    continue
                lo = max(kstart[g], i + 1)
                hi = min(kstart[g + 1] - 1, j - 1)
                if lo > hi:  # a copy of a point on an earlier segment
                    continue
                x0 = vx[g]
                y0 = vy[g]
                x1 = vx[g + 1]
                y1 = vy[g + 1]
                c0 = cum[g]
                ln = seglen[g]
                # approximate values at both ends again, to pick the candidates
                t = (lo - c0) * inv_len[g]
                ax = x0 + (x1 - x0) * t
                ay = y0 + (y1 - y0) * t
                t = (hi - c0) * inv_len[g]
                bx = x0 + (x1 - x0) * t
                by = y0 + (y1 - y0) * t
                if degenerate:
                    tie_prone = hi - lo >= 2
                    a_lo = np.sqrt((ax - sx) * (ax - sx) + (ay - sy) * (ay - sy))
                    a_hi = np.sqrt((bx - sx) * (bx - sx) + (by - sy) * (by - sy))
                else:
                    c_lo = kc - (cx * ay - cy * ax)
                    c_hi = kc - (cx * by - cy * bx)
                    tie_prone = hi - lo >= 2 and abs(c_hi - c_lo) <= _PARALLEL_TOL * (hi - lo)
                    a_lo = abs(c_lo)
                    a_hi = abs(c_hi)
                if tie_prone:  # parallel: every point may tie, look at each
                    k_from = lo
                    k_to = hi + 1
                else:  # the interior is clearly below the ends
                    k_from = lo if a_lo >= bar else hi
                    k_to = hi + 1 if a_hi >= bar else lo + 1
                k = k_from
                while k < k_to:
                    px, py = _lerp(float(k), x0, y0, x1, y1, c0, ln)
                    dd = _dist(px, py, sx, sy, cx, cy, norm, degenerate)
                    if dd > dmax:
                        dmax = dd
                        kbest = k
                        gbest = g
                        pbx = px
                        pby = py
                    if tie_prone or k == hi:
                        k += 1
                    else:
                        k = hi
            split = dmax > eps
        if split:  # push the right half first so that the left one is done first, in order
            istack[sp, 0] = kbest
            istack[sp, 1] = j
            istack[sp, 2] = gbest
            istack[sp, 3] = gj
            fstack[sp, 0] = pbx
            fstack[sp, 1] = pby
            fstack[sp, 2] = ex
            fstack[sp, 3] = ey
            istack[sp + 1, 0] = i
            istack[sp + 1, 1] = kbest
            istack[sp + 1, 2] = gi
            istack[sp + 1, 3] = gbest
            fstack[sp + 1, 0] = sx
            fstack[sp + 1, 1] = sy
            fstack[sp + 1, 2] = pbx
            fstack[sp + 1, 3] = pby
            sp += 2
        else:
            kept[nk, 0] = sx
            kept[nk, 1] = sy
            kept[nk, 2] = i
            kept[nk, 3] = gi
            nk += 1
    kept[nk, 0] = vx[n - 1]
    kept[nk, 1] = vy[n - 1]
    kept[nk, 2] = count
    kept[nk, 3] = n - 2
    return nk + 1


@numba.njit(cache=True, inline="always")
def _cand_point(c, candk, candg, vx, vy, cum, seglen, n):
    """Exact coordinates of candidate ``c`` (as ``_rdp`` and the dense scan compute them)."""
    g = candg[c]
    if g < 0:
        return vx[n - 1], vy[n - 1]
    return _lerp(float(candk[c]), vx[g], vy[g], vx[g + 1], vy[g + 1], cum[g], seglen[g])


@numba.njit(cache=True)
def _rdp_fast(candx, candy, candk, candg, m, vx, vy, cum, seglen, n, eps, istack, kept):
    """RDP over the candidate points only (each segment's first and last resampled point); returns
    how many points it keeps, or -1 where it cannot prove that is what the dense scan does.

    On a segment the value is |affine| in the index, so a sub-range's maximum is at a candidate (a
    segment cut by the sub-range starts or ends at the chord's end point, whose value is 0). When
    the best candidate beats every other one by more than ``_PARALLEL_TOL`` and its segment is not
    nearly parallel to the chord, it is the dense scan's unique maximum; the split test is decided
    on approximate values unless they are within ``_PARALLEL_TOL`` of epsilon, then exactly. Near
    ties and degenerate chords go back to the caller, which runs ``_rdp``. ``candx``/``candy`` are
    approximate; the kept points are written to ``kept`` as ``_rdp`` does (exact coordinates,
    resample index, segment).
    """
    nk = 0
    istack[0, 0] = 0
    istack[0, 1] = m - 1
    sp = 1
    while sp > 0:
        sp -= 1
        ci = istack[sp, 0]
        cj = istack[sp, 1]
        if cj - ci >= 2:
            sx = candx[ci]
            sy = candy[ci]
            cx = candx[cj] - sx
            cy = candy[cj] - sy
            if cx * cx + cy * cy < _MIN_CHORD2:
                return -1  # (nearly) degenerate: only exact end points tell which formula applies
            kc = cx * sy - cy * sx  # cross(c, s - p) = kc - (cx * py - cy * px)
            amax = -1.0
            second = -1.0
            cb = ci + 1
            for c in range(ci + 1, cj):
                v = abs(kc - (cx * candy[c] - cy * candx[c]))
                second = max(second, min(v, amax))  # branch-free: ~2x faster here
                cb = c if v > amax else cb
                amax = max(amax, v)
            n2 = cx * cx + cy * cy
            e2n2 = eps * eps * n2
            top = amax + _PARALLEL_TOL
            if top * top >= e2n2:  # else clearly no split
                if second >= amax - _PARALLEL_TOL:
                    return -1  # near tie between candidates
                # the winner's segment must fall away from it by more than noise per step,
                # towards its other candidate (or the chord's end point on it, value ~0)
                g = candg[cb]
                k = candk[cb]
                if candg[cb - 1] == g:
                    other = abs(kc - (cx * candy[cb - 1] - cy * candx[cb - 1]))
                    if amax - other <= _PARALLEL_TOL * (k - candk[cb - 1]):
                        return -1
                elif candg[cb + 1] == g:
                    other = abs(kc - (cx * candy[cb + 1] - cy * candx[cb + 1]))
                    if amax - other <= _PARALLEL_TOL * (candk[cb + 1] - k):
                        return -1
                low = amax - _PARALLEL_TOL
                if low * low > e2n2:
                    split = True
                else:  # close to epsilon: decide with the exact arithmetic
                    ax, ay = _cand_point(ci, candk, candg, vx, vy, cum, seglen, n)
                    bx, by = _cand_point(cj, candk, candg, vx, vy, cum, seglen, n)
                    px, py = _cand_point(cb, candk, candg, vx, vy, cum, seglen, n)
                    ux = bx - ax
                    uy = by - ay
                    split = _dist(px, py, ax, ay, ux, uy, np.sqrt(ux * ux + uy * uy),
                                  ux == 0.0 and uy == 0.0) > eps
                if split:  # push the right half first so that the left one is done first
                    istack[sp, 0] = cb
                    istack[sp, 1] = cj
                    istack[sp + 1, 0] = ci
                    istack[sp + 1, 1] = cb
                    sp += 2
                    continue
        kept[nk, 0], kept[nk, 1] = _cand_point(ci, candk, candg, vx, vy, cum, seglen, n)
        kept[nk, 2] = candk[ci]
        kept[nk, 3] = candg[ci]
        nk += 1
    kept[nk, 0] = vx[n - 1]
    kept[nk, 1] = vy[n - 1]
    kept[nk, 2] = candk[m - 1]
    kept[nk, 3] = n - 2
    return nk + 1


@numba.njit(cache=True, inline="always")
def _time_at(k, g, t, a, n, count, cum, seglen):
    """Raw time of resampled point ``k`` (on segment ``g``) of the stroke whose raw points start at
    ``a``: the first raw point's for ``k == 0`` (or a 1-point stroke), the last one's for
    ``k == count``, else interpolated on ``g`` at the fraction ``_lerp`` uses for the position."""
    # one return: early returns made this ~7x slower (~20 ns a point) in numba
    if n == 1 or k == 0:
        v = t[a]
    elif k >= count:
        v = t[a + n - 1]
    else:
        t0 = t[a + g]
        if seglen[g] == 0.0:
            v = t0
        else:
            v = t0 + (t[a + g + 1] - t0) * ((k - cum[g]) / seglen[g])
    return v


@numba.njit(cache=True)
def _simplify_kernel(xy, stroke_offsets, drawing_offsets, eps, general_only, times, timed):
    """Simplify a CSR batch: ``(xy_u8, stroke_offsets_out, n_general, t_out)``.

    ``general_only`` sends every stroke through ``_rdp`` (a test switch). With ``timed``,
    ``times`` (int32 or float64, one per raw point) gives ``t_out`` (int32, one per kept point; see
    :func:`simplify_packed_timed`); otherwise ``times`` is not read and ``t_out`` is empty.
    Either way the points come from the same code path: the kept points' resample indices and
    segments are always recorded (``kept`` columns 2 and 3), and only their conversion to times
    depends on ``timed`` (a runtime flag; a compile-time switch measured no better: the cost of
    recording them, 0-3%, is in the stores and code layout, not in the branch).
    """
    n_strokes = stroke_offsets.shape[0] - 1
    n_draw = drawing_offsets.shape[0] - 1
    out = np.empty((xy.shape[0] + 2 * n_strokes + 16, 2), dtype=np.uint8)
    tout = np.empty(out.shape[0] if timed else 0, dtype=np.int32)
    out_so = np.empty(n_strokes + 1, dtype=np.int64)
    out_so[0] = 0
    q = 0
    nmax = 1
    for s in range(n_strokes):
        nmax = max(nmax, stroke_offsets[s + 1] - stroke_offsets[s])
    vx = np.empty(nmax)
    vy = np.empty(nmax)
    cum = np.empty(nmax)
    seglen = np.empty(nmax)
    inv_len = np.empty(nmax)
    ends = np.empty((4, nmax))
    segv = np.empty(nmax)
    candx = np.empty(2 * nmax + 2)
    candy = np.empty(2 * nmax + 2)
    candk = np.empty(2 * nmax + 2, dtype=np.int64)
    candg = np.empty(2 * nmax + 2, dtype=np.int64)
    n_general = 0
    kstart = np.empty(nmax, dtype=np.int64)
    istack = np.empty((512, 4), dtype=np.int64)
    fstack = np.empty((512, 4))
    kept = np.empty((512, 4))
    count = 0

    for d in range(n_draw):
        s0 = drawing_offsets[d]
        s1 = drawing_offsets[d + 1]
        mnx = np.inf
        mny = np.inf
        mxx = -np.inf
        mxy = -np.inf
        for p in range(stroke_offsets[s0], stroke_offsets[s1]):
            mnx = min(mnx, xy[p, 0])
            mxx = max(mxx, xy[p, 0])
            mny = min(mny, xy[p, 1])
            mxy = max(mxy, xy[p, 1])
        ext = max(mxx - mnx, mxy - mny)

        for s in range(s0, s1):
            a = stroke_offsets[s]
            n = stroke_offsets[s + 1] - a
            # 1. align to the top-left corner and scale the longer side to 255
            x0 = xy[a, 0] - mnx
            y0 = xy[a, 1] - mny
            if ext > 0.0:
                x0 = (x0 * 255.0) / ext
                y0 = (y0 * 255.0) / ext
            vx[0] = x0
            vy[0] = y0
            if n == 1:
                nk = 2
                kept[0, 0] = kept[1, 0] = x0
                kept[0, 1] = kept[1, 1] = y0
                kept[0, 2] = kept[1, 2] = 0.0  # k, g: _time_at gives a 1-point stroke t[a]
                kept[0, 3] = kept[1, 3] = 0.0
            else:
                # 2. arc-length resampling, virtual: point k < count lies at arc length k on
                # segment g = max{g : cum[g] <= k}, i.e. kstart[g] <= k < kstart[g + 1]; point
                # `count` is the stroke's last point. One pass also scales the points and lists the
                # RDP candidates: each segment's first and last resampled point (approximate
                # coordinates), then the stroke's last point.
                cum[0] = 0.0
                kstart[0] = 0
                c = 0.0
                mc = 0
                for g in range(n - 1):
                    x1 = xy[a + g + 1, 0] - mnx
                    y1 = xy[a + g + 1, 1] - mny
                    if ext > 0.0:
                        x1 = (x1 * 255.0) / ext
                        y1 = (y1 * 255.0) / ext
                    vx[g + 1] = x1
                    vy[g + 1] = y1
                    dx = x1 - x0
                    dy = y1 - y0
                    ln = np.sqrt(dx * dx + dy * dy)
                    seglen[g] = ln
                    c1 = c + ln
                    cum[g + 1] = c1
                    k0 = kstart[g]
                    kn = int(math.ceil(c1))
                    if g == n - 2:
                        kn = max(kn, 1)  # a zero-length stroke still has point 0
                    kstart[g + 1] = kn
                    # both candidates are written, then kept or overwritten: branch-free, as
                    # segments under 1 px make these conditions unpredictable
                    inv = 1.0 / max(ln, 1e-300)  # ln == 0 only in a zero-length stroke: t = 0
                    t = (k0 - c) * inv
                    candx[mc] = x0 + dx * t
                    candy[mc] = y0 + dy * t
                    candk[mc] = k0
                    candg[mc] = g
                    mc += k0 < kn
                    t = (kn - 1 - c) * inv
                    candx[mc] = x0 + dx * t
                    candy[mc] = y0 + dy * t
                    candk[mc] = kn - 1
                    candg[mc] = g
                    mc += kn - 1 > k0
                    x0 = x1
                    y0 = y1
                    c = c1
                count = kstart[n - 1]
                candx[mc] = x0
                candy[mc] = y0
                candk[mc] = count
                candg[mc] = -1
                mc += 1
                if kept.shape[0] < count + 2:
                    istack = np.empty((2 * count + 4, 4), dtype=np.int64)
                    fstack = np.empty((2 * count + 4, 4))
                    kept = np.empty((2 * count + 4, 4))
                # 3. Ramer-Douglas-Peucker
                nk = -1
                if not general_only:
                    nk = _rdp_fast(candx, candy, candk, candg, mc, vx, vy, cum, seglen, n, eps,
                                   istack, kept)
                if nk < 0:  # near ties: the general scan
                    n_general += 1
                    for g in range(n - 1):
                        inv_len[g] = 1.0 / seglen[g] if seglen[g] > 0.0 else 0.0
                    px = vx[0]
                    py = vy[0]
                    for g in range(n - 1):
                        if kstart[g] < kstart[g + 1]:
                            dx = vx[g + 1] - vx[g]
                            dy = vy[g + 1] - vy[g]
                            t = (kstart[g] - cum[g]) * inv_len[g]
                            ends[0, g] = vx[g] + dx * t
                            ends[1, g] = vy[g] + dy * t
                            t = (kstart[g + 1] - 1 - cum[g]) * inv_len[g]
                            px = ends[2, g] = vx[g] + dx * t
                            py = ends[3, g] = vy[g] + dy * t
                        else:  # no point here: repeat the previous one (a harmless duplicate)
                            ends[0, g] = ends[2, g] = px
                            ends[1, g] = ends[3, g] = py
                    nk = _rdp(vx, vy, cum, seglen, inv_len, kstart, ends, segv, n, count, eps,
                              istack, fstack, kept)
            # 4. round (after RDP) and emit
            if q + nk > out.shape[0]:
                bigger = np.empty((2 * out.shape[0] + nk, 2), dtype=np.uint8)
                bigger[:q] = out[:q]
                out = bigger
                if timed:
                    tbig = np.empty(out.shape[0], dtype=np.int32)
                    tbig[:q] = tout[:q]
                    tout = tbig
            if timed:  # each kept point's time, from its resample index and segment
                for r in range(nk):
                    tout[q + r] = round(_time_at(int(kept[r, 2]), int(kept[r, 3]), times, a, n,
                                                 count, cum, seglen))
            for r in range(nk):
                out[q, 0] = _to_u8(kept[r, 0])
                out[q, 1] = _to_u8(kept[r, 1])
                q += 1
            out_so[s + 1] = q
    return out[:q].copy(), out_so, n_general, tout[:q].copy()


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
        raise ValueError(f"drawing_offsets must run from 0 to the number of strokes "
                         f"= {so.size - 1}, "
                         f"got {do[0]}..{do[-1]}")
    empty = np.diff(so) <= 0
    if np.any(empty):
        raise ValueError(f"empty stroke (no points) at stroke index {int(np.argmax(empty))}")
    empty = np.diff(do) <= 0
    if np.any(empty):
        raise ValueError(f"empty drawing (no strokes) at drawing index {int(np.argmax(empty))}")
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
    out, out_so, _, _ = _simplify_kernel(xy, so, do, EPSILON, False, _NO_TIMES, False)
    return out, out_so, do.copy()


def _check_times(t: np.ndarray, n_points: int) -> np.ndarray:
    """Validate raw times (one per point, finite, int32 range); returns them as int32 (integer
    input: a view where it already is) or float64 (float input, rounded only after
    interpolation)."""
    if t is None:
        raise ValueError("t is None: timed simplification needs raw times (one per point)")
    t = np.asarray(t)
    if t.dtype.kind not in "iuf":
        raise ValueError(f"t must be numeric, got dtype {t.dtype}")
    if t.ndim != 1 or t.shape[0] != n_points:
        raise ValueError(f"t must have shape ({n_points},) (one time per point of xy), "
                         f"got {t.shape}")
    if t.dtype.kind == "f":
        finite = np.isfinite(t)
        if not np.all(finite):
            raise ValueError(f"t holds non-finite times (nan or inf), first at point "
                             f"{int(np.argmin(finite))}")
    if t.size:
        lo, hi = t.min(), t.max()
        if lo < _INT32.min or hi > _INT32.max:
            raise ValueError(f"t must fit in int32 (ms), got {lo:g}..{hi:g}")
    return np.ascontiguousarray(t, dtype=np.float64 if t.dtype.kind == "f" else np.int32)


def simplify_packed_timed(xy: np.ndarray, t: np.ndarray, stroke_offsets: np.ndarray,
                          drawing_offsets: np.ndarray
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Simplify a CSR-packed batch of raw drawings the way Google did, keeping real timings.

    For a "timed simplified" store: Google's simplified points (exactly what
    :func:`simplify_packed` returns, from the same compiled pass), each kept point with its time
    taken from its raw twin, so that time-aware renderers and the point model get real timings
    at the simplified data's size.

    Every kept point is a resampled point (arc length ``k`` px, after scaling, along the raw
    stroke) or the stroke's last raw point. Its time is:

    * resampled point ``k > 0`` on raw segment ``g`` (``a -> b``): ``t_a + (t_b - t_a) * f`` with
      ``f = (k - cum[g]) / seglen[g]``, the fraction that places the point on the segment; ``t_a``
      on a zero-length segment. A point exactly on a raw vertex that the pen rested on (repeated
      points) lies on the segment leaving it, so it takes the time the pen left;
    * resampled point 0 (the stroke's first point): the first raw point's time (pen down; by
      the rule above it would be the time the pen left its starting point);
    * the stroke's last point: the last raw point's time;
    * a 1-point stroke (kept as two copies of the point): that point's time, twice.

    Times are rounded to the nearest integer (halves to even). Within a stroke they are
    non-decreasing wherever the raw times are; the first and last equal the raw stroke's.

    Args:
        xy: float (P, 2), all raw points (x, y).
        t: (P,) raw times, one per point of ``xy`` (ms, e.g. ``Drawings.t``); finite, in int32
            range.
        stroke_offsets: int64 (S+1,), point index where stroke ``s`` starts; last entry P.
        drawing_offsets: int64 (D+1,), stroke index where drawing ``d`` starts; last entry S.

    Returns:
        ``(xy_out, t_out, stroke_offsets_out, drawing_offsets_out)``: uint8 (Q, 2) points,
        int32 (Q,) times, int64 (S+1,) and int64 (D+1,) offsets. ``xy_out`` and the offsets are
        bit-identical to :func:`simplify_packed`'s. The order is ``data.Drawings``' fields', so
        ``Drawings(*simplify_packed_timed(...))`` is a timed simplified batch.

    Raises:
        ValueError: malformed offsets, an empty stroke or drawing, non-finite coordinates, or
            ``t`` missing, of the wrong shape, non-finite or outside int32.
    """
    xy, so, do = _check_packed(xy, stroke_offsets, drawing_offsets)
    times = _check_times(t, xy.shape[0])
    out, out_so, _, t_out = _simplify_kernel(xy, so, do, EPSILON, False, times, True)
    return out, t_out, out_so, do.copy()


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
    do = np.array([0, len(parts)], dtype=np.int64)
    out, out_so, _ = simplify_packed(np.concatenate(parts), so, do)
    return [out[out_so[i]:out_so[i + 1]] for i in range(len(parts))]


def _read_ndjson_drawings(path: Path) -> dict[str, list]:
    """``key_id -> drawing`` of one Google ndjson file (plain ``json``: a check, not a hot path)."""
    found: dict[str, list] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                found[str(row["key_id"])] = row["drawing"]
    return found


def agreement_report(raw_dir: Path, simplified_dir: Path, max_examples: int = 5) -> dict:
    """Pair drawings by key_id, simplify the raw ones, and compare with Google's simplified ones.

    ``simplified_dir/<word>.ndjson`` is paired with ``raw_dir/<word>.ndjson`` (Google's files are
    per class, so a key_id can only be in the file of the same word).

    Args:
        raw_dir: folder of Google raw ``*.ndjson`` files.
        simplified_dir: folder of Google simplified ``*.ndjson`` files.
        max_examples: how many differing key_ids to list per kind of difference.

    Returns:
        ``simplified`` (drawings read there), ``unpaired`` (those without a raw twin), ``pairs``,
        ``exact`` / ``exact_fraction``, ``differing`` and ``breakdown``: drawings whose stroke
        count differs, whose point counts differ (same stroke count), or whose coordinates differ
        with equal shapes; ``strokes_differing``, ``points_differing`` (in equal-shape strokes),
        ``max_coord_diff`` (likewise) and example key_ids per kind.

    Raises:
        ValueError: no pair found.
    """
    raw_dir, simplified_dir = Path(raw_dir), Path(simplified_dir)
    raw: dict[str, list] = {}
    simp: dict[str, list] = {}
    for path in sorted(simplified_dir.glob("*.ndjson")):
        simp.update(_read_ndjson_drawings(path))
        if (raw_dir / path.name).is_file():
            raw.update(_read_ndjson_drawings(raw_dir / path.name))
    keys = [k for k in simp if k in raw]
    if not keys:
        raise ValueError(f"no key_id of {simplified_dir} is found in {raw_dir}")
    xy_parts, lens, n_strokes = [], [], []
    for k in keys:
        d = raw[k]
        n_strokes.append(len(d))
        for st in d:
            xy_parts.append(np.column_stack([np.asarray(st[0], np.float64),
                                             np.asarray(st[1], np.float64)]))
            lens.append(len(st[0]))
    so = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    do = np.concatenate([[0], np.cumsum(n_strokes)]).astype(np.int64)
    out, out_so, out_do = simplify_packed(np.concatenate(xy_parts), so, do)

    kinds: Counter = Counter()
    examples: dict[str, list[str]] = {}
    strokes_diff = points_diff = 0
    max_diff = 0
    for di, k in enumerate(keys):
        ours = [out[out_so[s]:out_so[s + 1]].astype(np.int64)
                for s in range(out_do[di], out_do[di + 1])]
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
