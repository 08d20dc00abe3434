"""The point-sequence model (Quick, Draw! 8th place): a learned rasteriser.

No hand-made rendering: each drawing's points, in the order they were drawn, go through a
stack of (dilated) 1-D convolutions that gives every point ``point_dim`` features; the
features are scattered into a ``grid × grid`` image at the points' positions (the mean where
several points share a cell) and a 2-D CNN trunk from timm classifies that image.

* :func:`point_features` turns a batch of drawings into a fixed budget of points each
  (``(N, L, F)`` features and an ``(N, L)`` mask): position, the move from the previous point,
  time, and the pen state. Drawings longer than the budget are resampled evenly along the
  pen's path (first and last point kept); shorter ones are padded and masked.
* :func:`scatter_mean` is the rasteriser: ``index_add_`` of features and of counts into the
  cells (a dump cell takes padding), then the division. It is written with torch's own
  scatter primitives rather than a library such as ``torch_scatter`` because that one needs
  a compiled extension per torch and CUDA version, which a Kaggle kernel cannot build.
* :class:`PointCNN` is the model. Its trunk is any timm model taking ``point_dim`` input
  channels; for ResNet-family trunks (resnet, resnet-d, se-resnext…) the stem (strided conv
  and max-pool) is removed by default, so the first stage sees the whole grid: a 32×32 grid
  feeds ResNet's first stage what a 128 px image would after its stem.

The loaders compute the features in their worker processes (:class:`doodle_utils.training.loaders.DoodleDL` with
``input="points"``); the model scatters on the batch's device (the GPU when there is one).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numba
import numpy as np
import torch
from torch import nn

from ..data import Drawings
from ..render import scaled
from .image import DoodleNet

FEATURES = ("x", "y", "dx", "dy", "time", "dt", "pen_down", "stroke_end")
STEMS = ("auto", "drop", "keep")
RESAMPLING = ("length", "index")


def _even(counts: np.ndarray, budget: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per group of ``counts`` items, at most ``budget`` of them evenly spaced, the first and
    last included: (index within the group, group, position among the kept)."""
    k = np.minimum(counts, budget)
    group = np.repeat(np.arange(len(counts)), k)
    j = np.arange(int(k.sum())) - np.repeat(np.cumsum(k) - k, k)  # 0..k_i-1 within each group
    step = np.where(k > 1, (counts - 1) / np.maximum(k - 1, 1), 0.0)
    return np.rint(j * step[group]).astype(np.int64), group, j


def sample_points(d: Drawings, budget: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(global point indices, drawing of each, position within the drawing) keeping at most
    ``budget`` of each drawing's points, evenly spaced in drawing order, first and last kept."""
    if budget < 2:
        raise ValueError(f"point budget must be at least 2, got {budget}")
    local, drawing, pos = _even(d.point_counts(), budget)
    return d.stroke_offsets[d.drawing_offsets[:-1]][drawing] + local, drawing, pos


def _point_time(d: Drawings, stroke: np.ndarray) -> np.ndarray:
    """The ``time`` feature of every point (see :func:`point_features`; the batch has points)."""
    lens = np.diff(d.stroke_offsets)
    drawing = np.repeat(np.arange(len(d)), d.point_counts())
    if d.raw:
        t = d.t.astype(np.float64)
        first = d.stroke_offsets[d.drawing_offsets[:-1]]
        has = d.point_counts() > 0
        t0 = np.zeros(len(d))
        t0[has] = np.minimum.reduceat(t, first[has])
        dur = np.zeros(len(d))
        dur[has] = np.maximum.reduceat(t, first[has]) - t0[has]
        return (t - t0[drawing]) / np.maximum(dur[drawing], 1.0)
    stroke_rank = stroke - d.drawing_offsets[:-1][drawing]
    in_stroke = (np.arange(len(stroke)) - d.stroke_offsets[stroke]) / np.maximum(lens[stroke] - 1, 1)
    return (stroke_rank + in_stroke) / np.maximum(d.stroke_counts()[drawing], 1)


@numba.njit(cache=True)
def _arc_per_drawing(seg: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Pen-down distance before each point, summed from 0 within each drawing (``counts``
    points each), as a drawing alone gives it: a cumulative sum over the whole batch would
    round differently and make a drawing's points depend on its batch."""
    arc = np.empty(len(seg))
    i = 0
    for n in counts:
        total = 0.0
        for k in range(n):
            arc[i] = total
            total += seg[i]
            i += 1
    return arc


@numba.njit(cache=True)
def _point_at(arc: np.ndarray, first: np.ndarray, last: np.ndarray, drawing: np.ndarray, u: np.ndarray) -> np.ndarray:
    """For each arc length ``u[i]`` in drawing ``drawing[i]``: the last of the drawing's points
    (``first .. last``) whose ``arc`` is at most ``u[i]`` (searched within the drawing)."""
    p = np.empty(len(u), np.int64)
    for i in range(len(u)):
        lo, hi = first[drawing[i]], last[drawing[i]] + 1  # the answer + 1 lies in lo..hi
        while lo < hi:
            mid = (lo + hi) >> 1
            if arc[mid] <= u[i]:
                lo = mid + 1
            else:
                hi = mid
        p[i] = lo - 1
    return p


def _by_length(d: Drawings, xy: np.ndarray, time: np.ndarray, stroke: np.ndarray, budget: int):
    """Each drawing resampled evenly along its pen-down path (every stroke's first and last
    point kept, the rest of the budget spread by arc length, interpolated):
    (drawing, stroke, xy, time) in drawing order. Every step is exact per drawing, so a
    drawing gets the same points in any batch (and from :mod:`..reference_preprocessing`)."""
    n_pts, lens = d.point_counts(), np.diff(d.stroke_offsets)
    drawing = np.repeat(np.arange(len(d)), n_pts)
    same = np.r_[stroke[1:] == stroke[:-1], False]  # point i and i+1 on one stroke
    seg = np.zeros(len(xy))
    seg[:-1] = np.where(same[:-1], np.hypot(*(xy[1:] - xy[:-1]).T), 0.0)
    arc = _arc_per_drawing(seg, n_pts)
    first = d.stroke_offsets[d.drawing_offsets[:-1]]
    last = first + n_pts - 1
    has = n_pts > 0
    total = np.where(has, arc[np.minimum(last, len(xy) - 1)], 0.0) if len(xy) else np.zeros(len(d))
    starts = d.stroke_offsets[:-1][lens > 0]
    ends = d.stroke_offsets[1:][lens > 1] - 1
    fixed = np.bincount(drawing[starts], minlength=len(d)) + np.bincount(drawing[ends], minlength=len(d))
    m = np.where(total > 0, np.maximum(budget - fixed, 0), 0)
    # samples j = 0..m-1 of each drawing at arc length total * j / (m - 1), each on the last of
    # its drawing's points at or before it
    j, s_draw, _ = _even(m, budget)  # all m (m <= budget): j = 0..m-1
    u = total[s_draw] * j / np.maximum(m[s_draw] - 1, 1)
    p = _point_at(arc, first, last, s_draw, u)
    nxt = np.minimum(p + 1, len(xy) - 1)
    w = np.where(same[p] & (seg[p] > 0), (u - arc[p]) / np.where(seg[p] > 0, seg[p], 1.0), 0.0).clip(0, 1)
    # a sample on a stroke's first or last point repeats one kept anyway
    dup = (w == 0) & ((p == d.stroke_offsets[stroke[p]]) | (p == d.stroke_offsets[stroke[p] + 1] - 1))
    p, nxt, w, s_draw = p[~dup], nxt[~dup], w[~dup], s_draw[~dup]
    kind = np.r_[np.zeros(len(starts)), np.ones(len(p)), np.full(len(ends), 2)]
    order_keys = (kind, np.r_[arc[starts], arc[p] + w * seg[p], arc[ends]],
                  np.r_[stroke[starts], stroke[p], stroke[ends]], np.r_[drawing[starts], s_draw, drawing[ends]])
    order = np.lexsort(order_keys)
    seq_draw, seq_stroke = order_keys[3][order].astype(np.int64), order_keys[2][order].astype(np.int64)
    seq_xy = np.r_[xy[starts], xy[p] + w[:, None] * (xy[nxt] - xy[p]), xy[ends]][order]
    seq_time = np.r_[time[starts], time[p] + w * (time[nxt] - time[p]), time[ends]][order]
    # a drawing with more stroke ends than the budget keeps an even choice of them
    counts = np.bincount(seq_draw, minlength=len(d))
    local, grp, _ = _even(counts, budget)
    keep = (np.cumsum(counts) - counts)[grp] + local
    return seq_draw[keep], seq_stroke[keep], seq_xy[keep], seq_time[keep]


def point_features(d: Drawings, budget: int = 128, resample: str = "length") -> tuple[np.ndarray, np.ndarray]:
    """Per-point features ``(N, budget, len(FEATURES))`` float32 and a mask ``(N, budget)``.

    Which points: with ``resample="length"`` (default) each drawing's budget is spread evenly
    along its pen-down path — every stroke's first point, then points interpolated at equal
    arc-length steps — so long straight segments (simplified drawings keep only their corners)
    are covered in the grid the way a rendered line covers pixels; with ``"index"`` the
    drawing's own points are kept, evenly thinned when over the budget.

    Features (all about 0..1 in size): ``x, y`` in the drawing's 256-box scaled to 0..1
    (raw drawings aligned and scaled like Google's simplification); ``dx, dy`` the move from
    the previous point (the pen-up jump at a stroke start); ``time`` since the first point
    over the drawing's duration when raw timings exist, else the stroke index plus the
    position within the stroke over the number of strokes; ``dt`` its change from the
    previous point; ``pen_down`` 0 at a stroke's first point (the move there was pen-up), else
    1; ``stroke_end`` 1 at a stroke's last point.
    """

    if resample not in RESAMPLING:
        raise ValueError(f"resample must be one of {RESAMPLING}, got {resample!r}")
    if budget < 2:
        raise ValueError(f"point budget must be at least 2, got {budget}")
    n_draw = len(d)
    feats = np.zeros((n_draw, budget, len(FEATURES)), np.float32)
    mask = np.zeros((n_draw, budget), bool)
    if d.stroke_offsets[-1] == 0:
        return feats, mask
    lens = np.diff(d.stroke_offsets)
    stroke_all = np.repeat(np.arange(len(lens)), lens)
    xy_all, time_all = scaled(d), _point_time(d, stroke_all)
    if resample == "index":
        sel, drawing, _ = sample_points(d, budget)
        stroke, xy, time = stroke_all[sel], xy_all[sel], time_all[sel]
    else:
        drawing, stroke, xy, time = _by_length(d, xy_all, time_all, stroke_all, budget)
    xy = (xy / 255.0).astype(np.float32)
    first = np.r_[True, drawing[1:] != drawing[:-1]]
    last = np.r_[drawing[1:] != drawing[:-1], True]
    new_stroke = first | np.r_[True, stroke[1:] != stroke[:-1]]
    end_stroke = last | np.r_[stroke[1:] != stroke[:-1], True]
    prev = np.where(first[:, None], xy, np.roll(xy, 1, axis=0))
    dt = np.where(first, 0.0, time - np.roll(time, 1))
    pos = np.arange(len(drawing)) - np.flatnonzero(first)[np.cumsum(first) - 1]
    cols = np.column_stack([xy, xy - prev, time, dt, ~new_stroke, end_stroke]).astype(np.float32)
    feats[drawing, pos] = cols
    mask[drawing, pos] = True
    return feats, mask


def cell_index(xy: torch.Tensor, mask: torch.Tensor, grid: int) -> torch.Tensor:
    """The grid cell (row-major, ``y`` down the rows) of points at ``xy`` in 0..1; masked
    points get the extra dump cell ``grid * grid``."""
    cell = (xy.float() * grid).long().clamp_(0, grid - 1)
    idx = cell[..., 1] * grid + cell[..., 0]
    return torch.where(mask, idx, torch.full_like(idx, grid * grid))


def scatter_mean(values: torch.Tensor, index: torch.Tensor, n_cells: int) -> torch.Tensor:
    """Mean of ``values`` ``(N, L, D)`` per cell ``index`` ``(N, L)`` (0..n_cells, where
    ``n_cells`` is a dump cell that is dropped): ``(N, n_cells, D)``, zeros where no point
    fell. Sums in float32 whatever the input dtype; differentiable in ``values``."""
    n, length, dim = values.shape
    flat = (index + torch.arange(n, device=index.device)[:, None] * (n_cells + 1)).reshape(-1)
    v = values.reshape(-1, dim).float()
    total = v.new_zeros(n * (n_cells + 1), dim).index_add_(0, flat, v)
    count = v.new_zeros(n * (n_cells + 1)).index_add_(0, flat, v.new_ones(n * length))
    out = total / count.clamp(min=1)[:, None]
    return out.view(n, n_cells + 1, dim)[:, :n_cells].to(values.dtype)


class PointEncoder(nn.Module):
    """1-D convolutions along the point sequence, one block per dilation (residual from the
    second block on); padding positions are zeroed after every block. With ``ink`` the last
    of the ``dim`` features is the constant 1, so that after the scatter it marks the cells
    the pen crossed: the trunk sees a plain rendering from the first step on, beside the
    learned features."""

    def __init__(self, n_features: int, dim: int = 64, dilations: Sequence[int] = (1, 2, 4, 8),
                 kernel: int = 5, ink: bool = True):
        super().__init__()
        if kernel % 2 == 0:
            raise ValueError(f"point kernel must be odd, got {kernel}")
        self.ink = bool(ink)
        dim = dim - self.ink
        self.blocks = nn.ModuleList()
        c_in = n_features
        for dil in dilations:
            self.blocks.append(nn.Sequential(
                nn.Conv1d(c_in, dim, kernel, padding=dil * (kernel - 1) // 2, dilation=int(dil), bias=False),
                nn.BatchNorm1d(dim), nn.ReLU(inplace=True)))
            c_in = dim

    def forward(self, feats: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask[:, None, :].to(feats.dtype)
        h = feats.transpose(1, 2) * m
        for i, block in enumerate(self.blocks):
            out = block(h) * m
            h = out + h if i else out
        if self.ink:
            h = torch.cat([h, m], dim=1)
        return h.transpose(1, 2)  # (N, L, dim)


def _drop_stem(trunk: nn.Module, in_dim: int) -> None:
    """Replace a ResNet-family stem by a 1×1 projection (or nothing) and no max-pool."""
    width = trunk.bn1.num_features
    trunk.conv1 = nn.Identity() if width == in_dim else nn.Conv2d(in_dim, width, 1, bias=False)
    trunk.maxpool = nn.Identity()


class PointCNN(nn.Module):
    """Points → 1-D convs → scatter into a grid → timm trunk → classes (see the module docstring).

    Args:
        arch: the timm trunk (any model name).
        n_classes: output classes.
        n_features: per-point input features (``len(FEATURES)``).
        grid: the scatter grid's side.
        point_dim: features per point, the trunk's input channels.
        dilations, kernel: the 1-D stack (one block per dilation).
        stem: "drop" the ResNet stem, "keep" it, or "auto" (drop where the trunk has one).
        n_countries, country_dim: a country embedding joined before the head (0: none).
        pretrained_path, drop_rate: as :class:`.image.DoodleNet`.
        ink: make the last point feature the constant 1 (see :class:`PointEncoder`).
    """

    def __init__(self, arch: str, n_classes: int, n_features: int = len(FEATURES), grid: int = 32,
                 point_dim: int = 64, dilations: Sequence[int] = (1, 2, 4, 8), kernel: int = 5,
                 stem: str = "auto", n_countries: int = 0, country_dim: int = 0,
                 pretrained_path: str | Path | None = None, drop_rate: float = 0.0, ink: bool = False):
        super().__init__()

        if stem not in STEMS:
            raise ValueError(f"stem must be one of {STEMS}, got {stem!r}")
        self.grid = int(grid)
        self.encoder = PointEncoder(n_features, point_dim, dilations, kernel, ink)
        self.net = DoodleNet(arch, n_classes, point_dim, n_countries, country_dim, pretrained_path, drop_rate)
        trunk = self.net.body
        has_stem = all(hasattr(trunk, a) for a in ("conv1", "bn1", "maxpool"))
        if stem == "drop" and not has_stem:
            raise ValueError(f"stem='drop' needs a ResNet-family trunk (conv1, bn1, maxpool); "
                             f"{arch} has none: use stem='keep'")
        if stem == "drop" or (stem == "auto" and has_stem):
            _drop_stem(trunk, point_dim)

    def rasterise(self, feats: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The learned image ``(N, point_dim, grid, grid)`` (channels-last in memory)."""
        g = self.grid
        values = self.encoder(feats, mask)
        cells = scatter_mean(values, cell_index(feats[..., :2], mask, g), g * g)
        return cells.view(feats.shape[0], g, g, -1).permute(0, 3, 1, 2)  # shape[0], not len(): ONNX export keeps the batch symbolic

    def forward(self, feats: torch.Tensor, mask: torch.Tensor, country: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(self.rasterise(feats, mask), country)


def plot_inputs(d: Drawings, budget: int, grid: int, titles: Sequence[str] | None = None, cols: int = 6,
                resample: str = "length"):
    """The points the model sees (coloured by ``time``, with its colour bar; pen-up moves
    dashed) over the scatter grid, one panel per drawing, the frame's edge inside the panel."""
    from matplotlib.figure import Figure

    feats, mask = point_features(d, budget, resample)
    rows = -(-len(d) // cols)
    fig = Figure(figsize=(2.2 * cols, 2.3 * rows), constrained_layout=True)
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    sc = None
    for i, ax in enumerate(axes):
        ax.set_axis_off()
        if i >= len(d):
            continue
        f = feats[i, mask[i]]
        for k in range(1, len(f)):
            ls = "-" if f[k, FEATURES.index("pen_down")] else ":"
            ax.plot(f[k - 1:k + 1, 0], f[k - 1:k + 1, 1], ls, color="0.6", lw=0.8)
        sc = ax.scatter(f[:, 0], f[:, 1], c=f[:, FEATURES.index("time")], cmap="viridis", vmin=0, vmax=1, s=6,
                        zorder=3, clip_on=False)
        ax.set_xticks(np.linspace(0, 1, grid + 1), minor=True)
        ax.set(xlim=(-0.04, 1.04), ylim=(1.04, -0.04), aspect="equal")
        for v in np.linspace(0, 1, grid + 1):
            ax.axhline(v, color="0.92", lw=0.3, zorder=0), ax.axvline(v, color="0.92", lw=0.3, zorder=0)
        ax.set_title(f"{titles[i] if titles else i} · {int(mask[i].sum())} pts", fontsize=8)
    if sc is not None:
        fig.colorbar(sc, ax=axes.tolist(), shrink=0.9, label="time (0 → 1)")
    return fig


@torch.no_grad()
def plot_learned(model: PointCNN, d: Drawings, budget: int, titles: Sequence[str] | None = None,
                 channels: int = 3, resample: str = "length"):
    """What the learned rasteriser draws: per drawing, the grid's feature magnitude and its
    first principal components (over this batch) as RGB."""
    from matplotlib.figure import Figure

    feats, mask = point_features(d, budget, resample)
    p = next(model.parameters())
    was = model.training
    model.eval()
    img = model.rasterise(torch.from_numpy(feats).to(p.device), torch.from_numpy(mask).to(p.device)).float().cpu()
    model.train(was)
    n, dim, g, _ = img.shape
    flat = img.permute(0, 2, 3, 1).reshape(-1, dim)
    occupied = flat.abs().sum(1) > 0
    mean = flat[occupied].mean(0)
    _, _, v = torch.pca_lowrank(flat[occupied] - mean, q=channels, center=False)
    pcs = ((flat - mean) @ v[:, :channels]) * occupied[:, None]
    lo, hi = pcs[occupied].quantile(0.02, 0), pcs[occupied].quantile(0.98, 0)
    rgb = ((pcs - lo) / (hi - lo + 1e-8)).clamp(0, 1) * occupied[:, None]
    rgb = rgb.view(n, g, g, channels).numpy()
    norm = img.norm(dim=1).numpy()
    fig = Figure(figsize=(2.0 * n, 4.2), constrained_layout=True)
    axes = fig.subplots(2, n, squeeze=False)
    for i in range(n):
        axes[0, i].imshow(norm[i], cmap="magma")
        axes[1, i].imshow(rgb[i])
        axes[0, i].set_title(titles[i] if titles else str(i), fontsize=8)
        for ax in axes[:, i]:
            ax.set_axis_off()
    axes[0, 0].text(-0.1, 0.5, "|features|", transform=axes[0, 0].transAxes, rotation=90, va="center", ha="right")
    axes[1, 0].text(-0.1, 0.5, "3 PCs", transform=axes[1, 0].transAxes, rotation=90, va="center", ha="right")
    return fig
