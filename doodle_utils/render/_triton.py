"""The GPU fast path of :mod:`._torch`: one Triton kernel draws a whole batch, with no sync.

:func:`._torch.rasterise` is exact to its rules but sparse: it expands every segment into
pixel columns with ``torch.nonzero`` and ``repeat_interleave``, whose output sizes the host
must read. Each call therefore waits for the GPU twice, which stalls a training loop that
renders every batch (the host cannot queue the next step while it waits). This module draws
the same anti-aliased lines by the same rules with fixed-shape work only:

* :func:`point_table`: per *point* (not per segment, whose count needs a sync) the segment
  starting there, if any (``is_seg``), its end points in canvas pixels rounded to 1/16 px as
  OpenCV draws them, its run number (painter's order: consecutive segments of one stroke with
  one value share a run) and its channel values, all from :mod:`._torch`'s geometry and
  value functions on ``seg_start = every point``.
* :func:`_raster_kernel`: one program per (drawing, 32×32 tile). It walks the drawing's points
  in order, skips a segment whose box (grown by the pen's reach) misses the tile, and for each
  pixel computes the coverage ``round(clip((reach - d) * slope, 0, 1) * 255)`` of
  :func:`.render_torch._coverage_keys` (``d``: distance to the segment). It keeps per pixel
  the top run (latest run with ink there, its largest coverage) and the layer beneath (among
  earlier runs the largest coverage, ties to the later run), which is what
  :func:`._torch.rasterise`'s two ``scatter_reduce(amax)`` passes pick, and writes
  ``top * a1 + beneath * a2 * (1 - a1)`` in the output's dtype and memory format.

The dense walk (each pixel of a tile against each segment near the tile) costs more
arithmetic than the sparse stencil but no index tensors and no host round trip; a drawing's
segments sit in registers' reach of its tile. Aliased pens keep the torch path (their rules
are integer tricks that this kernel does not repeat).

Agreement with :func:`._torch.rasterise`: the kernel evaluates the same float32
formula, but the compiler may fuse multiply-adds, so a coverage can differ by one level in
rare pixels; ``tests/test_render_triton.py`` bounds the difference (it runs the kernel on CPU
tensors under Triton's interpreter, so CI covers it, and on CUDA when there is a GPU).

Why hand-written: see :mod:`._torch` (no library rasterises thick, anti-aliased,
painter-ordered polylines for a batch on the GPU); Triton is the tool the issue allows for the
device kernel, and it ships with PyTorch's CUDA wheels.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F

from ..devices import device_choices
from .pen import opencv_pen
from .variants import RenderSpec, canvas_transform, torch_geometry, variant_named

try:
    import triton
    import triton.language as tl
except ImportError:  # torch wheels without Triton (CPU-only builds, macOS, Windows)
    triton = tl = None

TILE = 32  # pixels per tile side (a program draws one tile of one drawing)


def available(device: torch.device | str) -> bool:
    """True when ``engine="auto"`` draws with this kernel on ``device``: a CUDA GPU that
    Triton supports (sm >= 7.0) with Triton installed, unless the environment sets
    ``DOODLE_NO_TRITON`` (back to the torch engine, e.g. to compare). The rule is
    :func:`.devices.device_choices`'s."""
    return device_choices(device).render_engine == "triton"


def supports(spec: RenderSpec) -> bool:
    """The kernel draws anti-aliased pens only; aliased ones keep the torch path."""
    return bool(spec.antialias)


@dataclass
class PointTable:
    """Per point of a CSR batch: the segment that starts there (see the module docstring)."""

    seg: torch.Tensor  # (P, 8) float32: x0, y0, dx, dy, 1/length**2 (0 for a dot), x1, y1, 0
    run: torch.Tensor  # (P,) int32: run number + 1 (painter's order), 0 where no segment starts
    value: torch.Tensor  # (P, 3) float32 channel values 0..255 (unused channels repeat)
    point_offsets: torch.Tensor  # (N+1,) int64 first point of each drawing
    canvas: int
    channels: int
    n_drawings: int


def point_table(xy: torch.Tensor, stroke_offsets: torch.Tensor, drawing_offsets: torch.Tensor,
                t: torch.Tensor | None, variant: str, spec: RenderSpec, in_frame: bool = False) -> PointTable:
    """Segments, runs and values per point, with fixed shapes (no host sync).

    End points are rounded to 1/16 px and ``dx, dy, 1 / length**2`` computed in float32 by
    the same operations as :func:`.render_torch._frame`, so the kernel's inputs are equal.
    """
    v = variant_named(variant)
    dev = xy.device
    so, do = stroke_offsets.to(dev, torch.int64), drawing_offsets.to(dev, torch.int64)
    g = torch_geometry(xy, so, do, None if t is None else t.to(dev), every_point=True, in_frame=in_frame)
    canvas, pad, scale = canvas_transform(spec)
    pix = (g.xy * scale + pad).to(torch.float32)
    n = pix.shape[0]
    j = torch.arange(n, device=dev)
    nxt = torch.where(g.point_total > 1, torch.clamp(j + 1, max=max(n - 1, 0)), j)
    p0 = torch.round(pix * 16) / 16
    p1 = p0[nxt]
    d = p1 - p0
    len2 = d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1]
    inv = torch.where(len2 > 0, 1.0 / len2.clamp(min=1e-12), 0.0)
    seg = torch.cat([p0, d, inv[:, None], p1, torch.zeros_like(inv)[:, None]], dim=1).contiguous()
    is_seg = (g.point_rank < g.point_total - 1) | (g.point_total == 1)
    value = v.torch_values(g, spec)
    new_run = g.point_rank == 0
    if n > 1:
        new_run[1:] |= (value[1:] != value[:-1]).any(dim=1)
    run = torch.where(is_seg, torch.cumsum(new_run & is_seg, 0, dtype=torch.int32), 0).to(torch.int32)
    value = value.to(torch.float32)
    c = value.shape[1]  # slices, not a list index (that would copy an index tensor to the device)
    vals = torch.stack([value[:, 0], value[:, min(1, c - 1)], value[:, min(2, c - 1)]], dim=1)
    return PointTable(seg, run.contiguous(), vals.contiguous(), g.point_offsets.contiguous(),
                      canvas, v.channels, do.numel() - 1)


if triton is not None:
    @triton.jit
    def _raster_kernel(tab_ptr, run_ptr, val_ptr, po_ptr, out_ptr, s_n, s_c, s_y, s_x, canvas, reach, slope,
                       n_tiles_x, C: tl.constexpr, T: tl.constexpr):
        """One (drawing, tile): walk the drawing's points, keep the top and beneath layers, and
        write float32 0..255 (unrounded, as :func:`._torch.rasterise` blends)."""
        d = tl.program_id(0)
        tile = tl.program_id(1)
        tx0 = (tile % n_tiles_x) * T
        ty0 = (tile // n_tiles_x) * T
        offs = tl.arange(0, T * T)
        px = tx0 + offs % T
        py = ty0 + offs // T
        fx = px.to(tl.float32)
        fy = py.to(tl.float32)
        start = tl.load(po_ptr + d)
        end = tl.load(po_ptr + d + 1)
        zero_f = tl.full([T * T], 0.0, tl.float32)
        zero_i = tl.full([T * T], 0, tl.int32)
        tq, tr, uq, ur = zero_i, zero_i, zero_i, zero_i
        t0, t1, t2 = zero_f, zero_f, zero_f
        u0, u1, u2 = zero_f, zero_f, zero_f
        lo_x = tx0.to(tl.float32) - reach
        lo_y = ty0.to(tl.float32) - reach
        hi_x = (tx0 + T - 1).to(tl.float32) + reach
        hi_y = (ty0 + T - 1).to(tl.float32) + reach
        for p in range(start, end):
            r = tl.load(run_ptr + p)
            x0 = tl.load(tab_ptr + 8 * p)
            y0 = tl.load(tab_ptr + 8 * p + 1)
            x1 = tl.load(tab_ptr + 8 * p + 5)
            y1 = tl.load(tab_ptr + 8 * p + 6)
            near = ((r > 0) & (tl.minimum(x0, x1) <= hi_x) & (tl.maximum(x0, x1) >= lo_x)
                    & (tl.minimum(y0, y1) <= hi_y) & (tl.maximum(y0, y1) >= lo_y))
            if near:
                dx = tl.load(tab_ptr + 8 * p + 2)
                dy = tl.load(tab_ptr + 8 * p + 3)
                inv = tl.load(tab_ptr + 8 * p + 4)
                pu = fx - x0
                pv = fy - y0
                proj = (pu * dx + pv * dy) * inv
                tau = tl.minimum(tl.maximum(proj, 0.0), 1.0)
                ex = pu - tau * dx
                ey = pv - tau * dy
                dist = tl.sqrt_rn(ex * ex + ey * ey)
                cov = tl.minimum(tl.maximum((reach - dist) * slope, 0.0), 1.0) * 255.0
                # torch.round (half to even); cov + 0.5 is exact for 0 <= cov <= 255
                rq = tl.floor(cov + 0.5)
                rq = tl.where((rq - cov == 0.5) & (rq - 2.0 * tl.floor(rq * 0.5) == 1.0), rq - 1.0, rq)
                q = rq.to(tl.int32)
                v0 = tl.load(val_ptr + 3 * p)
                v1 = tl.load(val_ptr + 3 * p + 1)
                v2 = tl.load(val_ptr + 3 * p + 2)
                ink = q > 0
                newer = ink & (r > tr)
                # the old top sinks beneath when it beats what is there (ties: the later run)
                sink = newer & (tr > 0) & (tq >= uq)
                uq = tl.where(sink, tq, uq)
                ur = tl.where(sink, tr, ur)
                u0 = tl.where(sink, t0, u0)
                u1 = tl.where(sink, t1, u1)
                u2 = tl.where(sink, t2, u2)
                tq = tl.where(newer, q, tl.where(ink & (r == tr), tl.maximum(tq, q), tq))
                tr = tl.where(newer, r, tr)
                t0 = tl.where(newer, v0, t0)
                t1 = tl.where(newer, v1, t1)
                t2 = tl.where(newer, v2, t2)
        w1 = tl.div_rn(tq.to(tl.float32), 255.0)
        w2 = tl.div_rn(uq.to(tl.float32), 255.0) * (1.0 - w1)
        inside = (px < canvas) & (py < canvas)
        base = out_ptr + d * s_n + py * s_y + px * s_x
        tl.store(base, t0 * w1 + u0 * w2, mask=inside)
        if C > 1:
            tl.store(base + s_c, t1 * w1 + u1 * w2, mask=inside)
        if C > 2:
            tl.store(base + 2 * s_c, t2 * w1 + u2 * w2, mask=inside)


@lru_cache(maxsize=2)
def _kernel(interpret: bool):
    if interpret:  # Triton's interpreter runs the same kernel on CPU tensors (for the tests)
        from triton.runtime.interpreter import InterpretedFunction

        return InterpretedFunction(_raster_kernel.fn)
    return _raster_kernel


def rasterise_points(tab: PointTable, spec: RenderSpec, out_dtype: torch.dtype = torch.uint8,
                     channels_last: bool = False) -> torch.Tensor:
    """Draw a :class:`PointTable` into (N, C, size, size) images (anti-aliased pens).

    ``out_dtype`` uint8 gives 0..255, a float dtype 0..1 (not rounded), as
    :func:`._torch.rasterise`; ``channels_last`` returns that memory format.
    """

    if not supports(spec):
        raise ValueError("the Triton rasteriser draws anti-aliased pens only (spec.antialias=True)")
    if triton is None:
        raise RuntimeError("the Triton rasteriser needs the triton package")
    S, C, N = tab.canvas, tab.channels, tab.n_drawings
    pen = opencv_pen(max(1, int(round(spec.line_width * S / spec.size))), True)
    direct = S == spec.size
    fmt = torch.channels_last if channels_last and direct else torch.contiguous_format
    img = torch.empty((N, C, S, S), dtype=torch.float32, device=tab.seg.device, memory_format=fmt)
    if N:
        n_tiles = math.ceil(S / TILE)
        cuda = tab.seg.device.type == "cuda"
        extra = {"enable_fp_fusion": False} if cuda else {}  # multiply and add round apart, as in torch
        _kernel(not cuda)[(N, n_tiles * n_tiles)](
            tab.seg, tab.run, tab.value, tab.point_offsets, img, img.stride(0), img.stride(1),
            img.stride(2), img.stride(3), S, float(pen.reach), float(pen.aa_slope), n_tiles,
            C=C, T=TILE, **extra)
    if not direct:
        img = F.interpolate(torch.round(img), size=(spec.size, spec.size), mode="area")
        if channels_last:
            img = img.contiguous(memory_format=torch.channels_last)
    if out_dtype == torch.uint8:
        return torch.round(img).to(torch.uint8)
    return img.div_(255).to(out_dtype)


def render_points(xy: torch.Tensor, stroke_offsets: torch.Tensor, drawing_offsets: torch.Tensor,
                  t: torch.Tensor | None = None, variant: str = "mono", spec: RenderSpec = RenderSpec(),
                  out_dtype: torch.dtype = torch.uint8, channels_last: bool = False,
                  in_frame: bool = False) -> torch.Tensor:
    """Render a CSR batch with the Triton kernel: (N, C, size, size) on the batch's device
    (``in_frame`` as in :func:`.render_torch.render_packed`)."""
    tab = point_table(xy, stroke_offsets, drawing_offsets, t, variant, spec, in_frame)
    return rasterise_points(tab, spec, out_dtype, channels_last)
