"""The render variants and the geometry they colour by: one registry, both value functions.

A variant (:data:`VARIANTS`) is one entry holding how many channels it draws, whether it needs
times, and its per-segment channel values twice: with numpy (the OpenCV and numba engines,
:mod:`.render` and :mod:`.render_numba`) and with torch (:mod:`._torch` and
:mod:`.render_triton`, on the device, in float64 like numpy so the two are equal: tested for
every entry). A new variant is one edit here. The geometry both read (per-point and
per-segment facts) and the segment lists the engines draw (:func:`segments`,
:class:`TorchSegments`) live here too, below every engine, so no engine imports another.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import numpy as np
import torch
from matplotlib import colormaps

from ..data import Drawings


@dataclass(frozen=True)
class RenderSpec:
    """How to draw: output size, line width (output pixels), anti-aliasing, padding, canvas."""

    size: int = 64
    line_width: float = 2.0
    antialias: bool = True
    pad: int = 2
    base: int | None = None  # e.g. 256: draw there, then downsample to ``size``
    fade: bool = False  # mono only: dim later strokes
    cmap: str = "viridis"  # palette only: matplotlib colour map name


@dataclass
class Segments:
    """Line segments of a batch: end points in canvas pixels and a value per channel.

    Attributes:
        p0, p1: (K, 2) float32 end points (x, y) in canvas pixels.
        value: (K, C) uint8 channel values of each segment.
        drawing: (K,) int64 drawing index of each segment (segments are in drawing order).
        first: (K,) bool, True for the first segment of a stroke (for polylines).
        stroke: (K,) int64 global stroke index of each segment.
    """

    p0: np.ndarray
    p1: np.ndarray
    value: np.ndarray
    drawing: np.ndarray
    stroke: np.ndarray
    canvas: int
    channels: int
    n_drawings: int


@dataclass
class TorchSegments:
    """:class:`.render.Segments` as tensors on one device (same fields, same meaning)."""

    p0: torch.Tensor  # (K, 2) float32 canvas pixels
    p1: torch.Tensor
    value: torch.Tensor  # (K, C) uint8
    drawing: torch.Tensor  # (K,) int64
    stroke: torch.Tensor  # (K,) int64
    canvas: int
    channels: int
    n_drawings: int


@dataclass(frozen=True)
class Variant:
    """A render variant: its channels, whether it needs times, its numpy and torch values."""

    name: str
    channels: int
    values: Callable[["Geometry", RenderSpec], np.ndarray]  # (K, C) uint8 per segment
    needs_time: bool = False
    torch_values: Callable[["TorchGeometry", RenderSpec], torch.Tensor] | None = None


VARIANTS: dict[str, Variant] = {}


def register(variant: Variant) -> Variant:
    """Add a variant to :data:`VARIANTS` (every engine then draws it)."""
    VARIANTS[variant.name] = variant
    return variant


def variant_named(name: str) -> Variant:
    """The variant ``name``; a KeyError listing the others when there is none."""
    if name not in VARIANTS:
        raise KeyError(f"unknown renderer {name!r}; have {sorted(VARIANTS)}")
    return VARIANTS[name]


@lru_cache(maxsize=8)
def palette_table(cmap: str) -> np.ndarray:
    """The palette variant's 256 colours (uint8 RGB rows) from a matplotlib colour map."""
    return (colormaps[cmap](np.linspace(0, 1, 256))[:, :3] * 255).round().astype(np.uint8)


# --------------------------------------------------------------------------- numpy

@dataclass
class Geometry:
    """Per-point and per-segment facts the variants colour by."""

    d: Drawings
    xy: np.ndarray  # (P, 2) float64 in 0..255 (aligned and scaled)
    seg_start: np.ndarray  # (K,) index of each segment's first point
    seg_stroke: np.ndarray  # (K,) global stroke index
    stroke_rank: np.ndarray  # (S,) stroke index within its drawing
    stroke_total: np.ndarray  # (S,) strokes in the stroke's drawing
    point_rank: np.ndarray  # (P,) point index within its stroke
    point_total: np.ndarray  # (P,) points in the point's stroke
    drawing_of_stroke: np.ndarray  # (S,) drawing index of each stroke


def scaled(d: Drawings) -> np.ndarray:
    """Coordinates in 0..255: simplified and in-frame batches (``d.in_frame``: a timed store's,
    or augmented) as they are, raw screen points aligned and scaled like Google's (each
    drawing's minimum to 0 and its longer side to 255; vectorised over the batch)."""
    xy = d.xy.astype(np.float64)
    if not d.raw or d.in_frame or len(xy) == 0:
        return xy
    pts = d.stroke_offsets[d.drawing_offsets]
    counts = np.diff(pts)
    starts = pts[:-1][counts > 0]  # reduceat needs increasing starts: skip empty drawings
    lo = np.minimum.reduceat(xy, starts, axis=0)
    ext = (np.maximum.reduceat(xy, starts, axis=0) - lo).max(axis=1)
    factor = 255.0 / np.where(ext > 0, ext, 1.0)
    factor[ext <= 0] = 0.0
    owner = np.repeat(np.arange(len(starts)), counts[counts > 0])
    return (xy - lo[owner]) * factor[owner][:, None]


def geometry(d: Drawings) -> Geometry:
    so, do = d.stroke_offsets, d.drawing_offsets
    lens = np.diff(so)
    n_pts = int(so[-1])
    stroke_of_point = np.repeat(np.arange(len(lens)), lens)
    point_rank = np.arange(n_pts) - so[:-1][stroke_of_point]
    point_total = lens[stroke_of_point]
    # a segment joins point j and j+1 of the same stroke; a 1-point stroke gives a dot (j, j)
    is_seg = point_rank < point_total - 1
    single = point_total == 1
    seg_start = np.flatnonzero(is_seg | single)
    strokes_per_drawing = np.diff(do)
    drawing_of_stroke = np.repeat(np.arange(len(d)), strokes_per_drawing)
    stroke_rank = np.arange(len(lens)) - do[:-1][drawing_of_stroke]
    return Geometry(d, scaled(d), seg_start, stroke_of_point[seg_start], stroke_rank,
                     strokes_per_drawing[drawing_of_stroke], point_rank, point_total, drawing_of_stroke)


def _ramp(pos: np.ndarray, total: np.ndarray, lo: float = 32.0, hi: float = 255.0) -> np.ndarray:
    """lo -> hi as pos goes 0 -> total-1 (hi when total is 1)."""
    frac = np.where(total > 1, pos / np.maximum(total - 1, 1), 1.0)
    return np.rint(lo + (hi - lo) * frac).astype(np.uint8)


def _mono(g: Geometry, spec: RenderSpec) -> np.ndarray:
    if spec.fade:
        v = 255 - 13 * np.minimum(g.stroke_rank[g.seg_stroke], 10)
    else:
        v = np.full(len(g.seg_start), 255)
    return v.astype(np.uint8)[:, None]


def _palette(g: Geometry, spec: RenderSpec) -> np.ndarray:
    lut = palette_table(spec.cmap)
    s = g.seg_stroke
    idx = _ramp(g.stroke_rank[s], g.stroke_total[s], 0, 255)
    return lut[idx]


def _strokes3(g: Geometry, spec: RenderSpec) -> np.ndarray:
    j = g.seg_start
    plain = np.full(len(j), 255, np.uint8)
    along = _ramp(g.point_rank[j], g.point_total[j] - 1)  # segment k of the stroke's n-1: 32 -> 255
    s = g.seg_stroke
    across = _ramp(g.stroke_rank[s], g.stroke_total[s])
    return np.stack([plain, along, across], axis=1)


def _time3(g: Geometry, spec: RenderSpec) -> np.ndarray:
    d = g.d
    if d.t is None:
        raise ValueError("time3 needs raw drawings with timings (a raw store)")
    t = d.t.astype(np.float64)
    so, do = d.stroke_offsets, d.drawing_offsets
    pts = so[do]
    drawing_of_point = np.repeat(np.arange(len(d)), np.diff(pts))
    t0 = t[pts[:-1]][drawing_of_point]
    dur = np.maximum(t[pts[1:] - 1][drawing_of_point] - t0, 1.0)
    j = g.seg_start
    nxt = np.minimum(j + 1, len(t) - 1)
    nxt = np.where(g.point_total[j] > 1, nxt, j)
    since = _ramp(t[j] - t0[j], dur[j] + 1)  # fraction of the drawing's duration
    dist = np.hypot(*(g.xy[nxt] - g.xy[j]).T)
    speed = dist / np.maximum(t[nxt] - t[j], 1.0)  # canvas units (0..255) per ms
    speed_v = np.rint(32 + 223 * np.clip(speed / 2.0, 0, 1)).astype(np.uint8)  # 2 units/ms = full
    s = g.seg_stroke
    stroke_v = _ramp(g.stroke_rank[s], g.stroke_total[s])
    return np.stack([since, speed_v, stroke_v], axis=1)


def canvas_transform(spec: RenderSpec) -> tuple[int, float, float]:
    """(canvas size, offset, scale) mapping 0..255 coordinates to canvas pixels."""
    canvas = spec.base or spec.size
    pad = spec.pad * canvas / spec.size
    return canvas, pad, (canvas - 1 - 2 * pad) / 255.0


def segments(d: Drawings, variant: str, spec: RenderSpec = RenderSpec()) -> Segments:
    """Every segment of a batch, in canvas pixels, with its channel values."""
    r = variant_named(variant)
    g = geometry(d)
    canvas, pad, scale = canvas_transform(spec)
    pix = g.xy * scale + pad
    j = g.seg_start
    nxt = np.where(g.point_total[j] > 1, j + 1, j)
    return Segments(pix[j].astype(np.float32), pix[nxt].astype(np.float32), r.values(g, spec),
                    g.drawing_of_stroke[g.seg_stroke], g.seg_stroke, canvas, r.channels, len(d))


# --------------------------------------------------------------------------- torch

@dataclass
class TorchGeometry:
    """Per-point and per-segment facts, as in :class:`Geometry` (tensors)."""

    xy: torch.Tensor  # (P, 2) float64 in 0..255
    t: torch.Tensor | None  # (P,) float64 ms, raw only
    point_offsets: torch.Tensor  # (D+1,) first point of each drawing
    drawing_of_point: torch.Tensor
    drawing_of_stroke: torch.Tensor
    seg_start: torch.Tensor
    seg_stroke: torch.Tensor
    stroke_rank: torch.Tensor
    stroke_total: torch.Tensor
    point_rank: torch.Tensor
    point_total: torch.Tensor


def torch_geometry(xy: torch.Tensor, so: torch.Tensor, do: torch.Tensor, t: torch.Tensor | None,
              every_point: bool = False, in_frame: bool = False) -> TorchGeometry:
    """Per-point and per-segment facts; ``every_point`` treats every point as a segment start
    (fixed shapes, no host sync: :mod:`.render_triton` masks the points that start none);
    ``in_frame``: points with times already in the 0..255 frame (not aligned and scaled)."""
    dev = xy.device
    n_pts, n_strokes, n_draw = xy.shape[0], so.numel() - 1, do.numel() - 1
    lens = so[1:] - so[:-1]
    stroke_of_point = torch.repeat_interleave(torch.arange(n_strokes, device=dev), lens, output_size=n_pts)
    point_rank = torch.arange(n_pts, device=dev) - so[:-1][stroke_of_point]
    point_total = lens[stroke_of_point]
    # a segment joins point j and j+1 of the same stroke; a 1-point stroke gives a dot (j, j)
    if every_point:
        seg_start = torch.arange(n_pts, device=dev)
    else:
        seg_start = torch.nonzero((point_rank < point_total - 1) | (point_total == 1)).flatten()
    per_drawing = do[1:] - do[:-1]
    drawing_of_stroke = torch.repeat_interleave(torch.arange(n_draw, device=dev), per_drawing,
                                                output_size=n_strokes)
    stroke_rank = torch.arange(n_strokes, device=dev) - do[:-1][drawing_of_stroke]
    drawing_of_point = drawing_of_stroke[stroke_of_point]
    point_offsets = so[do]
    pts = xy.to(torch.float64)
    if t is not None and not in_frame:  # raw: each drawing aligned to 0, its longer side scaled to 255
        idx = drawing_of_point[:, None].expand(-1, 2)
        lo = torch.full((n_draw, 2), math.inf, dtype=torch.float64, device=dev).scatter_reduce(0, idx, pts, "amin")
        hi = torch.full((n_draw, 2), -math.inf, dtype=torch.float64, device=dev).scatter_reduce(0, idx, pts, "amax")
        ext = (hi - lo).amax(dim=1)
        factor = torch.where(ext > 0, 255.0 / ext, 0.0)
        pts = (pts - lo[drawing_of_point]) * factor[drawing_of_point][:, None]
        t = t.to(torch.float64)
    return TorchGeometry(pts, t, point_offsets, drawing_of_point, drawing_of_stroke, seg_start,
                     stroke_of_point[seg_start], stroke_rank, per_drawing[drawing_of_stroke],
                     point_rank, point_total)


def _ramp_torch(pos: torch.Tensor, total: torch.Tensor, lo: float = 32.0, hi: float = 255.0) -> torch.Tensor:
    """lo -> hi as pos goes 0 -> total-1 (hi when total is 1); float64 like the numpy version."""
    pos, total = pos.to(torch.float64), total.to(torch.float64)
    frac = torch.where(total > 1, pos / torch.clamp(total - 1, min=1), 1.0)
    return torch.round(lo + (hi - lo) * frac).to(torch.uint8)


def _mono_torch(g: TorchGeometry, spec: RenderSpec) -> torch.Tensor:
    if spec.fade:
        v = 255 - 13 * torch.clamp(g.stroke_rank[g.seg_stroke], max=10)
    else:
        v = torch.full_like(g.seg_start, 255)
    return v.to(torch.uint8)[:, None]


@lru_cache(maxsize=16)
def _lut_on(cmap: str, device: torch.device) -> torch.Tensor:
    """The colour map on ``device``, copied once (a copy per batch would wait for the device)."""
    return torch.from_numpy(palette_table(cmap)).to(device)


def _palette_torch(g: TorchGeometry, spec: RenderSpec) -> torch.Tensor:
    lut = _lut_on(spec.cmap, g.xy.device)
    s = g.seg_stroke
    return lut[_ramp_torch(g.stroke_rank[s], g.stroke_total[s], 0, 255).long()]


def _strokes3_torch(g: TorchGeometry, spec: RenderSpec) -> torch.Tensor:
    j, s = g.seg_start, g.seg_stroke
    plain = torch.full_like(j, 255).to(torch.uint8)
    along = _ramp_torch(g.point_rank[j], g.point_total[j] - 1)
    across = _ramp_torch(g.stroke_rank[s], g.stroke_total[s])
    return torch.stack([plain, along, across], dim=1)


def _time3_torch(g: TorchGeometry, spec: RenderSpec) -> torch.Tensor:
    if g.t is None:
        raise ValueError("time3 needs raw drawings with timings (a raw store)")
    t, po, dp = g.t, g.point_offsets, g.drawing_of_point
    t0 = t[po[:-1].clamp(max=max(len(t) - 1, 0))][dp]
    dur = torch.clamp(t[(po[1:] - 1).clamp(min=0)][dp] - t0, min=1.0)
    j = g.seg_start
    nxt = torch.where(g.point_total[j] > 1, torch.clamp(j + 1, max=len(t) - 1), j)
    since = _ramp_torch(t[j] - t0[j], dur[j] + 1)
    diff = g.xy[nxt] - g.xy[j]
    speed = torch.hypot(diff[:, 0], diff[:, 1]) / torch.clamp(t[nxt] - t[j], min=1.0)
    speed_v = torch.round(32 + 223 * torch.clamp(speed / 2.0, 0, 1)).to(torch.uint8)
    s = g.seg_stroke
    return torch.stack([since, speed_v, _ramp_torch(g.stroke_rank[s], g.stroke_total[s])], dim=1)


# --------------------------------------------------------------------------- the registry

register(Variant("mono", 1, _mono, torch_values=_mono_torch))
register(Variant("palette", 3, _palette, torch_values=_palette_torch))
register(Variant("strokes3", 3, _strokes3, torch_values=_strokes3_torch))
register(Variant("time3", 3, _time3, needs_time=True, torch_values=_time3_torch))
