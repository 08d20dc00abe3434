"""Balancing methods at Kaggle's scale: time, proxy score, MAP@3 and log-probability.

Input: a simulated classifier on a class-balanced labelled set of Kaggle's test size
(112,199 drawings × 340 classes, 330 per class less one): logits N(0, 1) plus 2.2 for the
true class plus a fixed per-class bias N(0, 0.6), so some classes are over-predicted, the
situation balancing is for. ``none`` (plain top-3) is the baseline in the same run. Rows:
``optimal`` is the numba auction with its exact finish (the default); ``optimal, torch`` the
torch auction on the CPU (the GPU code path; its many small rounds make it sensitive to other
load on the CPU: 4.5 s on an idle dev-2c, 13.7 s beside a training run), and ``optimal, torch
(cuda)`` the same on the GPU when there is one; ``optimal, 2nd/3rd
by probs`` the same assignment ranked as before (2nd and 3rd labels from the raw
probabilities). ``--highs`` adds the SciPy HiGHS reference (about 3.5 minutes at full size).
numba's one-off compilation is done before the timings. The ``--small`` option runs 359 × 12 instead. When the
``real_sample`` profile's notebook 03 has run, a second table balances its held-out real
predictions, cut to a balanced set (4 drawings of every class that has 4).
Run: ``python -m benchmarks balance``, or ``python -m benchmarks.bench_balance [--highs] [--small]``.
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


REAL_PREDS = Path(__file__).resolve().parents[1] / "outputs" / "real_sample" / "train" / "real_resnet18_palette64" / "preds"


def real_balanced(preds_dir: Path = REAL_PREDS, per_class: int = 4) -> tuple[np.ndarray, np.ndarray] | None:
    """A balanced real set: the real-sample profile's held-out predictions, ``per_class``
    drawings of every class that has that many (None when that run is not there)."""
    man_path = preds_dir / "manifest.json"
    if not man_path.exists():
        return None
    man = json.loads(man_path.read_text())
    last = man["snapshots"][-1]["snapshot"]
    probs = np.load(preds_dir / f"{last}_valid.npy").astype(np.float32)
    labels = np.asarray(man["valid_labels"])
    keep = np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in np.unique(labels)
                           if (labels == c).sum() >= per_class])
    kept_classes = np.unique(labels[keep])
    sub = probs[keep][:, kept_classes]  # the classes of the balanced set only
    remap = np.searchsorted(kept_classes, labels[keep])
    return sub / sub.sum(1, keepdims=True), remap


def methods(highs: bool) -> list:
    rows = ["none", "greedy", "iterative", "optimal",
            ("optimal, torch (cpu)", "optimal", {"engine": "torch", "device": "cpu"}),
            ("optimal, 2nd/3rd by probs", "optimal", {"rank": "probs"})]
    if _cuda():
        rows.insert(5, ("optimal, torch (cuda)", "optimal", {"engine": "torch", "device": "cuda"}))
    return rows + ([("optimal, highs", "optimal", {"engine": "highs"})] if highs else [])


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _table(title: str, rows: list[dict]) -> None:
    base = rows[0]
    print(f"\n{title}:")
    print("| method | seconds | proxy score | MAP@3 (Δ vs none) | total log-prob | max over cap |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['method']} | {r['seconds']:.2f} | {r['proxy']:,.0f} | {r['map3']:.4f} ({r['map3'] - base['map3']:+.4f}) "
              f"| {r['log_prob']:,.3f} | {r['max_over_cap']} |")


def run(argv: list[str] | None = None) -> list[dict]:
    from doodle_utils.postprocess.balance import compare, optimal

    argv = argv or []
    small, highs = "--small" in argv, "--highs" in argv
    for engine in ("numba", "torch"):  # compile (numba) and load (torch) outside the timings
        optimal(simulated(10, 5)[0], engine=engine)
    if _cuda():
        optimal(simulated(10, 5)[0], engine="torch", device="cuda")
    probs, labels = simulated(30, 12) if small else simulated(330, 340)
    rows = [r.__dict__ for r in compare(probs, labels, methods=methods(highs))]
    _table(f"balancing {probs.shape[0]:,} × {probs.shape[1]} (simulated biased classifier)", rows)
    real = real_balanced()
    if real is not None:
        real_rows = [r.__dict__ for r in compare(*real, methods=methods(highs))]
        _table(f"balancing {real[0].shape[0]:,} × {real[0].shape[1]} (real sample, held out, balanced)", real_rows)
        rows = rows + [{**r, "set": "real"} for r in real_rows]
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / "results_balance.json").write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    run(sys.argv[1:])
