"""Kaggle's raw CSVs packed as a timed store, against the plain simplified store of the same drawings.

Input: the raw drawings of the first ``--classes`` classes of ``../shared/quickdraw_sample/raw``
(Google's real raw strokes with times) written in Kaggle's layout — ``train_raw/<word>.csv``
as Kaggle ships them and ``train_simplified/<word>.csv`` (Google's simplification of the same
rows) — each drawing repeated with fresh key_ids to ``--per-class`` rows, so row lengths are
real ones and files are large enough that per-file start-up does not dominate (Kaggle's
average ~146,000 rows a file).
Baseline, measured in the same run: ``doodle pack`` of the simplified CSVs (kind
``simplified``). Then the raw CSVs packed as ``timed`` (simplified points with their times)
and as ``raw`` (the raw points and times). One worker process each, in a fresh interpreter,
so the rate is per core; the store's size is the sum of its arrays. (Peak memory is left to
``python -m benchmarks pack``: a child's ``ru_maxrss`` here would include this process's size.)

Run: ``python -m benchmarks timed [--classes N] [--per-class N]``.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / "_work"
SAMPLE = ROOT.parent / "shared" / "quickdraw_sample"
KAGGLE_DRAWINGS = 49_707_579  # Kaggle's training drawings (340 files)


def make_inputs(classes: int, per_class: int) -> Path:
    """Kaggle's ``train_raw/`` and ``train_simplified/`` from the sample, ``per_class`` rows a class."""
    from doodle_utils import data
    from doodle_utils.data.simplify import simplify_packed

    out = WORK / f"kaggle_raw_{classes}x{per_class}"
    files = sorted((SAMPLE / "raw").glob("*.ndjson"))[:classes]
    if (out / "done").exists():
        return out
    for ci, path in enumerate(files):
        meta, raw, _ = data.read_file(path, lenient=True)
        idx = np.tile(np.arange(len(meta)), -(-per_class // len(meta)))[:per_class]
        m = meta.iloc[idx].reset_index(drop=True)
        m["key_id"] = 10**15 + ci * 10**7 + np.arange(per_class)
        r = raw.take(idx)
        xy, so, do = simplify_packed(r.xy.astype(np.float64), r.stroke_offsets, r.drawing_offsets)
        data.write_csv(out / "train_raw" / f"{path.stem}.csv", m, r)
        data.write_csv(out / "train_simplified" / f"{path.stem}.csv", m, data.Drawings(xy, None, so, do))
    (out / "done").write_text("")
    return out


PACK = """
import json, time
import numpy as np
from doodle_utils import data
from doodle_utils.data import store
if __name__ == "__main__":
    d, _ = data.parse_drawing_strings(["[[[1,2],[3,4]]]"])  # load the compiled kernels
    d.take(np.array([0]))
    train, _ = store.find_sources({src!r}, raw={raw!r})
    t = time.perf_counter()
    m = store.pack(train, {dst!r}, kind={kind!r}, workers=1, progress=None)
    dt = time.perf_counter() - t
    print(json.dumps({{"rows": m["drawings"], "points": m["points"], "seconds": dt,
                      "store_bytes": sum(a["bytes"] for a in m["arrays"].values()),
                      "t_dtype": str(np.load({dst!r} + "/t.npy", mmap_mode="r").dtype) if {kind!r} != "simplified" else ""}}))
"""


def run(argv: list[str] | None = None) -> None:
    import shutil

    a = argparse.ArgumentParser(prog="python -m benchmarks timed")
    a.add_argument("--classes", type=int, default=20)
    a.add_argument("--per-class", type=int, default=3000)
    args = a.parse_args(argv if argv is not None else [])
    src = make_inputs(args.classes, args.per_class)
    csv_bytes = {k: sum(p.stat().st_size for p in (src / f"train_{k}").glob("*.csv")) for k in ("simplified", "raw")}
    rows = []
    for label, kind, raw in (("simplified CSVs -> simplified store (baseline)", "simplified", False),
                             ("raw CSVs -> timed store", "timed", True),
                             ("raw CSVs -> raw store", "raw", True)):
        dst = WORK / f"store_{kind}"
        shutil.rmtree(dst, ignore_errors=True)
        code = PACK.format(src=str(src), dst=str(dst), kind=kind, raw=raw)
        out = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, cwd=ROOT, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        r.update(label=label, csv_bytes=csv_bytes["raw" if raw else "simplified"])
        rows.append(r)
        shutil.rmtree(dst, ignore_errors=True)
    base = rows[0]
    print(f"\n{base['rows']:,} drawings ({len(list((src / 'train_raw').glob('*.csv')))} classes), one process each; "
          f"CSV bytes: simplified {csv_bytes['simplified'] / 1e6:.0f} MB, raw {csv_bytes['raw'] / 1e6:.0f} MB")
    print("| pack | drawings/s | × baseline | store bytes/drawing | × baseline | store / its CSV | "
          f"Kaggle's {KAGGLE_DRAWINGS / 1e6:.1f}M drawings: core-hours, store GB |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        rate = r["rows"] / r["seconds"]
        per = r["store_bytes"] / r["rows"]
        print(f"| {r['label']}{' (t ' + r['t_dtype'] + ')' if r['t_dtype'] else ''} | {rate:,.0f} | "
              f"{rate / (base['rows'] / base['seconds']):.2f} | {per:,.0f} | {per / (base['store_bytes'] / base['rows']):.2f} | "
              f"{r['store_bytes'] / r['csv_bytes']:.1%} | {KAGGLE_DRAWINGS / rate / 3600:.1f}, "
              f"{per * KAGGLE_DRAWINGS / 1e9:.1f} |")


if __name__ == "__main__":
    run(sys.argv[1:])
