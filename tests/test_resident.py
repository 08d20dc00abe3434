"""The device-resident input path (training.resident): the same batches as the host loader.

On CPU tensors: the resident loader gathers, augments and renders with torch ops, the host
loader (``render_on="gpu"`` on device "cpu") gathers and augments with numpy and renders with
the same torch engine, so for one seed every batch must be equal, bit for bit.
"""
from __future__ import annotations

import pickle
import weakref
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from doodle_utils.data.store import Store, pack_competition
from doodle_utils.data.synth import make_competition
from doodle_utils.render import RenderSpec
from doodle_utils.training import resident
from doodle_utils.training.loaders import (Augment, BatchSpec, DoodleDL, DrawingsSource, PseudoLabels, Source,
                                          make_dls)
from doodle_utils.training.loaders import augment as augment_host
from doodle_utils.training.resident import ResidentDL, ResidentStore

from conftest import consistent_edit

ALL_AUGMENTS = Augment(flip=0.5, scale=0.2, rotate=20, shear=0.3, shift=0.1, stroke_dropout=0.3)


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> dict[str, Path]:
    """One small synthetic competition packed in each kind: {kind: train store}, and "test"."""
    root = tmp_path_factory.mktemp("resident")
    make_competition(root / "data", classes=4, per_class=25, test_per_class=4, seed=5)
    out = {}
    for kind in ("simplified", "timed", "raw"):
        pack_competition(root / "data", root / kind, workers=1, valid_frac=0.2, seed=0, kind=kind)
        out[kind] = root / kind / "train"
    out["test"] = root / "simplified" / "test"
    return out


def assert_same_batches(host: DoodleDL, res: ResidentDL, epochs: int = 2) -> int:
    """Every batch of ``epochs`` epochs equal; returns how many batches were compared."""
    n = 0
    for epoch in range(epochs):
        host.epoch = res.epoch = epoch
        a, b = list(host), list(res)
        assert len(a) == len(b) == len(host) > 0
        for i, (x, y) in enumerate(zip(a, b)):
            for name, u, v in zip(("images", "country", "label"), x, y):
                assert u.dtype == v.dtype and u.shape == v.shape, (epoch, i, name)
                assert torch.equal(u, v), (epoch, i, name, int((u != v).sum()))
            n += 1
    return n


@pytest.mark.parametrize("augment", [Augment(), ALL_AUGMENTS], ids=["plain", "augmented"])
@pytest.mark.parametrize("kind, variant", [("simplified", "palette"), ("timed", "time3"), ("raw", "time3"),
                                           ("raw", "strokes3")])
def test_resident_batches_equal_the_host_loaders(stores, kind, variant, augment):
    """Balanced sampling, two epochs, a last short batch: images, countries and labels equal
    bit for bit (the same random numbers and the same float64 arithmetic)."""
    src = Source(stores[kind], split="train")
    spec = BatchSpec(variant=variant, render=RenderSpec(size=32), render_on="gpu", sampling="balanced",
                     augment=augment, seed=7, epoch_size=100)
    host, res = DoodleDL(src, spec, bs=24, device="cpu"), ResidentDL(src, spec, bs=24, device="cpu")
    assert assert_same_batches(host, res) == 10  # 5 a epoch (4 of 24, one of 4)


def test_augmentations_change_the_batches(stores):
    """The augmented comparison above is not the plain one again: another seed, another batch."""
    src = Source(stores["simplified"], split="train")
    spec = BatchSpec(render=RenderSpec(size=32), sampling="sequential", augment=ALL_AUGMENTS)
    plain = ResidentDL(src, replace(spec, augment=Augment()), bs=32).one_batch()[0]
    a = ResidentDL(src, spec, bs=32).one_batch()[0]
    b = ResidentDL(src, replace(spec, seed=1), bs=32).one_batch()[0]
    assert not torch.equal(a, plain) and not torch.equal(a, b)


def test_pseudo_labels_are_mixed_in_alike(stores):
    """Pseudo-labelled test drawings from a second resident store, in every batch, augmented."""
    src = Source(stores["simplified"], split="train")
    n_test = len(Store(stores["test"]))
    pseudo = PseudoLabels(Source(stores["test"], np.arange(n_test), np.arange(n_test) % 4,
                                 country_vocab=src.countries), frac=0.25)
    spec = BatchSpec(render=RenderSpec(size=32), render_on="gpu", augment=ALL_AUGMENTS, pseudo=pseudo, seed=2)
    host, res = DoodleDL(src, spec, bs=16, device="cpu"), ResidentDL(src, spec, bs=16, device="cpu")
    assert assert_same_batches(host, res, epochs=1) == len(host)


def test_fastai_settings_act_alike(stores):
    """make_dls(loader=ResidentDL): a new batch size, a new image size, channels-last, the
    validation and test loaders, ``new()`` and ``test_dl`` give the host loaders' batches."""
    spec = BatchSpec(render=RenderSpec(size=32), render_on="gpu", augment=ALL_AUGMENTS, channels_last=True, seed=4)
    host, _ = make_dls(stores["simplified"], spec, bs=16, device="cpu")
    res, res_test = make_dls(stores["simplified"], spec, bs=16, device="cpu", test_store_dir=stores["test"],
                             loader=ResidentDL)
    assert all(type(dl) is ResidentDL for dl in (*res.loaders, res_test))
    assert res.train.resident()[0] is res.valid.resident()[0]  # one copy of the store for both splits
    for dls in (host, res):
        dls.train.bs, dls.train.size = 8, 24
    assert assert_same_batches(host.train, res.train, epochs=1) == len(host.train) == len(host.train.source) // 8
    x = res.train.one_batch()[0]
    assert x.shape[1:] == (3, 24, 24) and x.is_contiguous(memory_format=torch.channels_last)
    assert assert_same_batches(host.valid, res.valid, epochs=1) > 0
    assert assert_same_batches(host.valid.new(bs=7), res.valid.new(bs=7), epochs=1) > 0
    again = pickle.loads(pickle.dumps(res.valid))  # what learn.export() does (without the device copy)
    assert again._held is None and assert_same_batches(host.valid, again, epochs=1) > 0
    drawings = Store(stores["simplified"]).drawings(np.arange(5))
    a, b = host.test_dl(drawings), res.test_dl(drawings)
    assert type(b) is ResidentDL and isinstance(b.source, DrawingsSource)
    assert assert_same_batches(a, b, epochs=1) == 1


def test_a_fastai_learner_fits_on_resident_batches(stores):
    from fastai.learner import Learner
    from fastai.losses import CrossEntropyLossFlat

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(3 * 16 * 16, 4)

        def forward(self, x, country):
            return self.fc(x.flatten(1))

    spec = BatchSpec(render=RenderSpec(size=16), augment=Augment(rotate=10), epoch_size=64)
    dls, _ = make_dls(stores["simplified"], spec, bs=16, device="cpu", loader=ResidentDL)
    learn = Learner(dls, Tiny(), loss_func=CrossEntropyLossFlat())
    with learn.no_bar(), learn.no_logging():
        learn.fit(1, 1e-2)
    assert len(learn.recorder.losses) == 4 and np.isfinite(float(learn.recorder.losses[-1]))


@pytest.mark.parametrize("augment", [ALL_AUGMENTS, replace(ALL_AUGMENTS, stroke_dropout=0.0)],
                         ids=["with-dropout", "no-dropout"])
@pytest.mark.parametrize("kind", ["simplified", "timed", "raw"])
def test_augmented_coordinates_equal_the_hosts(stores, kind, augment):
    """Before rendering (which rounds to its pixel grid): the augmented points, strokes and
    times equal :func:`.loaders.augment`'s bit for bit (raw points are brought into the frame
    first, in float64)."""
    st = Store(stores[kind])
    idx = np.random.default_rng(2).integers(0, len(st), 3 * len(st))
    want = augment_host(st.drawings(idx), augment, np.random.default_rng(9))
    got = resident.augment_packed(ResidentStore.of(Source(stores[kind]), "cpu").take(idx, stroke_lens=True),
                                  augment, np.random.default_rng(9))
    assert got.xy.dtype == torch.float32 and np.array_equal(got.xy.numpy(), want.xy)
    assert np.array_equal(got.stroke_offsets.numpy(), want.stroke_offsets)
    assert np.array_equal(got.drawing_offsets.numpy(), want.drawing_offsets)
    assert (got.t is None) == (want.t is None) and (got.t is None or np.array_equal(got.t.numpy(), want.t))
    assert len(want.stroke_offsets) < len(st.drawings(idx).stroke_offsets) or augment.stroke_dropout == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("kind, variant", [("simplified", "palette"), ("timed", "time3"), ("raw", "time3")])
def test_on_a_gpu_the_batches_equal_the_host_loaders(stores, kind, variant):
    """The same on CUDA (the render engine the device picks for both): would fail if a
    kernel fused the float64 multiply-adds into FMAs."""
    src = Source(stores[kind], split="train")
    spec = BatchSpec(variant=variant, render=RenderSpec(size=64), render_on="gpu", sampling="balanced",
                     augment=ALL_AUGMENTS, seed=7, epoch_size=100)
    host, res = DoodleDL(src, spec, bs=24, device="cuda"), ResidentDL(src, spec, bs=24, device="cuda")
    assert res.resident()[0].tensors["xy"].is_cuda
    assert assert_same_batches(host, res) == 10


# --------------------------------------------------------------------------- ResidentStore

@pytest.fixture(scope="module")
def store_with_empty_drawings(stores, tmp_path_factory) -> Path:
    """The simplified store with drawings 0, 7 and the last emptied: each one's strokes and
    points handed to its neighbour (a consistent edit: the store still opens verified)."""
    import shutil

    folder = tmp_path_factory.mktemp("empty") / "store"
    shutil.copytree(stores["simplified"], folder)
    st = Store(folder)
    last = len(st) - 1
    for name in ("point_off", "stroke_off"):
        def change(a, last=last):
            a[1] = a[0]  # drawing 0's go to drawing 1
            a[8] = a[7]  # drawing 7's go to drawing 8
            a[last] = a[last + 1]  # the last one's go to the one before
        consistent_edit(folder, name, change)
    return folder


def test_gather_equals_the_stores_drawings(store_with_empty_drawings):
    st = Store(store_with_empty_drawings)
    counts = st.point_counts()
    assert (counts[[0, 7, len(st) - 1]] == 0).all() and (counts > 0).sum() == len(st) - 3
    rs = ResidentStore.of(Source(store_with_empty_drawings), "cpu")
    rng = np.random.default_rng(0)
    for idx in (rng.integers(0, len(st), 50), np.array([0, 7, len(st) - 1, 3, 0]), np.array([7]),
                np.zeros(0, np.int64), np.arange(len(st))):
        want = st.drawings(idx)
        xy, so, do, t = rs.gather(idx)
        assert t is None and want.t is None
        assert xy.dtype == torch.uint8 and so.dtype == do.dtype == torch.int64
        assert np.array_equal(xy.numpy(), want.xy)
        assert np.array_equal(so.numpy(), want.stroke_offsets) and np.array_equal(do.numpy(), want.drawing_offsets)


@pytest.fixture(scope="module")
def late_times(stores, tmp_path_factory) -> Path:
    """The timed store with 50 s added to every time: uint16 values past int16's range."""
    import shutil

    folder = tmp_path_factory.mktemp("late") / "store"
    shutil.copytree(stores["timed"], folder)

    def change(t):
        assert t.dtype == np.uint16 and t.max() < 15000
        t += 50000
    consistent_edit(folder, "t", change)
    return folder


@pytest.mark.parametrize("kind", ["timed", "raw", "late"])
def test_gather_keeps_times_and_raw_points(stores, late_times, kind):
    folder = late_times if kind == "late" else stores[kind]
    st = Store(folder)
    idx = np.random.default_rng(1).integers(0, len(st), 40)
    want = st.drawings(idx)
    assert kind != "late" or want.t.min() >= 50000
    xy, so, do, t = ResidentStore.of(Source(folder), "cpu").gather(idx)
    assert t.dtype == torch.int32 and np.array_equal(t.numpy(), want.t)
    assert xy.dtype == torch.from_numpy(want.xy).dtype and np.array_equal(xy.numpy(), want.xy)
    assert np.array_equal(so.numpy(), want.stroke_offsets) and np.array_equal(do.numpy(), want.drawing_offsets)


def test_an_index_out_of_range_is_refused(stores):
    rs = ResidentStore.of(Source(stores["simplified"]), "cpu")
    for bad in ([0, len(rs)], [-1], [len(rs) + 100]):
        with pytest.raises(IndexError, match="out of range"):
            rs.gather(np.array(bad))


# --------------------------------------------------------------------------- refusals

def test_a_store_that_does_not_fit_is_refused(stores, monkeypatch):
    monkeypatch.setattr(resident, "_HELD", weakref.WeakValueDictionary())  # no copy held from other tests
    src = Source(stores["timed"], split="train")
    st = Store(stores["timed"])
    need = sum(getattr(st, k).nbytes for k in ("xy", "t", "stroke_len", "point_off", "stroke_off"))
    with pytest.raises(ValueError, match=rf"{st.path}: its {len(st):,} drawings need .*{need:,} bytes.*only .*"
                                         r"\(1,000 bytes\) are free"):
        ResidentDL(src, BatchSpec(variant="time3"), free_bytes=1000)
    assert ResidentDL(src, BatchSpec(variant="time3"), free_bytes=need).resident()[0].nbytes == need
    # on a CUDA device the free memory is CUDA's: the store is refused before anything is copied
    monkeypatch.setattr(resident, "_HELD", weakref.WeakValueDictionary())
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (need - 1, 10 * need))
    with pytest.raises(ValueError, match=rf"need .* on cuda.*\({need - 1:,} bytes\) are free"):
        ResidentStore.of(src, "cuda")


def test_point_inputs_are_refused(stores):
    with pytest.raises(ValueError, match="input='points'"):
        ResidentDL(Source(stores["simplified"], split="train"), BatchSpec(input="points"))
