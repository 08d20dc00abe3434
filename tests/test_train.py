"""Training: loaders, model, every schedule trick acting, resume, snapshots, predictions, DDP.

Runs on a small synthetic competition with timm's tiny ``test_resnet`` at 32 px, on CPU.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from fastai.callback.core import Callback

from doodle_utils import metrics
from doodle_utils.data import Drawings
from doodle_utils.data.store import Store
from doodle_utils.render import RenderSpec
from doodle_utils.training import DoodleNet, RunStateError, config_from_params, train
from doodle_utils.training.loaders import (Augment, BatchSpec, DoodleDL, PseudoLabels, Source, augment,
                                          drop_strokes)

from conftest import ROOT, packed_competition, tiny_train_config


@pytest.fixture(scope="module")
def stores(six_class_stores):
    return six_class_stores


_cfg = tiny_train_config


class Record(Callback):
    """Per training batch: (epoch, iter, lr used, batch size, image shape, memory format)."""

    order = 100

    def __init__(self):
        self.rows = []

    def after_batch(self):
        if self.training:
            x = self.xb[0]
            self.rows.append((self.epoch, self.iter, float(self.opt.hypers[0]["lr"]), len(x), tuple(x.shape),
                              x.is_contiguous(memory_format=torch.channels_last)))


# --------------------------------------------------------------------------- metrics

def test_map_at_3_known_values_and_torch_agrees():
    probs = np.array([[0.5, 0.3, 0.2, 0.0], [0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1], [0.3, 0.2, 0.4, 0.1]])
    labels = np.array([0, 2, 3, 1])  # ranks 1, 2, absent, 3
    assert metrics.map_at_k(probs, labels) == pytest.approx((1 + 1 / 2 + 0 + 1 / 3) / 4)
    assert float(metrics.map3(torch.tensor(probs), torch.tensor(labels))) == pytest.approx((1 + 0.5 + 0 + 1 / 3) / 4)
    assert float(metrics.top3_accuracy(torch.tensor(probs), torch.tensor(labels))) == 0.75
    assert metrics.top_k(np.array([[0.2, 0.4, 0.4]]), 2).tolist() == [[1, 2]]  # ties: lower index first
    pc = metrics.per_class_accuracy(probs, labels, ["a", "b", "c", "d"])
    assert pc.set_index("word").loc["d", "map3"] == 0 and pc.set_index("word").loc["a", "top1"] == 1


# --------------------------------------------------------------------------- loaders

def test_sampling_is_seeded_per_epoch_and_balanced(stores):
    src = Source(stores[0], split="train")
    dl = DoodleDL(src, BatchSpec(render=RenderSpec(size=32), sampling="uniform"), bs=16)
    a = dl.get_idxs()
    assert sorted(a) == list(range(len(src)))  # a permutation
    assert dl.get_idxs() == a
    dl.epoch = 1
    assert dl.get_idxs() != a
    # an imbalanced source: class 0 has 10x the drawings of the others
    keep = np.flatnonzero((src.labels == 0) | (np.arange(len(src)) % 10 == 0))
    sub = Source(stores[0], idx=src.idx[keep])
    counts = np.bincount(sub.labels[DoodleDL(sub, BatchSpec(sampling="balanced", epoch_size=6000)).get_idxs()])
    assert counts.min() / counts.max() > 0.85
    uni = np.bincount(sub.labels[DoodleDL(sub, BatchSpec(sampling="uniform")).get_idxs()])
    assert uni[0] > 3 * uni[1:].max()


def test_sampling_tables_are_made_once_per_labels_and_weights(stores):
    """Balanced sampling's class grouping and weighted sampling's running sum are sorts and
    sums over the whole split: made once, not every epoch, and again when labels change."""
    src = Source(stores[0], split="train")
    dl = DoodleDL(src, BatchSpec(sampling="balanced", epoch_size=600), bs=10)
    dl.get_idxs()
    groups = src.class_groups()
    dl.epoch = 1
    dl.get_idxs()
    assert src.class_groups() is groups
    classes, members, start = groups
    assert (src.labels[members] == np.repeat(classes, np.diff(start))).all() and members.dtype == src.idx.dtype
    src.labels = src.labels.copy()
    assert src.class_groups() is not groups
    src.weights = np.where(np.arange(len(src)) % 2, np.float32(1), np.float32(0))
    cdf = src.cumulative_weights()
    idx = np.asarray(DoodleDL(src, BatchSpec(sampling="uniform", epoch_size=600), bs=10).get_idxs())
    assert src.cumulative_weights() is cdf and (idx % 2 == 1).all()  # weight 0: never drawn


def test_uniform_epochs_are_distinct_draws_without_touching_the_whole_source(stores):
    """An epoch smaller than the source draws distinct positions without a permutation of the
    whole source (at 49.7M drawings that cost 3-5 s and 400 MB an epoch); a larger one is whole
    passes, each a permutation, then distinct positions."""
    import tracemalloc
    from types import SimpleNamespace

    def idxs(n_source: int, n: int) -> np.ndarray:
        source = type("Source", (), {"weights": None, "__len__": lambda self: n_source})()
        fake = SimpleNamespace(n=n, sampling="uniform", pseudo=None, _rng=lambda: np.random.default_rng(3),
                               source=source)
        return np.asarray(DoodleDL.get_idxs(fake))

    tracemalloc.start()
    a = idxs(20_000_000, 2048)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(np.unique(a)) == 2048 and a.max() < 20_000_000 and peak < 5_000_000  # a permutation: 160 MB
    b = idxs(100, 250)
    assert sorted(b[:100]) == list(range(100)) and sorted(b[100:200]) == list(range(100))
    assert len(np.unique(b[200:])) == 50


def test_a_source_keeps_two_bytes_a_drawing_per_array_and_batches_carry_int64(stores, monkeypatch):
    """Positions, labels and countries are kept narrow (Kaggle's 49.7M drawings took 24 bytes
    each as int64: 1.2 GB, found by the full-size rehearsal), mapped a chunk at a time, with the
    values of the int64 version; batches still carry int64 classes and countries."""
    import tracemalloc

    from doodle_utils.training import loaders

    st = Store(stores[0])
    ref = Source(stores[0], split="train")
    monkeypatch.setattr(loaders, "CHUNK", 7)
    src = Source(stores[0], split="train")
    assert (src.idx.dtype, src.labels.dtype, src.country.dtype) == (np.int16,) * 3
    assert src.idx.tolist() == np.flatnonzero(~np.asarray(st.valid)).tolist()
    assert src.labels.tolist() == np.asarray(st.word)[src.idx].tolist() == ref.labels.tolist()
    assert src.country.tolist() == ref.country.tolist()
    x, c, y = DoodleDL(src, BatchSpec(render=RenderSpec(size=16), sampling="sequential"), bs=8).one_batch()
    assert c.dtype == y.dtype == torch.int64 and y.tolist() == src.labels[:8].tolist()

    # a store of 2M drawings (its arrays made here, like a store's memory-maps): the source
    # allocates what it keeps and small chunks, not int64 copies
    n = 2_000_000
    big = type("BigStore", (), {"__len__": lambda self: n, "words": [f"w{i}" for i in range(340)],
                                "countries": ["US", "GB"], "kind": "simplified",
                                "word": np.arange(n, dtype=np.int16) % 340, "country": np.zeros(n, np.uint16)})()
    big.labels = lambda idx: big.word[idx]
    idx = np.arange(n, dtype=np.int32)
    monkeypatch.setattr(loaders, "open_verified", lambda path: big)
    monkeypatch.setattr(loaders, "CHUNK", 1 << 16)
    tracemalloc.start()
    huge = Source("big", idx)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert (huge.idx.dtype, huge.labels.dtype, huge.country.dtype) == (np.int32, np.int16, np.int16)
    assert peak < 6 * n, peak  # labels and countries 2 bytes each, plus chunks (int64 copies: 24+)


def test_batches_are_rendered_images_with_country_and_label(stores):
    src = Source(stores[1], country_vocab=Store(stores[0]).countries)
    dl = DoodleDL(src, BatchSpec(variant="strokes3", render=RenderSpec(size=32), sampling="sequential"), bs=10)
    x, c, y = dl.one_batch()
    assert x.shape == (10, 3, 32, 32) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    assert (y == 0).all()  # test drawings carry a placeholder class
    assert c.max() <= len(src.countries)


def test_gpu_render_path_matches_cpu_render_path(stores):
    """render_on="gpu" renders in after_batch with the torch renderer; on CPU tensors here."""
    src = Source(stores[0], split="valid")
    spec = BatchSpec(render=RenderSpec(size=32), sampling="sequential", variant="palette")
    a = DoodleDL(src, replace(spec, render_on="cpu"), bs=24).one_batch()[0]
    b = DoodleDL(src, replace(spec, render_on="gpu"), bs=24).one_batch()[0]
    assert a.shape == b.shape
    assert (a - b).abs().mean() * 255 < 3  # the renderers' stated tolerance (render_torch.MAX_MAD)


def test_worker_processes_render_the_same_batches(stores):
    """CPU rendering in two loader processes gives the batches of the main process, in order
    (each batch's sample and augmentation depend only on the seed, epoch and its positions)."""
    src = Source(stores[0], split="train")
    spec = BatchSpec(render=RenderSpec(size=32), augment=Augment(flip=0.5, rotate=10), seed=3)
    main = list(DoodleDL(src, spec, bs=32, num_workers=0))
    workers = list(DoodleDL(src, spec, bs=32, num_workers=2))
    assert len(main) == len(workers) == len(src) // 32 + (len(src) % 32 > 0)
    for a, b in zip(main, workers):
        assert torch.equal(a[0], b[0]) and torch.equal(a[2], b[2])


def test_augmentations_act(stores):
    st = Store(stores[0])
    d = st.drawings(np.arange(40))
    rng = np.random.default_rng(0)
    flipped = augment(d, Augment(flip=1.0), rng)
    assert np.allclose(flipped.xy[:, 0], 255 - d.xy[:, 0].astype(np.float32))
    assert np.allclose(flipped.xy[:, 1], d.xy[:, 1])
    turned = augment(d, Augment(rotate=15, scale=0.1), rng)
    assert not np.allclose(turned.xy, d.xy) and turned.xy.min() >= 0 and turned.xy.max() <= 255
    all_d = st.drawings(np.arange(len(st)))
    multi = all_d.take(all_d.stroke_counts() >= 3)
    assert len(multi) >= 20
    dropped = drop_strokes(multi, 0.5, rng)
    assert len(dropped) == len(multi) and (dropped.stroke_counts() >= 1).all()
    assert 0.3 < dropped.stroke_counts().sum() / multi.stroke_counts().sum() < 0.8
    everything = drop_strokes(multi, 1.0, rng)  # each drawing keeps its longest stroke
    assert (everything.stroke_counts() == 1).all()
    lens = np.diff(multi.stroke_offsets)
    longest = [lens[a:b].max() for a, b in zip(multi.drawing_offsets[:-1], multi.drawing_offsets[1:])]
    assert everything.point_counts().tolist() == longest


def test_drop_strokes_keeps_each_drawings_own_strokes_in_order_with_empty_drawings_between():
    strokes = [[np.array([[i, j]] * (i + 1), np.uint8) for i in range(n)] for j, n in enumerate([3, 0, 1, 4, 0, 2])]
    xy = np.concatenate([s for d in strokes for s in d])
    lens = [len(s) for d in strokes for s in d]
    d = Drawings(xy, None, np.concatenate([[0], np.cumsum(lens)]).astype(np.int64),
                 np.concatenate([[0], np.cumsum([len(d) for d in strokes])]).astype(np.int64))
    for seed in range(20):
        out = drop_strokes(d, 0.5, np.random.default_rng(seed))
        assert len(out) == len(d)
        for j, orig in enumerate(strokes):
            got = [out.xy[out.stroke_offsets[k]:out.stroke_offsets[k + 1]]
                   for k in range(out.drawing_offsets[j], out.drawing_offsets[j + 1])]
            assert (len(got) == 0) == (len(orig) == 0)
            rows = [s[0, 0] for s in got]  # each stroke's index in its drawing, written in its points
            assert rows == sorted(rows) and all((s[:, 1] == j).all() and len(s) == s[0, 0] + 1 for s in got)


def test_pseudo_labels_fill_a_fixed_share_of_every_batch(stores, tmp_path):
    test = Store(stores[1])
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(6) * 0.2, len(test)).astype(np.float32)
    pseudo = PseudoLabels.from_predictions(stores[1], probs, threshold=0.5, frac=0.25)
    assert (pseudo.source.labels == probs[pseudo.source.idx].argmax(1)).all()
    assert (probs[pseudo.source.idx].max(1) >= 0.5).all()
    dl = DoodleDL(Source(stores[0], split="train"), BatchSpec(render=RenderSpec(size=32), pseudo=pseudo), bs=16)
    idx = np.asarray(dl.get_idxs())
    per_batch = (idx.reshape(-1, 16) < 0).sum(axis=1)
    assert (per_batch == 4).all()
    with pytest.raises(ValueError, match="threshold"):
        PseudoLabels.from_predictions(stores[1], probs, threshold=1.01, frac=0.25)


# --------------------------------------------------------------------------- model

def test_pretrained_weights_load_from_a_local_file(tmp_path):
    import timm

    src = timm.create_model("test_resnet", num_classes=1000, in_chans=3)
    path = tmp_path / "weights.pth"
    torch.save(src.state_dict(), path)
    net = DoodleNet("test_resnet", n_classes=6, in_chans=1, pretrained_path=str(path))
    sd, ref = net.body.state_dict(), src.state_dict()
    first = "stem.conv1.weight" if "stem.conv1.weight" in ref else next(k for k, v in ref.items() if v.ndim == 4)
    assert torch.allclose(sd[first], ref[first].sum(dim=1, keepdim=True))  # timm's in_chans adaptation
    same = [k for k in ref if k != first and k in sd and sd[k].shape == ref[k].shape and "fc" not in k]
    assert same and all(torch.equal(sd[k], ref[k]) for k in same)
    assert net(torch.zeros(2, 1, 32, 32)).shape == (2, 6)
    with pytest.raises(FileNotFoundError, match="no such file"):
        DoodleNet("test_resnet", 6, pretrained_path=str(tmp_path / "missing.pth"))
    with pytest.raises(ValueError, match="unknown timm model"):
        DoodleNet("resnet_does_not_exist", 6)
    with pytest.raises(ValueError, match="did you mean resnet18"):
        DoodleNet("resnet_18", 6)


def test_country_embedding_joins_the_head():
    net = DoodleNet("test_resnet", n_classes=6, in_chans=3, n_countries=4, country_dim=8).eval()
    x = torch.rand(2, 3, 32, 32)
    a = net(x, torch.tensor([0, 0]))
    b = net(x, torch.tensor([3, 3]))
    assert a.shape == (2, 6) and not torch.allclose(a, b)


# --------------------------------------------------------------------------- schedules and tricks

def test_sgdr_restarts_the_lr_and_snapshots_each_cycle(stores, tmp_path):
    rec = Record()
    r = train(_cfg(stores, tmp_path / "sgdr", schedule="sgdr", cycles=3, cycle_len=1, cycle_mult=1,
                   test_store_dir=str(stores[1])), extra_cbs=[rec])
    lrs = pd.DataFrame(rec.rows, columns=["epoch", "iter", "lr", "bs", "shape", "cl"])
    first = lrs[lrs.iter == 0].lr.to_numpy()
    last = lrs.groupby("epoch").lr.last().to_numpy()
    assert np.allclose(first, 2e-3, rtol=0.05)  # every cycle restarts at the peak
    assert (last < 0.2 * first).all()  # and anneals within it
    assert [p.name for p in r.snapshots] == ["snap_00.pth", "snap_01.pth", "snap_02.pth"]
    man = json.loads((tmp_path / "sgdr" / "preds" / "manifest.json").read_text())
    assert [s["snapshot"] for s in man["snapshots"]] == ["snap_00", "snap_01", "snap_02"]
    valid = np.load(r.preds["snap_02"]["valid"]).astype(np.float32)
    test = np.load(r.preds["snap_02"]["test"])
    assert valid.shape == (len(man["valid_labels"]), 6) and test.shape == (len(Store(stores[1])), 6)
    assert np.allclose(valid.sum(1), 1, atol=1e-2)
    assert man["snapshots"][2]["valid_map3"] == pytest.approx(metrics.map_at_k(valid, np.array(man["valid_labels"])), abs=1e-3)
    assert len(man["test_key_id"]) == len(test)
    # predicting (fastai sends fit events around get_preds) left the run's records alone
    assert json.loads((tmp_path / "sgdr" / "state.json").read_text())["epoch"] == 2
    assert list(pd.read_csv(tmp_path / "sgdr" / "history.csv").epoch) == [0, 1, 2]
    # cycle_mult grows the cycles: 1 + 2 epochs, snapshots after epochs 1 and 3
    assert _cfg(stores, tmp_path, schedule="sgdr", cycles=2, cycle_mult=2).snapshot_epochs() == [1, 3]


def test_sgdr_schedule_builds_for_any_cycle_count():
    """fastai's combine_scheds asserts its shares sum to exactly 1.0; ten cycles of 1/10 (the
    GPU profile's) summed to 0.9999999999999999 and the run failed before its first batch
    (found by the full-size rehearsal, benchmarks/bench_scale.py)."""
    from fastai.callback.schedule import SchedCos, combine_scheds

    from doodle_utils.training.fit import cycle_fractions

    for cycles in range(1, 41):
        for mult in (1, 2, 3):
            lens = [mult ** k for k in range(cycles)] if mult > 1 and cycles < 12 else [1] * cycles
            pcts = cycle_fractions(lens)
            assert sum(pcts) == 1.0 and all(p > 0 for p in pcts)
            assert np.allclose(pcts, np.array(lens) / sum(lens))
            combine_scheds(pcts, [SchedCos(1.0, 0) for _ in lens])  # raises on a sum off by an ulp


class Kill(Callback):
    order = 200

    def after_epoch(self):
        if self.epoch == 1:
            raise KeyboardInterrupt("killed")


@pytest.mark.parametrize("opt", ["adam", "adamw"])
def test_a_killed_run_resumes_at_the_same_schedule_position(stores, tmp_path, opt):
    kw = dict(epochs=3, augment={"flip": 0.5, "rotate": 10, "stroke_dropout": 0.1}, opt=opt)
    full = Record()
    train(_cfg(stores, tmp_path / "full", **kw), extra_cbs=[full], predict=False)
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(stores, tmp_path / "cut", **kw), extra_cbs=[Kill()], predict=False)
    assert json.loads((tmp_path / "cut" / "state.json").read_text())["epoch"] == 1
    part = Record()
    r = train(_cfg(stores, tmp_path / "cut", resume=True, **kw), extra_cbs=[part], predict=False)
    assert r.resumed_from == 2
    assert [row[:3] for row in part.rows] == [row[:3] for row in full.rows if row[0] == 2]
    h_full = pd.read_csv(tmp_path / "full" / "history.csv")
    h_cut = pd.read_csv(tmp_path / "cut" / "history.csv")
    assert list(h_cut.epoch) == [0, 1, 2]
    assert h_cut.valid_loss.to_numpy() == pytest.approx(h_full.valid_loss.to_numpy(), rel=1e-4)
    # another configuration in the same folder: an error naming run_label and what differs, with
    # resume=True or False alike, and the earlier run left as it was
    kept = {p.name: p.read_bytes() for p in (tmp_path / "cut").rglob("*") if p.is_file() and p.name != ".lock"}
    for resume in (True, False):
        with pytest.raises(RunStateError, match=r"run_label 'cut' holds a run of another configuration "
                                                r"\(lr 0\.002 -> 0\.01\).*leave run_label empty"):
            train(_cfg(stores, tmp_path / "cut", resume=resume, **{**kw, "lr": 1e-2}), predict=False)
        assert {p.name: p.read_bytes() for p in (tmp_path / "cut").rglob("*") if p.is_file() and p.name != ".lock"} == kept


def test_a_run_is_not_resumed_on_a_store_packed_again_with_another_split(tmp_path):
    """The weights saw the training drawings: after the store is packed again with a blend
    split (some of those drawings now held out), the finished run is refused, not resumed or
    re-predicted, and the error says why."""
    from doodle_utils.data.store import pack_competition

    train_store, _ = packed_competition(tmp_path / "comp", classes=3, per_class=20, test_per_class=2, seed=0)
    cfg = tiny_train_config((train_store, None), tmp_path / "run", epochs=1, epoch_size=32, resume=True)
    train(cfg, predict=False)
    train(cfg, predict=False)  # the same store: resumed (nothing left to train)
    pack_competition(tmp_path / "comp" / "data", tmp_path / "comp" / "store", workers=1, valid_frac=0.2, seed=0,
                     blend_frac=0.2, progress=None)
    with pytest.raises(RunStateError, match=r"the same settings, so its training store differs \(packed again"):
        train(cfg, predict=False)


def test_reduce_lr_on_plateau_lowers_the_lr(stores, tmp_path):
    # min_delta larger than any loss change: every epoch after the first is a plateau
    train(_cfg(stores, tmp_path / "p", schedule="plateau", epochs=3, plateau_min_delta=100.0,
               plateau_factor=4.0), predict=False)
    lr = pd.read_csv(tmp_path / "p" / "history.csv").lr.to_numpy()  # what each epoch trained with
    assert lr == pytest.approx([2e-3, 2e-3, 2e-3 / 4])


def test_grow_batch_on_plateau_multiplies_the_batch_size(stores, tmp_path):
    rec = Record()
    train(_cfg(stores, tmp_path / "g", schedule="grow_batch", epochs=3, epoch_size=128, plateau_min_delta=100.0,
               plateau_factor=2.0, max_bs=48), extra_cbs=[rec], predict=False)
    h = pd.read_csv(tmp_path / "g" / "history.csv")
    # epoch 0 sets the best loss; epochs 1 and 2 stall, each doubling the size (capped at 48)
    assert list(h.bs) == [16, 16, 32] and (h.lr == 2e-3).all()
    seen = pd.DataFrame(rec.rows, columns=["epoch", "iter", "lr", "bs", "shape", "cl"]).groupby("epoch").bs.max()
    assert list(seen) == [16, 16, 32]  # the loader really hands over bigger batches
    assert json.loads((tmp_path / "g" / "state.json").read_text())["bs"] == 48


def test_progressive_resize_and_channels_last(stores, tmp_path):
    rec = Record()
    train(_cfg(stores, tmp_path / "r", progressive_sizes={0: 32, 1: 48}, channels_last=True), extra_cbs=[rec], predict=False)
    shapes = {e: s for e, _, _, _, s, _ in rec.rows}
    assert shapes[0][-1] == 32 and shapes[1][-1] == 48
    assert all(cl for *_, cl in rec.rows)
    assert list(pd.read_csv(tmp_path / "r" / "history.csv")["size"]) == [32, 48]


def test_gradient_accumulation_matches_one_large_batch(stores, tmp_path):
    """4 batches of 8 accumulated give the gradient of one batch of 32 (BatchNorm held in
    eval mode so that batch statistics do not differ)."""
    from doodle_utils.training import build_learner, make_loaders, pick_device

    class Grab(Callback):
        order = 50

        def before_batch(self):
            for m in self.model.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.eval()

        def before_step(self):
            self.grads = [p.grad.clone() for p in self.model.parameters() if p.grad is not None]
            raise KeyboardInterrupt  # stop at the first real step

    grads = []
    for bs, acc in ((32, 1), (8, 4)):
        cfg = _cfg(stores, tmp_path / f"acc{bs}", bs=bs, accumulate=acc, sampling="uniform", epoch_size=64)
        torch.manual_seed(0)
        dls, _ = make_loaders(cfg, pick_device())
        grab = Grab()
        learn = build_learner(cfg, dls, n_countries=len(dls.train.source.countries), extra_cbs=[grab])
        with pytest.raises(KeyboardInterrupt):
            learn.fit(1, 1e-3)
        grads.append(grab.grads)
    assert len(grads[0]) == len(grads[1])
    for a, b in zip(*grads):
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-5)


def test_optimiser_choice_and_precision_checks(stores, tmp_path):
    from doodle_utils.training import build_learner, make_loaders, pick_device

    cfg = _cfg(stores, tmp_path / "o", opt="sgd")
    dls, _ = make_loaders(cfg, pick_device())
    learn = build_learner(cfg, dls, 1)
    learn.create_opt()
    assert learn.opt.hypers[0]["mom"] == 0.9 and "sqr_mom" not in learn.opt.hypers[0]
    # PyTorch's AdamW behind fastai: fastai Adam's defaults, and one-cycle drives its lr and betas
    cfg = _cfg(stores, tmp_path / "w", opt="adamw", epochs=1)
    learn = build_learner(cfg, dls, 1)

    class Seen(Callback):
        def before_fit(self):
            self.rows = []

        def after_batch(self):
            if self.training:
                g = self.opt.opt.param_groups[0]
                self.rows.append((g["lr"], g["betas"][0], g["weight_decay"]))

    seen = Seen()
    learn.fit_one_cycle(1, 1e-3, cbs=[seen])
    assert isinstance(learn.opt.opt, torch.optim.AdamW)
    assert learn.opt.opt.defaults["eps"] == 1e-5 and learn.opt.opt.param_groups[0]["betas"][1] == 0.99
    lr, mom, wd = np.array(seen.rows).T
    assert lr.max() == pytest.approx(1e-3, rel=0.05) and lr[0] < 0.2 * lr.max() and lr[-1] < 0.5 * lr.max()
    assert mom.min() == pytest.approx(0.85, abs=0.01) and mom[0] == pytest.approx(0.95, abs=0.01)
    assert (wd == cfg.wd).all()
    with pytest.raises(ValueError, match="opt"):
        _cfg(stores, tmp_path, opt="lamb").check()
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="needs a CUDA device"):
            build_learner(_cfg(stores, tmp_path / "o", precision="bf16"), dls, 1)
    with pytest.raises(ValueError, match="schedule"):
        _cfg(stores, tmp_path, schedule="warp").check()
    with pytest.raises(ValueError, match="augment"):
        _cfg(stores, tmp_path, augment={"blur": 1}).check()
    with pytest.raises(ValueError, match="unknown training parameters"):
        config_from_params({"store_dir": "x", "out_dir": "y", "lrr": 1}, strict=True)


def test_pseudo_labelled_training_and_country_embedding_run(stores, tmp_path):
    test = Store(stores[1])
    probs = np.eye(6, dtype=np.float32)[np.arange(len(test)) % 6]
    np.save(tmp_path / "p.npy", probs)
    r = train(_cfg(stores, tmp_path / "pl", epochs=1, test_store_dir=str(stores[1]), pseudo_preds=str(tmp_path / "p.npy"),
                   pseudo_threshold=0.9, pseudo_frac=0.25, country_dim=4))
    assert r.snapshots and np.load(r.preds["snap_00"]["test"]).shape == (len(test), 6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_training_with_bf16_and_gpu_rendering(stores, tmp_path):
    r = train(_cfg(stores, tmp_path / "gpu", precision="bf16", render_on="gpu", channels_last=True))
    assert r.snapshots


def test_two_process_data_parallel_training_with_gloo(stores, tmp_path):
    """`torchrun` with two CPU processes: each renders half of every epoch, DDP averages the
    gradients (gloo), one process writes checkpoints and predictions."""
    out = tmp_path / "train" / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    root = stores[0].parent  # the packed stores, from <root>/../data (the processes check, never pack)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "doodle_utils", "train",
           "--set", f"data_dir={root.parent / 'data'}", "--set", f"store_dir={root}", "--set", f"out_dir={tmp_path}",
           "--set", "run_label=ddp", "--set", "pack={valid_frac: 0.2}", "--set", "arch=test_resnet",
           "--set", "size=32", "--set", "bs=16", "--set", "epoch_size=128", "--set", "schedule=one_cycle",
           "--set", "epochs=2", "--set", "augment={}", "--set", "progress=false"]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert (out / "snapshots" / "snap_00.pth").exists() and (out / "preds" / "manifest.json").exists()
    assert list(pd.read_csv(out / "history.csv").epoch) == [0, 1]
    assert p.stdout.count("trained test_resnet") == 2  # both processes finished


@pytest.mark.skipif(__import__("shutil").which("cc") is None, reason="torch.compile on CPU needs a C compiler")
def test_compiled_model_trains_and_its_checkpoint_loads_uncompiled(stores, tmp_path):
    """``compile=True`` compiles the model in place (~1 minute on 2 cores), so checkpoints keep
    the plain parameter names."""
    r = train(_cfg(stores, tmp_path / "c", epochs=1, epoch_size=32, compile=True), predict=False)
    assert getattr(r.learn.model, "_compiled_call_impl", None) is not None
    plain = DoodleNet("test_resnet", 6, 3)
    plain.load_state_dict(torch.load(r.snapshots[0], weights_only=True))


def test_run_config_takes_the_test_store_only_when_packed(stores, tmp_path):
    from doodle_utils.training import run_config

    cfg = run_config({"arch": "test_resnet", "data_dir": "not a training field"}, stores[0].parent, tmp_path, "lbl")
    assert cfg.test_store_dir == str(stores[1]) and cfg.store_dir == str(stores[0])
    assert cfg.out_dir == str(tmp_path / "train" / "lbl") and cfg.arch == "test_resnet"
    (tmp_path / "only_train").mkdir()
    assert run_config({}, tmp_path / "only_train", tmp_path, "x").test_store_dir is None


def test_device_loss_keeps_fastai_s_loss_record(stores, tmp_path):
    """DeviceLoss (on by default on a GPU) leaves the smoothed loss and its history as fastai
    records them, while keeping the running mean where the loss is."""
    from doodle_utils.training import DeviceLoss, build_learner, make_loaders, pick_device

    def run(extra):
        torch.manual_seed(0)
        cfg = _cfg(stores, tmp_path / "dl", epochs=2)
        dls, _ = make_loaders(cfg, pick_device())
        learn = build_learner(cfg, dls, 1, extra_cbs=extra)
        learn.fit(2, 1e-3)
        return learn

    plain, kept = run([]), run([DeviceLoss()])
    assert type(kept.recorder.smooth_loss).__name__ == "_OnDevice"
    assert len(kept.recorder.losses) == len(plain.recorder.losses) == 8
    assert all(isinstance(v, torch.Tensor) and v.device.type == "cpu" for v in kept.recorder.losses)
    np.testing.assert_allclose([float(v) for v in kept.recorder.losses], [float(v) for v in plain.recorder.losses],
                               rtol=1e-5)
    assert kept.recorder.values[-1][0] == pytest.approx(plain.recorder.values[-1][0], rel=1e-5)


# --------------------------------------------------------------------------- a state that cannot split

class KillBeforeCommit(Callback):
    """Dies after History wrote epoch 1's row and before Checkpoint commits epoch 1."""
    from fastai.callback.tracker import TrackerCallback
    order = TrackerCallback.order + 7

    def after_epoch(self):
        if self.epoch == 1:
            raise KeyboardInterrupt("killed between the history and the commit")


def test_a_kill_between_history_and_commit_resumes_without_a_duplicate_row(stores, tmp_path):
    cfg = _cfg(stores, tmp_path / "r", epochs=3)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, extra_cbs=[KillBeforeCommit()], predict=False)
    assert json.loads((tmp_path / "r" / "state.json").read_text())["epoch"] == 0
    assert list(pd.read_csv(tmp_path / "r" / "history.csv").epoch) == [0, 1]  # ahead of the commit
    r = train(_cfg(stores, tmp_path / "r", epochs=3, resume=True), predict=False)
    assert r.resumed_from == 1
    assert list(pd.read_csv(tmp_path / "r" / "history.csv").epoch) == [0, 1, 2]


def test_committed_state_repairs_or_refuses(stores, tmp_path):
    from doodle_utils.training.callbacks import NEXT_CHECKPOINT, RunStateError, committed_state

    with pytest.raises(KeyboardInterrupt):
        train(_cfg(stores, tmp_path / "r", epochs=3), extra_cbs=[KillBeforeCommit()], predict=False)
    folder = tmp_path / "r"
    good = (folder / "checkpoint.pth").read_bytes()
    # killed after the next checkpoint was written, before the commit: it is discarded
    (folder / NEXT_CHECKPOINT).write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    (folder / ".history.csv.abc.tmp").write_text("stale")
    assert committed_state(folder)["epoch"] == 0
    assert not (folder / NEXT_CHECKPOINT).exists() and not list(folder.glob(".*.tmp"))
    # committed, killed before the rename: the committed checkpoint is put in place
    os.replace(folder / "checkpoint.pth", folder / NEXT_CHECKPOINT)
    assert committed_state(folder)["epoch"] == 0 and (folder / "checkpoint.pth").read_bytes() == good
    # a flipped byte in the checkpoint is refused, not loaded
    (folder / "checkpoint.pth").write_bytes(good[:100] + bytes([good[100] ^ 1]) + good[101:])
    with pytest.raises(RunStateError, match="does not match the checksum"):
        committed_state(folder)
    with pytest.raises(RunStateError, match="does not match the checksum"):
        train(_cfg(stores, folder, epochs=3, resume=True), predict=False)
    # part of a run without its state: an error, nothing deleted
    (folder / "checkpoint.pth").write_bytes(good)
    (folder / "state.json").unlink()
    with pytest.raises(RunStateError, match="no state.json"):
        train(_cfg(stores, folder, epochs=3, resume=True), predict=False)
    assert (folder / "checkpoint.pth").exists() and (folder / "history.csv").exists()


@pytest.mark.parametrize("notebook", ["03_train", "06_point_cnn"])
def test_notebook_parameter_defaults_are_the_one_training_configuration(notebook):
    """Every training parameter a notebook declares has TrainConfig's default; its other
    parameters are the run's folders and packing, which doodle train takes too."""
    import ast
    import dataclasses

    import papermill as pm

    from conftest import ROOT
    from doodle_utils.training import RUN_PARAMETERS, TrainConfig

    declared = pm.inspect_notebook(str(ROOT / "notebooks" / f"{notebook}.ipynb"))
    defaults = TrainConfig(store_dir="", out_dir="")
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    extra = {"n_examples"} if notebook == "06_point_cnn" else set()  # its figures' size, not training
    assert set(declared) - fields - extra | {"store_dir", "out_dir"} == set(RUN_PARAMETERS)
    for name in set(declared) & fields - set(RUN_PARAMETERS):  # store_dir, out_dir: the run's roots
        assert ast.literal_eval(declared[name]["default"]) == getattr(defaults, name), name


def test_doodle_train_trains_what_notebook_03_trains(tmp_path):
    """`doodle train --set cycles=2` trains two SGDR cycles (it used to train one epoch), into the
    folder and with the configuration notebook 03's config cell makes of the same values."""
    import dataclasses
    import subprocess
    import sys

    from conftest import ROOT
    from doodle_utils.data.synth import make_competition
    from doodle_utils.pipeline import training_config

    make_competition(tmp_path / "comp", classes=3, per_class=20, test_per_class=3, seed=4)
    params = {"data_dir": str(tmp_path / "comp"), "store_dir": str(tmp_path / "st"), "out_dir": str(tmp_path / "out"),
              "cycles": 2, "arch": "test_resnet", "size": 32, "bs": 16, "epoch_size": 32, "progress": False}
    sets = [x for k, v in params.items() for x in ("--set", f"{k}={json.dumps(v)}")]
    proc = subprocess.run([sys.executable, "-m", "doodle_utils", "train", *sets], capture_output=True, text=True,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    notebook_cfg, _ = training_config(params)  # what notebook 03's config cell computes
    folder = tmp_path / "out" / "train" / notebook_cfg.default_label()
    assert folder.name.startswith("test_resnet_palette32_") and [p.name for p in folder.parent.iterdir()] == [folder.name]
    assert list(pd.read_csv(folder / "history.csv").epoch) == [0, 1]
    assert sorted(p.name for p in (folder / "snapshots").glob("snap_*.pth")) == ["snap_00.pth", "snap_01.pth"]
    assert json.loads((folder / "config.json").read_text()) == json.loads(
        json.dumps(dataclasses.asdict(notebook_cfg), default=str))


def test_run_labels_follow_the_settings():
    """An empty run_label names the folder by the settings: the same settings the same name
    (a re-run resumes), any change a new one; where it reads and writes does not count."""
    from doodle_utils.training import default_run_label

    base = {"arch": "resnet18", "size": 32}
    label = default_run_label(base)
    assert label.startswith("resnet18_palette32_") and len(label.rsplit("_", 1)[1]) == 6
    assert default_run_label({**base, "out_dir": "/elsewhere", "store_dir": "/x", "resume": False,
                              "num_workers": 4, "progress": False}) == label
    assert default_run_label({**base, "lr": 0.01}) != label
    assert default_run_label({**base, "size": 48}).startswith("resnet18_palette48_")
    assert default_run_label({**base, "model": "points", "grid": 8, "points": 32}).startswith("points_resnet18_g8_p32_")
