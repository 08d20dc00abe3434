"""Synthetic vs real drawings: strokes, raw and simplified points, duration per drawing.

For every synthetic class that has a real file in ``../shared/quickdraw_sample/raw``, 100
synthetic drawings against the real sample's recognized drawings of the same class (the real
raw strokes simplified with the same code). Prints a markdown table (median, p10-p90).
Run: ``python -m benchmarks synth``.
"""
from __future__ import annotations

import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT.parent / "shared" / "quickdraw_sample"


def run() -> str:
    from doodle_utils.data.synth import compare_with_real, stats_table_markdown

    t0 = time.perf_counter()
    df = compare_with_real(SAMPLE / "raw", seed=0, per_class=100)
    table = stats_table_markdown(df)
    med = df.pivot_table(index=["word", "metric"], columns="source", values="median")
    ratio = (med["synthetic"] / med["real"]).groupby("metric").agg(["min", "median", "max"])
    print("\nSynthetic vs real (median (p10-p90) per drawing; recognized drawings only)\n")
    print(table)
    print("synthetic/real ratio of the per-class medians:\n" + ratio.round(2).to_string())
    print(f"({time.perf_counter() - t0:.1f}s)")
    return table


if __name__ == "__main__":
    run()
