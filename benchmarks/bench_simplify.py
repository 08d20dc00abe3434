"""Google's simplification: agreement with Google's own simplified files, and speed.

Agreement: every raw drawing in ``../shared/quickdraw_sample/raw`` whose key_id is also in
``simplified/`` is simplified here and compared with Google's version. Speed: the whole raw
sample (9,570 drawings) on one core, best of 5, against the packing rate it must keep up with;
once for :func:`simplify_packed` (points only) and once for :func:`simplify_packed_timed` (the
same points, each with its raw twin's time: the "timed" store's kind), timed in turn.
Run: ``python -m benchmarks simplify``.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT.parent / "shared" / "quickdraw_sample"


def run() -> dict:
    from doodle_utils import data
    from doodle_utils.data.simplify import agreement_report, simplify_packed, simplify_packed_timed

    report = agreement_report(SAMPLE / "raw", SAMPLE / "simplified")
    d = data.Drawings.concat([data.read_file(p)[1] for p in sorted((SAMPLE / "raw").glob("*.ndjson"))])
    xy = d.xy.astype(np.float64)
    runs = {"untimed": lambda: simplify_packed(xy, d.stroke_offsets, d.drawing_offsets),
            "timed": lambda: simplify_packed_timed(xy, d.t, d.stroke_offsets, d.drawing_offsets)}
    for f in runs.values():
        f()  # compile / load the cache
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(5):  # interleaved, so that a busy moment hits both alike
        for name, f in runs.items():
            t0 = time.perf_counter()
            f()
            best[name] = min(best[name], time.perf_counter() - t0)
    rate = len(d) / best["untimed"]
    rate_timed = len(d) / best["timed"]
    print("\nGoogle's simplification vs Google's simplified files")
    print(json.dumps(report, indent=1, default=str)[:3000])
    print(f"speed: {rate:,.0f} raw drawings/s on one core ({len(d):,} drawings, "
          f"{len(xy) / len(d):.0f} raw points each on average; best of 5)")
    print(f"timed (simplify_packed_timed, with each kept point's raw time): {rate_timed:,.0f} raw "
          f"drawings/s ({best['timed'] / best['untimed'] - 1:+.1%} time vs untimed; best of 5)")
    return {"report": report, "drawings_s": rate, "timed_drawings_s": rate_timed}


if __name__ == "__main__":
    run()
