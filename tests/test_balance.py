"""Balancing: caps respected, optimality against a full LP, MAP@3 on a set where balancing must help."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import linprog

from doodle_utils import balance
from doodle_utils.metrics import map_at_k_ranked, top_k


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


def test_optimal_matches_the_full_linear_program_and_beats_the_others():
    probs, _ = biased(10, 7, seed=3)
    n, c = probs.shape
    caps = balance.default_caps(n, c)
    s = np.log(probs.astype(np.float64))
    # the whole LP, every (drawing, class) pair
    a_eq = np.kron(np.eye(n), np.ones(c))
    a_ub = np.tile(np.eye(c), n)
    res = linprog(-s.ravel(), A_ub=a_ub, b_ub=caps, A_eq=a_eq, b_eq=np.ones(n), bounds=(0, 1), method="highs")
    best = -res.fun
    first, _ = balance.optimal_assignment(probs, caps, k=2)  # few candidates: columns get added
    total = s[np.arange(n), first].sum()
    assert total == pytest.approx(best, abs=1e-6)
    assert (np.bincount(first, minlength=c) <= caps).all()
    for other in ("greedy", "iterative"):
        ranked = balance.balance(probs, other, caps)
        if (np.bincount(ranked[:, 0], minlength=c) <= caps).all():
            assert total >= s[np.arange(n), ranked[:, 0]].sum() - 1e-9


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="fewer than"):
        balance.greedy(np.full((10, 2), 0.5), caps=np.array([4, 4]))
    with pytest.raises(ValueError, match="unknown balancing method"):
        balance.balance(np.full((4, 2), 0.5), "magic")
    with pytest.raises(ValueError, match="drawings, classes"):
        balance.greedy(np.zeros(5))


def test_proxy_score_tracks_map3_on_a_balanced_set():
    """Across classifiers of growing bias, the label-free proxy rises as MAP@3 falls."""
    rows = []
    for bias in (0.0, 0.5, 1.0, 2.0):
        probs, labels = biased(40, 10, seed=5, bias=bias)
        rows.append((balance.proxy_score(probs), map_at_k_ranked(top_k(probs, 3), labels)))
    proxy, map3 = np.array(rows).T
    assert (np.diff(proxy) > 0).all() and (np.diff(map3) < 0).all()
