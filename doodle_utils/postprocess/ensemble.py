"""Snapshot and model ensembles of saved class probabilities (notebook 04).

Members are the per-snapshot predictions that :func:`doodle_utils.training.predict_snapshots` writes
(``<run>/preds/snap_NN_{valid,test}.npy`` with a ``manifest.json``), from one run or several
runs over the same store. They combine by a weighted arithmetic mean of probabilities or a
weighted geometric mean (mean of log-probabilities, renormalised). Weights come from greedy
ensemble selection with replacement (Caruana et al. 2004): start empty, repeatedly add the
member that most improves the score, a member may be added again; the weights are the
counts. The score is MAP@3 on labelled drawings, or, with no labels, minus the proxy score on
the test predictions (:func:`.balance.proxy_score`).

Honest numbers: a choice is never scored on the drawings it was made on. With a blend split
(``pack(..., blend_frac=...)``: the 1st and 8th places held out a million drawings for this)
the weights and the best single snapshot are chosen on the blend split and every row is scored
on the validation split, which no choice here saw. Without one, the validation split is
cross-fitted: its drawings go to two stratified folds, each fold is scored with the choice made
on the other, and the weights saved for the submission are chosen on all of it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .._files import save_npy_atomic, write_text_atomic
from ..metrics import map_at_k
from ..paths import PREDS, preds_dir, runs_dir
from .balance import proxy_score


@dataclass
class Member:
    """One snapshot's predictions."""

    name: str  # "<run>/<snapshot>"
    valid: np.ndarray
    test: np.ndarray | None
    blend: np.ndarray | None = None


@dataclass
class Members:
    """Snapshots of one or more runs over the same validation, blend and test drawings."""

    members: list[Member]
    labels: np.ndarray
    words: list[str]
    test_key_id: list[str] | None
    skipped: dict[str, str] = field(default_factory=dict)  # run folder -> why it was left out
    blend_labels: np.ndarray | None = None  # None: no blend split
    valid_idx: np.ndarray | None = None  # the validation and blend drawings' rows in the training store
    blend_idx: np.ndarray | None = None
    stores: dict[str, str] = field(default_factory=dict)  # "valid_store", "test_store": where they were read

    @property
    def has_blend(self) -> bool:
        return self.blend_labels is not None and all(x.blend is not None for x in self.members)


def _open(path: Path) -> np.ndarray:
    """A snapshot's probabilities as saved (float16), memory-mapped read-only: 20 snapshots'
    validation, blend and test rows at Kaggle's size are ~6 GB on disk and would be ~12 GB as
    float32 copies; :func:`combine` and the stacker read them a chunk of rows at a time."""
    return np.load(path, mmap_mode="r")


def load_runs(run_dirs: list[str | Path], skip_mismatched: bool = False) -> Members:
    """Every snapshot's predictions of the given training folders (``<out_dir>/train/<label>``).

    All runs must predict the first one's classes and drawings (the same store and split);
    another is an error, or with ``skip_mismatched`` (notebook 04 ensembling whatever it
    finds, e.g. a run from before the data was repacked) left out, named in ``skipped`` and
    printed."""
    members, ref, skipped = [], None, {}
    for run in map(Path, run_dirs):
        mpath = preds_dir(run) / "manifest.json"
        if not mpath.exists():
            raise FileNotFoundError(f"{mpath}: no predictions (train with predict=True first)")
        man = json.loads(mpath.read_text())
        key = (man["words"], man["valid_idx"], man.get("blend_idx"), man.get("test_key_id"))
        if ref is None:
            ref = (key, {**man, "run": run})
        elif key != ref[0]:
            why = f"predicts other classes or drawings than {ref[1]['run']}"
            if not skip_mismatched:
                raise ValueError(f"{run}: {why}")
            skipped[str(run)] = why
            print(f"left out {run}: {why}")
            continue
        for snap in man["snapshots"]:
            name = snap["snapshot"]
            test, blend = (preds_dir(run) / f"{name}_{split}.npy" for split in ("test", "blend"))
            members.append(Member(f"{run.name}/{name}", _open(preds_dir(run) / f"{name}_valid.npy"),
                                  _open(test) if test.exists() else None,
                                  _open(blend) if "blend_idx" in man and blend.exists() else None))
    if ref is None:
        raise ValueError("no training runs given")
    man = ref[1]
    blend_labels = np.asarray(man["blend_labels"]) if "blend_labels" in man else None
    return Members(members, np.asarray(man["valid_labels"]), man["words"], man.get("test_key_id"), skipped,
                   blend_labels, np.asarray(man["valid_idx"]),
                   np.asarray(man["blend_idx"]) if "blend_idx" in man else None,
                   {k: man[k] for k in ("valid_store", "test_store") if man.get(k)})


def combine(probs: list[np.ndarray], weights: np.ndarray | None = None, mean: str = "arith",
            chunk: int = 16384) -> np.ndarray:
    """Weighted arithmetic or geometric mean of class probabilities (rows sum to 1), in float64
    a ``chunk`` of rows at a time (a 1M-drawing blend split needs no float64 copy of it all)."""
    w = np.ones(len(probs)) if weights is None else np.asarray(weights, np.float64)
    if len(w) != len(probs) or (w < 0).any() or w.sum() <= 0:
        raise ValueError("weights must be non-negative, one per member, not all zero")
    if mean not in ("arith", "geom"):
        raise ValueError(f"mean must be 'arith' or 'geom', got {mean!r}")
    w = w / w.sum()
    used = [(wi, p) for wi, p in zip(w, probs) if wi > 0]
    out = np.empty(used[0][1].shape, np.float32)
    for a in range(0, len(out), chunk):
        rows = slice(a, a + chunk)
        if mean == "arith":
            acc = sum(wi * p[rows].astype(np.float64) for wi, p in used)
        else:
            acc = np.exp(sum(wi * np.log(np.maximum(p[rows].astype(np.float64), 1e-12)) for wi, p in used))
        out[rows] = acc / acc.sum(axis=1, keepdims=True)
    return out


def select_weights(probs: list[np.ndarray], score: Callable[[np.ndarray], float], rounds: int = 20,
                   mean: str = "arith") -> np.ndarray:
    """Greedy selection with replacement: weights (counts) that maximise ``score``."""
    counts = np.zeros(len(probs))
    best = -np.inf
    for _ in range(rounds):
        trials = []
        for i in range(len(probs)):
            c = counts.copy()
            c[i] += 1
            trials.append(score(combine(probs, c, mean)))
        i = int(np.argmax(trials))
        if trials[i] <= best and counts.sum() > 0:
            break
        counts[i] += 1
        best = trials[i]
    return counts


CHOICES = {"map3": "selected on MAP@3", "proxy": "selected on test proxy", "equal": "equal"}  # weights_from -> row


def folds(labels: np.ndarray, k: int = 2, seed: int = 0) -> np.ndarray:
    """A stratified fold number (0..k-1) for each drawing: each class dealt round-robin in a
    seeded random order."""
    rng = np.random.default_rng(seed)
    out = np.empty(len(labels), np.int64)
    for c in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == c))
        out[rows] = (np.arange(len(rows)) + int(rng.integers(k))) % k
    return out


def _held_out(choose: Callable[[np.ndarray], np.ndarray], score: Callable[[np.ndarray, np.ndarray], float],
              labels: np.ndarray, k: int = 2, seed: int = 0) -> float:
    """Cross-fitted score: each fold's drawings scored with what ``choose`` picked on the other
    folds (``choose(rows) -> predictions of every drawing``; ``score(pred_rows, rows)``),
    weighted by fold size."""
    f = folds(labels, k, seed)
    total = 0.0
    for i in range(k):
        rows, rest = np.flatnonzero(f == i), np.flatnonzero(f != i)
        total += score(choose(rest)[rows], rows) * len(rows)
    return total / len(labels)


def choose(m: Members, mean: str = "arith", rounds: int = 20) -> tuple[int, np.ndarray]:
    """Notebook 04's choices on labelled drawings: the best single member and the greedy
    MAP@3 weights, made on the blend split (on all of validation without one)."""
    pick, labels = ([x.blend for x in m.members], m.blend_labels) if m.has_blend else \
        ([x.valid for x in m.members], m.labels)
    best = int(np.argmax([map_at_k(p, labels) for p in pick]))
    return best, select_weights(pick, lambda p: map_at_k(p, labels), rounds, mean)


def report(m: Members, mean: str = "arith", rounds: int = 20) -> tuple["pd.DataFrame", dict[str, np.ndarray]]:
    """Every member and ensemble scored on drawings its choice did not see.

    Rows: each snapshot; the best single snapshot; the ensembles with equal weights, with
    weights selected on MAP@3, and with weights selected on the test proxy. Columns:
    ``valid_map3`` (on the validation split; with a blend split, the choices were made there;
    without one, cross-fitted over two folds of validation), ``blend_map3`` (the split the
    choices were made on, shown as such; None without one), ``test_proxy``, and ``chosen_on``.
    Returns the table and the weights for the submission (chosen on the blend split, or on
    all of validation)."""
    import pandas as pd

    valid = [x.valid for x in m.members]
    tests = [x.test for x in m.members]
    has_test = all(t is not None for t in tests)
    blend = [x.blend for x in m.members] if m.has_blend else None
    on = "blend split" if blend else "validation, cross-fitted (2 folds)"
    rows = []
    for x in m.members:
        rows.append({"model": x.name, "valid_map3": map_at_k(x.valid, m.labels),
                     "blend_map3": map_at_k(x.blend, m.blend_labels) if blend else None,
                     "test_proxy": proxy_score(x.test) if has_test else None, "chosen_on": ""})
    best, by_map3 = choose(m, mean, rounds)
    weights = {"equal": np.ones(len(valid)), CHOICES["map3"]: by_map3}
    if has_test:
        weights[CHOICES["proxy"]] = select_weights(tests, lambda p: -proxy_score(p), rounds, mean)

    def valid_map3(p: np.ndarray, rows: np.ndarray) -> float:
        return map_at_k(p, m.labels[rows])

    if blend:  # chosen on the blend split: validation is untouched
        best_valid = rows[best]["valid_map3"]
        map3_valid = map_at_k(combine(valid, by_map3, mean), m.labels)
    else:  # each validation fold scored with the choice made on the other
        best_valid = _held_out(lambda r: valid[int(np.argmax([map_at_k(p[r], m.labels[r]) for p in valid]))],
                               valid_map3, m.labels)
        map3_valid = _held_out(lambda r: combine(valid, select_weights(
            [p[r] for p in valid], lambda q: map_at_k(q, m.labels[r]), rounds, mean), mean), valid_map3, m.labels)
    rows.append({**rows[best], "model": f"best single ({m.members[best].name})", "valid_map3": best_valid,
                 "chosen_on": on})
    for name, w in weights.items():  # equal weights and the proxy's saw no labels
        rows.append({"model": f"ensemble, {name}",
                     "valid_map3": map3_valid if name == CHOICES["map3"] else map_at_k(combine(valid, w, mean), m.labels),
                     "blend_map3": map_at_k(combine(blend, w, mean), m.blend_labels) if blend else None,
                     "test_proxy": proxy_score(combine(tests, w, mean)) if has_test else None,
                     "chosen_on": {"equal": "", CHOICES["map3"]: on, CHOICES["proxy"]: "test proxy"}[name]})
    return pd.DataFrame(rows), weights


def save(out_dir: str | Path, m: Members, weights: np.ndarray, mean: str) -> dict[str, Path]:
    """Write the ensemble's validation/blend/test probabilities and a manifest (for notebook 05)."""
    probs = {split: None if any(getattr(x, split) is None for x in m.members) else
             combine([getattr(x, split) for x in m.members], weights, mean) for split in ("valid", "blend", "test")}
    return save_probs(out_dir, m, probs, {"mean": mean, "weights": [float(w) for w in weights]})


def save_probs(out_dir: str | Path, m: Members, probs: dict[str, np.ndarray | None], about: dict) -> dict[str, Path]:
    """Write probability tables per split (``valid``, ``blend``, ``test``; a split missing or
    None leaves no file, nor one from an earlier ensemble) and the manifest notebook 05 reads:
    classes, labels, test key_ids, members, and ``about`` (how they were combined)."""
    out = Path(out_dir)
    paths = {}
    for split in ("valid", "blend", "test"):
        if probs.get(split) is None:
            (out / f"{split}.npy").unlink(missing_ok=True)
            continue
        paths[split] = save_npy_atomic(out / f"{split}.npy", probs[split].astype(np.float16))
    for stale in ("stacker.txt", "stacker.json"):  # a stacker left by an earlier run describes other numbers
        if "stacker" not in about:
            (out / stale).unlink(missing_ok=True)
    write_text_atomic(out / "manifest.json", json.dumps({
        "words": m.words, "valid_labels": m.labels.tolist(), "test_key_id": m.test_key_id,
        "blend_labels": None if m.blend_labels is None else m.blend_labels.tolist(),
        "members": [x.name for x in m.members], **about}))
    return paths


def run_dirs(out_dir: str | Path, labels: list[str] | None = None,
             more: list[str | Path] | None = None) -> list[Path]:
    """Training folders ``<d>/train/<label>`` that hold predictions, for ``d`` in ``out_dir``
    and ``more`` (e.g. the outputs of training kernels attached to a Kaggle kernel);
    ``labels``: only those (searched in the same folders, first match wins); without them every
    run, the most recently predicted first."""
    bases = [runs_dir(out_dir), *(runs_dir(m) for m in more or [])]
    found = [p.parent.parent for base in bases for p in sorted(base.glob(f"*/{PREDS}/manifest.json"))]
    if labels:
        by_label: dict[str, Path] = {}
        for p in found:
            by_label.setdefault(p.name, p)
        missing = [x for x in labels if x not in by_label]
        if missing:
            raise FileNotFoundError(f"{', '.join(map(str, bases))}: no predictions for {missing} "
                                    f"(have {sorted(by_label)})")
        return [by_label[x] for x in labels]
    if not found:
        raise FileNotFoundError(f"{', '.join(map(str, bases))}: no training run with predictions; "
                                "run notebook 03 or 06 first")
    return sorted(found, key=lambda run: -(preds_dir(run) / "manifest.json").stat().st_mtime)


def load_saved(folder: str | Path) -> tuple[np.ndarray, np.ndarray | None, dict]:
    """(validation probabilities, test probabilities or None, manifest) saved by :func:`save`."""
    folder = Path(folder)
    mpath = folder / "manifest.json"
    if not mpath.exists():
        raise FileNotFoundError(f"{mpath}: no ensemble; run notebook 04 first")
    test = folder / "test.npy"
    return (np.load(folder / "valid.npy").astype(np.float32),
            np.load(test).astype(np.float32) if test.exists() else None, json.loads(mpath.read_text()))


def plot_members(table: "pd.DataFrame"):
    """Validation MAP@3 against the test proxy score, one point per member and ensemble, each
    labelled; the ensembles drawn hollow so a snapshot at the same place stays visible."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5), constrained_layout=True)
    ax = fig.subplots()
    table = table[~table["model"].str.startswith("best single")]  # a snapshot already drawn
    ens = table["model"].str.startswith("ensemble")
    ax.scatter(table.loc[~ens, "test_proxy"], table.loc[~ens, "valid_map3"], label="snapshots", zorder=3)
    ax.scatter(table.loc[ens, "test_proxy"], table.loc[ens, "valid_map3"], marker="*", s=220, facecolors="none",
               edgecolors="C1", linewidths=1.5, label="ensembles", zorder=2)
    for i, (_, row) in enumerate(table.iterrows()):
        name = row["model"].replace("ensemble, ", "ens: ")
        ax.annotate(name, (row["test_proxy"], row["valid_map3"]), xytext=(6, (-1) ** i * 6),
                    textcoords="offset points", fontsize=7)
    ax.set(xlabel="test proxy score (lower: more balanced)", ylabel="validation MAP@3",
           title="does the label-free proxy track MAP@3?")
    ax.margins(x=0.25, y=0.15)
    ax.legend(loc="lower left")
    return fig
