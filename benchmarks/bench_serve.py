"""Serving latency on the CPU: PyTorch eager against ONNX Runtime, one drawing and a batch of 64.

The models are the GPU profiles' shapes (resnet18 on ``palette`` at 64 px; the point model
with 128 points on a 32² grid), with a 345-class head (the real sample's classes,
``../shared/quickdraw_sample/raw``), trained for a few steps only (latency does not depend on
the weights), exported
with ``doodle_utils.prediction.export_onnx``. Timed: the model's forward pass on the same
prepared inputs (median of repeats after warm-up), and, apart, preparing the inputs from
stroke lists (simplification, rendering or point features) with the suite's loader, and with
the plain-numpy reference a non-Python client ports (``doodle_utils.reference_preprocessing``,
one drawing at a time). PyTorch eager is the baseline measured in the same run. Results go to
``benchmarks/_work/results_serve.json``. Run: ``python -m benchmarks serve``.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / "_work" / "serve"
SAMPLE = ROOT.parent / "shared" / "quickdraw_sample" / "raw"
REPEATS = 30


def _median_ms(fn, repeats: int = REPEATS) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1000)


def _run(name: str, extra: dict) -> Path:
    from doodle_utils.data.store import current_manifest, pack
    from doodle_utils.training import TrainConfig, train

    sources = sorted(SAMPLE.glob("*.ndjson"))
    if not sources:
        raise SystemExit(f"the serving benchmark needs the real sample at {SAMPLE}")
    store = WORK / "store"
    if current_manifest(store, sources) is None:
        pack(sources, store, workers=1, valid_frac=0.2, seed=0, kind="simplified")
    cfg = TrainConfig(store_dir=str(store), out_dir=str(WORK / name), epochs=1, epoch_size=64,
                      schedule="one_cycle", progress=False, resume=False, **extra)
    return train(cfg, predict=False).folder


def run(argv: list[str] | None = None) -> list[dict]:
    from fastai.torch_core import get_model

    from doodle_utils import prediction, reference_preprocessing

    rows = []
    models = {"image, palette 64 px": dict(variant="palette", size=64),
              "points, 128 on 32²": dict(model="points", points=128, grid=32)}
    for label, extra in models.items():
        folder = _run(label.split(",")[0], extra)
        onnx_file = prediction.export_onnx(folder, WORK / f"{label.split(',')[0]}.onnx")
        learn, ort_model = prediction.load_model(folder), prediction.load_model(onnx_file)
        model = get_model(learn.model).eval()
        names = ort_model.meta["inputs"]
        rng = np.random.default_rng(0)
        strokes = [[[sorted(rng.integers(0, 255, 6).tolist()), rng.integers(0, 255, 6).tolist()] for _ in range(4)]
                   for _ in range(64)]
        for n in (1, 64):
            prep = _median_ms(lambda: learn.dls.test_dl(strokes[:n]).one_batch(), 10)  # parse, simplify, draw
            reference = _median_ms(lambda: reference_preprocessing.model_inputs(strokes[:n], ort_model.meta), 10)
            inputs = learn.dls.test_dl(strokes[:n]).one_batch()[:len(names)]
            feed = {k: t.numpy() for k, t in zip(names, inputs)}
            with torch.no_grad():
                eager = _median_ms(lambda: model(*inputs))
            ort = _median_ms(lambda: ort_model.session.run(None, feed))
            rows.append({"model": label, "batch": n, "prepare_ms": prep, "reference_prepare_ms": reference,
                         "pytorch_eager_ms": eager,
                         "onnxruntime_ms": ort})
    print(f"\nserving latency, CPU ({torch.get_num_threads()} torch threads), median of {REPEATS}")
    print(f"{'model':<22} {'batch':>5} {'prepare ms':>11} {'numpy ref ms':>13} {'PyTorch ms':>11} {'ORT ms':>8} "
          f"{'ORT vs PyTorch':>15}")
    for r in rows:
        print(f"{r['model']:<22} {r['batch']:>5} {r['prepare_ms']:>11.2f} {r['reference_prepare_ms']:>13.2f} "
              f"{r['pytorch_eager_ms']:>11.2f} "
              f"{r['onnxruntime_ms']:>8.2f} {r['pytorch_eager_ms'] / r['onnxruntime_ms']:>14.2f}x")
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK.parent / "results_serve.json").write_text(json.dumps(rows, indent=1))
    return rows
