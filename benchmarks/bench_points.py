"""The point-sequence model against the image model, on the same data, split and budget.

For each dataset, the same schedule (one-cycle, ``--epochs`` epochs, batch ``--bs``, Adam at
3e-3, the same coordinate augmentations) trains:

* ``image``: the baseline, resnet18 on ``palette`` renderings at ``--size`` px (the
  ``real_sample`` profile's notebook 03 model);
* ``points``: :class:`doodle_utils.models.points.PointCNN`, 1-D convs over ``--points`` points
  scattered into a ``--grid``² grid, resnet18 trunk without its stem, on the same simplified
  store (time from stroke order);
* ``points, raw timings`` (real sample only): the same on the raw store, whose drawings are
  the same rows (same seed, same split) with Google's real per-point timings.

Datasets: ``real``, Google's drawings in ``../shared/quickdraw_sample/raw`` (345 classes,
9,570 drawings, 20% held out per class), and ``synthetic``, the suite's generated
competition (all its classes, 300 each, 20% held out). The table gives held-out MAP@3 and
top-1, training drawings per second (loading and rendering or point features included,
validation not), parameters, and each row's ratio to the image baseline of the same run.
Results go to ``benchmarks/_work/results_points.json``.

The CPU defaults (6 epochs, 96 points on a 16² grid, whose trunk costs about what resnet18
costs on a 64 px image) take about half an hour per dataset on 2 cores; the GPU setting is
``--epochs 12 --points 128 --grid 32``. Run: ``python -m benchmarks points``, or
``python -m benchmarks.bench_points --datasets synthetic --epochs 4`` and the like.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from .bench_real import _pack  # the same packing: one worker, 20% held out, seed 0

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / "_work" / "points"
SAMPLE = ROOT.parent / "shared" / "quickdraw_sample" / "raw"
AUG = {"flip": 0.5, "rotate": 8.0, "scale": 0.1, "shift": 0.05, "stroke_dropout": 0.05}


def stores(datasets: list[str]) -> dict[str, dict[str, Path]]:
    """{dataset: {"simplified": store, "raw": store (real only)}}, packed on first use."""
    out = {}
    if "real" in datasets:
        if not SAMPLE.is_dir():
            raise SystemExit(f"{SAMPLE}: the real sample is not there (use --datasets synthetic)")
        src = sorted(SAMPLE.glob("*.ndjson"))
        out["real"] = {"simplified": WORK / "real_simplified", "raw": WORK / "real_raw"}
        for kind, target in out["real"].items():
            _pack(src, target, kind=kind)
    if "synthetic" in datasets:
        from doodle_utils.data import synth

        data = WORK / "synth"
        if not (data / "test_simplified.csv").exists():
            synth.make_competition(data, classes=len(synth.CLASSES), per_class=300, test_per_class=1, seed=0)
        out["synthetic"] = {"simplified": WORK / "synth_simplified"}
        _pack(sorted((data / "train_simplified").glob("*.csv")), out["synthetic"]["simplified"], kind="simplified")
    return out


def _train(label: str, store: Path, out: Path, a, **model) -> dict:
    from doodle_utils.training import TrainConfig, train

    cfg = TrainConfig(store_dir=str(store), out_dir=str(out), arch="resnet18", bs=a.bs, epochs=a.epochs, epoch_size=0,
                      lr=3e-3, schedule="one_cycle", progress=False, resume=False, augment=AUG,
                      num_workers=a.workers, seed=0, **model)
    r = train(cfg)
    hist = pd.read_csv(r.folder / "history.csv")
    man = json.loads((r.folder / "preds" / "manifest.json").read_text())
    probs = np.load(r.preds["snap_00"]["valid"]).astype(np.float32)
    labels = np.asarray(man["valid_labels"])
    n_train = len(r.learn.dls.train.source) * a.epochs
    return {"model": label, "valid_map3": man["snapshots"][0]["valid_map3"],
            "valid_top1": float((probs.argmax(1) == labels).mean()), "valid_n": len(labels),
            "train_s": float(hist["train_s"].sum()), "drawings_s": n_train / float(hist["train_s"].sum()),
            "params_M": sum(p.numel() for p in r.learn.model.parameters()) / 1e6}


def run(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_points")
    p.add_argument("--datasets", nargs="+", default=["real", "synthetic"], choices=["real", "synthetic"])
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--bs", type=int, default=128)
    p.add_argument("--size", type=int, default=64, help="image model's size")
    p.add_argument("--points", type=int, default=96)
    p.add_argument("--grid", type=int, default=16)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--no-raw", action="store_true", help="skip the point model on raw timings")
    a = p.parse_args(argv or [])
    import torch

    print(f"point model vs image model: one-cycle {a.epochs} epochs, batch {a.bs}; image palette {a.size} px; "
          f"points {a.points} -> grid {a.grid}; torch threads {torch.get_num_threads()}", flush=True)
    rows = []
    for name, st in stores(a.datasets).items():
        runs = [("image", st["simplified"], dict(variant="palette", size=a.size)),
                ("points", st["simplified"], dict(model="points", points=a.points, grid=a.grid))]
        if "raw" in st and not a.no_raw:
            runs.append(("points, raw timings", st["raw"], dict(model="points", points=a.points, grid=a.grid)))
        base = None
        for label, store, model in runs:
            t0 = time.perf_counter()
            row = {"dataset": name, **_train(label, store, WORK / f"train_{name}_{label.split(',')[0]}"
                                             f"{'_raw' if 'raw' in label else ''}", a, **model)}
            base = base or row
            row["map3_vs_image"] = row["valid_map3"] / base["valid_map3"]
            row["speed_vs_image"] = row["drawings_s"] / base["drawings_s"]
            rows.append(row)
            print(f"  {name:9s} {label:20s} MAP@3 {row['valid_map3']:.3f} ({row['map3_vs_image']:.2f}x) "
                  f"top-1 {row['valid_top1']:.3f}  {row['drawings_s']:7.1f} drawings/s "
                  f"({row['speed_vs_image']:.2f}x)  {row['params_M']:.1f} M params  "
                  f"[{time.perf_counter() - t0:.0f} s]", flush=True)
    table = pd.DataFrame(rows)
    print()
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK.parent / "results_points.json").write_text(json.dumps(
        {"args": vars(a), "rows": rows}, indent=1, default=str))
    return rows


if __name__ == "__main__":
    run(sys.argv[1:])
