"""Rendering drawings to images on the CPU with OpenCV, in the variants the field uses.

The render layer (above data, below models): this face holds the CPU dispatcher
(:func:`render`, OpenCV or numba) and re-exports the torch engine's entry points
(:func:`render_packed`, :func:`render_torch`); :mod:`.variants` is the one registry of render
variants, :mod:`.pen` OpenCV's pen rules that every engine follows, and the engines are the
private modules ``_numba``, ``_torch`` and ``_triton`` (CUDA only, imported when used).

A renderer is chosen by name (``RENDERERS``: the variants of :mod:`.variants`, where each is
defined once with its numpy and torch values):

* ``mono``: one channel, white lines on black; ``fade=True`` dims later strokes the way the
  popular Kaggle kernel did (255 - 13 * min(i, 10) for stroke i).
* ``palette``: RGB, stroke i coloured by a colour map from the first to the last stroke
  (stroke order visible; the 4th-place talk's variant).
* ``strokes3``: channel 0 plain lines; channel 1 goes 32 -> 255 along each stroke; channel 2
  goes 32 -> 255 across the strokes of the drawing.
* ``time3``: raw drawings with timings: time since the first point, pen speed, stroke index,
  each scaled to 32 -> 255 (5th/24th-place style).

All variants go through one representation, :func:`segments`: every line segment of every
drawing with its end points in output pixels and one value per channel. The CPU renderer
draws it with ``cv2.line``/``cv2.polylines``; the batched PyTorch renderer rasterises the
same list, so the two differ only in how a segment becomes pixels.

Geometry: simplified coordinates (0..255) map to ``pad .. size-1-pad``; raw coordinates are
first aligned and scaled like Google's simplification (no resampling). ``base=256`` draws on
a 256 canvas with the line width scaled up and then downsamples with area interpolation
(the popular kernels' way); ``base=None`` draws at the output size directly.
"""
from __future__ import annotations

import cv2
import numpy as np

from ..data import Drawings
from ._numba import render_numba
from ._torch import render_packed, render_torch, to_tensors  # noqa: F401 (the torch engine's entry points)
from .variants import (VARIANTS, RenderSpec, Segments, Variant, canvas_transform, register,  # noqa: F401 (the
                       scaled, segments)  # render face re-exports what its callers used before .variants)

RENDERERS = VARIANTS  # the variants by name (defined in .variants)
Renderer = Variant  # the name before .variants


def register_renderer(name: str, channels: int, needs_time: bool = False):
    """Decorator: register a variant by its numpy values only (the torch engines cannot draw
    it; define both in :mod:`.variants` with :func:`.variants.register` for that)."""
    def deco(fn):
        register(Variant(name, channels, fn, needs_time))
        return fn
    return deco


ENGINES = ("opencv", "numba")  # how :func:`render` draws on the CPU


def render(d: Drawings, variant: str = "mono", spec: RenderSpec = RenderSpec(),
           engine: str = "opencv") -> np.ndarray:
    """Render a batch on the CPU: uint8 array (N, C, size, size).

    Args:
        d: the drawings (raw ones for variants that need times).
        variant: a name in :data:`RENDERERS`.
        spec: how to draw.
        engine: ``"opencv"`` (``cv2.polylines``, below) or ``"numba"``
            (:func:`._numba.render_numba`: render_torch's rules compiled, faster per core).
    """
    if engine == "numba":
        return render_numba(d, variant, spec)
    if engine != "opencv":
        raise ValueError(f"unknown render engine {engine!r}; have {list(ENGINES)}")
    seg = segments(d, variant, spec)
    canvas = seg.canvas
    lw_canvas = max(1, int(round(spec.line_width * canvas / spec.size)))
    line_type = cv2.LINE_AA if spec.antialias else cv2.LINE_8
    out = np.zeros((seg.n_drawings, spec.size, spec.size, seg.channels), np.uint8)
    img = np.zeros((canvas, canvas, seg.channels), np.uint8)
    # cv2 draws with 4 fractional bits: integer coordinates scaled by 16, shift=4
    p0 = np.rint(seg.p0 * 16).astype(np.int32)
    p1 = np.rint(seg.p1 * 16).astype(np.int32)
    # runs: consecutive segments of one stroke with one value, drawn as one polyline; the
    # points of run r are the contiguous slice pts[q0[r]:q0[r+1]] (its segments' starts, then
    # the last segment's end), so no per-run array is built
    same = (seg.stroke[1:] == seg.stroke[:-1]) & (seg.value[1:] == seg.value[:-1]).all(axis=1)
    starts = np.flatnonzero(np.r_[True, ~same])
    ends = np.r_[starts[1:], len(p0)]
    n_runs = len(starts)
    run_of_seg = np.repeat(np.arange(n_runs), ends - starts)
    pts = np.empty((len(p0) + n_runs, 2), np.int32)
    pts[np.arange(len(p0)) + run_of_seg] = p0
    pts[ends + np.arange(n_runs)] = p1[ends - 1]
    q0 = np.r_[starts + np.arange(n_runs), len(pts)]
    # groups: consecutive runs of one drawing with one value, one cv2.polylines call each
    value = seg.value[starts]
    run_drawing = seg.drawing[starts]
    same_group = (run_drawing[1:] == run_drawing[:-1]) & (value[1:] == value[:-1]).all(axis=1)
    g_start = np.flatnonzero(np.r_[True, ~same_group]) if n_runs else np.zeros(0, np.int64)
    g_end = np.r_[g_start[1:], n_runs].astype(np.int64)
    g_bounds = np.searchsorted(run_drawing[g_start], np.arange(seg.n_drawings + 1))
    colors = value[g_start].tolist()
    g_start, g_end, q0 = g_start.tolist(), g_end.tolist(), q0.tolist()
    for i in range(seg.n_drawings):
        img[:] = 0
        for g in range(g_bounds[i], g_bounds[i + 1]):
            lines = [pts[q0[r]:q0[r + 1]] for r in range(g_start[g], g_end[g])]
            cv2.polylines(img, lines, False, colors[g], lw_canvas, line_type, 4)
        if canvas != spec.size:
            out[i] = cv2.resize(img, (spec.size, spec.size), interpolation=cv2.INTER_AREA).reshape(out.shape[1:])
        else:
            out[i] = img
    return out.transpose(0, 3, 1, 2)


def render_baseline(d: Drawings, size: int = 64, line_width: int = 6) -> np.ndarray:
    """The popular Kaggle kernel's renderer, for benchmarks: per drawing, ``cv2.line`` point
    to point on a 256 canvas (line width 6, intensity 255 - 13 * min(i, 10)), then resized."""
    out = np.zeros((len(d), 1, size, size), np.uint8)
    img = np.zeros((256, 256), np.uint8)
    for i in range(len(d)):
        img[:] = 0
        for t, stroke in enumerate(d.strokes(i)):
            color = 255 - min(t, 10) * 13
            for a in range(len(stroke) - 1):
                cv2.line(img, (int(stroke[a, 0]), int(stroke[a, 1])),
                         (int(stroke[a + 1, 0]), int(stroke[a + 1, 1])), color, line_width)
        out[i, 0] = cv2.resize(img, (size, size)) if size != 256 else img
    return out


# --------------------------------------------------------------------------- for notebook 02

def batch_for(variant: str, st, raw, idx: np.ndarray) -> Drawings | None:
    """The drawings ``idx`` of store ``st`` as ``variant`` needs them: the raw store's twins
    (matched by key_id) for variants that need times, None when there is no raw twin."""
    if not RENDERERS[variant].needs_time:
        return st.drawings(idx)
    if raw is None:
        return None
    if raw is st:  # a timed (or raw) training store carries its own times
        return st.drawings(idx)
    keys = np.asarray(raw.key_id)
    order = np.argsort(keys)
    want = np.asarray(st.key_id)[idx]
    pos = np.searchsorted(keys, want, sorter=order)
    pos = np.minimum(pos, len(keys) - 1)
    found = keys[order[pos]] == want
    return raw.drawings(order[pos]) if found.all() else None


def plot_variants(images: dict[str, np.ndarray], titles: list[str] | None = None):
    """A grid: one row per drawing, one column per variant (each (N, C, H, W) uint8)."""
    from matplotlib.figure import Figure

    names = list(images)
    n = len(next(iter(images.values())))
    fig = Figure(figsize=(1.9 * len(names), 1.9 * n), constrained_layout=True)
    axes = fig.subplots(n, len(names), squeeze=False)
    for c, name in enumerate(names):
        for r in range(n):
            ax = axes[r, c]
            im = images[name][r]
            ax.imshow(im[0] if im.shape[0] == 1 else im.transpose(1, 2, 0), cmap="gray", vmin=0, vmax=255)
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title(name, fontsize=10)
            if c == 0 and titles:
                ax.set_ylabel(titles[r], fontsize=9)
    return fig


def time_renderers(batches: dict[str, Drawings], sizes: list[int], spec: RenderSpec,
                   min_seconds: float = 0.5, engines: tuple[str, ...] = ENGINES) -> "pd.DataFrame":
    """Images/s of each variant per engine (rows ``palette`` for OpenCV, ``palette · numba``)
    and of the popular kernel's baseline, per size, one core."""
    import time
    from dataclasses import replace

    import pandas as pd

    rows = []
    for size in sizes:
        s = replace(spec, size=size)
        jobs = {}
        for engine in engines:
            for name, d in batches.items():
                label = name if engine == "opencv" else f"{name} · {engine}"
                jobs[label] = (len(d), lambda d=d, name=name, engine=engine: render(d, name, s, engine=engine))
        # the baseline draws simplified points (a timed batch's, without its times)
        simplified_batch = next(Drawings(d.xy, None, d.stroke_offsets, d.drawing_offsets)
                                for d in batches.values() if d.xy.dtype == np.uint8)
        jobs["baseline (cv2.line loop)"] = (len(simplified_batch), lambda: render_baseline(simplified_batch, size))
        for name, (n, job) in jobs.items():
            job()  # warm up (and compile)
            k, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < min_seconds:
                job()
                k += 1
            rows.append({"variant": name, "size": size, "images_s": k * n / (time.perf_counter() - t0)})
    df = pd.DataFrame(rows).pivot(index="variant", columns="size", values="images_s")
    return df.round(0)
