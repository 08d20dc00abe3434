"""``python -m benchmarks [NAME ...]``: run the named benchmarks (default: all) and print tables."""
import sys

from . import (bench_balance, bench_ensemble, bench_pack, bench_points, bench_real, bench_recognized, bench_render,
               bench_scale, bench_serve, bench_simplify, bench_stacking, bench_synth, bench_timed, bench_train,
               bench_tta)

BENCHMARKS = {"pack": bench_pack.run, "render": bench_render.run, "simplify": bench_simplify.run,
              "synth": bench_synth.run, "train": bench_train.run,
              "real": bench_real.run, "balance": bench_balance.run, "points": bench_points.run,
              "timed": bench_timed.run, "tta": bench_tta.run, "serve": bench_serve.run,
              "ensemble": bench_ensemble.run, "stacking": bench_stacking.run,
              "recognized": bench_recognized.run}

if __name__ == "__main__":
    if sys.argv[1:2] == ["scale"]:  # the full-size rehearsal takes options (hours at scale 1; not in the default set)
        bench_scale.run(sys.argv[2:])
        sys.exit(0)
    names = sys.argv[1:] or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        sys.exit(f"unknown benchmark(s) {unknown}; choose from {list(BENCHMARKS)}")
    for name in names:
        BENCHMARKS[name]()
