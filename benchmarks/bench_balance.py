"""Balancing methods at Kaggle's scale: time, proxy score, MAP@3 and log-probability.

Input: a simulated classifier on a class-balanced labelled set of Kaggle's test size
(112,199 drawings × 340 classes, 330 per class less one): logits N(0, 1) plus 2.2 for the
true class plus a fixed per-class bias N(0, 0.6), so some classes are over-predicted, the
situation balancing is for. ``none`` (plain top-3) is the baseline in the same run. The
``--small`` option runs 359 × 12 instead. Run: ``python -m benchmarks balance``.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

WORK = Path(__file__).resolve().parent / "_work"


def simulated(n_per: int, c: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = n_per * c - 1
    labels = np.repeat(np.arange(c), n_per)[:n]
    logits = rng.normal(0, 1, (n, c)) + 2.2 * np.eye(c, dtype=np.float32)[labels] + rng.normal(0, 0.6, c)
    p = np.exp(logits - logits.max(1, keepdims=True))
    return (p / p.sum(1, keepdims=True)).astype(np.float32), labels


def run(argv: list[str] | None = None) -> list[dict]:
    from doodle_utils.balance import compare

    small = "--small" in (argv if argv is not None else sys.argv[2:])
    probs, labels = simulated(30, 12) if small else simulated(330, 340)
    rows = [r.__dict__ for r in compare(probs, labels)]
    base = rows[0]
    print(f"\nbalancing {probs.shape[0]:,} × {probs.shape[1]} (simulated biased classifier):")
    print("| method | seconds | proxy score | MAP@3 (Δ vs none) | total log-prob | max over cap |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['method']} | {r['seconds']:.2f} | {r['proxy']:,.0f} | {r['map3']:.4f} ({r['map3'] - base['map3']:+.4f}) "
              f"| {r['log_prob']:,.0f} | {r['max_over_cap']} |")
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / "results_balance.json").write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    run()
