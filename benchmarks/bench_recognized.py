"""What to do with the drawings the game did not recognize: keep, drop, down-weight, relabel.

Per data set (the synthetic competition, whose unrecognized drawings are scribbles or
abandoned drawings by construction, and the real sample, whose flags are Google's), one store
with a stratified 20% validation split; resnet18 on ``mono`` at 32 px, SGDR two cycles, the
same seed, is trained four ways: ``keep`` (the baseline, same run), ``drop``, ``downweight``
(weight 0.3) and ``relabel`` (the labels the keep model's last snapshot gives its unrecognized
training drawings where it disagrees with p > 0.9, the 11th place's rule). Every model is
scored on the same validation drawings, which keep the game's labels: MAP@3 on all of them
and on the recognized ones only (closer to a test set labelled by people), ± the standard
error over drawings, and the paired difference to ``keep``. Results go to
``benchmarks/_work/results_recognized.json``. Run: ``python -m benchmarks recognized``, or
``python -m benchmarks.bench_recognized --datasets synthetic``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from .bench_ensemble import AUG, ROOT, competition_store

WORK = ROOT / "benchmarks" / "_work" / "recognized"
MODES = ("keep", "drop", "downweight", "relabel")


def _train(store: Path, out: Path, a, **choice) -> Path:
    from doodle_utils.training import TrainConfig, train

    cfg = TrainConfig(store_dir=str(store), out_dir=str(out), arch="resnet18", variant="mono", size=32, bs=64,
                      epoch_size=0, lr=3e-3, schedule="sgdr", cycles=2, cycle_len=a.cycle_len, progress=False,
                      resume=False, augment=AUG, seed=0, **choice)
    return train(cfg).folder


def run(argv: list[str] | None = None) -> list[dict]:
    from doodle_utils.data.store import Store
    from doodle_utils.metrics import ap_at_k
    from doodle_utils.postprocess.ensemble import load_runs
    from doodle_utils.training.relabel import relabel

    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_recognized")
    p.add_argument("--datasets", nargs="+", default=["synthetic", "real"], choices=["real", "synthetic"])
    p.add_argument("--cycle-len", type=int, default=1, help="epochs per SGDR cycle (two cycles)")
    p.add_argument("--weight", type=float, default=0.3, help="downweight's sampling weight")
    p.add_argument("--threshold", type=float, default=0.9, help="relabel's probability threshold")
    a = p.parse_args(argv or [])
    rows = []
    for name in a.datasets:
        t0 = time.perf_counter()
        store = competition_store(name, WORK, "simplified", blend_frac=0.0)
        st = Store(store)
        recognized = np.asarray(st.recognized)[st.valid_idx] != 0
        train_rec = np.asarray(st.recognized)[st.train_idx]
        runs = {"keep": _train(store, WORK / f"train_{name}_keep", a)}
        runs["drop"] = _train(store, WORK / f"train_{name}_drop", a, unrecognized="drop")
        runs["downweight"] = _train(store, WORK / f"train_{name}_downweight", a, unrecognized="downweight",
                                    unrecognized_weight=a.weight)
        done = relabel(runs["keep"], a.threshold, out=WORK / f"labels_{name}.npy")
        runs["relabel"] = _train(store, WORK / f"train_{name}_relabel", a, unrecognized="relabel",
                                 labels_file=done["file"])
        base = None
        for mode in MODES:
            m = load_runs([runs[mode]])
            probs, labels = m.members[-1].valid, m.labels  # the last snapshot
            ap = ap_at_k(probs, labels)
            base = ap if base is None else base
            diff = ap - base
            row = {"dataset": name, "mode": mode, "valid_map3": float(ap.mean()),
                   "se": float(ap.std(ddof=1) / np.sqrt(len(ap))),
                   "recognized_map3": float(ap[recognized].mean()),
                   "vs_keep": float(diff.mean()), "se_diff": float(diff.std(ddof=1) / np.sqrt(len(ap))),
                   "vs_keep_recognized": float(diff[recognized].mean()),
                   "se_diff_recognized": float(diff[recognized].std(ddof=1) / np.sqrt(recognized.sum())),
                   "valid_n": len(ap), "valid_recognized_n": int(recognized.sum()),
                   "train_n": len(train_rec), "train_unrecognized_n": int((train_rec == 0).sum())}
            if mode == "relabel":
                row["relabelled"] = done["changed"]
            rows.append(row)
        print(f"  {name}: trained and scored in {time.perf_counter() - t0:.0f} s", flush=True)
    print("\nunrecognized training drawings: MAP@3 of the last snapshot on validation (± standard error; "
          "difference to keep, paired)")
    print(f"{'data':<10} {'mode':<11} {'all':>13} {'vs keep':>15} {'recognized only':>16} {'vs keep':>15} {'changed':>8}")
    for r in rows:
        print(f"{r['dataset']:<10} {r['mode']:<11} {r['valid_map3']:.3f} ± {r['se']:.3f} "
              f"{r['vs_keep']:+.3f} ± {r['se_diff']:.3f} {r['recognized_map3']:>16.3f} "
              f"{r['vs_keep_recognized']:+.3f} ± {r['se_diff_recognized']:.3f} {r.get('relabelled', ''):>8}")
    for name in a.datasets:
        r = next(x for x in rows if x["dataset"] == name)
        print(f"{name}: {r['train_unrecognized_n']} of {r['train_n']} training and "
              f"{r['valid_n'] - r['valid_recognized_n']} of {r['valid_n']} validation drawings unrecognized")
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK.parent / "results_recognized.json").write_text(json.dumps({"args": vars(a), "rows": rows}, indent=1))
    return rows


if __name__ == "__main__":
    run(sys.argv[1:])
