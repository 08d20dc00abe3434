"""Ensembles scored apart from where they are chosen: best single model, weighted arithmetic
and geometric means and the LightGBM stacker, on the real sample and the synthetic competition.

Each data set is packed as a timed store (Google's simplified points with their times, from the
raw files) with a stratified validation split (20%) and a stratified blend split (15%,
disjoint); two models train on the rest with SGDR (two cycles, so two snapshots each):
resnet18 on ``mono`` at ``--size`` px (the real-data benchmark's best variant at 32 px) and
the point model (``--points`` points on a ``--grid``² grid). Notebook 04's choices are made
on the blend split (the best single snapshot, the greedy weights of each mean) and every row
is scored on the validation split, which no choice saw. The stacker (notebook 04's ``stack``:
top-10 candidates of the arithmetic mean, the drawings' metadata from the store) trains on the
blend split and is scored on validation too. Uncertainty: the standard error of
each row's MAP@3 over drawings, and of its paired difference to the best single model (the
same drawings). The best single model is the baseline of the same run. Results go to
``benchmarks/_work/results_ensemble.json``. Run: ``python -m benchmarks ensemble``, or
``python -m benchmarks.bench_ensemble --datasets synthetic --cycle-len 1`` (7 minutes on the
2-core VM beside another job). The real sample is slow on 2 cores: beside another job its
image model took 2–4 minutes an epoch and its point model 6 (four epochs each); a GPU runs it
in minutes.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / "_work" / "ensemble"
SAMPLE = ROOT.parent / "shared" / "quickdraw_sample" / "raw"
AUG = {"flip": 0.5, "rotate": 8.0, "scale": 0.1, "shift": 0.05}


def competition_store(name: str, work: Path, kind: str = "timed", blend_frac: float = 0.15) -> Path:
    """``name`` ("real": the real sample's raw files; else the synthetic competition, 24 classes
    × 200, made in ``work``) packed into ``work`` as a ``kind`` store with a stratified 20%
    validation split and a ``blend_frac`` blend split (packed again only when not current)."""
    from doodle_utils.data.store import current_manifest, find_sources, pack

    if name == "real":
        if not SAMPLE.is_dir():
            raise SystemExit(f"{SAMPLE}: the real sample is not there (use --datasets synthetic)")
        sources = sorted(SAMPLE.glob("*.ndjson"))
    else:
        from doodle_utils.data import synth

        data = work / "synth"
        if not (data / "test_simplified.csv").exists():
            synth.make_competition(data, classes=len(synth.CLASSES), per_class=200, test_per_class=1, seed=0)
        sources = find_sources(data, raw=kind != "simplified")[0]  # train_raw/ for a store with times
    target = work / f"store_{name}_{kind}"
    if current_manifest(target, sources, kind, 0.2, 0, blend_frac=blend_frac) is None:
        pack(sources, target, workers=1, valid_frac=0.2, blend_frac=blend_frac, seed=0, kind=kind, progress=None)
    return target


def _train(store: Path, out: Path, a, **model) -> Path:
    from doodle_utils.training import TrainConfig, train

    cfg = TrainConfig(store_dir=str(store), out_dir=str(out), arch="resnet18", bs=64, epoch_size=0, lr=3e-3,
                      schedule="sgdr", cycles=2, cycle_len=a.cycle_len, progress=False, resume=False, augment=AUG,
                      seed=0, **model)
    return train(cfg).folder


def _rows(members, name: str) -> list[dict]:
    from doodle_utils.metrics import ap_at_k
    from doodle_utils.postprocess import ensemble, stacking

    labels, valid = members.labels, [m.valid for m in members.members]
    best, _ = ensemble.choose(members)  # on the blend split, as notebook 04
    rows = [("best single (" + members.members[best].name + ")", valid[best])]
    weights = {}
    for mean in ("arith", "geom"):
        weights[mean] = w = ensemble.choose(members, mean)[1]
        rows.append((f"weighted {'arithmetic' if mean == 'arith' else 'geometric'} mean "
                     f"({', '.join(f'{x:g}' for x in w)})", ensemble.combine(valid, w, mean)))
    stacked = stacking.stack(members, weights["arith"], "arith", 10, stacking.members_meta(members))
    rows.append((f"stacker (LightGBM, top-10, {stacked.stacker.rounds} rounds)", stacked.valid))
    base = ap_at_k(rows[0][1], labels)
    out = []
    for label, probs in rows:
        ap = ap_at_k(probs, labels)
        diff = ap - base
        out.append({"dataset": name, "row": label, "valid_map3": float(ap.mean()),
                    "se": float(ap.std(ddof=1) / np.sqrt(len(ap))), "vs_best_single": float(diff.mean()),
                    "se_diff": float(diff.std(ddof=1) / np.sqrt(len(ap))), "valid_n": len(ap),
                    "blend_n": len(members.blend_labels)})
    return out


def run(argv: list[str] | None = None) -> list[dict]:
    from doodle_utils.postprocess import ensemble

    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_ensemble")
    p.add_argument("--datasets", nargs="+", default=["real", "synthetic"], choices=["real", "synthetic"])
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--points", type=int, default=64)
    p.add_argument("--grid", type=int, default=16)
    p.add_argument("--cycle-len", type=int, default=2, help="epochs per SGDR cycle (two cycles)")
    a = p.parse_args(argv or [])
    rows = []
    for name in a.datasets:
        t0 = time.perf_counter()
        store = competition_store(name, WORK)
        runs = [_train(store, WORK / f"train_{name}_image_c{a.cycle_len}", a, variant="mono", size=a.size),
                _train(store, WORK / f"train_{name}_points_c{a.cycle_len}", a, model="points", points=a.points, grid=a.grid)]
        members = ensemble.load_runs(runs)
        rows += _rows(members, name)
        print(f"  {name}: trained and scored in {time.perf_counter() - t0:.0f} s", flush=True)
    print("\nensembles chosen on the blend split, scored on validation (MAP@3 ± standard error)")
    print(f"{'data':<10} {'row':<62} {'MAP@3':>13} {'vs best single':>17}")
    for r in rows:
        print(f"{r['dataset']:<10} {r['row'][:62]:<62} {r['valid_map3']:.3f} ± {r['se']:.3f} "
              f"{r['vs_best_single']:+.3f} ± {r['se_diff']:.3f}")
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK.parent / "results_ensemble.json").write_text(json.dumps({"args": vars(a), "rows": rows}, indent=1))
    return rows


if __name__ == "__main__":
    run(sys.argv[1:])
