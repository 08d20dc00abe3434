"""Balancing: caps respected, optimality against a full LP, MAP@3 on a set where balancing must help."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from scipy.optimize import linprog

from doodle_utils.metrics import map_at_k_ranked, top_k
from doodle_utils.postprocess import balance


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """The torch auction's rounds on these tiny sets are many small operations: a thread pool
    only adds waits (10 s against 6 s for this file beside a training run)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def biased(n_per: int, c: int, seed: int = 0, bias: float = 0.8):
    """A balanced labelled set and a classifier with per-class biases (some classes
    over-predicted), the situation balancing is for."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(c), n_per)
    logits = rng.normal(0, 1, (len(labels), c)) + 2.2 * np.eye(c)[labels] + rng.normal(0, bias, c)
    p = np.exp(logits - logits.max(1, keepdims=True))
    return (p / p.sum(1, keepdims=True)).astype(np.float32), labels


@pytest.mark.parametrize("method", balance.METHODS)
def test_methods_balance_and_keep_a_valid_top3(method):
    probs, labels = biased(30, 12)
    caps = balance.default_caps(len(probs), 12)
    ranked = balance.balance(probs, method)
    assert ranked.shape == (len(probs), 3)
    assert all(len(set(r)) == 3 for r in ranked.tolist())
    counts = np.bincount(ranked[:, 0], minlength=12)
    before = balance.proxy_score(probs)
    after = balance.proxy_score(ranked[:, 0], 12)
    assert after < before / 10
    if method != "iterative":  # greedy and optimal meet the caps exactly
        assert (counts <= caps).all()
    # balancing must help here: the set is balanced and the classifier is biased
    assert map_at_k_ranked(ranked, labels) > map_at_k_ranked(top_k(probs, 3), labels)


def test_greedy_keeps_confident_top1_and_assigned_class_first():
    probs = np.array([[0.9, 0.1, 0.0], [0.8, 0.15, 0.05], [0.7, 0.2, 0.1]], np.float32)
    ranked = balance.greedy(probs, caps=np.array([1, 1, 1]))
    # row 0 keeps class 0; of the others' 2nd choice (class 1) row 2 is more confident (0.2 >
    # 0.15) and takes it; row 1 falls to its 3rd choice
    assert ranked[:, 0].tolist() == [0, 2, 1]
    assert ranked[1].tolist() == [2, 0, 1] and ranked[2].tolist() == [1, 0, 2]


def full_lp(s: np.ndarray, caps: np.ndarray) -> float:
    """The oracle: the whole LP, every (drawing, class) pair, by HiGHS."""
    n, c = s.shape
    a_eq = sp.kron(sp.eye(n), np.ones((1, c)))
    a_ub = sp.hstack([sp.eye(c)] * n)
    res = linprog(-s.ravel(), A_ub=a_ub, b_ub=caps, A_eq=a_eq, b_eq=np.ones(n), bounds=(0, 1), method="highs")
    assert res.status == 0
    return -res.fun


def log_scores(probs):
    return np.log(np.maximum(np.asarray(probs, np.float64), 1e-30))


def cases():
    """(name, probs, caps): shapes and caps the auction and its finish must get right."""
    rng = np.random.default_rng(7)
    biased_probs, _ = biased(10, 7, seed=3)
    out = [("biased, default caps", biased_probs, balance.default_caps(len(biased_probs), 7))]
    for seed, (n, c) in enumerate([(37, 5), (60, 9), (25, 2), (9, 1)]):
        out.append((f"dirichlet {n}x{c}", rng.dirichlet(np.full(c, 0.3), n), balance.default_caps(n, c)))
    p = rng.dirichlet(np.ones(6), 50)
    out.append(("uneven caps, one of 0", p, np.array([20, 0, 3, 11, 9, 7])))
    out.append(("caps summing to 3N", p, np.array([50, 40, 1, 30, 20, 9])))
    p = rng.dirichlet(np.ones(6), 50)
    p[:, 0] += 0.5  # class 0 wanted by most, room everywhere else
    out.append(("room to spare, one cap binding", p / p.sum(1, keepdims=True), np.array([5, 40, 40, 40, 40, 40])))
    out.append(("ties", np.round(rng.random((40, 5)), 1) + 0.01, np.array([8, 8, 8, 8, 8])))
    out.append(("all equal", np.full((30, 4), 0.25), np.array([10, 5, 10, 5])))
    peaked = np.full((45, 6), 1e-40)  # softmax underflow: most classes floored at log(1e-30)
    peaked[np.arange(45), rng.integers(0, 2, 45)] = 1.0
    peaked[np.arange(45), rng.integers(2, 6, 45)] = rng.random(45) * 1e-3
    out.append(("peaked, floored", peaked, np.array([5, 5, 20, 5, 5, 5])))
    return out


CASES = cases()


@pytest.mark.parametrize("engine", ["numba", "torch", "highs"])
@pytest.mark.parametrize("case", range(len(CASES)), ids=[c[0] for c in CASES])
def test_optimal_engines_reach_the_full_lp_optimum(engine, case):
    _, probs, caps = CASES[case]
    s = log_scores(probs)
    first, price = balance.optimal_assignment(probs, caps, engine=engine)
    assert (np.bincount(first, minlength=len(caps)) <= caps).all()
    assert s[np.arange(len(s)), first].sum() == pytest.approx(full_lp(s, caps), abs=1e-7)
    assert (price >= 0).all()
    assert balance.duality_gap(s, first, price, caps) <= 1e-9 * len(s)


def test_a_class_that_must_be_full_gets_a_price():
    # 24 drawings prefer class 0 (room for 4); class 2 has room to spare
    rng = np.random.default_rng(1)
    probs = np.column_stack([0.6 + 0.3 * rng.random(24), 0.3 * rng.random(24), 0.1 * rng.random(24)])
    probs /= probs.sum(1, keepdims=True)
    caps = np.array([4, 10, 30])
    s = log_scores(probs)
    for engine in ("numba", "torch"):
        first, price = balance.optimal_assignment(probs, caps, engine=engine)
        counts = np.bincount(first, minlength=3)
        assert counts[0] == 4 and price[0] > 0 and price[2] == 0
        # the four kept in class 0 are those that lose most by leaving it
        loss = s[:, 0] - np.maximum(s[:, 1] - price[1], s[:, 2])
        assert set(np.flatnonzero(first == 0)) == set(np.argsort(-loss)[:4])
        assert s[np.arange(24), first].sum() == pytest.approx(full_lp(s, caps), abs=1e-7)


def test_exact_finish_places_every_drawing_from_nothing():
    """The finish alone (no auction: nobody placed, prices 0) must still reach the optimum:
    this runs its shortest-path placement and cycle cancelling on their own."""
    probs, _ = biased(12, 8, seed=4)
    s = log_scores(probs)
    caps = np.array([12, 12, 12, 12, 12, 12, 30, 0])
    first, price = balance._finish(s, caps, np.full(len(s), -1), np.zeros(8), 1e-11)
    assert (np.bincount(first, minlength=8) <= caps).all()
    assert s[np.arange(len(s)), first].sum() == pytest.approx(full_lp(s, caps), abs=1e-7)
    assert balance.duality_gap(s, first, price, caps) <= 1e-9 * len(s)


def test_duality_gap_catches_a_worse_or_infeasible_assignment():
    probs, _ = biased(10, 7, seed=3)
    s = log_scores(probs)
    caps = balance.default_caps(len(s), 7) + np.array([2, 0, 0, 0, 0, 0, 0])  # 72 places, 70 drawings
    first, price = balance.optimal_assignment(probs, caps)
    assert balance.duality_gap(s, first, price, caps) < 1e-9
    # swap two drawings of different classes: still within the caps, total lower
    i, j = 0, int(np.flatnonzero(first != first[0])[0])
    worse = first.copy()
    worse[i], worse[j] = first[j], first[i]
    loss = s[[i, j], first[[i, j]]].sum() - s[[i, j], worse[[i, j]]].sum()
    assert balance.duality_gap(s, worse, price, caps) >= loss - 1e-12 > 0
    assert balance.duality_gap(s, np.zeros_like(first), price, caps) == np.inf  # over a cap
    # raising every price by 1 leaves each drawing's choice as good, but prices the 2 places
    # left empty: the bound grows by 2
    assert balance.duality_gap(s, first, price + 1, caps) == pytest.approx(2)


def test_optimal_ranks_2nd_and_3rd_by_reduced_score():
    probs, _ = biased(10, 7, seed=3)
    s = log_scores(probs)
    first, price = balance.optimal_assignment(probs)
    reduced = s - price
    reduced[np.arange(len(s)), first] = np.inf
    assert (balance.optimal(probs) == top_k(reduced, 3)).all()
    assert (balance.optimal(probs, rank="probs") == balance._rank_with_first(probs, first)).all()


def test_optimal_beats_the_other_methods_within_the_caps():
    probs, _ = biased(10, 7, seed=3)
    s = log_scores(probs)
    caps = balance.default_caps(len(s), 7)
    total = s[np.arange(len(s)), balance.optimal(probs)[:, 0]].sum()
    for other in ("greedy", "iterative"):
        top1 = balance.balance(probs, other, caps)[:, 0]
        if (np.bincount(top1, minlength=7) <= caps).all():
            assert total >= s[np.arange(len(s)), top1].sum() - 1e-9


def test_highs_adds_columns_when_its_candidates_are_too_few():
    probs, _ = biased(10, 7, seed=3)
    s = log_scores(probs)
    caps = balance.default_caps(len(s), 7)
    first, _ = balance.optimal_assignment(probs, caps, engine="highs", k=1)
    assert s[np.arange(len(s)), first].sum() == pytest.approx(full_lp(s, caps), abs=1e-7)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_torch_auction_on_cuda_matches_the_cpu():
    probs, _ = biased(40, 30, seed=2)
    s = log_scores(probs)
    a, _ = balance.optimal_assignment(probs, engine="torch", device="cuda")
    b, _ = balance.optimal_assignment(probs, engine="numba")
    assert s[np.arange(len(s)), a].sum() == pytest.approx(s[np.arange(len(s)), b].sum(), abs=1e-7)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="fewer than"):
        balance.greedy(np.full((10, 2), 0.5), caps=np.array([4, 4]))
    with pytest.raises(ValueError, match="unknown balancing method"):
        balance.balance(np.full((4, 2), 0.5), "magic")
    with pytest.raises(ValueError, match="drawings, classes"):
        balance.greedy(np.zeros(5))
    with pytest.raises(ValueError, match="unknown engine"):
        balance.optimal(np.full((4, 2), 0.5), engine="magic")


def test_proxy_score_tracks_map3_on_a_balanced_set():
    """Across classifiers of growing bias, the label-free proxy rises as MAP@3 falls."""
    rows = []
    for bias in (0.0, 0.5, 1.0, 2.0):
        probs, labels = biased(40, 10, seed=5, bias=bias)
        rows.append((balance.proxy_score(probs), map_at_k_ranked(top_k(probs, 3), labels)))
    proxy, map3 = np.array(rows).T
    assert (np.diff(proxy) > 0).all() and (np.diff(map3) < 0).all()
