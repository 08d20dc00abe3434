"""Test-time augmentation: what averaging mirrored or stroke-dropped views adds (accuracy).

One model per data set, trained once with the recipe's augmentations (mirror with p 0.5,
rotate, scale, shift), then its held-out drawings predicted with each set of test-time views
(``training.predict_views``; none is the baseline of the same run):

1. the real sample (``../shared/quickdraw_sample/raw``, 345 classes, the stratified 20%
   hold-out, ~22 training drawings per class), simplified by the suite's Google-exact pipeline;
2. a synthetic competition (12 classes, 200 per class, 20% held out).

Nothing is chosen on these hold-outs: every view set is reported. Results go to
``benchmarks/_work/results_tta.json``. Run: ``python -m benchmarks tta`` (CPU: ~10 minutes).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / "_work" / "tta"
SAMPLE = ROOT.parent / "shared" / "quickdraw_sample" / "raw"
VIEW_SETS = ((), ("flip",), ("dropout",), ("flip", "dropout"))


def _model(store: Path, out: Path, a):
    from doodle_utils.training import TrainConfig, train

    cfg = TrainConfig(store_dir=str(store), out_dir=str(out), arch=a.arch, variant=a.variant, size=a.size, bs=64,
                      schedule="one_cycle", epochs=a.epochs, epoch_size=0, lr=3e-3, progress=False, resume=False,
                      augment={"flip": 0.5, "rotate": 8.0, "scale": 0.1, "shift": 0.05})
    t0 = time.perf_counter()
    result = train(cfg, predict=False)
    return result.learn, time.perf_counter() - t0


def _views(learn, name: str, seconds: float) -> list[dict]:
    from doodle_utils.metrics import map_at_k
    from doodle_utils.training import predict_views

    valid = learn.dls.valid
    labels = valid.source.labels
    rows = []
    for views in VIEW_SETS:
        t0 = time.perf_counter()
        probs = predict_views(learn, valid, views).numpy()
        rows.append({"data": name, "views": "+".join(views) or "none", "valid_map3": map_at_k(probs, labels),
                     "valid_top1": float((probs.argmax(1) == labels).mean()), "valid_n": len(labels),
                     "predict_s": time.perf_counter() - t0, "train_s": seconds})
    return rows


def run(argv: list[str] | None = None) -> list[dict]:
    from doodle_utils.data.store import current_manifest, pack, pack_competition
    from doodle_utils.data.synth import make_competition

    p = argparse.ArgumentParser(prog="python -m benchmarks tta")
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--variant", default="mono")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--epochs", type=int, default=5)
    a = p.parse_args(argv or [])
    rows = []
    sources = sorted(SAMPLE.glob("*.ndjson"))
    if sources:
        store = WORK / "real_store"
        if current_manifest(store, sources) is None:
            pack(sources, store, workers=1, valid_frac=0.2, seed=0, kind="simplified")
        learn, s = _model(store, WORK / "real_run", a)
        rows += _views(learn, "real sample, 345 classes", s)
    else:
        print(f"(no real sample at {SAMPLE}: synthetic only)")
    comp = WORK / "synth"
    if not (comp / "store" / "train" / "manifest.json").exists():
        make_competition(comp / "data", classes=12, per_class=200, test_per_class=2, seed=0)
        pack_competition(comp / "data", comp / "store", workers=1, valid_frac=0.2, seed=0)
    learn, s = _model(comp / "store" / "train", WORK / "synth_run", a)
    rows += _views(learn, "synthetic, 12 classes", s)

    print(f"\ntest-time augmentation: {a.arch} {a.variant} {a.size} px, one-cycle {a.epochs} epochs, one seed")
    print(f"{'data':<26} {'views':<14} {'MAP@3':>7} {'vs none':>8} {'top-1':>7} {'n':>6} {'predict s':>10}")
    base = {}
    for r in rows:
        base.setdefault(r["data"], r["valid_map3"])
        print(f"{r['data']:<26} {r['views']:<14} {r['valid_map3']:>7.3f} {r['valid_map3'] / base[r['data']]:>8.3f} "
              f"{r['valid_top1']:>7.3f} {r['valid_n']:>6} {r['predict_s']:>10.1f}")
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK.parent / "results_tta.json").write_text(json.dumps(rows, indent=1))
    return rows
