"""`recognized` as a training choice: keep, drop, down-weight or relabel the training drawings
the game did not recognize; the label column `doodle relabel` writes beside the store."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import tiny_train_config
from doodle_utils import cli
from doodle_utils.data.store import Store, StoreError, read_label_column, write_label_column
from doodle_utils.training import TrainConfig, load_run, train
from doodle_utils.training.loaders import BatchSpec, DoodleDL, Source, Unrecognized
from doodle_utils.training.relabel import relabel


def _unrec(store) -> tuple[Store, np.ndarray]:
    st = Store(store)
    train_idx = st.train_idx
    return st, train_idx[np.asarray(st.recognized)[train_idx] == 0]


def test_bad_choices_name_the_parameter(tmp_path):
    for kw, name in [({"unrecognized": "ignore"}, "unrecognized"), ({"unrecognized_weight": 0.0}, "unrecognized_weight"),
                     ({"unrecognized_weight": 1.5}, "unrecognized_weight"),
                     ({"unrecognized": "relabel"}, "labels_file"), ({"labels_file": "x.npy"}, "labels_file")]:
        with pytest.raises(ValueError, match=f"training parameter {name}="):
            TrainConfig(store_dir="s", out_dir="o", **kw).check()


def test_keep_and_drop(six_class_stores, capsys):
    st, unrec = _unrec(six_class_stores[0])
    assert len(unrec) > 5  # the synthetic competition's scribbles and abandoned drawings
    full = Source(six_class_stores[0], split="train")
    kept, note = Unrecognized("keep").apply(Source(six_class_stores[0], split="train"))
    assert np.array_equal(kept.idx, full.idx) and note == ""
    dropped, note = Unrecognized("drop").apply(Source(six_class_stores[0], split="train"))
    assert set(dropped.idx) == set(full.idx) - set(unrec) and len(dropped.labels) == len(dropped.idx)
    assert note == f"{len(unrec)} of {len(full)} training drawings unrecognized: dropped"
    assert np.array_equal(dropped.labels, st.labels(dropped.idx))


@pytest.mark.parametrize("sampling", ["uniform", "balanced"])
def test_downweighted_drawings_are_drawn_that_much_less_often(six_class_stores, sampling):
    src, note = Unrecognized("downweight", 0.25).apply(Source(six_class_stores[0], split="train"))
    assert "drawn at weight 0.25" in note
    unrec = np.asarray(src.store.recognized)[src.idx] == 0
    dl = DoodleDL(src, BatchSpec(sampling=sampling, epoch_size=200_000), bs=64)
    picks = np.bincount(np.asarray(dl.get_idxs()), minlength=len(src))
    per_drawing = picks / picks.mean()
    ratio = per_drawing[unrec].mean() / per_drawing[~unrec].mean()
    assert ratio == pytest.approx(0.25, rel=0.15), ratio
    if sampling == "balanced":  # still each class equally often
        counts = np.bincount(src.labels, weights=picks)
        assert counts.min() / counts.max() > 0.95


def test_label_columns_are_checked_against_their_store(six_class_stores, four_class_stores, tmp_path):
    st = Store(six_class_stores[0])
    labels = st.labels().copy()
    labels[:3] = (labels[:3] + 1) % len(st.words)
    path = write_label_column(tmp_path / "col.npy", labels, st, {"why": "test"})
    assert np.array_equal(read_label_column(path, st), labels)
    assert json.loads(path.with_suffix(".json").read_text())["why"] == "test"
    with pytest.raises(StoreError, match="made for other drawings"):
        read_label_column(path, Store(four_class_stores[0]))
    with pytest.raises(FileNotFoundError, match="doodle relabel"):
        read_label_column(tmp_path / "none.npy", st)
    with pytest.raises(ValueError, match="one class index per drawing"):
        write_label_column(tmp_path / "bad.npy", labels[:-1], st, {})


def test_relabel_changes_only_confident_disagreements_on_unrecognized_drawings_and_trains_on_them(
        six_class_stores, tmp_path, capsys, monkeypatch):
    import importlib

    relabel_module = importlib.import_module("doodle_utils.training.relabel")  # the module, not the function
    store = six_class_stores[0]
    manifest_before = (store / "manifest.json").read_bytes()
    first = train(tiny_train_config(six_class_stores, tmp_path / "keep", epochs=1), predict=False).folder
    st, unrec = _unrec(store)
    learn = load_run(first)  # what the run's model says of the unrecognized training drawings
    src = Source(store, idx=unrec, country_vocab=learn.dls.valid.source.countries)
    probs = learn.get_preds(dl=learn.dls.valid.new(source=src))[0].numpy()
    disagree = probs.argmax(1) != st.labels(unrec)
    threshold = float(np.median(probs.max(1)[disagree]))  # the barely trained model's: about half pass
    expect = disagree & (probs.max(1) > threshold)
    assert 0 < expect.sum() < disagree.sum()
    done = relabel(first, threshold)
    column = np.load(done["file"])
    changed = np.flatnonzero(column != st.labels())
    assert done["changed"] == len(changed) and done["unrecognized"] == len(unrec)
    assert np.array_equal(changed, unrec[expect])  # recognized, validation and blend drawings keep theirs
    assert np.array_equal(column[changed], probs.argmax(1)[expect])
    assert (store / "manifest.json").read_bytes() == manifest_before  # the store is not edited
    # predicted a chunk at a time (Kaggle's ~5M unrecognized drawings are 6.8 GB of probabilities)
    monkeypatch.setattr(relabel_module, "CHUNK", 4)
    assert len(unrec) > 2 * 4
    again = relabel(first, threshold, out=tmp_path / "chunked.npy")
    assert np.array_equal(np.load(again["file"]), column) and again["changed"] == done["changed"]
    # a run on the relabelled column trains on the new labels (and is another run)
    cfg = tiny_train_config(six_class_stores, tmp_path / "relabelled", epochs=1, unrecognized="relabel",
                            labels_file=done["file"])
    capsys.readouterr()
    train(cfg, predict=False)
    assert f"{len(changed)} relabelled" in capsys.readouterr().out


def test_doodle_relabel_with_bad_values_says_error(six_class_stores, tmp_path, capsys):
    assert cli.main(["relabel", str(tmp_path / "no_run"), "--threshold", "1.5"]) == 2
    assert "error: --threshold 1.5" in capsys.readouterr().err
    assert cli.main(["relabel", str(tmp_path / "no_run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "not a training run folder" in err and "Traceback" not in err
