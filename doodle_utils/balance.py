"""Balancing predictions to a test set's known class balance (Kaggle's test: ~330 per class).

Three methods take class probabilities ``(N, C)`` and per-class caps (default ``ceil(N/C)``)
and return a ranked top-3 ``(N, 3)`` whose first column is the balanced assignment:

* ``greedy`` (the 4th-place talk): all (drawing, class) candidates from the top-1 predictions,
  most confident first, accepted while the class is under its cap; the drawings left try
  their 2nd, then 3rd, then further choices the same way.
* ``iterative`` (1st place): one multiplier per class; repeatedly lower the multiplier of the
  most over-predicted class by ``step``, keep the best balance seen, halve the step after a
  round without improvement, stop below ``min_step``. Its top-1 counts approach the caps but
  need not meet them; its top-3 comes from the adjusted probabilities.
* ``optimal``: top-1 counts within the caps with the largest total log-probability — a
  transportation problem, solved exactly as a linear program (its constraint matrix is
  totally unimodular, so a basic optimal solution is integral) with SciPy's HiGHS on each
  drawing's ``k`` best classes (and its greedy class, so that the restricted problem is
  feasible), then certified over all classes with the duals: a drawing
  whose best reduced cost lies outside its candidates gets that class added and the LP is
  solved again, until none does. This is why it uses a library LP solver rather than an
  auction or Sinkhorn iteration written here: the optimum is exact, not approximate.

The proxy score (the talk) needs no labels: ``sum |top-1 count - N/C|`` over classes.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .metrics import top_k

METHODS = ("greedy", "iterative", "optimal")


def default_caps(n: int, n_classes: int) -> np.ndarray:
    """``ceil(N / C)`` per class (Kaggle's 112,199 test drawings: 330 for each of 340)."""
    return np.full(n_classes, -(-n // n_classes), dtype=np.int64)


def proxy_score(probs_or_top1: np.ndarray, n_classes: int | None = None) -> float:
    """Sum over classes of |top-1 count - N/C| (0: perfectly balanced predictions)."""
    a = np.asarray(probs_or_top1)
    top1 = a.argmax(axis=1) if a.ndim == 2 else a
    c = a.shape[1] if a.ndim == 2 else int(n_classes)
    counts = np.bincount(top1, minlength=c)
    return float(np.abs(counts - len(top1) / c).sum())


def _check(probs: np.ndarray, caps: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    probs = np.asarray(probs)
    if probs.ndim != 2:
        raise ValueError(f"probabilities must be (drawings, classes), got shape {probs.shape}")
    n, c = probs.shape
    caps = default_caps(n, c) if caps is None else np.asarray(caps, np.int64)
    if caps.shape != (c,) or (caps < 0).any():
        raise ValueError(f"caps must be {c} non-negative counts")
    if caps.sum() < n:
        raise ValueError(f"caps hold {caps.sum()} drawings, fewer than the {n} to place")
    return probs, caps


def _rank_with_first(probs: np.ndarray, first: np.ndarray, k: int = 3) -> np.ndarray:
    """Top-k with ``first`` in column 0 and the best other classes after it."""
    p = probs.astype(np.float64, copy=True)
    p[np.arange(len(p)), first] = np.inf
    return top_k(p, k)


def greedy(probs: np.ndarray, caps: np.ndarray | None = None) -> np.ndarray:
    """The talk's greedy balancing (see the module docstring)."""
    probs, caps = _check(probs, caps)
    n, c = probs.shape
    order = np.argsort(-probs, axis=1)  # every drawing's classes, best first
    assigned = np.full(n, -1, np.int64)
    room = caps.copy()
    for r in range(c):
        todo = np.flatnonzero(assigned < 0)
        if len(todo) == 0:
            break
        cls = order[todo, r]
        conf = probs[todo, cls]
        # within each class, the most confident candidates take the room left
        srt = np.lexsort((-conf, cls))
        cls_s = cls[srt]
        start = np.searchsorted(cls_s, np.arange(c))
        pos = np.arange(len(srt)) - start[cls_s]
        ok = pos < room[cls_s]
        assigned[todo[srt[ok]]] = cls_s[ok]
        room -= np.bincount(cls_s[ok], minlength=c)
    return _rank_with_first(probs, assigned)


def iterative(probs: np.ndarray, caps: np.ndarray | None = None, step: float = 0.1,
              min_step: float = 1e-4, max_rounds: int = 10_000) -> np.ndarray:
    """1st place's multiplier search (see the module docstring)."""
    probs, caps = _check(probs, caps)
    n, c = probs.shape
    logp = np.log(np.maximum(probs.astype(np.float64), 1e-30))
    logw = np.zeros(c)
    top1 = logp.argmax(axis=1)
    counts = np.bincount(top1, minlength=c)
    target = n / c

    def score(cnt):
        return float(np.abs(cnt - target).sum())

    best, best_w, rounds = score(counts), logw.copy(), 0
    while step >= min_step and rounds < max_rounds and best > 0:
        rounds += 1
        improved = False
        for _ in range(c):  # a round: up to C adjustments of the most over-predicted class
            k = int(np.argmax(counts - caps))
            if counts[k] <= caps[k]:
                break
            logw[k] += np.log1p(-step)
            rows = np.flatnonzero(top1 == k)  # only these can change their top-1
            new = (logp[rows] + logw).argmax(axis=1)
            counts -= np.bincount(top1[rows], minlength=c)
            counts += np.bincount(new, minlength=c)
            top1[rows] = new
            s = score(counts)
            if s < best:
                best, best_w, improved = s, logw.copy(), True
        if not improved:
            step /= 2
            logw = best_w.copy()
            top1 = (logp + logw).argmax(axis=1)
            counts = np.bincount(top1, minlength=c)
    return top_k(logp + best_w, 3)


def optimal(probs: np.ndarray, caps: np.ndarray | None = None, k: int = 3,
            max_rounds: int = 20) -> np.ndarray:
    """The exact maximum-likelihood assignment within the caps (see the module docstring)."""
    first, _ = optimal_assignment(probs, caps, k, max_rounds)
    return _rank_with_first(np.asarray(probs), first)


def optimal_assignment(probs: np.ndarray, caps: np.ndarray | None = None, k: int = 3,
                       max_rounds: int = 20, solver: str = "highs-ds") -> tuple[np.ndarray, np.ndarray]:
    """(class of each drawing, class prices) of the optimal capped assignment."""
    from scipy.optimize import linprog
    from scipy.sparse import csr_matrix

    probs, caps = _check(probs, caps)
    n, c = probs.shape
    s = np.log(np.maximum(probs.astype(np.float64), 1e-30))
    k = min(k, c)
    # candidates: each drawing's k best classes, plus its greedy class, which makes the
    # restricted problem feasible (greedy always places every drawing within the caps)
    top = np.argpartition(-s, k - 1, axis=1)[:, :k]
    rows = np.r_[np.repeat(np.arange(n), k), np.arange(n)]
    cols = np.r_[top.ravel(), greedy(probs, caps)[:, 0]]
    keep = np.unique(rows * c + cols)
    rows, cols = keep // c, keep % c
    for _ in range(max_rounds):
        m = len(rows)
        a_eq = csr_matrix((np.ones(m), (rows, np.arange(m))), shape=(n, m))
        a_ub = csr_matrix((np.ones(m), (cols, np.arange(m))), shape=(c, m))
        res = linprog(-s[rows, cols], A_ub=a_ub, b_ub=caps, A_eq=a_eq, b_eq=np.ones(n),
                      bounds=(0, 1), method=solver)
        if res.status != 0:
            raise RuntimeError(f"balancing LP failed: {res.message}")
        price = -np.asarray(res.ineqlin.marginals)  # >= 0: the value of a class's last place
        x = res.x
        chosen = x > 0.5
        first = np.full(n, -1, np.int64)
        first[rows[chosen]] = cols[chosen]
        if (first < 0).any() or np.abs(x[(x > 1e-9) & (x < 1 - 1e-9)]).size:
            raise RuntimeError("balancing LP returned a fractional solution")
        # certify: no class outside the candidates may beat a drawing's reduced value
        reduced = s - price
        u = reduced[np.arange(n), first]
        best = reduced.argmax(axis=1)
        bad = np.flatnonzero(reduced[np.arange(n), best] > u + 1e-9)
        if len(bad) == 0:
            return first, price
        rows = np.r_[rows, bad]
        cols = np.r_[cols, best[bad]]
    raise RuntimeError(f"balancing LP not certified after {max_rounds} rounds")


def balance(probs: np.ndarray, method: str, caps: np.ndarray | None = None, **kw) -> np.ndarray:
    """Ranked top-3 (N, 3) by ``method`` (one of :data:`METHODS`, or "none": plain top-3)."""
    if method == "none":
        return top_k(np.asarray(probs), 3)
    fn = {"greedy": greedy, "iterative": iterative, "optimal": optimal}.get(method)
    if fn is None:
        raise ValueError(f"unknown balancing method {method!r}; choose from {METHODS} or 'none'")
    return fn(probs, caps, **kw)


@dataclass
class MethodResult:
    method: str
    seconds: float
    proxy: float
    map3: float | None
    log_prob: float  # total log-probability of the top-1 assignment
    max_over_cap: int


def compare(probs: np.ndarray, labels: np.ndarray | None = None, caps: np.ndarray | None = None,
            methods: tuple[str, ...] = ("none",) + METHODS) -> list[MethodResult]:
    """Each method's time, proxy score, MAP@3 (with labels), total log-prob and cap excess."""
    from .metrics import map_at_k_ranked

    probs, caps = _check(probs, caps)
    logp = np.log(np.maximum(probs.astype(np.float64), 1e-30))
    out = []
    for m in methods:
        t0 = time.perf_counter()
        ranked = balance(probs, m, caps)
        dt = time.perf_counter() - t0
        top1 = ranked[:, 0]
        over = int(np.maximum(np.bincount(top1, minlength=probs.shape[1]) - caps, 0).max())
        out.append(MethodResult(m, dt, proxy_score(top1, probs.shape[1]),
                                None if labels is None else map_at_k_ranked(ranked, labels),
                                float(logp[np.arange(len(top1)), top1].sum()), over))
    return out


def hidden_test_labels(data_dir, key_ids, words) -> np.ndarray | None:
    """Class indices of the test drawings from ``test_labels.csv`` (the synthetic
    competition writes one; Kaggle's data has none: None)."""
    from pathlib import Path

    import pandas as pd

    path = Path(data_dir) / "test_labels.csv"
    if not path.exists() or key_ids is None:
        return None
    df = pd.read_csv(path, dtype={"key_id": str})
    word_of = dict(zip(df["key_id"], df["word"]))
    index = {w: i for i, w in enumerate(words)}
    missing = [k for k in key_ids if k not in word_of]
    if missing:
        raise ValueError(f"{path}: no label for key_id {missing[0]} ({len(missing)} missing)")
    return np.array([index.get(word_of[k], -1) for k in key_ids])
