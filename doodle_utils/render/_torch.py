"""Rendering a whole batch of drawings on the device with PyTorch, in step with :mod:`.render`.

What it holds:

* :func:`segments_torch`: :func:`.render.segments` ported to torch. From CSR tensors on the
  device (``xy``, ``stroke_offsets``, ``drawing_offsets``, ``t``) it computes every segment's
  end points in canvas pixels and its channel values, for every variant in
  :data:`.variants.VARIANTS` (each entry's torch values), in float64 like numpy: the
  result equals ``segments()`` exactly (tested for every variant, raw and simplified).
* :func:`rasterise`: segments to images, vectorised over the whole batch.
* :func:`render_packed` (CSR tensors in, images out: what training calls with store batches)
  and :func:`render_torch` (a :class:`doodle_utils.data.Drawings` batch in, like :func:`.render.render`).
  On a CUDA GPU that Triton supports (sm >= 7.0, :func:`.devices.device_choices`) they hand
  anti-aliased pens to :mod:`._triton`, one Triton kernel that follows
  :func:`rasterise`'s rules without a host sync (equal images on the tests' drawings);
  ``engine="torch"`` keeps this module's path.

Algorithm (no Python loop over drawings, strokes or segments). Each segment touches only the
pixels near it: it walks its major axis (x when ``|dx| > |dy|``, else y) one pixel column at a
time over ``[min - reach, max + reach]``, clipped to the canvas, and in each column covers a
fixed stencil of ``H = floor(2 * sqrt(2) * reach) + 1`` pixels across the line, which holds the
segment's capsule (line plus round caps) whatever its angle. Columns are expanded with
``repeat_interleave``, so the work grows with the inked area, not pixels x segments (about
1,900 stencil pixels per drawing at 64 px). Each stencil pixel gets its ink from OpenCV's rules:

* anti-aliased (``LINE_AA``): coverage ``clip((reach - d) * slope, 0, 1)`` of the distance d
  to the segment. OpenCV fills the polygon and outlines it with anti-aliased 1-pixel lines, so
  its ink reaches past the nominal half width hw; ``reach = hw + 1.25``, ``slope = 0.9`` (1.15
  and 1.0 for 1-pixel lines) were fitted on whole drawings.
* aliased (``LINE_8``), thickness 1: OpenCV 4.14's integer Bresenham line between the rounded
  end points, reproduced exactly (pixel-identical images, tested).
* aliased, thicker: OpenCV's polygon outlined with 1-pixel lines plus midpoint circles of radius
  ``(t + 1) // 2`` at the rounded ends: inked within ``hw / cos + 0.5`` of the centre line
  across the major axis and within the segment's length (+ cos / 2), or inside a circle.

Overlaps follow OpenCV's painter's order (later segments over earlier ones). Runs of
consecutive segments of one stroke with one value (what OpenCV draws as one polyline) are
numbered in drawing order; each stencil pixel carries the key ``(run + 1) * 256 + coverage``
(aliased: ``run + 1``) and one ``scatter_reduce(amax)`` per canvas pixel picks the top run and
its largest coverage. With anti-aliasing a second ``amax`` over the earlier runs' pixels finds
the layer beneath (largest coverage, then latest), and the pixel is ``top * a1 + beneath * a2
* (1 - a1)``; deeper layers are dropped. Then one gather of the runs' values. ``base``
renders on the bigger canvas, rounds to 8-bit levels as OpenCV stores them, then
``F.interpolate(mode="area")`` (equal to ``cv2.INTER_AREA`` for the integer factors used).

Why hand-written: no library found rasterises thick, anti-aliased, painter-ordered polylines
for a batch of images on the GPU. Checked: torchvision (``draw_keypoints`` and the other
``utils.draw_*`` go through PIL ``ImageDraw`` on the CPU, one image at a time); kornia
(``draw_line`` draws 1-pixel lines into one image, width a TODO; ``draw_convex_polygons`` fills
polygons without anti-aliasing or round caps). Mesh and point rasterisers (nvdiffrast,
PyTorch3D) draw triangles or points, not stroked lines, and diffvg renders one vector scene at
a time; all are heavy CUDA builds. A dense rasteriser (every pixel against every segment) did
~53k images/s on an H100, which is why this one is sparse.

Agreement with :func:`.render.render` (default spec, line width 2), 192 synthetic drawings per
variant (time3 raw, the others Google-simplified): mean absolute difference per pixel and
channel (0..255) at 32 / 64 / 128 px with ``base=None``, the largest with ``base=256``, and the
smallest IoU of the inked masks (any channel > ``INK_THRESHOLD``) over all six::

    variant   anti-aliased                      aliased
              MAD 32/64/128px  base256  IoU      MAD 32/64/128px  base256  IoU
    mono      4.66 2.06 0.94   0.36     0.950    2.57 1.56 0.90   0.43     0.953
    palette   2.58 1.08 0.48   0.18     0.950    1.39 0.81 0.46   0.23     0.953
    strokes3  3.65 1.53 0.70   0.28     0.944    2.02 1.20 0.68   0.33     0.953
    time3     7.48 2.50 0.81   0.26     0.898    1.46 0.81 0.45   0.24     0.956

Only pixels at the edges of lines differ, so the MAD falls as 1 / size. The tests assert
``MAD <= MAX_MAD * 64 / size`` and ``IoU >= MIN_IOU`` (worst measured: 3.75 and 0.90
anti-aliased, 1.80 and 0.95 aliased) and pixel equality for aliased 1-pixel lines.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..data import Drawings
from ..devices import device_choices
from .pen import Pen, circle_spans, opencv_pen
from .variants import VARIANTS, RenderSpec, TorchSegments, canvas_transform, torch_geometry, variant_named

# Agreement with render.render that the tests assert (keys: spec.antialias): mean absolute
# difference per pixel and channel (0..255) at most MAX_MAD * 64 / size, and IoU of the inked
# masks (any channel above INK_THRESHOLD: fainter anti-aliased fringes vary) at least MIN_IOU.
INK_THRESHOLD = 32
MAX_MAD = {True: 4.5, False: 2.5}
MIN_IOU = {True: 0.85, False: 0.92}

_SQRT2 = math.sqrt(2.0)

# --------------------------------------------------------------------------- geometry


def segments_torch(xy: torch.Tensor, stroke_offsets: torch.Tensor, drawing_offsets: torch.Tensor,
                   t: torch.Tensor | None = None, variant: str = "mono", spec: RenderSpec = RenderSpec(),
                   device: str | torch.device | None = None, in_frame: bool = False) -> TorchSegments:
    """Every segment of a CSR batch in canvas pixels with its channel values, on the device.

    Args:
        xy: (P, 2) points, uint8 (simplified) or float (raw, aligned and scaled here).
        stroke_offsets, drawing_offsets: the CSR offsets of :class:`doodle_utils.data.Drawings` (int64).
        t: (P,) milliseconds for raw drawings, else None (as ``Drawings.t``: raw iff given).
        variant: a name in :data:`.variants.VARIANTS`.
        spec: size, padding and canvas (``base``).
        device: where to compute; default the device of ``xy``.
        in_frame: ``xy`` is in the 0..255 frame although ``t`` is given (``Drawings.in_frame``).

    Returns:
        :class:`TorchSegments` equal to :func:`.render.segments` of the same batch.
    """
    v = variant_named(variant)
    if v.torch_values is None:
        raise KeyError(f"renderer {variant!r} has no torch values (register it in .variants with both)")
    dev = torch.device(device) if device is not None else xy.device
    xy, so, do = xy.to(dev), stroke_offsets.to(dev, torch.int64), drawing_offsets.to(dev, torch.int64)
    t = None if t is None else t.to(dev)
    g = torch_geometry(xy, so, do, t, in_frame=in_frame)
    canvas, pad, scale = canvas_transform(spec)
    pix = g.xy * scale + pad
    j = g.seg_start
    nxt = torch.where(g.point_total[j] > 1, j + 1, j)
    return TorchSegments(pix[j].to(torch.float32), pix[nxt].to(torch.float32), v.torch_values(g, spec),
                         g.drawing_of_stroke[g.seg_stroke], g.seg_stroke, canvas, v.channels, do.numel() - 1)


# --------------------------------------------------------------------------- rasterising

@dataclass
class _Frame:
    """Segments in their major-axis frame (u along the major axis, v across), canvas pixels."""

    u0: torch.Tensor
    v0: torch.Tensor
    du: torch.Tensor
    dv: torch.Tensor
    horiz: torch.Tensor  # True: u is x (OpenCV's rule: |dx| > |dy|)
    inv_len2: torch.Tensor  # 1 / length**2, 0 for a dot
    slope: torch.Tensor  # dv / du
    sec: torch.Tensor  # sqrt(1 + slope**2)


def _frame(seg: TorchSegments) -> _Frame:
    p0 = torch.round(seg.p0 * 16) / 16  # OpenCV draws with 4 fractional bits
    p1 = torch.round(seg.p1 * 16) / 16
    d = p1 - p0
    horiz = d[:, 0].abs() > d[:, 1].abs()
    u0, v0 = torch.where(horiz, p0[:, 0], p0[:, 1]), torch.where(horiz, p0[:, 1], p0[:, 0])
    du, dv = torch.where(horiz, d[:, 0], d[:, 1]), torch.where(horiz, d[:, 1], d[:, 0])
    len2 = du * du + dv * dv
    inv_len2 = torch.where(len2 > 0, 1.0 / len2.clamp(min=1e-12), 0.0)
    slope = torch.where(du != 0, dv / torch.where(du != 0, du, 1.0), 0.0)
    return _Frame(u0, v0, du, dv, horiz, inv_len2, slope, torch.sqrt(1 + slope * slope))


def _columns(f: _Frame, reach: float, canvas: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every (segment, major-axis column) pair a segment may ink, and the first stencil row.

    Columns run over ``[min u - reach, max u + reach]`` clipped to the canvas; in column ``c``
    the segment's capsule lies within ``reach / cos`` of its centre line across the major axis.
    """
    dev = f.u0.device
    umin, umax = torch.minimum(f.u0, f.u0 + f.du), torch.maximum(f.u0, f.u0 + f.du)
    c_lo = torch.ceil(umin - reach).clamp(min=0).to(torch.int64)
    c_hi = torch.floor(umax + reach).clamp(max=canvas - 1).to(torch.int64)
    n_cols = (c_hi - c_lo + 1).clamp(min=0)
    total = int(n_cols.sum())
    k = torch.repeat_interleave(torch.arange(len(n_cols), device=dev), n_cols, output_size=total)
    c = c_lo[k] + torch.arange(total, device=dev) - (torch.cumsum(n_cols, 0) - n_cols)[k]
    u_on = torch.minimum(torch.maximum(c.to(torch.float32), umin[k]), umax[k])
    v_c = f.v0[k] + f.slope[k] * (u_on - f.u0[k])
    r0 = torch.ceil(v_c - reach * f.sec[k]).to(torch.int64)
    return k, c, r0


def _thin_aliased(seg: TorchSegments, k: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """OpenCV's 1-pixel ``LINE_8`` line, exactly: OpenCV 4.14 rounds the end points half up and
    draws the integer Bresenham line of its ``LineIterator`` from the left end, the minor axis
    stepping to ``floor((2 * d * i + D - 1) / (2 * D))`` at major step ``i`` (D, d: major and
    minor extents), ties of ``|dx| == |dy|`` going x-major. Checked against ``cv2.line``."""
    a = torch.floor(torch.round(seg.p0 * 16) / 16 + 0.5).to(torch.int64)
    b = torch.floor(torch.round(seg.p1 * 16) / 16 + 0.5).to(torch.int64)
    swap = (b[:, 0] < a[:, 0])[:, None]
    left, right = torch.where(swap, b, a), torch.where(swap, a, b)
    dx, dy = right[:, 0] - left[:, 0], right[:, 1] - left[:, 1]
    ymajor = dy.abs() > dx
    D = torch.where(ymajor, dy.abs(), dx)
    d = torch.where(ymajor, dx, dy.abs())
    sg = torch.where(dy < 0, -1, 1)
    lx, ly, D, d, sg, ymajor = (t[k][:, None] for t in (left[:, 0], left[:, 1], D, d, sg, ymajor))
    i = torch.where(ymajor, (y - ly) * sg, x - lx)  # major step from the left end
    minor = torch.div(2 * d * i + D - 1, 2 * D.clamp(min=1), rounding_mode="floor").where(D > 0, 0)
    on_minor = torch.where(ymajor, x == lx + minor, y == ly + sg * minor)
    return (i >= 0) & (i <= D) & on_minor


def _coverage_keys(seg: TorchSegments, pen: Pen, run: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per stencil pixel: flat pixel index and key ``(run + 1) * 256 + coverage`` (anti-aliased)
    or ``run + 1`` (aliased); 0 where the pixel gets no ink."""
    S = seg.canvas
    f = _frame(seg)
    k, c, r0 = _columns(f, pen.reach, S)
    H = int(math.floor(2 * pen.reach * _SQRT2)) + 1  # rows per column: 2 * reach / cos, cos >= 1/sqrt(2)
    rows = r0[:, None] + torch.arange(H, device=c.device)  # (columns, H)
    run1 = (run + 1).to(torch.int32)[k][:, None]
    if pen.antialias or pen.half_width:
        pu = (c.to(torch.float32) - f.u0[k])[:, None]
        pv = rows.to(torch.float32) - f.v0[k][:, None]
        du, dv = f.du[k][:, None], f.dv[k][:, None]
        proj = (pu * du + pv * dv) * f.inv_len2[k][:, None]  # position along the segment, 0..1
    if pen.antialias:
        tau = proj.clamp(0, 1)
        ex, ey = pu - tau * du, pv - tau * dv
        dist = torch.sqrt(ex * ex + ey * ey)
        q = torch.round(((pen.reach - dist) * pen.aa_slope).clamp(0, 1) * 255).to(torch.int32)
        key = torch.where(q > 0, run1 * 256 + q, 0)
    elif pen.half_width:
        # the polygon, outlined with 1-pixel lines: across the major axis within hw / cos + 0.5
        # of the centre line, along it within the segment +- cos / 2
        sec = f.sec[k][:, None]
        length = torch.sqrt(f.du * f.du + f.dv * f.dv)[k][:, None]
        along = proj * length
        inked = ((pv - f.slope[k][:, None] * pu).abs() <= pen.half_width * sec + 0.5) & (length > 0)
        inked &= (along >= -0.5 / sec) & (along <= length + 0.5 / sec)
        spans = torch.tensor(circle_spans(pen.cap), device=c.device)
        for cu, cv in ((f.u0, f.v0), (f.u0 + f.du, f.v0 + f.dv)):  # circles at the rounded ends
            ou = (c - torch.floor(cu + 0.5).to(torch.int64)[k]).abs()[:, None]
            ov = (rows - torch.floor(cv + 0.5).to(torch.int64)[k][:, None]).abs()
            inked |= (ov <= pen.cap) & (ou <= spans[ov.clamp(max=pen.cap)])
        key = torch.where(inked, run1, 0)
    else:
        cc = c[:, None].expand_as(rows)
        x, y = torch.where(f.horiz[k][:, None], cc, rows), torch.where(f.horiz[k][:, None], rows, cc)
        key = torch.where(_thin_aliased(seg, k, x, y), run1, 0)
    key = torch.where((rows >= 0) & (rows < S), key, 0)
    horiz = f.horiz[k]
    base = seg.drawing[k] * (S * S) + torch.where(horiz, c, c * S)
    pix = base[:, None] + rows.clamp(0, S - 1) * torch.where(horiz, S, 1)[:, None]
    return pix.flatten(), key.flatten()


def _runs(seg: TorchSegments) -> torch.Tensor:
    """Run index of each segment: consecutive segments of one stroke with one value share one."""
    if len(seg.stroke) == 0:
        return seg.stroke.clone()
    new = torch.ones_like(seg.stroke, dtype=torch.bool)
    new[1:] = (seg.stroke[1:] != seg.stroke[:-1]) | (seg.value[1:] != seg.value[:-1]).any(dim=1)
    return torch.cumsum(new, 0) - 1


def rasterise(seg: TorchSegments, spec: RenderSpec, out_dtype: torch.dtype = torch.uint8) -> torch.Tensor:
    """Draw segments into (N, C, size, size) images on their device (see the module docstring).

    Args:
        seg: from :func:`segments_torch` (with the same ``spec``).
        spec: line width, anti-aliasing, ``base`` (size and padding are already in ``seg``).
        out_dtype: ``torch.uint8`` (0..255) or a floating dtype (0..1, not rounded).
    """
    S, C, N = seg.canvas, seg.channels, seg.n_drawings
    dev = seg.p0.device
    thickness = max(1, int(round(spec.line_width * S / spec.size)))
    pen = opencv_pen(thickness, spec.antialias)
    K = len(seg.stroke)
    run = _runs(seg)
    table = torch.zeros(K + 1, C, dtype=torch.float32, device=dev)  # row r + 1: run r's value
    table[run + 1] = seg.value.to(torch.float32)
    if K + 1 >= 2 ** 23:  # run numbers must fit the int32 keys
        raise ValueError(f"{K} segments in one batch; render at most {2 ** 23 - 2} at a time")
    pix, key = _coverage_keys(seg, pen, run)
    top = torch.zeros(N * S * S, dtype=torch.int32, device=dev).scatter_reduce_(0, pix, key, "amax")
    if pen.antialias:
        # beneath the top run: among earlier runs the largest coverage, then the latest
        r1 = top >> 8
        below = (key >> 8) < r1[pix]
        key2 = torch.where(below, ((key & 255) << 23) | (key >> 8), 0)
        under = torch.zeros_like(top).scatter_reduce_(0, pix, key2, "amax")
        w1 = (top & 255).to(torch.float32) / 255
        w2 = (under >> 23).to(torch.float32) / 255 * (1 - w1)
        img = (table.index_select(0, r1) * w1[:, None]
               + table.index_select(0, under & ((1 << 23) - 1)) * w2[:, None])
    elif S == spec.size and out_dtype == torch.uint8:
        img = table.to(torch.uint8).index_select(0, top)
        return img.view(N, S, S, C).permute(0, 3, 1, 2).contiguous()
    else:
        img = table.index_select(0, top)
    img = img.view(N, S, S, C).permute(0, 3, 1, 2)
    if S != spec.size:
        img = F.interpolate(torch.round(img), size=(spec.size, spec.size), mode="area")
    if out_dtype == torch.uint8:
        return torch.round(img).to(torch.uint8).contiguous()
    return (img / 255).to(out_dtype).contiguous()


def render_packed(xy: torch.Tensor, stroke_offsets: torch.Tensor, drawing_offsets: torch.Tensor,
                  t: torch.Tensor | None = None, variant: str = "mono", spec: RenderSpec = RenderSpec(),
                  out_dtype: torch.dtype = torch.uint8, engine: str = "auto",
                  channels_last: bool = False, in_frame: bool = False) -> torch.Tensor:
    """Render a CSR batch already on the device (the training entry): (N, C, size, size).

    ``engine``: "torch" (:func:`rasterise`), "triton" (:mod:`._triton`'s kernel: no host
    sync; anti-aliased pens; on CPU tensors it runs in Triton's slow interpreter, for tests;
    ValueError on a GPU that Triton does not support) or "auto" (Triton for anti-aliased pens
    on a CUDA GPU that Triton supports, else torch: :func:`.devices.device_choices`).
    ``channels_last`` returns that memory format. ``in_frame``: points with times already in
    the 0..255 frame (a timed store's, or an augmented batch), not aligned and scaled.
    """
    from . import _triton  # lazy: Triton is optional and CUDA-only; imported when a batch is drawn

    if engine not in ("auto", "torch", "triton"):
        raise ValueError(f"engine must be 'auto', 'torch' or 'triton', got {engine!r}")
    chosen = device_choices(xy.device, engine=engine).render_engine
    if engine == "auto" and not _triton.supports(spec):
        chosen = "torch"
    if chosen == "triton":
        return _triton.render_points(xy, stroke_offsets, drawing_offsets, t, variant, spec, out_dtype,
                                           channels_last, in_frame=in_frame)
    img = rasterise(segments_torch(xy, stroke_offsets, drawing_offsets, t, variant, spec, in_frame=in_frame),
                    spec, out_dtype)
    return img.contiguous(memory_format=torch.channels_last) if channels_last else img


def to_tensors(d: Drawings, device: str | torch.device = "cpu") -> tuple[torch.Tensor, ...]:
    """A :class:`doodle_utils.data.Drawings` batch as (xy, stroke_offsets, drawing_offsets, t) on ``device``."""
    dev = torch.device(device)
    xy = torch.from_numpy(np.ascontiguousarray(d.xy)).to(dev)
    so = torch.from_numpy(np.ascontiguousarray(d.stroke_offsets, np.int64)).to(dev)
    do = torch.from_numpy(np.ascontiguousarray(d.drawing_offsets, np.int64)).to(dev)
    t = None if d.t is None else torch.from_numpy(np.ascontiguousarray(d.t)).to(dev)
    return xy, so, do, t


def render_torch(d: Drawings, variant: str = "mono", spec: RenderSpec = RenderSpec(),
                 device: str | torch.device = "cpu", out_dtype: torch.dtype = torch.uint8,
                 engine: str = "auto") -> torch.Tensor:
    """Render a batch like :func:`.render.render`, on ``device``: (N, C, size, size) tensor."""
    return render_packed(*to_tensors(d, device), variant=variant, spec=spec, out_dtype=out_dtype, engine=engine,
                         in_frame=d.in_frame)


def __getattr__(name: str):
    """``TORCH_VALUES``, the torch twins by variant name before :mod:`.variants` held both."""
    if name == "TORCH_VALUES":
        import warnings

        warnings.warn("render_torch.TORCH_VALUES is deprecated: use variants.VARIANTS[name].torch_values",
                      DeprecationWarning, stacklevel=2)
        return {n: v.torch_values for n, v in VARIANTS.items() if v.torch_values is not None}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
