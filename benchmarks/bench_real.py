"""Real-data checks of the training recipe (accuracy, not speed).

1. **Variants on real drawings.** ``../shared/quickdraw_sample/raw`` (345 classes, 9,570 real
   drawings with timings) is packed twice: simplified by our Google-exact pipeline, and raw
   (for ``time3``), with the same stratified 20% held out per class (same seed, same rows).
   The same model and schedule are trained on each rendering variant and scored on the
   held-out drawings (MAP@3, top-1).
2. **Sim to real.** A model trained on the synthetic competition (all of ``synth.CLASSES``)
   is scored on the real drawings of the same classes (every sample drawing of them, none of
   which it saw), beside its score on held-out synthetic drawings and the chance level.

The defaults fit a 2-core CPU (resnet18 at 32 px, a one-cycle run of a few epochs: tens of
minutes); ``--size 64 --epochs 12`` is the GPU setting. Results go to
``benchmarks/_work/results_real.json``. Run: ``python -m benchmarks real``.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / "_work" / "real"
SAMPLE = ROOT.parent / "shared" / "quickdraw_sample" / "raw"
VARIANTS = ("mono", "palette", "strokes3", "time3")


def _pack(sources: list[Path], target: Path, **kw) -> None:
    from doodle_utils.data.store import current_manifest, pack

    if current_manifest(target, sources) is None:
        pack(sources, target, workers=1, valid_frac=0.2, seed=0, **kw)


def _train(store: Path, out: Path, variant: str, a) -> dict:
    from doodle_utils.training import TrainConfig, train

    cfg = TrainConfig(store_dir=str(store), out_dir=str(out), arch=a.arch, variant=variant, size=a.size,
                      bs=64, epochs=a.epochs, epoch_size=0, lr=3e-3, schedule="one_cycle", progress=False, resume=False,
                      augment={"flip": 0.5, "rotate": 8.0, "scale": 0.1, "shift": 0.05})
    t0 = time.perf_counter()
    r = train(cfg)
    man = json.loads((r.folder / "preds" / "manifest.json").read_text())
    probs = np.load(r.preds["snap_00"]["valid"]).astype(np.float32)
    labels = np.asarray(man["valid_labels"])
    return {"variant": variant, "valid_map3": man["snapshots"][0]["valid_map3"],
            "valid_top1": float((probs.argmax(1) == labels).mean()), "valid_n": len(labels),
            "seconds": time.perf_counter() - t0, "result": r}


def variants_on_real(a) -> list[dict]:
    sources = sorted(SAMPLE.glob("*.ndjson"))
    _pack(sources, WORK / "store_simplified", kind="simplified")
    _pack(sources, WORK / "store_raw", kind="raw")
    rows = []
    for v in a.variants:
        store = WORK / ("store_raw" if v == "time3" else "store_simplified")
        row = _train(store, WORK / f"train_{v}", v, a)
        row.pop("result")
        rows.append(row)
        print(f"  real sample, {v}: MAP@3 {row['valid_map3']:.3f} top-1 {row['valid_top1']:.3f} "
              f"({row['valid_n']} held-out drawings, {row['seconds']:.0f} s)", flush=True)
    return rows


def sim_to_real(a) -> dict:
    from doodle_utils.data import synth
    from doodle_utils.data.store import Store
    from doodle_utils.metrics import map_at_k
    from doodle_utils.render import RenderSpec
    from doodle_utils.training.loaders import BatchSpec, DoodleDL, Source

    data = WORK / "synth"
    if not (data / "test_simplified.csv").exists():
        synth.make_competition(data, classes=len(synth.CLASSES), per_class=a.synth_per_class, test_per_class=1, seed=0)
    _pack(sorted((data / "train_simplified").glob("*.csv")), WORK / "store_synth", kind="simplified")
    row = _train(WORK / "store_synth", WORK / "train_synth", "palette", a)
    learn = row.pop("result").learn
    syn_words = Store(WORK / "store_synth").words
    real = Store(WORK / "store_simplified")
    real_words = np.asarray(real.words)
    shared = [w for w in syn_words if w in set(real_words)]
    idx = np.flatnonzero(np.isin(real_words[real.labels()], shared))
    to_syn = {w: i for i, w in enumerate(syn_words)}
    labels = np.array([to_syn[w] for w in real_words[real.labels(idx)]])
    src = Source(WORK / "store_simplified", idx=idx, labels=labels)
    dl = DoodleDL(src, BatchSpec(variant="palette", render=RenderSpec(size=a.size), sampling="sequential"), bs=128,
                  device=learn.dls.device)
    probs, _ = learn.get_preds(dl=dl, reorder=False)
    probs = probs.float().numpy()
    k = len(syn_words)
    out = {"classes": k, "shared_with_sample": len(shared), "real_drawings": int(len(idx)),
           "synthetic_valid_map3": row["valid_map3"], "real_map3": map_at_k(probs, labels),
           "real_top1": float((probs.argmax(1) == labels).mean()),
           "chance_map3": (1 + 1 / 2 + 1 / 3) / k if k >= 3 else None, "seconds": row["seconds"]}
    print(f"  sim to real: synthetic held-out MAP@3 {out['synthetic_valid_map3']:.3f}; real drawings of the "
          f"same {len(shared)} classes MAP@3 {out['real_map3']:.3f} (top-1 {out['real_top1']:.3f}; "
          f"chance {out['chance_map3']:.3f}; {len(idx)} drawings)", flush=True)
    return out


def run(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m benchmarks real")
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--synth-per-class", type=int, default=300)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS))
    p.add_argument("--skip-sim", action="store_true")
    a = p.parse_args(argv or [])
    if not SAMPLE.is_dir():
        raise SystemExit(f"{SAMPLE}: the real sample is not there")
    print(f"real-data checks: {a.arch} at {a.size} px, one-cycle {a.epochs} epochs, batch 64")
    out = {"arch": a.arch, "size": a.size, "epochs": a.epochs, "variants": variants_on_real(a)}
    if not a.skip_sim:
        out["sim_to_real"] = sim_to_real(a)
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK.parent / "results_real.json").write_text(json.dumps(out, indent=1, default=str))
    return out


if __name__ == "__main__":
    run()
