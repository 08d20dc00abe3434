"""CSV -> packed store: conversion rate per core, peak memory, store size, random-access reads.

Input: Kaggle-layout CSVs built from Google's real simplified drawings
(``../shared/quickdraw_sample/simplified``, the first 10 classes), each drawing repeated with
fresh key_ids to reach two sizes, so row lengths are real ones; files of 20k and 80k rows,
the order of Kaggle's per-class files (49.7M rows / 340 files, ~146k each). Baseline, measured in the same
run: the naive Kaggle path, ``pd.read_csv`` + ``json.loads`` per row into Python lists.

Each measurement runs in its own process so its peak RSS is its own. The packing process
first calls the compiled kernels once on a tiny input (loading numba's on-disk cache, ~0.4 s
once per process, which a real 24 GB pack amortises); worker processes (``workers=2``)
start cold, so their start-up (~1.3 s each: imports and kernels) is inside the timings.
Run: ``python -m benchmarks pack`` (or ``make bench``).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / "_work"
SAMPLE = ROOT.parent / "shared" / "quickdraw_sample"
N_CLASSES = 10
SIZES = {"small": 20_000, "large": 80_000}  # rows per class file


def make_inputs(per_class: int) -> Path:
    """Kaggle ``train_simplified/`` with ``per_class`` rows for each of N_CLASSES sample classes."""
    from doodle_utils import data

    out = WORK / f"csv_{per_class}" / "train_simplified"
    if out.is_dir() and len(list(out.glob("*.csv"))) == N_CLASSES:
        return out.parent
    files = sorted((SAMPLE / "simplified").glob("*.ndjson"))[:N_CLASSES]
    for ci, path in enumerate(files):
        meta, d, _ = data.read_file(path)
        reps = -(-per_class // len(meta))
        idx = np.tile(np.arange(len(meta)), reps)[:per_class]
        m = meta.iloc[idx].reset_index(drop=True)
        m["key_id"] = 10**15 + ci * 10**7 + np.arange(per_class)
        data.write_csv(out / path.name.replace(".ndjson", ".csv"), m, d.take(idx))
    return out.parent


def _child(code: str) -> dict:
    """Run ``code`` in a fresh interpreter, which prints a JSON dict (with its own peak RSS)."""
    out = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, cwd=ROOT, text=True,
                         check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


NAIVE = """
import json, resource, time, glob, pandas as pd
files = sorted(glob.glob({src!r} + "/train_simplified/*.csv"))
t = time.perf_counter(); n = 0; kept = []
for f in files:
    df = pd.read_csv(f)
    kept.append([json.loads(s) for s in df["drawing"]])
    n += len(df)
dt = time.perf_counter() - t
print(json.dumps({{"rows": n, "seconds": dt, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""

PACK = """
import json, resource, time
import numpy as np
from doodle_utils import data
from doodle_utils.data import store
if __name__ == "__main__":
    d, _ = data.parse_drawing_strings(["[[[1,2],[3,4]]]"])  # load the compiled kernels
    d.take(np.array([0]))
    t = time.perf_counter()
    res = store.pack_competition({src!r}, {dst!r}, workers={workers}, progress=None)
    dt = time.perf_counter() - t
    m = res["train"]
    rss = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    print(json.dumps({{"rows": m["drawings"], "seconds": dt, "convert_s": m["pack_seconds"]["convert"],
                      "store_bytes": sum(a["bytes"] for a in m["arrays"].values()), "peak_mb": rss / 1024}}))
"""

WARM = """
import json
from doodle_utils import data
data.parse_drawing_strings(["[[[1],[2]]]"])
print(json.dumps({}))
"""


def bench_reads(store_dir: Path, csv_dir: Path, batch: int = 512, seconds: float = 3.0) -> dict:
    """Random batches of drawings: packed store vs an in-memory DataFrame + json.loads."""
    from doodle_utils.data.store import Store

    st = Store(store_dir)
    rng = np.random.default_rng(0)
    n = len(st)
    st.drawings(rng.integers(0, n, batch))  # warm up the compiled gather
    k, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        st.drawings(rng.integers(0, n, batch))
        k += 1
    ours = k / (time.perf_counter() - t0)
    df = pd.concat([pd.read_csv(p) for p in sorted((csv_dir / "train_simplified").glob("*.csv"))],
                   ignore_index=True)
    col = df["drawing"].to_numpy()
    k, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        [json.loads(s) for s in col[rng.integers(0, n, batch)]]
        k += 1
    naive = k / (time.perf_counter() - t0)
    return {"batch": batch, "ours_batches_s": ours, "naive_batches_s": naive}


def bench_open(store_dir: Path, repeats: int = 3) -> dict:
    """Seconds to open a store: unchecked (the baseline), quick and full verification (best of
    ``repeats``, files in the page cache after the first)."""
    from doodle_utils.data.store import Store

    Store(store_dir, verify="quick")  # compile the structure check, warm the page cache
    out = {"drawings": len(Store(store_dir, verify="none"))}
    for mode in ("none", "quick", "full"):
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            Store(store_dir, verify=mode)
            best = min(best, time.perf_counter() - t0)
        out[mode] = best
    return out


def run() -> dict:
    """Run every measurement; print the table; return the numbers."""
    if not (SAMPLE / "simplified").is_dir():
        raise SystemExit(f"benchmark needs the real sample at {SAMPLE}")
    WORK.mkdir(parents=True, exist_ok=True)
    _child(WARM)  # compile and cache numba functions outside the timings
    results = {"cpu": os.cpu_count()}
    for name, per_class in SIZES.items():
        src = make_inputs(per_class)
        csv_bytes = sum(p.stat().st_size for p in (src / "train_simplified").glob("*.csv"))
        row = {"rows": per_class * N_CLASSES, "csv_mb": csv_bytes / 2**20}
        row["naive"] = _child(NAIVE.format(src=str(src)))
        for workers in (1, 2):
            dst = WORK / f"store_{per_class}_{workers}"
            row[f"pack_w{workers}"] = _child(PACK.format(src=str(src), dst=str(dst), workers=workers))
        row["store_ratio"] = row["pack_w1"]["store_bytes"] / csv_bytes
        results[name] = row
    results["reads"] = bench_reads(WORK / f"store_{SIZES['large']}_1" / "train", make_inputs(SIZES["large"]))
    results["open"] = bench_open(WORK / f"store_{SIZES['large']}_1" / "train")
    print_table(results)
    (WORK / "results_pack.json").write_text(json.dumps(results, indent=1))
    return results


def print_table(r: dict) -> None:
    s, l = r["small"], r["large"]
    naive_rate = s["naive"]["rows"] / s["naive"]["seconds"]  # the baseline: small input, 1 core
    print(f"\nCSV -> store, {s['rows']:,} and {l['rows']:,} real drawings ({s['csv_mb']:.0f} / {l['csv_mb']:.0f} MB CSV), {r['cpu']} cores")
    print(f"{'path':40s} {'drawings/s':>11s} {'x naive':>8s} {'convert/s':>10s} {'x naive':>8s} {'peak MB':>8s}")
    for name in ("small", "large"):
        nv = r[name]["naive"]
        rate = nv["rows"] / nv["seconds"]
        print(f"{'naive: read_csv + json.loads, ' + name:40s} {rate:11,.0f} {rate / naive_rate:8.1f} {'':>10s} {'':>8s} {nv['peak_mb']:8.0f}")
    for name in ("small", "large"):
        for w in (1, 2):
            p = r[name][f"pack_w{w}"]
            rate = p["rows"] / p["seconds"]
            conv = p["rows"] / p["convert_s"]
            label = f"doodle pack, {w} process{'es' if w > 1 else ''}, {name}"
            print(f"{label:40s} {rate:11,.0f} {rate / naive_rate:8.1f} {conv:10,.0f} {conv / naive_rate:8.1f} {p['peak_mb']:8.0f}")
    print("drawings/s: the whole pack (convert + merge + checksums); convert/s: the per-file conversion alone")
    print(f"store size / CSV size: {s['store_ratio']:.1%} (small), {l['store_ratio']:.1%} (large)")
    o = r["open"]
    print(f"opening the large store ({o['drawings']:,} drawings): unchecked {o['none'] * 1e3:.1f} ms (baseline), "
          f"quick {o['quick'] * 1e3:.1f} ms ({o['quick'] / o['none']:.0f}x), full {o['full'] * 1e3:.1f} ms "
          f"({o['full'] / o['none']:.0f}x)")
    rd = r["reads"]
    print(f"random batches of {rd['batch']}: store {rd['ours_batches_s']:,.0f}/s vs DataFrame+json.loads "
          f"{rd['naive_batches_s']:,.0f}/s ({rd['ours_batches_s'] / rd['naive_batches_s']:.0f}x)")


if __name__ == "__main__":
    run()
