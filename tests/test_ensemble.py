"""Ensembles: the means, greedy selection, finding runs (also in other folders), saving."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from doodle_utils.metrics import map_at_k
from doodle_utils.postprocess import ensemble


def _run(base, label, probs_by_snap, labels, key_ids=("1", "2", "3", "4"), blend_by_snap=None, blend_labels=None):
    """A training folder as predict_snapshots leaves it (with a blend split when given)."""
    preds = base / "train" / label / "preds"
    preds.mkdir(parents=True)
    entries = []
    for snap, p in probs_by_snap.items():
        np.save(preds / f"{snap}_valid.npy", p.astype(np.float16))
        np.save(preds / f"{snap}_test.npy", p.astype(np.float16))
        entries.append({"snapshot": snap, "valid_map3": map_at_k(p, labels)})
        if blend_by_snap:
            np.save(preds / f"{snap}_blend.npy", blend_by_snap[snap].astype(np.float16))
    man = {"words": ["a", "b", "c"], "valid_idx": list(range(len(labels))), "valid_labels": labels.tolist(),
           "test_key_id": list(key_ids), "snapshots": entries}
    if blend_by_snap:
        man |= {"blend_idx": list(range(100, 100 + len(blend_labels))), "blend_labels": blend_labels.tolist()}
    (preds / "manifest.json").write_text(json.dumps(man))
    return base / "train" / label


LABELS = np.array([0, 1, 2, 0])
GOOD = np.array([[.6, .3, .1], [.2, .7, .1], [.1, .2, .7], [.3, .6, .1]], np.float32)  # last one wrong
OTHER = np.array([[.5, .1, .4], [.1, .5, .4], [.3, .1, .6], [.7, .2, .1]], np.float32)  # last one right


def test_means_and_selection():
    arith = ensemble.combine([GOOD, OTHER])
    np.testing.assert_allclose(arith, (GOOD + OTHER) / 2, atol=1e-6)
    geom = ensemble.combine([GOOD, OTHER], mean="geom")
    g = np.sqrt(GOOD * OTHER)
    np.testing.assert_allclose(geom, g / g.sum(1, keepdims=True), atol=1e-6)
    with pytest.raises(ValueError, match="weights"):
        ensemble.combine([GOOD, OTHER], [1, -1])
    w = ensemble.select_weights([GOOD, OTHER], lambda p: map_at_k(p, LABELS))
    assert map_at_k(ensemble.combine([GOOD, OTHER], w), LABELS) >= max(map_at_k(GOOD, LABELS), map_at_k(OTHER, LABELS))
    for mean in ("arith", "geom"):  # a chunk of rows at a time: the same numbers
        assert np.array_equal(ensemble.combine([GOOD, OTHER], [2, 1], mean, chunk=3),
                              ensemble.combine([GOOD, OTHER], [2, 1], mean))


def test_runs_are_found_in_the_run_folder_and_in_more_folders(tmp_path):
    _run(tmp_path / "here", "image", {"snap_00": GOOD}, LABELS)
    _run(tmp_path / "kernel_06", "points", {"snap_00": OTHER, "snap_01": GOOD}, LABELS)
    os.utime(tmp_path / "here" / "train" / "image" / "preds" / "manifest.json", (2e9, 2e9))  # the newest
    found = ensemble.run_dirs(tmp_path / "here", more=[tmp_path / "kernel_06"])
    assert [p.name for p in found] == ["image", "points"]  # the most recently predicted first
    assert [p.name for p in ensemble.run_dirs(tmp_path / "here", ["points"], [tmp_path / "kernel_06"])] == ["points"]
    with pytest.raises(FileNotFoundError, match="no predictions for \\['nope'\\]"):
        ensemble.run_dirs(tmp_path / "here", ["nope"], [tmp_path / "kernel_06"])
    with pytest.raises(FileNotFoundError, match="notebook 03 or 06"):
        ensemble.run_dirs(tmp_path / "empty")
    members = ensemble.load_runs(found)
    assert [m.name for m in members.members] == ["image/snap_00", "points/snap_00", "points/snap_01"]
    table, weights = ensemble.report(members)
    assert len(table) == 3 + 1 + len(weights)  # snapshots, the best single one, ensembles
    paths = ensemble.save(tmp_path / "ens", members, weights["equal"], "arith")
    valid, test, man = ensemble.load_saved(tmp_path / "ens")
    assert valid.shape == test.shape == (4, 3) and man["members"] == [m.name for m in members.members]
    assert set(paths) == {"valid", "test"}


def test_runs_over_other_drawings_do_not_mix(tmp_path):
    a = _run(tmp_path, "a", {"snap_00": GOOD}, LABELS)
    b = _run(tmp_path / "x", "b", {"snap_00": GOOD}, LABELS, key_ids=("9", "2", "3", "4"))
    with pytest.raises(ValueError, match="other classes or drawings"):
        ensemble.load_runs([a, b])
    # notebook 04 without `runs`: the one that does not match the first is left out and named
    members = ensemble.load_runs([a, b], skip_mismatched=True)
    assert [m.name for m in members.members] == ["a/snap_00"]
    assert list(members.skipped) == [str(b)] and "other classes or drawings" in members.skipped[str(b)]


def test_top_k_ranks_a_block_of_rows_at_a_time(monkeypatch):
    """The same ranking a block at a time (ties at the cut, a last short block) and a peak far
    below the 13 bytes a score a whole-array ranking takes (1.1 GB for Kaggle's blend split)."""
    import tracemalloc

    from doodle_utils import metrics

    rng = np.random.default_rng(0)
    p = rng.integers(0, 5, (1000, 40)).astype(np.float16)  # many ties
    whole = metrics.top_k(p)
    monkeypatch.setattr(metrics, "TOP_K_ROWS", 7)
    assert (metrics.top_k(p) == whole).all() and metrics.top_k(p[:0]).shape == (0, 3)
    monkeypatch.setattr(metrics, "TOP_K_ROWS", 1 << 10)
    big = rng.random((200_000, 340), dtype=np.float32)  # 272 MB
    tracemalloc.start()
    ranked = metrics.top_k(big)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert ranked.shape == (200_000, 3) and peak < 0.1 * big.nbytes, peak
    assert (ranked[:, 0] == big.argmax(axis=1)).all()


def test_top_k_ties_at_the_cut_go_to_the_lower_class():
    from doodle_utils.metrics import top_k

    p = np.full((2, 340), 0.001)
    p[:, 7], p[:, 100], p[0, 200] = 0.5, 0.2, 0.0  # 337 classes tie for third place
    assert top_k(p).tolist() == [[7, 100, 0], [7, 100, 0]]


def _noisy(labels: np.ndarray, right: float, rng: np.random.Generator) -> np.ndarray:
    """Probabilities whose top class is the label on about ``right`` of the drawings."""
    p = rng.random((len(labels), 3)) * 0.2
    hit = rng.random(len(labels)) < right
    p[np.arange(len(labels)), np.where(hit, labels, (labels + 1) % 3)] += 1.0
    return (p / p.sum(1, keepdims=True)).astype(np.float32)


def test_with_a_blend_split_choices_are_made_there_and_scored_on_validation(tmp_path):
    """Snapshot A looks best on the blend split, B is best on validation: the best single
    snapshot is A, and its reported MAP@3 is A's validation score, not B's."""
    rng = np.random.default_rng(0)
    labels, blend_labels = np.arange(300) % 3, np.arange(200) % 3
    valid = {"snap_00": _noisy(labels, 0.5, rng), "snap_01": _noisy(labels, 0.9, rng)}
    blend = {"snap_00": _noisy(blend_labels, 0.9, rng), "snap_01": _noisy(blend_labels, 0.5, rng)}
    keys = [str(i) for i in range(300)]
    run = _run(tmp_path, "r", valid, labels, keys, blend, blend_labels)
    members = ensemble.load_runs([run])
    assert members.has_blend
    table, weights = ensemble.report(members)
    best = table[table.model.str.startswith("best single")].iloc[0]
    assert "snap_00" in best.model and best.chosen_on == "blend split"
    assert best.valid_map3 == pytest.approx(map_at_k(members.members[0].valid, labels))
    chosen = table[table.model == "ensemble, selected on MAP@3"].iloc[0]
    w = weights["selected on MAP@3"]
    assert w[0] > w[1]  # the blend split's favourite
    assert chosen.valid_map3 == pytest.approx(map_at_k(ensemble.combine([x.valid for x in members.members], w), labels))
    assert chosen.blend_map3 >= chosen.valid_map3  # the split it was chosen on flatters it
    ensemble.save(tmp_path / "ens", members, w, "arith")
    assert (tmp_path / "ens" / "blend.npy").exists()


def test_without_a_blend_split_validation_is_cross_fitted(tmp_path):
    rng = np.random.default_rng(1)
    labels = np.arange(300) % 3
    valid = {"snap_00": _noisy(labels, 0.6, rng), "snap_01": _noisy(labels, 0.7, rng)}
    members = ensemble.load_runs([_run(tmp_path, "r", valid, labels, [str(i) for i in range(300)])])
    assert not members.has_blend
    table, _ = ensemble.report(members)
    f = ensemble.folds(labels)
    assert set(np.bincount(f)) == {150} and all(set(np.bincount(f[labels == c])) == {50} for c in range(3))
    probs = [x.valid for x in members.members]  # as saved (float16)
    expect = 0.0
    for i in (0, 1):  # each fold scored with the snapshot that is best on the other
        rows, rest = np.flatnonzero(f == i), np.flatnonzero(f != i)
        pick = int(np.argmax([map_at_k(p[rest], labels[rest]) for p in probs]))
        expect += map_at_k(probs[pick][rows], labels[rows]) * len(rows) / len(labels)
    best = table[table.model.str.startswith("best single")].iloc[0]
    assert best.valid_map3 == pytest.approx(expect) and best.chosen_on.startswith("validation, cross-fitted")
    assert best.blend_map3 is None or np.isnan(best.blend_map3)


def test_per_drawing_precision_averages_to_map3():
    from doodle_utils.metrics import ap_at_k

    ap = ap_at_k(GOOD, LABELS)
    assert ap.tolist() == [1.0, 1.0, 1.0, 0.5] and ap.mean() == pytest.approx(map_at_k(GOOD, LABELS))
    assert ap_at_k(OTHER, np.array([1, 0, 1, 1])).tolist() == [1 / 3, 1 / 3, 1 / 3, 1 / 2]
    assert ap_at_k(OTHER, np.array([1, 0, 1, 1]), k=2).tolist() == [0.0, 0.0, 0.0, 1 / 2]
