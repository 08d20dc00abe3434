"""Google's simplification: agreement with Google's own simplified files, and speed.

Agreement: every raw drawing in ``../shared/quickdraw_sample/raw`` whose key_id is also in
``simplified/`` is simplified here and compared with Google's version. Speed: the whole raw
sample (9,570 drawings) on one core, best of 5, against the packing rate it must keep up with.
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
    from doodle_utils.simplify import agreement_report, simplify_packed

    report = agreement_report(SAMPLE / "raw", SAMPLE / "simplified")
    d = data.Drawings.concat([data.read_file(p)[1] for p in sorted((SAMPLE / "raw").glob("*.ndjson"))])
    xy = d.xy.astype(np.float64)
    simplify_packed(xy, d.stroke_offsets, d.drawing_offsets)  # compile / load the cache
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        simplify_packed(xy, d.stroke_offsets, d.drawing_offsets)
        best = min(best, time.perf_counter() - t0)
    rate = len(d) / best
    print("\nGoogle's simplification vs Google's simplified files")
    print(json.dumps(report, indent=1, default=str)[:3000])
    print(f"speed: {rate:,.0f} raw drawings/s on one core ({len(d):,} drawings, "
          f"{len(xy) / len(d):.0f} raw points each on average; best of 5)")
    return {"report": report, "drawings_s": rate}


if __name__ == "__main__":
    run()
