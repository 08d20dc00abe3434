"""The stacker at Kaggle scale: a blend split of 1M drawings × 10 candidates on the CPU.

Synthetic probabilities stand in for three members (340 classes, float16 as notebook 04 loads
them): each drawing's class and a look-alike class get a boost, each member adds its own noise,
and the drawing's duration tells the look-alikes apart (so the stacker has something to learn
beyond the mean). Timed per size: the weighted mean's top-3 (the baseline: what notebook 04
does without a stacker), the candidate table alone, the stacker's fit (its own candidate table,
4 folds grouped by drawing, early stopping, the refit) and its prediction on 100,000 further drawings; peak memory is the
process's resident set after each stage. MAP@3 of mean and stacker on those further drawings
is shown to say the model learnt, not as a result (the data are made up).

Run: ``python -m benchmarks stacking`` (default sizes 100,000 and 1,000,000), or
``python -m benchmarks.bench_stacking --drawings 100000``. Results go to
``benchmarks/_work/results_stacking.json``.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / "_work"
CLASSES, MEMBERS, HELD_OUT = 340, 3, 100_000


def _peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kB on Linux


def make(n: int, seed: int, chunk: int = 100_000) -> tuple[list[np.ndarray], np.ndarray, pd.DataFrame]:
    """``n`` drawings: three members' probabilities (float16), labels, metadata."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, CLASSES, n)
    partner = (y + 1 + rng.integers(0, 5, n)) % CLASSES  # a look-alike, one of five neighbours
    odd = rng.random(n) < 0.5  # which of the pair the drawing is: its duration tells
    probs = [np.empty((n, CLASSES), np.float16) for _ in range(MEMBERS)]
    for a in range(0, n, chunk):
        b = min(n, a + chunk)
        rows = np.arange(b - a)
        base = rng.normal(0, 1, (b - a, CLASSES)).astype(np.float32)
        base[rows, y[a:b]] += 4.0
        base[rows, partner[a:b]] += np.where(odd[a:b], 4.3, 3.7)
        for p in probs:
            z = base + rng.normal(0, 0.8, base.shape).astype(np.float32)
            z = np.exp(z - z.max(axis=1, keepdims=True))
            p[a:b] = z / z.sum(axis=1, keepdims=True)
    meta = pd.DataFrame({"country": rng.integers(0, 200, n).astype(np.int32),
                         "strokes": rng.integers(1, 20, n).astype(np.int32),
                         "points": rng.integers(10, 300, n).astype(np.int32),
                         "duration_ms": np.where(odd, rng.normal(9000, 2000, n), rng.normal(6000, 2000, n))
                         .astype(np.float32)})
    return probs, y, meta


def one(n: int, seed: int) -> dict:
    from doodle_utils.metrics import map_at_k, top_k
    from doodle_utils.postprocess import ensemble, stacking

    probs, y, meta = make(n, seed)
    hp, hy, hm = make(HELD_OUT, seed + 1)
    row = {"drawings": n, "candidate_rows": n * 10, "after_data_gb": _peak_gb()}
    t0 = time.perf_counter()
    ens = ensemble.combine(probs)
    top_k(ens, 3)
    row["mean_top3_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    stacking.candidate_table(probs, ens, 10, meta)
    row["table_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    st = stacking.fit(probs, ens, y, meta, k=10)
    row["fit_s"] = time.perf_counter() - t0
    row |= {"rounds": st.rounds, "cv_map3": st.cv_map3, "after_fit_gb": _peak_gb()}
    hens = ensemble.combine(hp)
    t0 = time.perf_counter()
    out = st.predict(hp, hens, hm)
    row["predict_100k_s"] = time.perf_counter() - t0
    row |= {"heldout_mean_map3": map_at_k(hens, hy), "heldout_stacker_map3": map_at_k(out, hy),
            "peak_gb": _peak_gb()}
    return row


def run(argv: list[str] | None = None) -> list[dict]:
    import os
    import platform

    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_stacking")
    p.add_argument("--drawings", type=int, nargs="+", default=[100_000, 1_000_000])
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv or [])
    rows = []
    for n in a.drawings:
        t0 = time.perf_counter()
        rows.append(one(n, a.seed))
        print(f"  {n:,} drawings: {time.perf_counter() - t0:.0f} s in all", flush=True)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"\nstacker at scale ({platform.processor() or platform.machine()}, {cores} cores; "
          f"{MEMBERS} members × {CLASSES} classes, top-10 candidates)")
    print(f"{'drawings':>10} {'rows':>11} {'mean top-3':>11} {'table':>8} {'fit':>8} {'× mean':>8} {'rounds':>7} "
          f"{'predict 100k':>13} {'peak GB':>8} {'MAP@3 mean→stacker':>20}")
    for r in rows:
        print(f"{r['drawings']:>10,} {r['candidate_rows']:>11,} {r['mean_top3_s']:>10.1f}s {r['table_s']:>7.1f}s "
              f"{r['fit_s']:>7.0f}s {(r['table_s'] + r['fit_s']) / r['mean_top3_s']:>7.0f}× {r['rounds']:>7} "
              f"{r['predict_100k_s']:>12.1f}s {r['peak_gb']:>8.1f} "
              f"{r['heldout_mean_map3']:>9.3f} → {r['heldout_stacker_map3']:.3f}")
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / "results_stacking.json").write_text(json.dumps({"args": vars(a), "rows": rows}, indent=1))
    return rows


if __name__ == "__main__":
    run(sys.argv[1:])
