"""Second-level stacking (the 1st and 21st places): LightGBM re-ranks each drawing's candidates.

For every drawing the ensemble's top-``k`` classes are its candidates, one row each, labelled 1
where the candidate is the drawing's class. A row's features: the candidate's class id
(categorical), its rank in the ensemble and the ensemble's probability; per member (snapshot)
its probability and its rank for the candidate; the drawing's country (categorical), stroke
and point counts, and, where every store involved holds times, how long it took to draw (the
1st place's strongest feature: its maximum raw timestamp).

The stacker is trained on the blend split only. Its folds are drawn per drawing (stratified by
class, :func:`.ensemble.folds`), so a drawing's candidates never straddle folds; the folds pick
the number of boosting rounds (each stops early on its held-out log-loss; the mean of their
best rounds) and give a cross-fitted MAP@3 on the blend split; the model is then refit on the
whole blend split with that number of rounds. The folds train one after the other and
predictions are made a block of rows at a time, so the memory that grows with the blend split
is the candidate table and LightGBM's binned copy of it (:func:`fit`). Scored on the
validation split, which neither the ensemble's weights nor the stacker saw. Its scores replace
the candidates' probabilities; the other classes keep the ensemble's, scaled below the weakest
candidate; rows sum to 1, so notebook 05 balances the result like any ensemble.

Why LightGBM: the top teams' choice, in Kaggle's image, and fast on CPU tables of millions of
rows (``python -m benchmarks stacking``); what is written here is only the candidate table.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .._files import write_text_atomic
from ..data.store import Store
from ..metrics import ap_at_k, map_at_k
from .balance import proxy_score
from .ensemble import Members, combine, save_probs
from .ensemble import folds as drawing_folds

META = ("country", "strokes", "points", "duration_ms")  # a drawing's metadata features
CATEGORICAL = ("class", "country")
MIN_PER_FOLD = 20  # blend drawings per fold the stacker needs at least
PREDICT_ROWS = 262_144  # candidate rows scored at a time (46 MB of features at 46 columns)
DEFAULT_PARAMS = {"objective": "binary", "learning_rate": 0.05, "num_leaves": 31, "min_data_in_leaf": 20,
                  "feature_fraction": 0.9, "bagging_fraction": 0.9, "bagging_freq": 1, "lambda_l2": 1.0,
                  "max_cat_to_onehot": 4, "cat_smooth": 10.0, "verbose": -1}


def drawing_meta(store: str | Path | Store, idx: np.ndarray | None = None,
                 countries: list[str] | None = None) -> pd.DataFrame:
    """Per drawing of ``store`` (at ``idx``; all without): ``country`` (an index into
    ``countries``, default the store's own vocabulary; -1 for a country not in it), ``strokes``,
    ``points`` and, for a store with times, ``duration_ms`` (first to last point)."""
    st = store if isinstance(store, Store) else Store(store, verify="none")
    idx = np.arange(len(st)) if idx is None else np.asarray(idx, np.int64)
    vocab = {c: i for i, c in enumerate(st.countries if countries is None else countries)}
    remap = np.array([vocab.get(c, -1) for c in st.countries] or [-1], np.int32)
    out = {"country": remap[np.asarray(st.country[idx]).astype(np.int64)] if st.countries else
           np.full(len(idx), -1, np.int32),
           "strokes": st.stroke_counts(idx).astype(np.int32), "points": st.point_counts(idx).astype(np.int32)}
    if st.timed:
        out["duration_ms"] = st.durations_ms(idx).astype(np.float32)
    return pd.DataFrame(out)


def split_meta(store: str | Path | Store, test_store: str | Path | None, valid_idx: np.ndarray,
               blend_idx: np.ndarray, test_key_id: list[str] | None) -> dict[str, pd.DataFrame]:
    """:func:`drawing_meta` of the validation, blend and test drawings the members predicted
    (test rows checked against the predictions' key_ids); ``duration_ms`` only where every
    store has times, countries in the training store's vocabulary."""
    st = store if isinstance(store, Store) else Store(store, verify="none")
    out = {"valid": drawing_meta(st, valid_idx), "blend": drawing_meta(st, blend_idx)}
    if test_key_id is not None and test_store is not None:
        ts = Store(test_store, verify="none")
        have = [str(k) for k in np.asarray(ts.key_id)]
        if have != [str(k) for k in test_key_id]:
            raise ValueError(f"{test_store}: its drawings are not the ones the members predicted for the test "
                             f"split ({len(have)} key_ids vs {len(test_key_id)}, or another order)")
        out["test"] = drawing_meta(ts, None, st.countries)
    if any("duration_ms" not in m for m in out.values()):
        out = {k: m.drop(columns="duration_ms", errors="ignore") for k, m in out.items()}
    return out


def members_meta(m: Members, store: str | Path | None = None, test_store: str | Path | None = None
                 ) -> dict[str, pd.DataFrame] | None:
    """:func:`split_meta` for the drawings ``m`` predicted, from ``store``/``test_store`` (default:
    the stores the predictions were made from). None, with a printed note, where a store is
    not here (e.g. training kernels attached on Kaggle): the stacker then reads the members'
    probabilities only. A store holding other drawings than the predictions is an error."""
    store = Path(store or m.stores.get("valid_store", ""))
    test_store = Path(test_store or m.stores.get("test_store", "")) if m.test_key_id is not None else None
    missing = [str(p) for p in (store, test_store) if p is not None and not (p / "manifest.json").exists()]
    if missing or m.valid_idx is None or m.blend_idx is None:
        print(f"note: no drawing metadata for the stacker ({', '.join(missing) or 'no split rows'} not found); "
              "it reads the members' probabilities only")
        return None
    st = Store(store, verify="none")
    for split, idx, labels in (("validation", m.valid_idx, m.labels), ("blend", m.blend_idx, m.blend_labels)):
        if idx.max(initial=-1) >= len(st) or not np.array_equal(st.labels(idx), labels):
            raise ValueError(f"{store}: its {split} rows are not the drawings the members predicted "
                             "(packed again since?); pass the store they were trained on")
    return split_meta(st, test_store, m.valid_idx, m.blend_idx, m.test_key_id)


def _ranks(p: np.ndarray, cand: np.ndarray, chunk: int = 8192) -> np.ndarray:
    """Rank (0 = top) of each candidate class in each row of ``p``: classes with a larger
    probability, counted (ties share the better rank)."""
    out = np.empty(cand.shape, np.int16)
    for a in range(0, len(p), chunk):
        pc = np.take_along_axis(p[a:a + chunk], cand[a:a + chunk], axis=1)
        out[a:a + chunk] = (p[a:a + chunk, :, None] > pc[:, None, :]).sum(axis=1)
    return out


def candidates(ens: np.ndarray, k: int, chunk: int = 16384) -> np.ndarray:
    """The ensemble's top-``k`` classes per drawing, best first (ties: lower class id); a
    ``chunk`` of rows at a time (the partition's indices are as large as the table)."""
    k = min(k, ens.shape[1])
    out = np.empty((len(ens), k), np.int32)
    for a in range(0, len(ens), chunk):
        e = ens[a:a + chunk]
        part = np.argpartition(-e, k - 1, axis=1)[:, :k]
        order = np.lexsort((part, -np.take_along_axis(e, part, axis=1)), axis=1)
        out[a:a + chunk] = np.take_along_axis(part, order, axis=1)
    return out


def feature_names(n_members: int, meta: pd.DataFrame | None) -> list[str]:
    members = [f"m{j}_{what}" for j in range(n_members) for what in ("prob", "rank")]
    return ["class", "ens_rank", "ens_prob", *members, *([] if meta is None else list(meta.columns))]


def candidate_table(probs: list[np.ndarray], ens: np.ndarray, k: int,
                    meta: pd.DataFrame | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(features, candidates): one row per (drawing, candidate) in drawing order, ``k`` rows a
    drawing, columns as :func:`feature_names`; ``candidates`` (drawings, k) class ids. Each
    column is written into the float32 table as it is made (4 bytes a feature a row and nothing
    more: at Kaggle's size with 20 members the table is 2.5M rows x 46 features)."""
    cand = candidates(ens, k)
    n, k = cand.shape
    if meta is not None and len(meta) != n:
        raise ValueError(f"metadata for {len(meta)} drawings, probabilities for {n}")
    for p in probs:
        if p.shape != ens.shape:
            raise ValueError(f"member probabilities of shape {p.shape}, the ensemble's are {ens.shape}")
    x = np.empty((n, k, len(feature_names(len(probs), meta))), np.float32)
    x[:, :, 0], x[:, :, 1], x[:, :, 2] = cand, np.arange(k), np.take_along_axis(ens, cand, axis=1)
    for j, p in enumerate(probs):
        x[:, :, 3 + 2 * j] = np.take_along_axis(p, cand, axis=1)
        x[:, :, 4 + 2 * j] = _ranks(p, cand)
    if meta is not None:
        for j, c in enumerate(meta.columns, 3 + 2 * len(probs)):
            x[:, :, j] = meta[c].to_numpy(np.float32)[:, None]
            if c == "country":
                x[x[:, :, j] < 0, j] = np.nan  # a country outside the vocabulary: missing
    return x.reshape(n * k, -1), cand


def rescore(ens: np.ndarray, cand: np.ndarray, scores: np.ndarray, chunk: int = 16384) -> np.ndarray:
    """A probability table: the candidates' stacker scores, the other classes the ensemble's
    probabilities scaled to at most the weakest candidate; rows sum to 1 (float64 a ``chunk``
    of rows at a time)."""
    n, k = cand.shape
    scores = scores.reshape(n, k)
    result = np.empty(ens.shape, np.float32)
    for a in range(0, n, chunk):
        rows = slice(a, a + chunk)
        s, c = np.maximum(scores[rows].astype(np.float64), 1e-9), cand[rows]
        out = ens[rows].astype(np.float64)
        np.put_along_axis(out, c, 0.0, axis=1)
        scale = np.minimum(1.0, s.min(axis=1) / np.maximum(out.max(axis=1), 1e-12))
        out *= scale[:, None] * 0.999
        np.put_along_axis(out, c, s, axis=1)
        result[rows] = out / out.sum(axis=1, keepdims=True)
    return result


@dataclass
class Stacker:
    """A trained second level: its booster, the candidate count and what it was trained on."""

    booster: "lightgbm.Booster"  # noqa: F821
    k: int
    features: list[str]
    rounds: int
    cv_map3: float  # MAP@3 on the blend split, each fold scored by the model fitted on the others
    cv_folds: int
    info: dict = field(default_factory=dict)

    def predict(self, probs: list[np.ndarray], ens: np.ndarray, meta: pd.DataFrame | None = None) -> np.ndarray:
        """The re-ranked probability table (drawings, classes) of these drawings."""
        if feature_names(len(probs), meta) != self.features:
            raise ValueError(f"the stacker was trained on features {self.features}, "
                             f"given {feature_names(len(probs), meta)}")
        out = np.empty(ens.shape, np.float32)
        step = max(1, PREDICT_ROWS // self.k)  # drawings a block: their candidate table, not all of it
        for a in range(0, len(ens), step):
            rows = slice(a, a + step)
            scores, cand = _scores(self.booster, probs, ens, self.k, meta, rows, num_threads=_threads())
            out[rows] = rescore(ens[rows], cand, scores)
        return out

    def save(self, folder: str | Path) -> Path:
        """``stacker.txt`` (LightGBM's own model format) and ``stacker.json`` in ``folder``."""
        folder = Path(folder)
        write_text_atomic(folder / "stacker.txt", self.booster.model_to_string())
        write_text_atomic(folder / "stacker.json", json.dumps(
            {"k": self.k, "features": self.features, "rounds": self.rounds, "cv_map3": self.cv_map3,
             "cv_folds": self.cv_folds, "info": self.info}, indent=1))
        return folder / "stacker.txt"

    @classmethod
    def load(cls, folder: str | Path) -> "Stacker":
        import lightgbm

        folder = Path(folder)
        d = json.loads((folder / "stacker.json").read_text())
        return cls(lightgbm.Booster(model_str=(folder / "stacker.txt").read_text()), d["k"], d["features"],
                   d["rounds"], d["cv_map3"], d["cv_folds"], d.get("info", {}))


def _scores(booster: "lightgbm.Booster", probs: list[np.ndarray], ens: np.ndarray, k: int,  # noqa: F821
            meta: pd.DataFrame | None, rows: slice | np.ndarray, **predict) -> tuple[np.ndarray, np.ndarray]:
    """(scores (drawings, k), candidates) of the drawings at ``rows``: their candidate table,
    made for them alone, scored by ``booster``."""
    x, cand = candidate_table([p[rows] for p in probs], ens[rows], k, None if meta is None else meta.iloc[rows])
    return booster.predict(x, **predict).reshape(-1, k), cand


def _threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def row_folds(labels: np.ndarray, k: int, n_folds: int, seed: int = 0) -> np.ndarray:
    """The fold of each candidate row: drawings dealt to folds stratified by class
    (:func:`.ensemble.folds`), a drawing's ``k`` rows all in its fold."""
    return np.repeat(drawing_folds(np.asarray(labels), n_folds, seed), k)


def _map3(ens: np.ndarray, cand: np.ndarray, scores: np.ndarray, labels: np.ndarray, chunk: int = 16384) -> float:
    """MAP@3 of :func:`rescore`'s table, made and ranked a ``chunk`` of drawings at a time."""
    n, k = cand.shape
    scores = scores.reshape(n, k)
    total = sum(ap_at_k(rescore(ens[a:a + chunk], cand[a:a + chunk], scores[a:a + chunk]), labels[a:a + chunk]).sum()
                for a in range(0, n, chunk))
    return float(total / n)


def fit(probs: list[np.ndarray], ens: np.ndarray, labels: np.ndarray, meta: pd.DataFrame | None = None,
        k: int = 10, n_folds: int = 4, max_rounds: int = 1000, params: dict | None = None,
        seed: int = 0) -> Stacker:
    """Train the stacker on labelled drawings (the blend split): grouped, class-stratified
    folds choose the rounds and give the cross-fitted MAP@3; then one model on all of them.

    Memory, which grows with the blend split: the candidate table (4 bytes a feature a row)
    while LightGBM bins it, then only LightGBM's binned copy (it keeps no float copy, and its
    fold subsets are cut from the binned data); a fold's held-out rows are made again from the
    probabilities a block at a time to be scored. The folds are trained one after the
    other, each stopping early on its own held-out log-loss (30 rounds without a gain), so one
    fold's subsets and booster are alive at a time (``lightgbm.cv`` trains them side by side:
    on 497,000 candidate rows it added 662 MB with float copies, 324 MB without, and one fold
    at a time 166 MB). The final model's rounds are the
    mean of the folds' best rounds; each fold's held-out drawings are scored by its own model at
    its best round."""
    import lightgbm

    labels = np.asarray(labels)
    if len(labels) != len(ens):
        raise ValueError(f"{len(labels)} labels for {len(ens)} drawings")
    if len(labels) < MIN_PER_FOLD * n_folds:
        raise ValueError(f"{len(labels)} blend drawings: too few for the stacker's {n_folds} folds (at least "
                         f"{MIN_PER_FOLD * n_folds}); pack with a larger blend_frac, or set stack: false")
    x, cand = candidate_table(probs, ens, k, meta)
    n, k = cand.shape
    y = (cand == labels[:, None]).reshape(-1).astype(np.float32)
    names = feature_names(len(probs), meta)
    cats = [c for c in CATEGORICAL if c in names]
    prm = {**DEFAULT_PARAMS, **(params or {}), "seed": seed, "num_threads": _threads()}
    fold_of = row_folds(labels, k, n_folds, seed)  # a drawing's k rows in one fold
    data = lightgbm.Dataset(x, y, feature_name=names, categorical_feature=cats, params=prm).construct()
    del x  # LightGBM trains on its binned copy; held-out rows are made again a block at a time below
    oof, best = np.empty((n, k), np.float64), []
    for f in range(n_folds):
        held = np.flatnonzero(fold_of[::k] == f)  # the fold's drawings
        booster = lightgbm.train({**prm, "metric": "binary_logloss"}, data.subset(np.flatnonzero(fold_of != f)),
                                 num_boost_round=max_rounds, valid_sets=[data.subset(np.flatnonzero(fold_of == f))],
                                 callbacks=[lightgbm.early_stopping(30, verbose=False)])
        best.append(booster.best_iteration or max_rounds)
        for a in range(0, len(held), PREDICT_ROWS // k):
            idx = held[a:a + PREDICT_ROWS // k]
            oof[idx] = _scores(booster, probs, ens, k, meta, idx, num_iteration=best[-1])[0]
        del booster
    cv_map3 = _map3(ens, cand, oof, labels)
    rounds = max(1, round(float(np.mean(best))))
    booster = lightgbm.train(prm, data, num_boost_round=rounds)
    return Stacker(booster, k, names, rounds, float(cv_map3), n_folds,
                   {"drawings": int(len(labels)), "rows": int(len(y)), "candidate_recall": float(y.sum() / len(labels)),
                    "fold_rounds": best, "lightgbm": lightgbm.__version__})


@dataclass
class Stacked:
    """A stacker and its re-ranked probabilities of the validation and test drawings."""

    stacker: Stacker
    valid: np.ndarray
    test: np.ndarray | None


def stack(m: Members, weights: np.ndarray, mean: str = "arith", k: int = 10,
          meta: dict[str, pd.DataFrame] | None = None, n_folds: int = 4, params: dict | None = None,
          seed: int = 0) -> Stacked:
    """Notebook 04's second level: candidates from the members' weighted ``mean`` (the weights
    chosen on the blend split), the stacker trained on the blend split, applied to the
    validation and test drawings. ``meta``: :func:`split_meta`'s tables (None: no drawing
    metadata among the features)."""
    if not m.has_blend:
        raise ValueError("the stacker trains on the blend split, and these predictions have none: pack with "
                         "data.pack.blend_frac > 0 (or set stack: false)")
    meta = meta or {}
    blend = [x.blend for x in m.members]  # each split's ensemble made when it is used: one alive at a time
    stacker = fit(blend, combine(blend, weights, mean), m.blend_labels, meta.get("blend"), k, n_folds,
                  params=params, seed=seed)
    stacker.info["members"] = [x.name for x in m.members]  # m<j>_... in the features is member j
    valid = [x.valid for x in m.members]
    valid = stacker.predict(valid, combine(valid, weights, mean), meta.get("valid"))
    tests = [x.test for x in m.members]
    test = None
    if all(t is not None for t in tests):
        test = stacker.predict(tests, combine(tests, weights, mean), meta.get("test"))
    return Stacked(stacker, valid, test)


def table_row(s: Stacked, m: Members) -> dict:
    """The stacker's row for notebook 04's table: validation MAP@3 (the stacker saw none of
    it), its cross-fitted MAP@3 on the blend split, and the test proxy."""
    st = s.stacker
    return {"model": f"stacker (LightGBM, top-{st.k}, {st.rounds} rounds)", "valid_map3": map_at_k(s.valid, m.labels),
            "blend_map3": st.cv_map3, "test_proxy": None if s.test is None else proxy_score(s.test),
            "chosen_on": f"blend split ({st.cv_folds} folds grouped by drawing)"}


def save(out_dir: str | Path, m: Members, s: Stacked, weights: np.ndarray, mean: str) -> dict[str, Path]:
    """Write the stacked probabilities like an ensemble (notebook 05 reads them alike) and the
    stacker beside them."""
    paths = save_probs(out_dir, m, {"valid": s.valid, "test": s.test}, {
        "mean": mean, "weights": [float(w) for w in weights],
        "stacker": {"k": s.stacker.k, "rounds": s.stacker.rounds, "cv_map3": s.stacker.cv_map3,
                    "features": s.stacker.features}})
    paths["stacker"] = s.stacker.save(out_dir)
    return paths


def plot_importance(stacker: Stacker, top: int = 15):
    """The stacker's features by total gain (what its splits gained), largest first."""
    from matplotlib.figure import Figure

    gain = stacker.booster.feature_importance("gain")
    order = np.argsort(gain)[::-1][:top][::-1]
    members = stacker.info.get("members", [])

    def label(name: str) -> str:  # m<j>_prob -> the member's name
        head, _, what = name.partition("_")
        j = int(head[1:]) if head[:1] == "m" and head[1:].isdigit() else -1
        return f"{members[j]} {what}" if 0 <= j < len(members) else name

    fig = Figure(figsize=(7.5, 0.3 * len(order) + 1.2), constrained_layout=True)
    ax = fig.subplots()
    ax.barh([label(stacker.features[i]) for i in order], gain[order] / max(gain.sum(), 1e-12))
    ax.set(xlabel="share of the total gain", title=f"what the stacker uses (top-{stacker.k} candidates)")
    return fig


def add_row(table: pd.DataFrame, s: Stacked | None, m: Members) -> pd.DataFrame:
    """Notebook 04's table with the stacker's row last (unchanged without a stacker)."""
    return table if s is None else pd.concat([table, pd.DataFrame([table_row(s, m)])], ignore_index=True)
