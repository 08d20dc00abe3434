"""A device-resident input path: the store held in device memory, batches made there.

With ``render_on="gpu"`` the host loader (:class:`.loaders.DoodleDL`) still gathers every
batch from the memory-mapped store on the host, augments its coordinates with numpy and
copies the packed batch to the device, where :func:`..render.render_packed` draws it. Here
(issue 20, part 3) a store's point arrays are copied to the device once
(:class:`ResidentStore`), and a batch is made on the device from its positions: the drawings
gathered with torch index arithmetic (``repeat_interleave``/``cumsum``, no Python loop per
drawing), the coordinates augmented there (:func:`augment_packed`) and rendered by
``render_packed``. Per batch only small host arrays cross to the device: the drawings' store
indices, their classes and countries (3 int64 a drawing), the random transform (6 float64 a
drawing) and, with stroke dropout, the kept strokes (2 int64 each) and new offsets.

The same batches as the host loader (:class:`ResidentDL`): the epoch's positions come from the
same ``get_idxs`` and seeds, and the random numbers of a batch from the same
``np.random.Generator`` (``DoodleDL._rng(1, pos[0], len(pos))``) in the same order and shapes
(:func:`.loaders.kept_strokes` and :func:`.loaders.affine_params`, shared with the host's
:func:`.loaders.augment`). The arithmetic is the host's, in the same order and precision: the
2x2 matrices are computed on the host in float64, the points are centred in float32
(``xy - 127.5``), promoted to float64, multiplied and summed (``m[:, 0] * v0 + m[:, 1] * v1``, as
numpy's einsum adds its two terms), then ``+ 127.5``, ``+ shift``, clipped and cast to float32;
a raw store's points are first brought to the 0..255 frame in float64 like
:func:`..render.scaled` (per-drawing minimum and extent by ``scatter_reduce``). Every operation
is IEEE float64/float32 rounding of the same operands, so the coordinates, and so the images,
are bit for bit the host loader's: ``tests/test_resident.py`` asserts exact equality (no
tolerance) of the augmented coordinates and of every batch (images, countries, labels) on CPU
tensors, for simplified, timed and raw stores, every augmentation, balanced sampling,
pseudo-labels, a changed batch and image size, and the validation and test loaders. (The
final float32 cast also absorbs last-bit float64 differences: adding ``127.5 + shift`` in the
other order gives the same points on the test data.) On CUDA this holds as long as no kernel
fuses a multiply and an add into an FMA (PyTorch's eager element-wise kernels do not); its
test (``test_on_a_gpu_the_batches_equal_the_host_loaders``) has not run yet: no GPU here.

No host sync per batch: every output size is known on the host from host views of the
store's offset arrays (``point_off``, ``stroke_off``: the store's memory maps, 16 bytes a
drawing; and with stroke dropout ``stroke_len``, 2 bytes a stroke, read for the batch's strokes
only), so ``repeat_interleave(..., output_size=)`` and index gathers never ask the device for a
length, and with the Triton render engine the host can run ahead of the GPU.

Device memory (:attr:`ResidentStore.nbytes`): per point 2 bytes of ``xy`` (uint8 kinds
"simplified" and "timed"; 8 for "raw", float32), plus 2 or 4 bytes of ``t`` (uint16 or
int32, kinds "timed" and "raw"); per stroke 2 bytes (``stroke_len``); per drawing 16 bytes
(the two offset arrays); the whole store (every split), as the splits' loaders share one
copy per store and device. A store that does not fit in the device's free memory
(``torch.cuda.mem_get_info``; available RAM for the CPU) is refused with a ValueError
naming it and both sizes; what the model then has left is the caller's to judge. The host
keeps only its memory maps (per batch it reads 4 offsets a drawing, and with stroke dropout
the batch's stroke lengths).

Measured: nothing on a GPU yet (no device was available when this was written); the CPU
tests only show that the batches are identical. Whether the resident path is faster than
the host path, and by how much, is still to be measured (``benchmarks/bench_train.py``).

Not supported: ``input="points"`` (its features are computed on the host): ValueError.
"""
from __future__ import annotations

import os
import weakref
from dataclasses import dataclass, replace

import numpy as np
import torch

from .loaders import Augment, BatchSpec, DoodleDL, DrawingsSource, Source, affine_params, kept_strokes

UPLOAD_CHUNK = 1 << 26  # elements copied to the device at a time (host memory stays small)


def _free_bytes(device: torch.device) -> int:
    """Free memory of ``device``: CUDA's free bytes, or the host's available RAM."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # not Linux: no check
        return 1 << 62


def _torch_view(a: np.ndarray) -> np.ndarray:
    """``a`` in a dtype torch indexes on every device (uint16 as int16: the same bits)."""
    return a.view(np.int16) if a.dtype == np.uint16 else a


def _upload(a: np.ndarray, device: torch.device) -> torch.Tensor:
    """A (possibly memory-mapped) array copied to ``device`` a chunk at a time."""
    a = _torch_view(a)
    out = torch.empty(a.shape, dtype=torch.from_numpy(np.zeros(0, a.dtype)).dtype, device=device)
    for s in range(0, len(a), UPLOAD_CHUNK):
        out[s:s + UPLOAD_CHUNK].copy_(torch.from_numpy(np.array(a[s:s + UPLOAD_CHUNK])))
    return out


def _unsigned(x: torch.Tensor, host_dtype: np.dtype) -> torch.Tensor:
    """Gathered values back from their torch view: uint16 (stored as int16) as int32."""
    return x.to(torch.int32) & 0xFFFF if host_dtype == np.uint16 else x


def _ranges(start: torch.Tensor, count: torch.Tensor, total: int) -> torch.Tensor:
    """``start[k], ..., start[k] + count[k] - 1`` for every k, back to back (``total`` is
    ``count.sum()``, known on the host: no device sync)."""
    dev = start.device
    owner = torch.repeat_interleave(torch.arange(len(start), device=dev), count, output_size=total)
    first = torch.cumsum(count, 0) - count  # where range k starts in the output
    return start[owner] + (torch.arange(total, device=dev) - first[owner])


def _offsets(counts: torch.Tensor) -> torch.Tensor:
    """CSR offsets (int64, a leading 0) of ``counts``."""
    out = torch.zeros(len(counts) + 1, dtype=torch.int64, device=counts.device)
    torch.cumsum(counts, 0, out=out[1:])
    return out


@dataclass
class Packed:
    """A batch on the device (``xy``, ``t``, ``stroke_offsets``, ``drawing_offsets`` as
    :meth:`..data.store.Store.drawings` packs them) with host copies of its sizes, so the
    next steps need no sync: points per stroke and strokes per drawing.

    ``in_frame``: the points (with times) are already in the 0..255 frame.
    """

    xy: torch.Tensor
    t: torch.Tensor | None
    stroke_offsets: torch.Tensor
    drawing_offsets: torch.Tensor
    stroke_lens: np.ndarray | None  # (S,) host: points per stroke (when asked for)
    strokes: np.ndarray  # (N,) host: strokes per drawing
    points: np.ndarray  # (N,) host: points per drawing
    in_frame: bool

    def __len__(self) -> int:
        return len(self.strokes)

    @staticmethod
    def concat(a: "Packed", b: "Packed") -> "Packed":
        """``b``'s drawings after ``a``'s (as :meth:`..data.Drawings.concat`)."""
        xy = (torch.cat([a.xy, b.xy]) if a.xy.dtype == b.xy.dtype else
              torch.cat([a.xy.to(torch.float64), b.xy.to(torch.float64)]))
        t = None if a.t is None or b.t is None else torch.cat([a.t, b.t])
        so = torch.cat([a.stroke_offsets, b.stroke_offsets[1:] + a.stroke_offsets[-1]])
        do = torch.cat([a.drawing_offsets, b.drawing_offsets[1:] + a.drawing_offsets[-1]])
        lens = None if a.stroke_lens is None or b.stroke_lens is None else np.r_[a.stroke_lens, b.stroke_lens]
        return Packed(xy, t, so, do, lens, np.r_[a.strokes, b.strokes], np.r_[a.points, b.points],
                      a.in_frame and b.in_frame)


class ResidentStore:
    """A store's drawings held on a device: ``xy``, ``t``, ``stroke_len``, ``point_off`` and
    ``stroke_off`` as tensors (``xy`` and ``t`` in the store's own dtypes), with host views of
    the offsets for the sizes of each batch.

    Args:
        name: what the error messages call it (the store's folder).
        arrays: the five arrays as :class:`..data.store.Store` holds them (``t`` None for a
            simplified store); memory maps are copied a chunk at a time.
        in_frame: the points are in the 0..255 frame (every kind but "raw").
        device: where to hold them.
        free_bytes: the memory free there (default: asked of the device; a test fakes it).

    Raises:
        ValueError: the arrays do not fit in ``free_bytes``.
    """

    def __init__(self, name: str, arrays: dict[str, np.ndarray | None], in_frame: bool,
                 device: torch.device | str = "cpu", free_bytes: int | None = None):
        self.name, self.in_frame, self.device = name, in_frame, torch.device(device)
        host = {k: v for k, v in arrays.items() if v is not None}
        need = sum(int(v.nbytes) for v in host.values())
        free = _free_bytes(self.device) if free_bytes is None else int(free_bytes)
        if need > free:
            n = len(arrays["point_off"]) - 1
            raise ValueError(f"{name}: its {n:,} drawings need {need / 2**30:.2f} GiB on {self.device} "
                             f"({need:,} bytes: {', '.join(f'{k} {v.nbytes:,}' for k, v in host.items())}), "
                             f"but only {free / 2**30:.2f} GiB ({free:,} bytes) are free; "
                             f"train from the host loader (resident=False) or on a larger device")
        self.nbytes = need
        self.dtypes = {k: v.dtype for k, v in host.items()}
        self.host_point_off = np.asarray(arrays["point_off"])
        self.host_stroke_off = np.asarray(arrays["stroke_off"])
        self.host_stroke_len = np.asarray(arrays["stroke_len"])
        self.tensors = {k: _upload(v, self.device) for k, v in host.items()}

    @classmethod
    def of(cls, source: Source | DrawingsSource, device: torch.device | str = "cpu",
           free_bytes: int | None = None) -> "ResidentStore":
        """The drawings ``source`` samples from (the whole store of a :class:`.loaders.Source`,
        so its splits share one copy: cached while a loader holds it), on ``device``."""
        device = torch.device(device)
        if isinstance(source, DrawingsSource):
            d = source.drawings
            arrays = dict(xy=d.xy, t=d.t, stroke_len=np.diff(d.stroke_offsets),
                          point_off=d.stroke_offsets[d.drawing_offsets], stroke_off=d.drawing_offsets)
            return cls(source.store_dir, arrays, in_frame=d.in_frame or d.t is None, device=device,
                       free_bytes=free_bytes)
        key = (os.path.realpath(source.store_dir), str(device))
        held = _HELD.get(key)
        if held is None:
            st = source.store
            arrays = {k: getattr(st, k) for k in ("xy", "stroke_len", "point_off", "stroke_off")}
            arrays["t"] = st.t if st.timed else None
            held = cls(str(st.path), arrays, in_frame=not st.raw, device=device, free_bytes=free_bytes)
            _HELD[key] = held
        return held

    def __len__(self) -> int:
        return len(self.host_point_off) - 1

    def take(self, idx: np.ndarray, stroke_lens: bool = False) -> Packed:
        """The drawings ``idx`` (host indices) gathered on the device; ``stroke_lens``: also
        read their points per stroke on the host (for stroke dropout)."""
        idx = np.ascontiguousarray(idx, np.int64)
        if len(idx) and (idx.min() < 0 or idx.max() >= len(self)):
            bad = int(idx[(idx < 0) | (idx >= len(self))][0])
            raise IndexError(f"{self.name}: drawing index {bad} out of range 0..{len(self) - 1}")
        po, so = self.host_point_off, self.host_stroke_off
        points, strokes = po[idx + 1] - po[idx], so[idx + 1] - so[idx]
        n_points, n_strokes = int(points.sum()), int(strokes.sum())
        lens = None
        if stroke_lens:
            first = np.cumsum(strokes) - strokes
            at = np.repeat(so[idx] - first, strokes) + np.arange(n_strokes)
            lens = self.host_stroke_len[at].astype(np.int64)
        T, dev = self.tensors, self.device
        i = torch.from_numpy(idx).to(dev, non_blocking=True)
        p_start, s_start = T["point_off"][i], T["stroke_off"][i]
        s_count = T["stroke_off"][i + 1] - s_start
        p_count = T["point_off"][i + 1] - p_start
        s_at = _ranges(s_start, s_count, n_strokes)
        lens_t = _unsigned(T["stroke_len"][s_at], self.dtypes["stroke_len"]).to(torch.int64)
        p_at = _ranges(p_start, p_count, n_points)
        xy = T["xy"][p_at]
        t = None
        if "t" in T:
            t = _unsigned(T["t"][p_at], self.dtypes["t"]).to(torch.int32)
        return Packed(xy, t, _offsets(lens_t), _offsets(s_count), lens, strokes, points, self.in_frame)

    def gather(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(xy, stroke_offsets, drawing_offsets, t) of the drawings ``idx`` on the device: the
        values and dtypes of :meth:`..data.store.Store.drawings` (offsets int64, t int32)."""
        b = self.take(idx)
        return b.xy, b.stroke_offsets, b.drawing_offsets, b.t


# one device copy per (store folder, device) while some loader holds it
_HELD: "weakref.WeakValueDictionary[tuple[str, str], ResidentStore]" = weakref.WeakValueDictionary()


def _scaled(xy: torch.Tensor, owner: torch.Tensor, n: int) -> torch.Tensor:
    """:func:`..render.scaled` of raw points on the device, float64: each drawing's minimum to
    0 and its longer side to 255 (``owner``: the drawing of each point)."""
    xy = xy.to(torch.float64)
    if len(xy) == 0:
        return xy
    o2 = owner[:, None].expand(-1, 2)
    lo = torch.zeros(n, 2, dtype=xy.dtype, device=xy.device).scatter_reduce(0, o2, xy, "amin", include_self=False)
    hi = torch.zeros(n, 2, dtype=xy.dtype, device=xy.device).scatter_reduce(0, o2, xy, "amax", include_self=False)
    ext = (hi - lo).amax(dim=1)
    factor = torch.where(ext > 0, 255.0 / torch.where(ext > 0, ext, 1.0), 0.0)
    return (xy - lo[owner]) * factor[owner][:, None]


def augment_packed(b: Packed, aug: Augment, rng: np.random.Generator) -> Packed:
    """:func:`.loaders.augment` on the device: the same random numbers from ``rng`` and the
    same float arithmetic (see the module docstring), so the same coordinates. ``b`` needs
    its host stroke lengths when ``aug.stroke_dropout`` is on. Returns float32 points."""
    if not aug.active:
        return b
    dev = b.xy.device
    if dev.type == "mps":
        raise ValueError("resident augmentation computes in float64, which MPS lacks")
    xy, t, so, do = b.xy, b.t, b.stroke_offsets, b.drawing_offsets
    strokes, points = b.strokes, b.points
    if aug.stroke_dropout > 0:
        if b.stroke_lens is None:
            raise ValueError("stroke dropout needs the batch's stroke lengths on the host "
                             "(ResidentStore.take(..., stroke_lens=True))")
        host_do = np.zeros(len(strokes) + 1, np.int64)
        np.cumsum(strokes, out=host_do[1:])
        keep = kept_strokes(b.stroke_lens, host_do, aug.stroke_dropout, rng)
        owner = np.repeat(np.arange(len(strokes)), strokes)
        strokes = np.bincount(owner, weights=keep, minlength=len(strokes)).astype(np.int64)
        kept_lens = b.stroke_lens[keep]
        points = np.bincount(owner[keep], weights=kept_lens, minlength=len(strokes)).astype(np.int64)
        kept = torch.from_numpy(np.stack([np.flatnonzero(keep), kept_lens])).to(dev, non_blocking=True)
        at = _ranges(so[kept[0]], kept[1], int(kept_lens.sum()))
        xy, t = xy[at], None if t is None else t[at]
        so = _offsets(kept[1])
        do = torch.from_numpy(np.r_[0, np.cumsum(strokes)].astype(np.int64)).to(dev, non_blocking=True)
    n, total = len(strokes), int(points.sum())
    counts = so[do[1:]] - so[do[:-1]]
    owner = torch.repeat_interleave(torch.arange(n, device=dev), counts, output_size=total)
    if t is not None and not b.in_frame:  # raw: to the 0..255 frame first, as augment does
        xy = _scaled(xy, owner, n)
    xy = xy.to(torch.float32)
    m, shift = affine_params(n, aug, rng)
    params = torch.from_numpy(np.concatenate([m.reshape(n, 4), shift], axis=1)).to(dev, non_blocking=True)
    mp, tp = params[owner, :4].view(-1, 2, 2), params[owner, 4:]
    v = (xy - 127.5).to(torch.float64)
    out = mp[:, :, 0] * v[:, None, 0] + mp[:, :, 1] * v[:, None, 1]
    out = out + 127.5 + tp
    out.clamp_(0, 255)
    return Packed(out.to(torch.float32), t, so, do, None, strokes, points, in_frame=True)


class ResidentDL(DoodleDL):
    """A :class:`.loaders.DoodleDL` whose batches are made on its device from a resident copy
    of the store (see the module docstring): the same batches as ``DoodleDL`` with
    ``render_on="gpu"``, for the same seed.

    ``create_batches`` yields each batch's positions (host int64); ``after_batch`` gathers,
    augments and renders them on ``self.device`` (the CPU when None). The store is copied to
    the device when the loader is made, and again if the device changes (``dls.to``).
    Always in the main process (``num_workers=0``: there is nothing for workers to do) and
    rendering on the device (``render_on`` is taken as "gpu").

    Args:
        source, batches, bs: as :class:`.loaders.DoodleDL`; pseudo-labels' store is made
            resident too.
        free_bytes: the device memory to assume free (default: asked of the device).
        kwargs: fastai ``DataLoader`` arguments (``device``, ``drop_last``; ``num_workers``
            and ``pin_memory`` are ignored).

    Raises:
        ValueError: ``input="points"``; a store that does not fit (:class:`ResidentStore`).
    """

    def __init__(self, source: Source | DrawingsSource, batches: BatchSpec = BatchSpec(), bs: int = 64,
                 free_bytes: int | None = None, **kwargs):
        if batches.input != "image":
            raise ValueError(f"a resident loader renders images; input={batches.input!r} is computed on "
                             "the host (use the host loader, resident=False)")
        kwargs.update(num_workers=0, pin_memory=False)
        self.free_bytes, self._held = free_bytes, None
        super().__init__(source, replace(batches, render_on="gpu"), bs=bs, **kwargs)
        self.resident()

    def resident(self) -> tuple[ResidentStore, ResidentStore | None]:
        """The resident copies on the loader's device: the source's, and the pseudo-labels'."""
        dev = torch.device(self.device if self.device is not None else "cpu")
        pseudo = self.pseudo.source if self.pseudo is not None else None
        key = (str(dev), id(self.source), id(pseudo))
        if self._held is None or self._held[0] != key:
            self._held = None  # let go of another device's copy first
            self._held = (key, ResidentStore.of(self.source, dev, self.free_bytes),
                          None if pseudo is None else ResidentStore.of(pseudo, dev, self.free_bytes))
        return self._held[1:]

    def new(self, **kwargs) -> "ResidentDL":
        """A copy with some settings changed (see :meth:`.loaders.DoodleDL.new`)."""
        kwargs.setdefault("free_bytes", self.free_bytes)
        return super().new(**kwargs)

    def __getstate__(self):
        return {**self.__dict__, "_held": None}

    def __setstate__(self, state):
        self.__dict__.update(state)

    def make_batch(self, pos: np.ndarray) -> np.ndarray:
        """The batch's positions: the work happens on the device, in :meth:`after_batch`."""
        return pos

    def after_batch(self, pos: np.ndarray):
        """Gather, augment and render the drawings at ``pos`` on the device: (images, country, label)."""
        pos = np.asarray(pos, np.int64)
        main_st, pseudo_st = self.resident()
        dropout = self.aug.stroke_dropout > 0
        main = pos[pos >= 0]
        b = main_st.take(self.source.idx[main], stroke_lens=dropout)
        y, country = self.source.labels[main], self.source.country[main]
        if (pos < 0).any():
            extra = -1 - pos[pos < 0]
            ps = self.pseudo.source
            b = Packed.concat(b, pseudo_st.take(ps.idx[extra], stroke_lens=dropout))
            y, country = np.r_[y, ps.labels[extra]], np.r_[country, ps.country[extra]]
        if self.aug.active:
            b = augment_packed(b, self.aug, self._rng(1, int(pos[0]), len(pos)))
        # test drawings carry class 0 (see DoodleDL.make_batch)
        cy = torch.from_numpy(np.stack([np.asarray(country, np.int64), np.maximum(y, 0).astype(np.int64)]))
        cy = cy.to(main_st.device, non_blocking=True)
        t = b.t.to(torch.float32) if b.t is not None and b.t.numel() else None
        return self.render_packed(b.xy.to(torch.float32), b.stroke_offsets, b.drawing_offsets, t), cy[0], cy[1]
