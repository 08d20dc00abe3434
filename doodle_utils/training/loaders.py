"""fastai data loaders over the packed store: drawings sampled, augmented and rendered per batch.

A :class:`DoodleDL` is a fastai ``DataLoader`` whose items are drawing indices. It overrides
``get_idxs`` (the epoch's sample: a shuffle, a class-balanced draw, or the split in order,
from a seed and the epoch number, so a resumed run sees the same data) and ``create_batches``
(a whole batch is gathered from the store, augmented on its coordinates and rendered at once,
instead of fastai's item-by-item collation). Two places to render:

* ``render_on="cpu"``: OpenCV (:func:`doodle_utils.render.render`) inside the loader's worker processes;
* ``render_on="gpu"``: the workers (or the main process) hand over the packed coordinates,
  and ``after_batch``, which fastai runs after moving the batch to the device, renders the
  whole batch there with :func:`..render.render_packed`.

A batch is ``(images, country, label)``: images float in 0..1 ``(N, C, size, size)``, the
country code index (for a model that embeds it; never painted) and the class index (0 for
test drawings, which have none). With ``input="points"`` nothing is rendered: a batch is
``(features, mask, country, label)`` from :func:`doodle_utils.models.point_features`
(computed where CPU rendering would be), for :class:`doodle_utils.models.PointCNN`.
Augmentations act on coordinates before rendering (:class:`Augment`). How a loader makes its
batches is one :class:`BatchSpec`, shared by a run's loaders.
Pseudo-labelling mixes a fixed number of confidently predicted test drawings into every
training batch (:class:`PseudoLabels`).

``make_dls(..., loader=ResidentDL)`` builds :class:`.resident.ResidentDL` loaders instead: the
store is copied to the device once and each batch is gathered, augmented and rendered there
(no batch crosses PCIe, only its positions and random numbers), giving the same batches as
``render_on="gpu"`` for the same seed; see :mod:`.resident` for its memory and limits.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np
import torch
from fastai.data.core import DataLoaders
from fastai.data.load import DataLoader

from ..data import Drawings
from ..data.store import TIMED_KINDS, Store, as_kind, index_dtype, open_verified, read_label_column
from ..models import FEATURES, point_features
from ..render import RENDERERS, RenderSpec, render, render_packed, scaled

SAMPLING = ("uniform", "balanced", "sequential")
INPUTS = ("image", "points")


@dataclass(frozen=True)
class Augment:
    """Coordinate augmentations, each off at 0.

    Attributes:
        flip: probability of a left-right mirror.
        scale: the largest relative change of size (uniform in ``1 ± scale``).
        rotate: the largest rotation in degrees.
        shear: the largest horizontal shear (x += shear * y, about the centre).
        shift: the largest shift as a fraction of the 256 canvas.
        stroke_dropout: probability of dropping each stroke (a drawing keeps at least one).

    Raw drawings are first brought to the 0..255 frame and the result is marked as in it
    (``Drawings.in_frame``), so the renderers do not re-normalise it: every transform takes
    effect on raw and timed drawings as on simplified ones.
    """

    flip: float = 0.0
    scale: float = 0.0
    rotate: float = 0.0
    shear: float = 0.0
    shift: float = 0.0
    stroke_dropout: float = 0.0

    @property
    def active(self) -> bool:
        return any(v > 0 for v in (self.flip, self.scale, self.rotate, self.shear, self.shift,
                                   self.stroke_dropout))


def kept_strokes(lens: np.ndarray, drawing_offsets: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    """:func:`drop_strokes`' choice, a bool per stroke: each kept with probability ``1 - p``
    (one ``rng.random`` per stroke), and a drawing that would lose all keeps its longest."""
    per_drawing = np.diff(drawing_offsets)
    drawing_of_stroke = np.repeat(np.arange(len(per_drawing)), per_drawing)
    keep = rng.random(len(lens)) >= p
    kept = np.bincount(drawing_of_stroke, weights=keep, minlength=len(per_drawing))
    for i in np.flatnonzero((kept == 0) & (per_drawing > 0)):
        s0, s1 = drawing_offsets[i], drawing_offsets[i + 1]
        keep[s0 + int(np.argmax(lens[s0:s1]))] = True
    return keep


def drop_strokes(d: Drawings, p: float, rng: np.random.Generator) -> Drawings:
    """Drop each stroke with probability ``p``; a drawing that would lose all keeps its longest."""
    lens = np.diff(d.stroke_offsets)
    keep = kept_strokes(lens, d.drawing_offsets, p, rng)
    stroke_offsets = np.zeros(int(keep.sum()) + 1, np.int64)
    np.cumsum(lens[keep], out=stroke_offsets[1:])
    kept_before = np.zeros(len(keep) + 1, np.int64)  # strokes kept before each stroke
    np.cumsum(keep, out=kept_before[1:])
    drawing_offsets = kept_before[np.asarray(d.drawing_offsets, np.int64)]
    pt_keep = np.repeat(keep, lens)
    return Drawings(d.xy[pt_keep], None if d.t is None else d.t[pt_keep], stroke_offsets, drawing_offsets, d.in_frame)


def affine_params(n: int, aug: Augment, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """:func:`augment`'s random transform of ``n`` drawings, drawn from ``rng`` (flip, scale,
    rotation, shear, shift, in that order): the matrices (n, 2, 2) acting about the centre
    127.5 and the shifts (n, 2) in canvas units, float64."""
    flip = np.where(rng.random(n) < aug.flip, -1.0, 1.0)
    s = 1 + rng.uniform(-aug.scale, aug.scale, n)
    a = np.deg2rad(rng.uniform(-aug.rotate, aug.rotate, n))
    sh = rng.uniform(-aug.shear, aug.shear, n)
    t = rng.uniform(-aug.shift, aug.shift, (n, 2)) * 256
    # per drawing: M = scale * R(a) @ [[1, sh], [0, 1]] @ diag(flip, 1), about the centre 127.5
    c, si = np.cos(a), np.sin(a)
    m = np.empty((n, 2, 2))
    m[:, 0, 0] = s * c * flip
    m[:, 0, 1] = s * (c * sh - si)
    m[:, 1, 0] = s * si * flip
    m[:, 1, 1] = s * (si * sh + c)
    return m, t


def augment(d: Drawings, aug: Augment, rng: np.random.Generator) -> Drawings:
    """A randomly transformed copy of a batch (float32 coordinates, clipped to 0..255)."""
    if not aug.active:
        return d
    if aug.stroke_dropout > 0:
        d = drop_strokes(d, aug.stroke_dropout, rng)
    n = len(d)
    counts = d.point_counts()
    xy = d.xy.astype(np.float32)
    if d.raw:  # to the 0..255 frame first, so the transform acts about the drawing's centre
        xy = scaled(d).astype(np.float32)
    m, t = affine_params(n, aug, rng)
    mp = np.repeat(m, counts, axis=0)
    tp = np.repeat(t, counts, axis=0)
    v = xy - 127.5
    out = np.einsum("pij,pj->pi", mp, v) + 127.5 + tp
    np.clip(out, 0, 255, out=out)
    return Drawings(out.astype(np.float32), d.t, d.stroke_offsets, d.drawing_offsets, in_frame=True)


# test-time augmentation: each view's coordinate transform (11th and 14th place averaged the
# mirror image; 21st dropped strokes). A prediction with TTA averages the plain view and these.
TTA_VIEWS = {"flip": Augment(flip=1.0), "dropout": Augment(stroke_dropout=0.1)}


CHUNK = 1 << 22  # drawings a source maps at a time when it is made (temporaries stay small)


class Source:
    """Drawings a loader samples from: a store (opened lazily, so workers reopen it) and the
    indices of one split, with labels (the store's classes, or given ones for pseudo-labels).

    Positions, labels and country indices are kept in the narrowest integer type that holds
    them (:func:`..data.store.index_dtype`): 8 bytes a drawing of Kaggle's 49.7M where int64
    took 24 (1.2 GB, in the main process and, copy-on-write, its loader workers; found by the
    full-size rehearsal). Batches carry them as int64, as losses and embeddings expect."""

    def __init__(self, store_dir: str | Path, idx: np.ndarray | None = None,
                 labels: np.ndarray | None = None, split: str | None = None,
                 country_vocab: list[str] | None = None):
        self.store_dir = str(store_dir)
        self._store: Store | None = None
        st = self.store
        if idx is None:
            idx = {"train": st.train_idx, "valid": st.valid_idx, "blend": st.blend_idx,
                   None: np.arange(len(st), dtype=index_dtype(len(st)))}[split]
        self.idx = np.asarray(idx).astype(index_dtype(len(st)), copy=False)
        self.words = st.words
        self.labels = st.labels(self.idx) if labels is None else np.asarray(labels)
        self.labels = self.labels.astype(index_dtype(len(self.words)), copy=False)
        self.countries = list(st.countries) if country_vocab is None else list(country_vocab)
        # country indices in ``countries`` (another store's vocabulary for test drawings);
        # a country the vocabulary lacks gets the extra index len(countries)
        pos = {c: i for i, c in enumerate(self.countries)}
        remap = np.array([pos.get(c, len(self.countries)) for c in st.countries] + [len(self.countries)],
                         index_dtype(len(self.countries)))
        self.country = np.empty(len(self.idx), remap.dtype)
        for s in range(0, len(self.idx), CHUNK):
            raw_c = np.asarray(st.country[self.idx[s:s + CHUNK]]).astype(np.int64)
            self.country[s:s + CHUNK] = remap[np.where(raw_c < 0, len(st.countries), raw_c)]
        self.kind = st.kind
        self._cache: dict[str, Any] = {}  # sampling tables (class_groups, cumulative_weights)
        self.weights: np.ndarray | None = None  # how often each drawing is sampled (None: alike)

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = open_verified(self.store_dir)  # checked once per process
        return self._store

    def __getstate__(self):
        return {**self.__dict__, "_store": None, "_cache": {}}

    def class_groups(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(classes, members, start): the classes present, and positions grouped by class
        (class ``classes[k]``'s are ``members[start[k]:start[k + 1]]``), for balanced sampling;
        made once for these labels (a sort of the whole split: too costly for every epoch)."""
        if self._cache.get("labels") is not self.labels:
            classes, inv = np.unique(self.labels, return_inverse=True)
            members = np.argsort(inv, kind="stable").astype(self.idx.dtype)
            start = np.r_[0, np.cumsum(np.bincount(inv, minlength=len(classes)))]
            self._cache.update(labels=self.labels, groups=(classes, members, start))
        return self._cache["groups"]

    def cumulative_weights(self) -> np.ndarray:
        """The running sum of :attr:`weights` (float64), made once for these weights: a drawing
        is drawn in proportion to its weight by a search in it."""
        if self._cache.get("weights") is not self.weights:
            self._cache.update(weights=self.weights, cdf=np.cumsum(self.weights, dtype=np.float64))
        return self._cache["cdf"]

    def __len__(self) -> int:
        return len(self.idx)

    def __getitem__(self, i):  # fastai asks for indexability; batches come from `take`
        return self.idx[i]

    def take(self, pos: np.ndarray) -> tuple[Drawings, np.ndarray, np.ndarray]:
        """(drawings, labels, countries) at positions ``pos`` of this source."""
        pos = np.asarray(pos, np.int64)
        return self.store.drawings(self.idx[pos]), self.labels[pos], self.country[pos]

    def subset(self, pos: Sequence[int]) -> "Source":
        """The drawings at positions ``pos``, with their labels."""
        pos = np.asarray(pos, np.int64)
        out = Source(self.store_dir, self.idx[pos], self.labels[pos], country_vocab=self.countries)
        out.weights = None if self.weights is None else self.weights[pos]
        return out

    def empty(self) -> "DrawingsSource":
        """No drawings, the same vocabularies and kind (what an exported Learner keeps)."""
        return DrawingsSource(Drawings.concat([]), self.words, self.countries, self.kind)


class DrawingsSource:
    """Drawings in memory (a user's, to predict), with the vocabularies of the store a model
    was trained on: the same interface as :class:`Source`. Drawings are brought to the store's
    ``kind`` first (:func:`..data.store.as_kind`: raw ones simplified by Google's pipeline for
    a model of simplified drawings), so a prediction sees what training saw."""

    store_dir = "(drawings in memory)"

    def __init__(self, drawings: Drawings, words: Sequence[str], countries: Sequence[str], kind: str,
                 labels: np.ndarray | None = None, country: np.ndarray | None = None, times_needed: bool = True):
        self.drawings = as_kind(drawings, kind, times_needed) if len(drawings) else drawings
        self.words, self.countries, self.kind = list(words), list(countries), kind
        n = len(drawings)
        self.idx = np.arange(n, dtype=np.int64)
        self.labels = np.full(n, -1, np.int64) if labels is None else np.asarray(labels, np.int64)
        # no country given: the index past the vocabulary (the one an unknown country gets)
        self.country = np.full(n, len(self.countries), np.int64) if country is None else np.asarray(country, np.int64)

    def __len__(self) -> int:
        return len(self.idx)

    def __getitem__(self, i):
        return self.idx[i]

    def take(self, pos: np.ndarray) -> tuple[Drawings, np.ndarray, np.ndarray]:
        pos = np.asarray(pos, np.int64)
        return self.drawings.take(pos), self.labels[pos], self.country[pos]

    def subset(self, pos: Sequence[int]) -> "DrawingsSource":
        pos = np.asarray(pos, np.int64)
        out = DrawingsSource(Drawings.concat([]), self.words, self.countries, self.kind)
        out.drawings, out.idx = self.drawings.take(pos), np.arange(len(pos), dtype=np.int64)
        out.labels, out.country = self.labels[pos], self.country[pos]
        return out

    def empty(self) -> "DrawingsSource":
        return self.subset([])


class Item(NamedTuple):
    """One drawing of a loader's source, as ``dl.items`` lists them: fastai's
    ``Interpretation`` picks some and hands them back to ``dls.test_dl``."""

    source: Any
    pos: int


@dataclass
class PseudoLabels:
    """Test drawings labelled by a model's confident predictions, mixed into training batches.

    Attributes:
        source: the test store's drawings that passed the threshold, with predicted labels.
        frac: share of each training batch taken from them.
    """

    source: Source
    frac: float

    @classmethod
    def from_predictions(cls, test_store: str | Path, probs: np.ndarray, threshold: float,
                         frac: float, country_vocab: list[str] | None = None) -> "PseudoLabels":
        """Keep test drawings whose top probability is at least ``threshold``."""
        probs = np.asarray(probs)
        st = open_verified(test_store)
        if len(probs) != len(st):
            raise ValueError(f"{test_store}: {len(st)} test drawings but {len(probs)} predictions")
        if not 0 < frac < 1:
            raise ValueError(f"pseudo-label fraction must be in (0, 1), got {frac}")
        conf = probs.max(axis=1)
        keep = np.flatnonzero(conf >= threshold)
        if len(keep) == 0:
            raise ValueError(f"no test prediction reaches the pseudo-label threshold {threshold} "
                             f"(highest {conf.max():.3f})")
        return cls(Source(test_store, keep, probs[keep].argmax(axis=1), country_vocab=country_vocab), frac)


@dataclass(frozen=True)
class BatchSpec:
    """How a loader turns drawings into batches: the one object a run's loaders share, passed
    whole instead of a dozen keyword arguments (the evaluation loaders use :meth:`for_eval`).

    Attributes:
        input: "image" (rendered) or "points" (per-point features for the point model).
        variant, render: the renderer and how it draws (``render.size`` may change between
            epochs: :class:`..callbacks.ProgressiveResize`).
        render_on: "cpu" or "gpu" (the batch's device renders it, in ``after_batch``).
        channels_last: hand images over in channels-last memory format.
        points, resample: the point budget per drawing and how points are chosen
            (``input="points"``; see :func:`doodle_utils.models.points.point_features`).
        sampling: "uniform" (a shuffle of the source), "balanced" (classes drawn equally
            often, drawings with replacement) or "sequential" (in order, for validation/test).
        epoch_size: drawings per epoch; 0: the source's size.
        augment: coordinate augmentations (training only).
        pseudo: test drawings with predicted labels to mix into each batch.
        seed: with the epoch number, fixes each epoch's sample and augmentation.
    """

    input: str = "image"
    variant: str = "palette"
    render: RenderSpec = RenderSpec()
    render_on: str = "cpu"
    channels_last: bool = False
    points: int = 128
    resample: str = "length"
    sampling: str = "uniform"
    epoch_size: int = 0
    augment: Augment = Augment()
    pseudo: PseudoLabels | None = None
    seed: int = 0

    def check(self) -> None:
        """Raise ValueError naming the setting that cannot work."""
        for name, allowed in (("input", INPUTS), ("sampling", SAMPLING), ("variant", tuple(sorted(RENDERERS))),
                              ("render_on", ("cpu", "gpu"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")

    def tta_views(self, tta: Sequence[str]) -> list["BatchSpec"]:
        """The evaluation spec, then one per test-time view in ``tta`` (names of :data:`TTA_VIEWS`)."""
        unknown = [v for v in tta if v not in TTA_VIEWS]
        if unknown:
            raise ValueError(f"unknown test-time augmentation {unknown}; known: {sorted(TTA_VIEWS)}")
        plain = self.for_eval()
        return [plain, *(replace(plain, augment=TTA_VIEWS[v]) for v in tta)]

    def for_eval(self) -> "BatchSpec":
        """The same drawing settings for validation and test: in order, every drawing once,
        no augmentation, no pseudo-labels."""
        return replace(self, sampling="sequential", epoch_size=0, augment=Augment(), pseudo=None)


class DoodleDL(DataLoader):
    """A fastai DataLoader that renders whole batches of drawings (see the module docstring).

    Args:
        source: what to sample from.
        batches: how drawings become batches (:class:`BatchSpec`).
        bs: batch size (a callback may change it between epochs).
        kwargs: fastai ``DataLoader`` arguments (``num_workers``, ``device``, ``pin_memory``,
            ``drop_last``).
    """

    def __init__(self, source: Source, batches: BatchSpec = BatchSpec(), bs: int = 64, **kwargs):
        batches.check()
        if batches.input == "image" and RENDERERS[batches.variant].needs_time and source.kind not in TIMED_KINDS:
            raise ValueError(f"variant {batches.variant!r} needs a store with timings (kind timed or raw); "
                             f"{source.store_dir} is {source.kind}")
        self.source, self.batches, self.epoch = source, batches, 0
        kwargs.pop("dataset", None), kwargs.pop("n", None)
        super().__init__(dataset=source, bs=bs, n=batches.epoch_size or len(source), **kwargs)

    # the spec's settings, read as the loader's own
    variant = property(lambda self: self.batches.variant)
    spec = property(lambda self: self.batches.render)
    sampling = property(lambda self: self.batches.sampling)
    aug = property(lambda self: self.batches.augment)
    render_on = property(lambda self: self.batches.render_on)
    pseudo = property(lambda self: self.batches.pseudo)
    seed = property(lambda self: self.batches.seed)
    channels_last = property(lambda self: self.batches.channels_last)
    input = property(lambda self: self.batches.input)
    points = property(lambda self: self.batches.points)
    resample = property(lambda self: self.batches.resample)

    # ----- sampling
    def _rng(self, *extra: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, *extra])

    def get_idxs(self) -> list[int]:
        """The epoch's positions; pseudo-labelled ones are encoded as ``-1 - position``."""
        n, rng = self.n, self._rng()
        weights = getattr(self.source, "weights", None)
        if self.sampling == "sequential":
            idx = np.arange(n) % len(self.source)
        elif self.sampling == "uniform" and weights is None:
            # whole passes as permutations, the rest as distinct positions drawn directly: an
            # epoch of 2,048 from Kaggle's 49.7M drawings no longer shuffles all 49.7M (3-5 s
            # and 400 MB an epoch, found by the full-size rehearsal)
            full, rest = divmod(n, len(self.source))
            parts = [rng.permutation(len(self.source)) for _ in range(full)]
            parts += [rng.choice(len(self.source), rest, replace=False)] if rest else []
            idx = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        elif self.sampling == "uniform":  # each drawing in proportion to its weight
            cdf = self.source.cumulative_weights()
            idx = np.minimum(np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right"), len(cdf) - 1)
        else:
            if isinstance(self.source, Source):
                classes, members, start = self.source.class_groups()
            else:
                classes, inv = np.unique(self.source.labels, return_inverse=True)
                members = np.argsort(inv, kind="stable")
                start = np.r_[0, np.cumsum(np.bincount(inv))]
            cls = rng.integers(0, len(classes), n)
            if weights is None:
                idx = members[start[cls] + (rng.random(n) * (start[cls + 1] - start[cls])).astype(np.int64)]
            else:  # a class uniformly, then one of its drawings in proportion to its weight
                cw = np.r_[0.0, np.cumsum(weights[members])]
                lo, hi = cw[start[cls]], cw[start[cls + 1]]
                pos = np.searchsorted(cw, lo + rng.random(n) * (hi - lo), side="right") - 1
                idx = members[np.clip(pos, start[cls], start[cls + 1] - 1)]
        if self.pseudo is not None:
            k = self._pseudo_per_batch
            n_batches = math.ceil(n / (self.bs - k))
            main = idx[: n_batches * (self.bs - k)]
            extra = -1 - rng.integers(0, len(self.pseudo.source), n_batches * k)
            rows = [np.r_[main[b * (self.bs - k):(b + 1) * (self.bs - k)], extra[b * k:(b + 1) * k]]
                    for b in range(n_batches)]
            idx = np.concatenate(rows) if rows else idx
        return idx.tolist()

    def __len__(self) -> int:
        if self.pseudo is None:
            return super().__len__()
        return math.ceil(self.n / (self.bs - self._pseudo_per_batch))

    @property
    def _pseudo_per_batch(self) -> int:
        """Pseudo-labelled drawings in each batch (at least one)."""
        return max(1, round(self.pseudo.frac * self.bs))

    # ----- batches
    def create_batches(self, samps):
        buf: list[int] = []
        for s in samps:
            buf.append(s)
            if len(buf) == self.bs:
                yield self.make_batch(np.asarray(buf, np.int64))
                buf = []
        if buf and not self.drop_last:
            yield self.make_batch(np.asarray(buf, np.int64))

    def make_batch(self, pos: np.ndarray):
        """Gather, augment and (on CPU) render the drawings at positions ``pos``."""
        main = pos[pos >= 0]
        d, y, country = self.source.take(main)
        if (pos < 0).any():
            pd_, py, pc = self.pseudo.source.take(-1 - pos[pos < 0])
            d = Drawings.concat([d, pd_])
            y, country = np.r_[y, py], np.r_[country, pc]
        if self.aug.active:
            d = augment(d, self.aug, self._rng(1, int(pos[0]), len(pos)))
        # test drawings have no class (-1); fastai computes a loss on every batch it predicts,
        # so they carry class 0, which nothing reads
        y_t = torch.from_numpy(np.maximum(y, 0).astype(np.int64))
        c_t = torch.from_numpy(np.asarray(country, np.int64))
        if self.input == "points":

            feats, mask = point_features(d, self.points, self.resample)
            return torch.from_numpy(feats), torch.from_numpy(mask), c_t, y_t
        if self.render_on == "gpu":
            xy = torch.from_numpy(np.ascontiguousarray(d.xy, np.float32))
            t = torch.from_numpy(d.t.astype(np.float32)) if d.t is not None else torch.zeros(0)
            return (xy, torch.from_numpy(d.stroke_offsets), torch.from_numpy(d.drawing_offsets), t,
                    c_t, y_t)
        return torch.from_numpy(render(d, self.variant, self.spec)), c_t, y_t

    def __iter__(self):
        """fastai's loop, but a batch from pinned memory goes to the GPU without blocking the
        host (fastai's ``to_device`` waits for the copy, and so for the step before it)."""
        from fastai.data.load import _loaders
        from fastai.torch_core import to_device

        self.randomize()
        self.before_iter()
        self._DataLoader__idxs = self.get_idxs()  # fastai's sample() reads this name
        for b in _loaders[self.fake_l.num_workers == 0](self.fake_l):
            if self.pin_memory and type(b) is list:  # pinning turns tuples into lists
                b = tuple(b)
            if self.device is not None:
                b = to_device(b, self.device, non_blocking=self.pin_memory)
            yield self.after_batch(b)
        self.after_iter()
        if hasattr(self, "it"):
            del self.it

    def after_batch(self, b):
        """Render a packed batch on its device (GPU mode); scale to 0..1 floats."""
        if self.input == "points":
            return b
        if self.render_on == "gpu":
            xy, so, do, t, c, y = b
            return self.render_packed(xy, so, do, t if t.numel() else None), c, y
        img, c, y = b
        img = img.float().div_(255)
        if self.channels_last:
            img = img.contiguous(memory_format=torch.channels_last)
        return img, c, y

    def render_packed(self, xy: torch.Tensor, so: torch.Tensor, do: torch.Tensor,
                      t: torch.Tensor | None) -> torch.Tensor:
        """A packed batch on its device drawn as this loader's images: float 0..1 (N, C, size, size)."""
        # augmented batches and timed stores are in the 0..255 frame; raw ones are not
        in_frame = self.aug.active or self.source.kind != "raw"
        return render_packed(xy, so, do, t, self.variant, self.spec, out_dtype=torch.float32,
                             channels_last=self.channels_last, in_frame=in_frame)

    def to_detach(self, b, cpu: bool = True, gather: bool = True):
        """Detach predictions without gathering across processes: this loader holds all of its
        drawings (fastai's DistributedDL wrapper, which holds a share, gathers)."""
        from fastai.torch_core import to_detach

        return to_detach(b, cpu, gather=False)

    def new(self, **kwargs) -> "DoodleDL":
        """A copy with some settings changed (fastai calls this for prediction loaders)."""
        kw = dict(source=self.source, batches=self.batches, bs=self.bs, num_workers=self.fake_l.num_workers,
                  pin_memory=self.pin_memory, drop_last=self.drop_last, device=self.device)
        for k in ("shuffle", "get_idxs"):
            kwargs.pop(k, None)
        kw.update(kwargs)
        return type(self)(**kw)

    # ----- fastai's view of the data: vocabulary, items, decoding and showing
    @property
    def vocab(self):
        """The class names, as fastai's ``CategoryMap`` (in the store's order)."""
        from fastai.data.transforms import CategoryMap

        return CategoryMap(self.source.words, sort=False)

    @property
    def times_needed(self) -> bool:
        """Whether the inputs read points' times (a time variant; the point model on a store with times)."""
        return self.input == "points" or RENDERERS[self.variant].needs_time

    @property
    def c(self) -> int:
        return len(self.source.words)

    @property
    def n_inp(self) -> int:
        """Inputs before the label: (image, country) or (features, mask, country)."""
        return 3 if self.input == "points" else 2

    @property
    def items(self) -> list[Item]:
        """The source's drawings, in the order a sequential loader yields them."""
        return [Item(self.source, i) for i in range(len(self.source))]

    def decode(self, b):
        from fastai.torch_core import to_cpu

        return to_cpu(b)

    def decode_batch(self, b, max_n: int = 9, full: bool = True):
        """Per drawing: (picture as the model sees it, the other inputs, the class name)."""
        from .showing import samples  # lazy: fastai's vision and interpretation modules, only to show

        return samples(self, self.decode(b), max_n)

    def _pre_show_batch(self, b, max_n: int = 9):
        """(pictures, labels, samples) for fastai's show functions (fastai's hook of this name)."""
        from .showing import pre_show  # lazy: fastai's vision and interpretation modules, only to show

        return pre_show(self, self.decode(b), max_n)

    def show_batch(self, b=None, max_n: int = 9, ctxs=None, show: bool = True, unique: bool = False, **kwargs):
        """Draw a batch as the model sees it, each with its class (fastai's ``show_batch``)."""
        from fastai.data.core import show_batch

        if b is None:
            b = self.one_batch()
        if not show:
            return self._pre_show_batch(b, max_n=max_n)
        return show_batch(*self._pre_show_batch(b, max_n=max_n), ctxs=ctxs, max_n=max_n, **kwargs)

    def show_results(self, b, out, max_n: int = 9, ctxs=None, show: bool = True, **kwargs):
        """A batch with its true and predicted classes (fastai's ``show_results``)."""
        from fastai.data.core import show_results
        from fastai.torch_core import tuplify

        x, y, its = self._pre_show_batch(b, max_n=max_n)
        *_, outs = self._pre_show_batch(tuple(b[:self.n_inp]) + tuplify(self.decode(out)), max_n=max_n)
        if not show:
            return its, outs
        return show_results(x, y, its, outs.itemgot(slice(self.n_inp, None)), ctxs=ctxs, max_n=max_n, **kwargs)

    @property
    def size(self) -> int:
        """The image size, or the point budget for ``input="points"``."""
        return self.points if self.input == "points" else self.spec.size

    @size.setter
    def size(self, value: int) -> None:
        if self.input == "points":
            self.batches = replace(self.batches, points=int(value))
        else:
            self.batches = replace(self.batches, render=replace(self.spec, size=int(value)))

    @property
    def channels(self) -> int:
        """Image channels, or per-point features for ``input="points"``."""
        if self.input == "points":
            return len(FEATURES)
        return RENDERERS[self.variant].channels


def as_source(items: Any, like: Source | DrawingsSource, times_needed: bool = True) -> Source | DrawingsSource:
    """Drawings to predict, as a source with ``like``'s vocabularies and kind: a list of
    :class:`Item` (from ``dl.items``: their own source's drawings, labels kept), a
    :class:`..data.Drawings` batch, or drawings in Google's form (stroke lists or ndjson rows,
    :meth:`..data.Drawings.from_google`; an ndjson row's ``word`` and ``countrycode`` are used
    when the vocabularies know them). ``times_needed``: the model reads points' times (see
    :func:`..data.store.as_kind`)."""
    if isinstance(items, (Source, DrawingsSource)):
        return items
    if isinstance(items, Drawings):
        return DrawingsSource(items, like.words, like.countries, like.kind, times_needed=times_needed)
    if isinstance(items, tuple) and len(items) == 2 and isinstance(items[1], Drawings):
        meta, d = items  # what data.read_file returns: a file's rows and their drawings
        rows = meta.to_dict("records")
    else:
        items = list(items)
        if items and all(isinstance(i, Item) for i in items):
            sources = {id(i.source) for i in items}
            if len(sources) > 1:
                raise ValueError("items come from more than one loader; predict each loader's separately")
            return items[0].source.subset([i.pos for i in items])
        d = Drawings.from_google(items)
        if d.t is None and d.xy.dtype != np.uint8 and len(items) > 1:
            # Google-simplified drawings beside others: each is brought to the model's form on
            # its own (simplifying a simplified drawing again would rescale it)
            parts = [Drawings.from_google([i]) for i in items]
            if any(p.xy.dtype == np.uint8 for p in parts):
                d = Drawings.concat([as_kind(p, like.kind, times_needed) for p in parts])
        rows = [i if isinstance(i, dict) else {} for i in items]
    words = {w: k for k, w in enumerate(like.words)}
    countries = {c: k for k, c in enumerate(like.countries)}
    labels = np.array([words.get(r.get("word"), -1) for r in rows], np.int64)
    country = np.array([countries.get(r.get("countrycode"), len(like.countries)) for r in rows], np.int64)
    return DrawingsSource(d, like.words, like.countries, like.kind, labels, country, times_needed)


class DoodleDataLoaders(DataLoaders):
    """fastai ``DataLoaders`` of :class:`DoodleDL`: ``vocab``, ``c``, ``show_batch`` come from
    the training loader; ``test_dl`` takes drawings (:func:`as_source`) and makes a loader with
    the validation loader's settings, so ``learn.predict(strokes)`` and ``learn.get_preds``
    render exactly as validation did; ``new_empty`` keeps the settings and vocabularies without
    the drawings (``learn.export()``)."""

    def test_dl(self, test_items, rm_type_tfms=None, with_labels: bool = False, **kwargs) -> DoodleDL:
        valid = self.valid
        kwargs.pop("process", None)
        # with_labels: a source keeps the labels it has (Items' own, an ndjson row's word)
        return valid.new(source=as_source(test_items, valid.source, valid.times_needed), **kwargs)

    def new_empty(self) -> "DoodleDataLoaders":
        return type(self)(*[dl.new(source=dl.source.empty()) for dl in self.loaders], path=self.path,
                          device=self.device)


UNRECOGNIZED = ("keep", "drop", "downweight", "relabel")  # what training does with unrecognized drawings


@dataclass(frozen=True)
class Unrecognized:
    """What training does with its drawings the game did not recognize (``recognized`` false;
    about one in ten of Kaggle's, much of it noise, while the test set was labelled by people):
    ``keep`` them; ``drop`` them (the 21st place dropped low-probability drawings); ``downweight``
    them (each drawn ``weight`` times as often as a recognized drawing: in expectation, the loss
    weighted alike); or ``relabel`` them with a label column (the 11th place's rule, written by
    :func:`.relabel.relabel`). Validation is never changed."""

    mode: str = "keep"
    weight: float = 0.3
    labels_file: str = ""

    def apply(self, src: Source) -> tuple[Source, str]:
        """The training source this choice makes of ``src``, and a line saying what changed."""
        if self.mode == "keep":
            return src, ""
        unrec = np.asarray(src.store.recognized)[src.idx] == 0
        n = f"{int(unrec.sum())} of {len(src)} training drawings unrecognized"
        if self.mode == "drop":
            return src.subset(np.flatnonzero(~unrec)), f"{n}: dropped"
        if self.mode == "downweight":
            src.weights = np.where(unrec, np.float32(self.weight), np.float32(1))
            return src, f"{n}: drawn at weight {self.weight:g}"
        if self.mode != "relabel":
            raise ValueError(f"unrecognized must be one of {UNRECOGNIZED}, got {self.mode!r}")
        labels = read_label_column(self.labels_file, src.store)[src.idx]
        changed = int((labels != src.labels).sum())
        src.labels = labels.astype(src.labels.dtype)
        return src, f"{n}: {changed} relabelled from {self.labels_file}"


def make_dls(store_dir: str | Path, batches: BatchSpec, bs: int, test_store_dir: str | Path | None = None,
             num_workers: int = 0, device: torch.device | str | None = None,
             unrecognized: Unrecognized = Unrecognized(), loader: type["DoodleDL"] | None = None):
    """:class:`DoodleDataLoaders` (train, valid) on the store's stratified split, and a test
    loader over ``test_store_dir`` (or None); validation and test use ``batches.for_eval()`` and
    twice the batch size (at least 128). ``unrecognized``: what the training split does with
    its unrecognized drawings (a line says what changed). ``loader``: the loaders' class,
    :class:`DoodleDL` by default; :class:`.resident.ResidentDL` makes the batches in device
    memory (the stores copied to ``device`` once; ``num_workers`` unused): the same batches,
    ValueError when a store does not fit in the device's free memory."""
    train_src, note = unrecognized.apply(Source(store_dir, split="train"))
    if note:
        print(f"unrecognized: {note}")
    valid_src = Source(store_dir, split="valid")
    if len(train_src) == 0 or len(valid_src) == 0:
        raise ValueError(f"{store_dir}: the split has {len(train_src)} training and "
                         f"{len(valid_src)} validation drawings; both must be non-empty")
    pin = torch.device(device).type == "cuda" if device is not None else False
    common = dict(num_workers=num_workers, device=device, pin_memory=pin)
    loader = loader or DoodleDL
    train = loader(train_src, batches, bs=bs, drop_last=True, **common)
    eval_bs, evaluate = max(bs, 64) * 2, batches.for_eval()
    valid = loader(valid_src, evaluate, bs=eval_bs, **common)
    test = None
    if test_store_dir:
        test = loader(Source(test_store_dir, country_vocab=train_src.countries), evaluate, bs=eval_bs, **common)
    return DoodleDataLoaders(train, valid, device=device), test
