"""Rendering drawings on the CPU with a compiled (numba) rasteriser, by render_torch's rules.

What it holds: :func:`render_numba`, a drop-in for :func:`.render.render` (``render(...,
engine="numba")`` calls it), and its kernel :func:`_rasterise`. The input is the same
:func:`.render.segments` list the other two renderers draw, and the pixels follow the rules
of :mod:`._torch` (fitted to OpenCV there), so the three agree as render_torch states.

Algorithm. One compiled call per batch loops over the drawings, each drawing's segments in
order, and for each segment only the pixels of render_torch's stencil:

* the end points are rounded to 1/16 px (OpenCV's 4 fractional bits) and the segment put in
  its major-axis frame (u along ``x`` when ``|dx| > |dy|``, else ``y``), as ``_frame`` does;
* the columns ``[min u - reach, max u + reach]`` clipped to the canvas, in each the rows from
  ``ceil(v_c - reach * sec)``, at most ``H = floor(2 * sqrt(2) * reach) + 1`` of them
  (``_columns``); anti-aliased lines stop at ``v_c + reach * sec``, past which no pixel has ink;
* per pixel the float32 operations of ``_coverage_keys``: anti-aliased coverage ``q =
  round(clip((reach - d) * slope, 0, 1) * 255)``, d the distance to the segment, reach and
  slope from ``pen.opencv_pen`` (any line width). Aliased lines (``antialias=False``) are
  ported too, not handed to OpenCV: the exact 1-pixel Bresenham rule (equal to ``cv2.line``,
  tested) and, thicker, the polygon band plus the end circles;
* runs (consecutive segments of one stroke with one value) are numbered as ``_runs`` does.
  One int64 per canvas pixel, in a scratch array reused across drawings, packs the top run
  with its largest q (``(run + 1) << 8 | q``) and the layer beneath (``q << 23 | (run + 1)``:
  largest q, then latest run). Runs arrive in painter's order, so a run pushed off the top is
  final and goes straight into the beneath key: no sort and no scatter, unlike torch;
* the touched pixels (a list: untouched ones cost nothing, and walking it resets the scratch)
  are blended ``top * w1 + beneath * w2 * (1 - w1)`` in float32 and rounded half to even as
  torch does;
* ``base`` (a bigger canvas): each rounded canvas pixel is added to its output block's sum
  and each touched block divided and rounded half to even, equal to render_torch's
  ``F.interpolate(mode="area")`` for integer factors. A canvas that is not an integer multiple
  of the output is drawn whole and shrunk with ``cv2.resize(INTER_AREA)`` as
  :func:`.render.render` does (torch's adaptive pooling has other windows there).

Agreement with ``render_torch`` on CPU tensors, 192 synthetic drawings, every variant at
32/64/128 px with and without ``base=256`` and line widths 2/3/5: mean absolute difference per
pixel and channel at most 0.000003 anti-aliased (99.9997% of values identical) and 0.0013
aliased (99.998%). The rare differences come from torch's CPU float32 square root, which is
not correctly rounded (MKL/SIMD); numba's is IEEE, and one ulp moves q across a rounding step
(anti-aliased: one level) or a pixel across the aliased band's edge (the whole pixel).

Why hand-written though OpenCV exists: :func:`.render.render` makes one ``cv2.polylines``
call per group of runs from Python, for ``strokes3`` (a value per segment) one per segment,
and OpenCV's anti-aliased lines cost more with three channels; on a 2-vCPU AMD EPYC it fell
below the popular kernel's ``cv2.line`` loop for ``palette`` at 128-256 px (0.8x, 0.4x) and
``strokes3`` at every size (0.3-0.6x). Here a batch is one call and a drawing costs mostly its
stencil pixels. Measured on that machine (``python -m benchmarks render``, 1,024 drawings, one
core; ``benchmarks/RESULTS.md``): ``palette`` 72k/48k/27k/13k images/s at 32/64/128/256 px
against OpenCV's 30k/26k/19k/11k and the baseline's 20k/18k/20k/19k; ``strokes3`` the same as
``palette`` (OpenCV: 13k/12k/10k/7k); ``mono`` 76k/53k/32k/17k (OpenCV: 44k/39k/32k/22k). At
256 px the per-pixel work (about 3,600 stencil pixels and 3,200 inked ones a drawing) and the
fresh output's memory keep it below the baseline. render_torch's vectorised form of the same
rules is no substitute on the CPU: it materialises every stencil pixel of the batch and
scatters twice (16-23k images/s at 32 px, 0.4-0.6k at 256 px, on both cores).
"""
from __future__ import annotations

import math

import cv2
import numba
import numpy as np

from ..data import Drawings
from .pen import circle_spans, opencv_pen
from .variants import RenderSpec, segments

# kernel modes: how a stencil pixel gets its ink
_AA, _THIN, _THICK = 0, 1, 2
_MAX_RUNS = (1 << 23) - 1  # run numbers within one drawing must fit the 23-bit field of a key


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _rasterise(p0: np.ndarray, p1: np.ndarray, value: np.ndarray, stroke: np.ndarray, seg_bounds: np.ndarray,
               canvas: int, mode: int, reach: np.float32, aa_slope: np.float32, half_width: np.float32,
               cap: int, spans: np.ndarray, rows_h: int, out: np.ndarray) -> None:
    """Draw drawings ``0 .. len(seg_bounds) - 2`` (segments ``seg_bounds[i]:seg_bounds[i + 1]``)
    into ``out`` (n, C, size, size), zeroed by the caller; ``canvas`` is ``size`` times an integer.

    ``mode``: 0 anti-aliased (``reach``, ``aa_slope``), 1 aliased 1-pixel, 2 aliased thicker
    (``half_width``, end circles of radius ``cap`` with row half-widths ``spans``);
    ``rows_h``: stencil rows per column. See the module docstring for the rules.
    """
    f0, f05, f1, f16, f255 = np.float32(0.0), np.float32(0.5), np.float32(1.0), np.float32(16.0), np.float32(255.0)
    n = len(seg_bounds) - 1
    n_ch, size = out.shape[1], out.shape[2]
    plane, image = size * size, n_ch * size * size
    flat = out.reshape(out.size)
    value_f = value.astype(np.float32)
    factor = canvas // size
    area = factor * factor
    # per canvas pixel, packed as beneath << 32 | top: the top run's (run + 1) << 8 | q (0: no
    # ink yet in this drawing) and the layer beneath's q << 23 | (run + 1); reset through the
    # list of touched pixels
    state = np.zeros(canvas * canvas, np.int64)
    touched = np.empty(canvas * canvas, np.int32)
    max_segs = 1
    for i in range(n):
        max_segs = max(max_segs, seg_bounds[i + 1] - seg_bounds[i])
    run_seg = np.empty(max_segs, np.int64)  # first segment of each run of the drawing
    weight = np.empty(256, np.float32)  # q / 255 as torch computes it
    for q in range(256):
        weight[q] = np.float32(q) / f255
    block_of = np.arange(canvas) // factor  # canvas row or column -> output row or column
    block_sum = np.zeros(size * size * n_ch, np.int64)
    block_mark = np.zeros(size * size, np.int64)  # drawing index + 1 once a block is touched
    blocks = np.empty(size * size, np.int64)
    for i in range(n):
        a, b = seg_bounds[i], seg_bounds[i + 1]
        n_touched = 0
        run = -1
        for k in range(a, b):
            new_run = k == a or stroke[k] != stroke[k - 1]
            if not new_run:
                for ch in range(n_ch):
                    if value[k, ch] != value[k - 1, ch]:
                        new_run = True
                        break
            if new_run:
                run += 1
                run_seg[run] = k
            run_key = (run + 1) << 8
            # the segment in its major-axis frame, end points rounded to 1/16 px (render_torch._frame)
            x0, y0 = np.rint(p0[k, 0] * f16) / f16, np.rint(p0[k, 1] * f16) / f16
            x1, y1 = np.rint(p1[k, 0] * f16) / f16, np.rint(p1[k, 1] * f16) / f16
            ddx, ddy = x1 - x0, y1 - y0
            horiz = abs(ddx) > abs(ddy)
            if horiz:
                u0, v0, du, dv = x0, y0, ddx, ddy
            else:
                u0, v0, du, dv = y0, x0, ddy, ddx
            step_c, step_r = (1, canvas) if horiz else (canvas, 1)  # pixel = c * step_c + row * step_r
            len2 = du * du + dv * dv
            inv_len2 = f1 / len2 if len2 > f0 else f0
            slope = dv / du if du != f0 else f0
            sec = np.sqrt(f1 + slope * slope)
            umin, umax = min(u0, u0 + du), max(u0, u0 + du)
            c_lo = max(math.ceil(umin - reach), 0)
            c_hi = min(math.floor(umax + reach), canvas - 1)
            reach_sec = reach * sec
            # aliased: the thin line's Bresenham terms, the thick polygon's bounds
            lx = ly = big_d = small_d = sg = 0
            ymajor = False
            length = band = cos_half = f0
            cu0 = cv0 = cu1 = cv1 = 0
            if mode == 1:
                ax, ay = math.floor(x0 + f05), math.floor(y0 + f05)
                bx, by = math.floor(x1 + f05), math.floor(y1 + f05)
                if bx < ax:
                    ax, ay, bx, by = bx, by, ax, ay
                lx, ly = ax, ay
                sg = -1 if by - ay < 0 else 1
                ymajor = abs(by - ay) > bx - ax
                big_d = abs(by - ay) if ymajor else bx - ax
                small_d = bx - ax if ymajor else abs(by - ay)
            elif mode == 2:
                length = np.sqrt(du * du + dv * dv)
                band = half_width * sec + f05
                cos_half = f05 / sec  # torch's 0.5 / sec: a true division
                cu0, cv0 = math.floor(u0 + f05), math.floor(v0 + f05)
                cu1, cv1 = math.floor(u0 + du + f05), math.floor(v0 + dv + f05)
            for c in range(c_lo, c_hi + 1):
                cf = np.float32(c)
                u_on = min(max(cf, umin), umax)
                v_c = v0 + slope * (u_on - u0)
                r0 = math.ceil(v_c - reach_sec)
                r1 = min(r0 + rows_h, canvas)
                if mode == 0:  # no ink farther than reach * sec from the centre line
                    r1 = min(r1, math.floor(v_c + reach_sec) + 1)
                pu = cf - u0
                pu_du = pu * du
                for row in range(max(r0, 0), r1):
                    pv = np.float32(row) - v0
                    if mode == 0:
                        tau = (pu_du + pv * dv) * inv_len2
                        tau = min(max(tau, f0), f1)
                        ex, ey = pu - tau * du, pv - tau * dv
                        cover = (reach - np.sqrt(ex * ex + ey * ey)) * aa_slope
                        q = int(np.rint(min(max(cover, f0), f1) * f255))
                        if q == 0:
                            continue
                    elif mode == 1:
                        x, y = (c, row) if horiz else (row, c)
                        step = (y - ly) * sg if ymajor else x - lx
                        minor = (2 * small_d * step + big_d - 1) // (2 * big_d) if big_d > 0 else 0
                        if not ((x == lx + minor if ymajor else y == ly + sg * minor) and 0 <= step <= big_d):
                            continue
                        q = 255
                    else:
                        inked = False
                        if length > f0:
                            along = (pu_du + pv * dv) * inv_len2 * length
                            inked = (abs(pv - slope * pu) <= band and along >= -cos_half
                                     and along <= length + cos_half)
                        for cu, cv in ((cu0, cv0), (cu1, cv1)):  # OpenCV's circles at the rounded ends
                            ou, ov = abs(c - cu), abs(row - cv)
                            if ov <= cap and ou <= spans[ov]:
                                inked = True
                        if not inked:
                            continue
                        q = 255
                    # painter's order: runs arrive in order, so a run pushed off the top is final
                    pix = c * step_c + row * step_r
                    key = run_key | q
                    old = state[pix]
                    old_top = old & 0xFFFFFFFF
                    if old_top == 0:  # first ink on this pixel in this drawing
                        state[pix] = key
                        touched[n_touched] = pix
                        n_touched += 1
                    elif old_top >> 8 == run + 1:  # the same run again: its largest coverage
                        if key > old_top:
                            state[pix] = old - old_top + key
                    else:  # a later run: the old top may be the layer beneath
                        pushed = ((old_top & 255) << 23) | (old_top >> 8)
                        low = old >> 32
                        state[pix] = ((pushed if pushed > low else low) << 32) | key
        # blend the touched pixels, top * w1 + beneath * w2 in float32 rounded half to even as
        # torch does (no layer beneath: w2 = 0 and s2 = s1), and reset the scratch
        n_blocks = 0
        for t in range(n_touched):
            pix = touched[t]
            packed = state[pix]
            state[pix] = 0
            key, low = packed & 0xFFFFFFFF, packed >> 32
            s1 = run_seg[(key >> 8) - 1]
            r2 = low & 0x7FFFFF
            s2 = run_seg[r2 - 1] if r2 > 0 else s1
            w1 = weight[key & 255]
            w2 = weight[low >> 23] * (f1 - w1)
            if factor == 1:
                o = i * image + pix
                if n_ch == 3:
                    flat[o] = np.uint8(np.rint(value_f[s1, 0] * w1 + value_f[s2, 0] * w2))
                    flat[o + plane] = np.uint8(np.rint(value_f[s1, 1] * w1 + value_f[s2, 1] * w2))
                    flat[o + 2 * plane] = np.uint8(np.rint(value_f[s1, 2] * w1 + value_f[s2, 2] * w2))
                else:
                    for ch in range(n_ch):
                        flat[o + ch * plane] = np.uint8(np.rint(value_f[s1, ch] * w1 + value_f[s2, ch] * w2))
                continue
            blk = block_of[pix // canvas] * size + block_of[pix % canvas]
            if block_mark[blk] != i + 1:
                block_mark[blk] = i + 1
                blocks[n_blocks] = blk
                n_blocks += 1
                for ch in range(n_ch):
                    block_sum[blk * n_ch + ch] = 0
            for ch in range(n_ch):
                block_sum[blk * n_ch + ch] += int(np.rint(value_f[s1, ch] * w1 + value_f[s2, ch] * w2))
        # base: the area mean of each touched block, rounded half to even
        for t in range(n_blocks):
            blk = blocks[t]
            for ch in range(n_ch):
                total = block_sum[blk * n_ch + ch]
                level, rest = total // area, total % area
                if 2 * rest > area or (2 * rest == area and level % 2 == 1):
                    level += 1
                flat[i * image + ch * plane + blk] = level


def render_numba(d: Drawings, variant: str = "mono", spec: RenderSpec = RenderSpec()) -> np.ndarray:
    """Render a batch on the CPU with the compiled rasteriser: uint8 array (N, C, size, size).

    Args:
        d: the drawings (raw ones for variants that need times).
        variant: a name in :data:`.variants.VARIANTS`.
        spec: size, line width (any; anti-aliased or not), padding, ``base`` canvas, colours.

    Returns:
        C-contiguous uint8 images, equal to ``render_torch(d, variant, spec)`` up to float
        rounding, and so within render_torch's stated tolerances of :func:`.render.render`.
    """
    seg = segments(d, variant, spec)
    canvas, size, n = seg.canvas, spec.size, seg.n_drawings
    thickness = max(1, int(round(spec.line_width * canvas / size)))
    pen = opencv_pen(thickness, spec.antialias)
    mode = _AA if pen.antialias else (_THICK if pen.half_width else _THIN)
    spans = np.asarray(circle_spans(pen.cap) if pen.cap else (0,), np.int64)
    rows_h = int(math.floor(2 * pen.reach * math.sqrt(2.0))) + 1  # as render_torch._coverage_keys
    seg_bounds = np.searchsorted(seg.drawing, np.arange(n + 1)).astype(np.int64)
    if n and np.diff(seg_bounds).max() > _MAX_RUNS:
        raise ValueError(f"a drawing has more than {_MAX_RUNS} segments")
    args = (np.ascontiguousarray(seg.p0), np.ascontiguousarray(seg.p1), np.ascontiguousarray(seg.value),
            np.ascontiguousarray(seg.stroke, np.int64))
    pen_args = (mode, np.float32(pen.reach), np.float32(pen.aa_slope), np.float32(pen.half_width), pen.cap,
                spans, rows_h)
    out = np.zeros((n, seg.channels, size, size), np.uint8)
    if canvas % size == 0:
        _rasterise(*args, seg_bounds, canvas, *pen_args, out)
        return out
    # the canvas is not a multiple of the output: draw it whole, then OpenCV's area resize
    chunk = max(1, (1 << 24) // (canvas * canvas * seg.channels))  # ~16 MB of canvases at a time
    big = np.zeros((min(chunk, n), seg.channels, canvas, canvas), np.uint8)
    for i0 in range(0, n, chunk):
        i1 = min(n, i0 + chunk)
        big[:] = 0
        _rasterise(*args, seg_bounds[i0:i1 + 1], canvas, *pen_args, big[:i1 - i0])
        for j in range(i1 - i0):
            small = cv2.resize(big[j].transpose(1, 2, 0), (size, size), interpolation=cv2.INTER_AREA)
            out[i0 + j] = small.reshape(size, size, -1).transpose(2, 0, 1)
    return out
