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
* ``optimal``: top-1 counts within the caps with the largest total log-probability ``s``: a
  transportation problem (a linear program whose constraint matrix is totally unimodular, so
  it has an integral optimum). Its dual gives every class a price ``p >= 0`` (0 where the
  class has room). The 2nd and 3rd labels are the best other classes by the reduced score
  ``s - p``: on the benchmark's simulated set that gives MAP@3 0.322 (as ``iterative``'s
  adjusted ranking does), against 0.298 when they come from the raw probabilities
  (``rank="probs"``, the earlier behaviour).

How ``optimal`` is solved (``engine``):

* ``"numba"`` (default) and ``"torch"``: an auction with ε-scaling (Bertsekas & Castañón,
  "The auction algorithm for the transportation problem", Annals of OR 20, 1989; an
  overview: Bertsekas, "Auction algorithms", https://web.mit.edu/dimitrib/www/Auction_Encycl.pdf).
  Each class has cap slots and its price is the lowest accepted bid among its holders. An
  unassigned drawing bids for its best class ``j`` by reduced value, ``s_ij - v2 + ε`` with
  ``v2`` its second-best reduced value; it takes the lowest slot and evicts its holder.
  Dummy bidders that value every class at 0 fill the room the caps leave beyond N (the
  usual reduction to a balanced problem), so that classes with room end at the lowest price.
  When no cap binds at all, every drawing simply keeps its top-1 (prices 0) and no auction
  runs. ``"numba"`` bids one drawing at a time (Gauss–Seidel) on the CPU. ``"torch"`` lets all
  unassigned drawings bid at once and each class keep its best ``cap`` bids (Jacobi), so the
  same code runs on ``device="cuda"``; the last few drawings, whose eviction chains would
  take one round per bid, are left to the finish. The auction is only ε-optimal, so an exact
  finish follows on the CPU. In the graph of classes (plus a node for spare room) an edge
  ``j -> k`` costs ``min over drawings i in j of s_ij - s_ik``, and the assignment is optimal
  exactly when this graph has no negative cycle (Ahuja, Magnanti & Orlin, *Network Flows*,
  1993, thm 9.1). Bellman–Ford, started from the auction's prices, cancels negative cycles
  (one drawing moved along each edge) until none is left; drawings the auction left unplaced
  go in by shortest paths (Dijkstra on reduced costs). The potentials are the class prices.
* ``"highs"``: SciPy's HiGHS dual simplex on each drawing's ``k`` best classes (and its greedy
  class, so that the restricted problem is feasible); whenever the duals show a drawing's
  best class by reduced value outside its candidates, that class is added and the LP solved
  again. It is the reference the tests check the auction against.

Every engine ends with the same certificate (:func:`duality_gap`): for any prices ``p >= 0``,
``sum_i max_k (s_ik - p_k) + sum_j cap_j p_j`` bounds every assignment within the caps from
above. The solver raises unless the assignment's total is within ``1e-9`` per drawing of
that bound for its prices.

Why the auction is written here rather than taken from a library: SciPy's
``linear_sum_assignment`` solves only the square assignment problem, which needs each class
copied ``cap`` times (a dense 112,199 × 112,200 matrix, 100 GB). HiGHS is exact but took
208 s at Kaggle's size on 2 cores (its interior-point method 347 s). POT's exact ``ot.emd``
(network simplex; not a dependency here, not tried) wants equal marginals and the dense
``N × C`` cost matrix; its Sinkhorn solvers are approximate and would still need the exact
finish. Here ``optimal`` takes about 1.5 s at Kaggle's size on 2 CPU cores (HiGHS: 205 s),
half of it taking logarithms and ranking; the torch auction takes about 4.5 s on the same
CPU (it is there for GPUs, where it was not measured).

The proxy score (the talk) needs no labels: ``sum |top-1 count - N/C|`` over classes.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numba
import numpy as np

from ..metrics import map_at_k_ranked, top_k
from ..paths import answers_file

METHODS = ("greedy", "iterative", "optimal")
ENGINES = ("numba", "torch", "highs")  # how ``optimal`` is solved
_TOL = 1e-9  # the certificate's allowance per drawing (log-probability units)


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


ROW_SUM_TOLERANCE = 0.05  # float16 probabilities of 340 classes sum to 1 within ~1e-2


def check_probabilities(probs: np.ndarray) -> None:
    """Raise ValueError unless ``probs`` holds (drawings, classes) scores the balancers can
    use: finite and non-negative (rows need not sum to 1: only each row's order and ratios
    count). Hints name log-probabilities and an array whose columns, not rows, sum to 1
    (transposed)."""
    if probs.size == 0:
        return
    bad = ~np.isfinite(probs)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise ValueError(f"probabilities must be finite: row {r}, class {c} is {probs[r, c]}")
    if probs.min() < 0:
        r, c = np.argwhere(probs < 0)[0]
        hint = " (these look like log-probabilities: pass numpy.exp of them)" if probs.max() <= 0 else ""
        raise ValueError(f"probabilities must be non-negative: row {r}, class {c} is {probs[r, c]}{hint}")
    rows_off = np.abs(probs.sum(axis=1, dtype=np.float64) - 1) > ROW_SUM_TOLERANCE
    cols_one = np.abs(probs.sum(axis=0, dtype=np.float64) - 1) <= ROW_SUM_TOLERANCE
    if rows_off.any() and cols_one.all() and probs.shape[0] != probs.shape[1]:
        raise ValueError(f"the columns sum to 1, not the rows: is it transposed? expected (drawings, classes), "
                         f"got {probs.shape}")


def _check(probs: np.ndarray, caps: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    probs = np.asarray(probs)
    if probs.ndim != 2:
        raise ValueError(f"probabilities must be (drawings, classes), got shape {probs.shape}")
    n, c = probs.shape
    check_probabilities(probs)
    caps = default_caps(n, c) if caps is None else np.asarray(caps, np.int64)
    if caps.shape != (c,) or (caps < 0).any():
        raise ValueError(f"caps must be {c} non-negative counts")
    if caps.sum() < n:
        raise ValueError(f"caps hold {caps.sum()} drawings, fewer than the {n} to place")
    return probs, caps


def _log_scores(probs: np.ndarray) -> np.ndarray:
    """log(max(p, 1e-30)) in float64, row-major, in one new buffer (305 MB at Kaggle's size)."""
    s = np.array(probs, dtype=np.float64, order="C")
    np.maximum(s, 1e-30, out=s)
    return np.log(s, out=s)


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
    logp = _log_scores(probs)
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


def optimal(probs: np.ndarray, caps: np.ndarray | None = None, engine: str = "numba",
            device: str = "cpu", rank: str = "reduced", **kw) -> np.ndarray:
    """The exact maximum-likelihood assignment within the caps (see the module docstring).

    Args:
        probs: class probabilities (N, C).
        caps: per-class caps (default ``ceil(N/C)``).
        engine: ``"numba"`` (auction on the CPU), ``"torch"`` (auction on ``device``; on a
            CPU slower than ``"numba"``) or ``"highs"`` (SciPy's LP solver, minutes at
            Kaggle's size); all give the same total log-probability.
        device: the torch device for ``engine="torch"``.
        rank: the 2nd and 3rd labels by ``"reduced"`` score (log-probability minus the class
            price; MAP@3 0.322 on the benchmark's simulated set) or by ``"probs"`` (0.298).
        **kw: passed to :func:`optimal_assignment`.
    """
    if rank not in ("reduced", "probs"):
        raise ValueError(f"rank must be 'reduced' or 'probs', got {rank!r}")
    s, first, price = _solve(probs, caps, engine, device, **kw)
    if rank == "probs":
        return _rank_with_first(np.asarray(probs), first)
    return _rank_reduced(s, price, first)


def optimal_assignment(probs: np.ndarray, caps: np.ndarray | None = None, engine: str = "numba",
                       device: str = "cpu", k: int = 3, max_rounds: int = 20,
                       solver: str = "highs-ds") -> tuple[np.ndarray, np.ndarray]:
    """(class of each drawing, class prices) of the optimal capped assignment, certified.

    The prices are one optimal dual solution; it need not be unique, so engines can return
    different prices (and, with ties, different assignments of the same total).

    Args:
        probs: class probabilities (N, C).
        caps: per-class caps (default ``ceil(N/C)``).
        engine: one of :data:`ENGINES` (see the module docstring).
        device: the torch device for ``engine="torch"`` (``"cpu"``, ``"cuda"``).
        k: ``"highs"`` only: candidate classes per drawing at the start.
        max_rounds: ``"highs"`` only: LP solves before giving up.
        solver: ``"highs"`` only: SciPy's ``linprog`` method.

    Raises:
        RuntimeError: when the result is not certified optimal (:func:`duality_gap`).
    """
    _, first, price = _solve(probs, caps, engine, device, k, max_rounds, solver)
    return first, price


def _solve(probs: np.ndarray, caps: np.ndarray | None, engine: str = "numba", device: str = "cpu",
           k: int = 3, max_rounds: int = 20, solver: str = "highs-ds") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(log-probabilities, assignment, prices), certified (see :func:`optimal_assignment`)."""
    probs, caps = _check(probs, caps)
    s = _log_scores(probs)
    if engine == "highs":
        first, price = _highs_assignment(probs, s, caps, k, max_rounds, solver)
    elif engine in ("numba", "torch"):
        n = len(s)
        room = np.minimum(caps, n)  # no class can take more than every drawing
        best = s.argmax(axis=1)
        if (np.bincount(best, minlength=len(caps)) <= caps).all():  # no cap binds
            first, price = best, np.zeros(len(caps))
        else:
            if engine == "numba":
                first, price = _auction_gs(s, room, 1.0, 1e-3, 10.0)
            else:
                first, price = _auction_torch(s, room, device=device)
            first, price = _finish(s, caps, first, price, 1e-11)
    else:
        raise ValueError(f"unknown engine {engine!r}; choose from {ENGINES}")
    gap = duality_gap(s, first, price, caps)
    if not gap <= _TOL * max(len(s), 1):
        raise RuntimeError(f"balancing ({engine}) not certified optimal: duality gap {gap:.3g}")
    return s, first, np.maximum(price, 0.0)


def duality_gap(scores: np.ndarray, first: np.ndarray, price: np.ndarray, caps: np.ndarray) -> float:
    """The certificate: how far ``first`` can be below the best assignment within the caps.

    Weak duality: for any prices ``p >= 0``, every assignment within the caps totals at most
    ``sum_i max_k (s_ik - p_k) + sum_j caps_j p_j``. The gap to this bound is the sum of each
    drawing's shortfall from its best reduced value plus ``p_j`` times the room left in each
    class: non-negative terms, summed without cancellation. Infinite when ``first`` leaves a
    drawing unplaced or breaks a cap.

    Args:
        scores: log-probabilities (N, C), float64.
        first: the class of each drawing (N,).
        price: class prices (C,) (negative values are taken as 0).
        caps: per-class caps (C,).
    """
    first = np.asarray(first, np.int64)
    caps = np.asarray(caps, np.int64)
    c = scores.shape[1]
    if len(first) and (first.min() < 0 or first.max() >= c):
        return float("inf")
    counts = np.bincount(first, minlength=c)
    if (counts > caps).any():
        return float("inf")
    p = np.maximum(np.asarray(price, np.float64), 0.0)
    return float(_shortfall(scores, first, p)) + float(((caps - counts) * p).sum())


@numba.njit(cache=True)
def _shortfall(s, first, p):
    total = 0.0
    for i in range(s.shape[0]):
        best = -np.inf
        for k in range(s.shape[1]):
            v = s[i, k] - p[k]
            if v > best:
                best = v
        total += best - (s[i, first[i]] - p[first[i]])
    return total


@numba.njit(cache=True)
def _rank_reduced(s, p, first):
    """Top-3 with ``first`` in column 0, then the best other classes by ``s - p`` (ties: the
    lower class index)."""
    n, c = s.shape
    out = np.empty((n, min(3, c)), np.int64)
    for i in range(n):
        out[i, 0] = first[i]
        b1, b2, j1, j2 = -np.inf, -np.inf, -1, -1
        for k in range(c):
            if k == first[i]:
                continue
            v = s[i, k] - p[k]
            if v > b1 or j1 < 0:
                b2, j2 = b1, j1
                b1, j1 = v, k
            elif v > b2 or j2 < 0:
                b2, j2 = v, k
        if out.shape[1] > 1:
            out[i, 1] = j1
        if out.shape[1] > 2:
            out[i, 2] = j2
    return out


# --------------------------------------------------------------------------- auction (CPU)
@numba.njit(cache=True)
def _sift_down(key, who, where, base, size):
    """Restore the min-heap ``key[base:base+size]`` after its root's key went up."""
    pos = 0
    while True:
        m = 2 * pos + 1
        if m >= size:
            return
        if m + 1 < size and key[base + m + 1] < key[base + m]:
            m += 1
        a, b = base + pos, base + m
        if key[b] >= key[a]:
            return
        key[a], key[b] = key[b], key[a]
        who[a], who[b] = who[b], who[a]
        if who[a] >= 0:
            where[who[a]] = a
        if who[b] >= 0:
            where[who[b]] = b
        pos = m


@numba.njit(cache=True)
def _auction_gs(s, caps, eps0, eps_min, theta):
    """Gauss–Seidel auction with ε-scaling: (class of each drawing, class prices).

    Class ``j``'s slots are a min-heap of bids in ``key[off[j]:off[j+1]]``; its price is the
    root (``inf`` for a class with no slot). The room beyond the N drawings is filled by
    dummy bidders (persons ``N..``) that value every class at 0, as in the textbook
    reduction of an unbalanced transportation problem to a balanced one: their bids keep the
    prices of classes with room at the lowest price. Without them, a slot vacated between
    phases keeps its price, nobody may come back to it, and its class ends with room but a
    price that optimality says must be 0 (with uneven caps leaving 8,711 spare slots at
    Kaggle's size, the finish then cancelled 18,451 cycles in 29 s). Between phases only the
    persons that break the new ε's complementary slackness are unassigned; their slots keep
    their prices. The prices returned are shifted so that the lowest is 0. Memory and time
    grow with the total room ``sum(caps)``.
    """
    n, c = s.shape
    off = np.zeros(c + 1, np.int64)
    for j in range(c):
        off[j + 1] = off[j] + caps[j]
    m = off[c]
    slot_class = np.empty(m, np.int64)
    for j in range(c):
        slot_class[off[j]:off[j + 1]] = j
    key = np.zeros(m)
    who = np.full(m, -1, np.int64)
    where = np.full(m, -1, np.int64)
    price = np.zeros(c)
    for j in range(c):
        if caps[j] == 0:
            price[j] = np.inf
    stack = np.empty(m, np.int64)
    for i in range(m):
        stack[i] = m - 1 - i
    top = m
    eps = eps0
    while True:
        while top > 0:
            top -= 1
            i = stack[top]
            v1, v2, j1 = -np.inf, -np.inf, -1
            for k in range(c):
                v = (s[i, k] if i < n else 0.0) - price[k]
                if v > v2:
                    if v > v1:
                        v2, v1, j1 = v1, v, k
                    else:
                        v2 = v
            # the class's price plus the bidder's margin over its second best
            bid = price[j1] + eps if v2 == -np.inf else v1 - v2 + price[j1] + eps
            base = off[j1]
            h = who[base]
            if h >= 0:  # the lowest bid loses its slot
                where[h] = -1
                stack[top] = h
                top += 1
            key[base], who[base], where[i] = bid, i, base
            _sift_down(key, who, where, base, caps[j1])
            price[j1] = key[base]
        if eps <= eps_min:
            break
        eps = max(eps / theta, eps_min)
        for i in range(m):
            j = slot_class[where[i]]
            own = (s[i, j] if i < n else 0.0) - price[j] + eps
            for k in range(c):
                if k != j and (s[i, k] if i < n else 0.0) - price[k] > own:
                    who[where[i]] = -1
                    where[i] = -1
                    stack[top] = i
                    top += 1
                    break
    first = np.empty(n, np.int64)
    for i in range(n):
        first[i] = slot_class[where[i]]
    return first, price - price.min()


# --------------------------------------------------------------------------- auction (torch)
def _auction_torch(s: np.ndarray, caps: np.ndarray, device: str = "cpu", eps0: float = 1.0,
                   eps_min: float = 1e-3, theta: float = 10.0, tail: int | None = None,
                   chunk: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """Jacobi auction with ε-scaling on ``device``: (class of each drawing or -1, prices).

    As :func:`_auction_gs` (dummy bidders included), but class ``j``'s slots are row ``j`` of
    ``key`` (C, max cap), best first; slots beyond its cap hold ``+inf`` so they are never
    given up. Each round, every unassigned person bids (the dummies all for the cheapest
    class); each class sorts its slots with its new bids and keeps the best ``max cap``. A
    phase ends when at most ``tail`` persons are unplaced (their eviction chains would take
    one round per bid; default ``min(64, N // 1000)``): the next phase, or the exact finish,
    places them.
    """
    import torch

    inf = float("inf")
    st = torch.as_tensor(s, device=device)
    n, c = st.shape
    tail = min(64, n // 1000) if tail is None else tail
    cap_t = torch.as_tensor(caps, device=device)
    m = int(cap_t.sum())  # persons: n drawings, then dummies filling the room
    width = int(cap_t.max())
    key = torch.zeros(c, width, dtype=st.dtype, device=device)
    key.masked_fill_(torch.arange(width, device=device) >= cap_t[:, None], inf)
    key = key.flip(1)  # descending: the +inf pads first
    holder = torch.full((c, width), -1, dtype=torch.long, device=device)
    price = key[:, -1].clone()
    todo = torch.arange(m, device=device)
    eps = eps0

    def bids(who):
        real, dummy = who[who < n], who[who >= n]
        top2 = (st[real] - price).topk(min(2, c), dim=1)
        low2 = (-price).topk(min(2, c))  # a dummy's values: minus the prices
        j1 = torch.cat([top2.indices[:, 0], low2.indices[:1].expand(len(dummy))])
        v1 = torch.cat([top2.values[:, 0], low2.values[:1].expand(len(dummy))])
        if c > 1:
            v2 = torch.cat([top2.values[:, 1], low2.values[1:2].expand(len(dummy))])
            margin = torch.where(v2 > -inf, v1 - v2, torch.zeros_like(v1))
        else:
            margin = torch.zeros_like(v1)
        return torch.cat([real, dummy]), j1, price[j1] + margin + eps

    def placed_class():
        first = torch.full((m,), -1, dtype=torch.long, device=device)
        held = holder >= 0
        first[holder[held]] = torch.nonzero(held)[:, 0]
        return first

    while True:
        while len(todo) > tail:
            who, j1, bid = bids(todo)
            cls, order = torch.sort(j1, stable=True)
            ucls, cnt = torch.unique_consecutive(cls, return_counts=True)
            row = torch.repeat_interleave(torch.arange(len(ucls), device=device), cnt, output_size=len(cls))
            rank = torch.arange(len(cls), device=device) - (torch.cumsum(cnt, 0) - cnt)[row]
            bk = torch.full((len(ucls), int(cnt.max())), -inf, dtype=st.dtype, device=device)
            bh = torch.full(bk.shape, -1, dtype=torch.long, device=device)
            bk[row, rank] = bid[order]
            bh[row, rank] = who[order]
            sk, si = torch.cat([key[ucls], bk], 1).sort(dim=1, descending=True)
            sh = torch.cat([holder[ucls], bh], 1).gather(1, si)
            key[ucls], holder[ucls] = sk[:, :width], sh[:, :width]
            price[ucls] = sk[:, width - 1]
            out = sh[:, width:]
            todo = out[out >= 0]
        first = placed_class()
        if eps <= eps_min:
            break
        eps = max(eps / theta, eps_min)
        # unassign the persons that break the new ε's complementary slackness
        bad = torch.zeros(m, dtype=torch.bool, device=device)
        for a in range(0, n, chunk):
            b = min(a + chunk, n)
            f = first[a:b]
            v = st[a:b] - price
            own = v.gather(1, f.clamp(min=0)[:, None])[:, 0]
            v.scatter_(1, f.clamp(min=0)[:, None], -inf)
            bad[a:b] = (f >= 0) & (v.max(1).values > own + eps)
        if m > n and c > 1:  # a dummy: its class must be within ε of the cheapest other one
            low2 = price.topk(2, largest=False)
            other = torch.full_like(price, low2.values[0])
            other[low2.indices[0]] = low2.values[1]
            f = first[n:]
            bad[n:] = (f >= 0) & (price[f.clamp(min=0)] > other[f.clamp(min=0)] + eps)
        holder[(holder >= 0) & bad[holder.clamp(min=0)]] = -1
        todo = torch.cat([todo, torch.nonzero(bad)[:, 0]])
    price = price - price.min()
    return first[:n].cpu().numpy(), price.cpu().numpy()


# --------------------------------------------------------------------------- exact finish
@numba.njit(cache=True)
def _edges(s, first, todo, W, arg):
    """Rows ``j`` (where ``todo[j]``) of the class graph: ``W[j, k]`` is the least loss
    ``s_ij - s_ik`` of moving a drawing of ``j`` to ``k``, ``arg[j, k]`` that drawing."""
    n, c = s.shape
    for j in range(c):
        if todo[j]:
            W[j, :] = np.inf
            arg[j, :] = -1
    for i in range(n):
        j = first[i]
        if j >= 0 and todo[j]:
            sij = s[i, j]
            for k in range(c):
                w = sij - s[i, k]
                if w < W[j, k]:
                    W[j, k] = w
                    arg[j, k] = i
    for j in range(c):
        W[j, j] = np.inf


@numba.njit(cache=True)
def _weight(W, counts, caps, u, v, c):
    """Edge ``u -> v`` of the class graph; node ``c`` is the spare room: ``j -> c`` (free,
    where ``j`` has room) ends a chain of moves, ``c -> j`` (free) starts one."""
    if u == c:
        return 0.0 if v < c else np.inf
    if v == c:
        return 0.0 if counts[u] < caps[u] else np.inf
    return W[u, v]


@numba.njit(cache=True)
def _find_cycle(parent):
    """A node on a cycle of the parent pointers, or -1."""
    V = len(parent)
    stamp = np.full(V, -1, np.int64)
    for x in range(V):
        v = x
        while v >= 0 and stamp[v] < 0:
            stamp[v] = x
            v = parent[v]
        if v >= 0 and stamp[v] == x:
            return v
    return -1


@numba.njit(cache=True)
def _move(first, counts, todo, arg, u, v, c):
    """Apply edge ``u -> v`` of a cycle or path (edges to or from the room node move nothing)."""
    if u < c and v < c:
        i = arg[u, v]
        first[i] = v
        counts[u] -= 1
        counts[v] += 1
        todo[u] = True
        todo[v] = True


@numba.njit(cache=True)
def _cancel_cycles(s, caps, first, counts, W, arg, d, tol):
    """Bellman–Ford from potentials ``d``; each negative cycle found is cancelled (one drawing
    moved along each edge) and the search goes on, until ``d`` is feasible: ``d_v <= d_u +
    w(u, v) + tol`` on every edge. Returns the number of cycles cancelled."""
    c = len(caps)
    V = c + 1
    parent = np.full(V, -1, np.int64)
    todo = np.zeros(c, np.bool_)
    cycles = 0
    while True:
        changed = False
        for u in range(V):
            for v in range(V):
                x = d[u] + _weight(W, counts, caps, u, v, c)
                if x < d[v] - tol:
                    d[v] = x
                    parent[v] = u
                    changed = True
        if not changed:
            return cycles
        x = _find_cycle(parent)
        if x < 0:
            continue
        # a cycle of parent pointers has negative weight: move one drawing along each edge
        cycles += 1
        todo[:] = False
        v = x
        while True:
            u = parent[v]
            _move(first, counts, todo, arg, u, v, c)
            v = u
            if v == x:
                break
        _edges(s, first, todo, W, arg)
        parent[:] = -1


@numba.njit(cache=True)
def _insert(s, caps, first, counts, W, arg, d, x):
    """Place drawing ``x`` by the shortest path (Dijkstra on reduced costs ``w + d_u - d_v``,
    which feasible potentials make non-negative) from ``x`` through the class graph to spare
    room; then update the potentials so that they stay feasible."""
    c = len(caps)
    V = c + 1
    d_src = -np.inf
    for k in range(c):
        d_src = max(d_src, s[x, k] + d[k])
    dist = np.full(V, np.inf)
    pred = np.full(V, -1, np.int64)
    done = np.zeros(V, np.bool_)
    for k in range(c):
        if caps[k] > 0:
            dist[k] = max(0.0, -s[x, k] + d_src - d[k])
            pred[k] = -2  # from x
    while True:
        u, best = -1, np.inf
        for v in range(V):
            if not done[v] and dist[v] < best:
                u, best = v, dist[v]
        if u < 0:
            raise RuntimeError("no room for a drawing")
        done[u] = True
        if u == c:
            break
        for v in range(V):
            if not done[v]:
                w = _weight(W, counts, caps, u, v, c)
                if w < np.inf:
                    alt = best + max(0.0, w + d[u] - d[v])
                    if alt < dist[v]:
                        dist[v] = alt
                        pred[v] = u
    todo = np.zeros(c, np.bool_)
    v = c
    while pred[v] != -2:
        u = pred[v]
        _move(first, counts, todo, arg, u, v, c)
        v = u
    first[x] = v
    counts[v] += 1
    todo[v] = True
    for v in range(V):
        d[v] += min(dist[v], dist[c])
    _edges(s, first, todo, W, arg)


@numba.njit(cache=True)
def _finish(s, caps, first, price, tol):
    """Exact optimum from an auction's (ε-optimal, possibly partial) assignment and prices:
    cancel negative cycles, place the unplaced drawings by shortest paths, cancel again; the
    class prices are the potentials (``p_j = d_room - d_j``)."""
    n, c = s.shape
    first = first.copy()
    counts = np.zeros(c, np.int64)
    for i in range(n):
        if first[i] >= 0:
            counts[first[i]] += 1
    W = np.empty((c, c))
    arg = np.empty((c, c), np.int64)
    _edges(s, first, np.ones(c, np.bool_), W, arg)
    d = np.zeros(c + 1)
    for j in range(c):
        d[j] = -price[j] if np.isfinite(price[j]) else 0.0
    _cancel_cycles(s, caps, first, counts, W, arg, d, tol)
    placed = False
    for x in range(n):
        if first[x] < 0:
            _insert(s, caps, first, counts, W, arg, d, x)
            placed = True
    if placed:
        _cancel_cycles(s, caps, first, counts, W, arg, d, tol)
    p = np.empty(c)
    for j in range(c):
        p[j] = max(d[c] - d[j], 0.0) if counts[j] == caps[j] else 0.0
    return first, p


# --------------------------------------------------------------------------- HiGHS (reference)
def _highs_assignment(probs: np.ndarray, s: np.ndarray, caps: np.ndarray, k: int, max_rounds: int,
                      solver: str) -> tuple[np.ndarray, np.ndarray]:
    """SciPy HiGHS on candidate columns, adding columns until the duals certify them."""
    from scipy.optimize import linprog
    from scipy.sparse import csr_matrix

    n, c = s.shape
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
        # no class outside the candidates may beat a drawing's reduced value
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
        return top_k(_check(probs, caps)[0], 3)
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
            methods: Sequence[str | tuple[str, str, dict]] = ("none",) + METHODS) -> list[MethodResult]:
    """Each method's time, proxy score, MAP@3 (with labels), total log-prob and cap excess.

    A method is a name, or ``(row label, name, keyword arguments)``, e.g.
    ``("optimal (highs)", "optimal", {"engine": "highs"})``. Each method first runs once on
    a tiny problem, so its time is the solve's, not numba's compilation on a first call.
    """

    probs, caps = _check(probs, caps)
    tiny = np.full((2 * probs.shape[1], probs.shape[1]), 1.0 / probs.shape[1], probs.dtype)
    tiny[np.arange(len(tiny)), np.arange(len(tiny)) % probs.shape[1]] += 1.0
    tiny /= tiny.sum(1, keepdims=True)
    out = []
    for m in methods:
        label, name, kw = (m, m, {}) if isinstance(m, str) else m
        balance(tiny, name, None, **kw)  # compile (numba) or warm up outside the timing
        t0 = time.perf_counter()
        ranked = balance(probs, name, caps, **kw)
        dt = time.perf_counter() - t0
        top1 = ranked[:, 0]
        over = int(np.maximum(np.bincount(top1, minlength=probs.shape[1]) - caps, 0).max())
        log_prob = _log_scores(probs[np.arange(len(top1)), top1]).sum()
        out.append(MethodResult(label, dt, proxy_score(top1, probs.shape[1]),
                                None if labels is None else map_at_k_ranked(ranked, labels),
                                float(log_prob), over))
    return out


def hidden_test_labels(data_dir, key_ids, words) -> np.ndarray | None:
    """Class indices of the test drawings from the hidden ``test_labels.csv`` beside
    ``data_dir`` (:func:`.paths.answers_file`; the synthetic competition writes one, Kaggle's data
    has none: None)."""
    import pandas as pd


    path = answers_file(data_dir)
    if not path.exists() or key_ids is None:
        return None
    df = pd.read_csv(path, dtype={"key_id": str})
    word_of = dict(zip(df["key_id"], df["word"]))
    index = {w: i for i, w in enumerate(words)}
    missing = [k for k in key_ids if k not in word_of]
    if missing:
        raise ValueError(f"{path}: no label for key_id {missing[0]} ({len(missing)} missing)")
    return np.array([index.get(word_of[k], -1) for k in key_ids])
