"""Training throughput: fastai end to end from the packed store against the model's own limit.

For each (model, size) — on a GPU resnet18@64, the point model (128 points, 32² grid, resnet18
trunk), resnet34@128 and seresnext26d_32x4d@128; on a CPU-only machine resnet18@32
(informational) — measured in one run, batch 512 on a GPU (64 on a CPU):

* ``limit``: training steps (forward, loss, backward, PyTorch Adam step) on one batch already
  on the device — bf16 autocast and channels-last on a GPU, fp32 on a CPU — eager, and with the
  model compiled (``torch.compile``, mode :data:`COMPILE_MODE`: CUDA graphs on a GPU);
* ``e2e``: ``doodle_utils.training`` (fastai ``Learner.fit``, ``opt="adamw"``) sampling from the
  store, in variants: ``host`` (today's default: gathered and augmented in 8 loader workers,
  rendered on the GPU by the Triton kernel; on a CPU rendered with OpenCV in the main
  process), ``compiled`` (the same with ``compile=COMPILE_MODE``), ``resident`` (the store in
  GPU memory: gathered, augmented and rendered there, :mod:`doodle_utils.training.resident`)
  and ``resident+compiled``; each against the better of the two limits;
* ``loader``: the images/s the training loader alone delivers on the device (GPU only);
* ``profile``: a ``torch.profiler`` summary of 20 steady steps of the first model's best
  end-to-end variant: GPU-busy share of the wall time and the top operations (where the time
  goes when the target is missed);
* ``host``: the training loop's host time per step on the CPU (one thread, a model whose compute
  is negligible, one real batch given again and again): a plain PyTorch loop, fastai's
  ``Learner.fit`` with its defaults, and the suite's loop with its callbacks (the target: at
  most 2x the plain loop).

Images/s are counted over the training phase of an epoch (validation cancelled; 100 batches
on a GPU), after a warm-up epoch (which also compiles): in the steady state (from the 10th
batch to the end) and over the whole epoch (which also pays for starting the loader's
workers). The projected time of one epoch of Kaggle's 49.7M drawings is from the best steady
rate. On a GPU the peak memory of the limit run is reported per batch size, and resnet18@64
also at batch 1,024 (a bigger batch for a small model; the learning rate would scale with it).
Data: a synthetic competition of Kaggle's 340 classes (``make_kaggle_size`` at scale 0.0004,
~20k drawings with times, packed ``timed`` so the point model can read it), made once into
``benchmarks/_work/train_store``. Results go to ``benchmarks/_work/results_train.json``, and
to ``$OUT`` when that is set (the device machine). Run: ``python -m benchmarks train``;
``DOODLE_BENCH_MODELS=resnet18@64,points@128`` picks models, ``DOODLE_BENCH_SECONDS=N`` stops
starting models after N seconds (one device call must end inside its limit).
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / "_work"
GPU_CONFIGS = (("resnet18", 64), ("points", 128), ("resnet34", 128), ("seresnext26d_32x4d", 128))
CPU_CONFIGS = (("resnet18", 32),)
POINT_TRUNK, POINT_GRID = "resnet18", 32
WARM_BATCHES = 10  # batches of an epoch before the steady-state clock starts
KAGGLE_TRAIN = 49_707_579  # Kaggle's training drawings (an epoch of the full-size run)
COMPILE_MODE = "reduce-overhead" if torch.cuda.is_available() else "default"


def _store() -> Path:
    """The benchmark's training store: 340 classes, ~20k drawings with times (made once)."""
    from doodle_utils.data.fullsize import make_kaggle_size
    from doodle_utils.data.store import pack_competition

    folder = WORK / "train_store"
    store = folder / "store" / "train"
    if not (store / "manifest.json").exists():
        shutil.rmtree(folder, ignore_errors=True)
        make_kaggle_size(folder / "data", scale=0.0004, raw_fraction=1.0, seed=0)
        pack_competition(folder / "data", folder / "store", workers=min(8, os.cpu_count() or 1), valid_frac=0.1,
                         seed=0, kind="timed")
    return store


def _model(arch: str, size: int, classes: int = 340) -> torch.nn.Module:
    from doodle_utils.models import FEATURES
    from doodle_utils.models import DoodleNet, PointCNN

    if arch == "points":
        return PointCNN(POINT_TRUNK, classes, len(FEATURES), POINT_GRID)
    return DoodleNet(arch, classes, 3)


def _inputs(arch: str, size: int, bs: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    """A batch of the model's inputs on ``device`` (random values; the step's cost does not depend on them)."""
    from doodle_utils.models import FEATURES

    if arch == "points":
        return torch.rand(bs, size, len(FEATURES), device=device), torch.ones(bs, size, dtype=torch.bool, device=device)
    x = torch.rand(bs, 3, size, size, device=device)
    return (x.contiguous(memory_format=torch.channels_last),) if device.type == "cuda" else (x,)


def step_limit(arch: str, size: int, bs: int, device: torch.device, steps: int,
               compile: str = "off") -> tuple[float, float, float]:
    """(images/s, peak GiB, seconds to compile) of training steps on one batch already on
    ``device``, the model eager or compiled in ``compile`` mode."""
    model = _model(arch, size).to(device)
    cuda = device.type == "cuda"
    if cuda and arch != "points":
        model = model.to(memory_format=torch.channels_last)
    if compile != "off":
        model.compile(mode=compile)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    xs = _inputs(arch, size, bs, device)
    y = torch.randint(0, 340, (bs,), device=device)

    def step():
        if compile != "off":
            torch.compiler.cudagraph_mark_step_begin()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            loss = torch.nn.functional.cross_entropy(model(*xs), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    t0 = time.perf_counter()
    step()  # compiles, when compiled
    if cuda:
        torch.cuda.synchronize()
    compile_s = time.perf_counter() - t0 if compile != "off" else 0.0
    for _ in range(3):
        step()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if cuda:
        torch.cuda.synchronize()
    rate = steps * bs / (time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated() / 2 ** 30 if cuda else float("nan")
    return rate, peak, compile_s


def _config(arch: str, size: int, bs: int, steps: int, variant: str, workers: int):
    from doodle_utils.training import TrainConfig

    cuda = torch.cuda.is_available()
    model = dict(model="points", arch=POINT_TRUNK, points=size, grid=POINT_GRID) if arch == "points" else \
        dict(arch=arch, size=size, channels_last=cuda)
    return TrainConfig(store_dir=str(_store()), out_dir=str(WORK / "train"), bs=bs, epoch_size=bs * steps,
                       schedule="one_cycle", epochs=1, lr=1e-3, augment={}, render_on="gpu" if cuda else "cpu",
                       num_workers=0 if "resident" in variant else workers, progress=False, resume=False,
                       opt="adamw", compile=COMPILE_MODE if "compiled" in variant else "off",
                       resident="resident" in variant, pretrained_path="", **model)


def end_to_end(arch: str, size: int, bs: int, steps: int, variant: str, workers: int,
               profile_steps: int = 0) -> dict:
    """Training images/s of ``doodle_utils.training`` in an epoch of ``steps`` batches: ``steady``
    from batch ``WARM_BATCHES`` to the end, ``epoch`` the whole epoch (worker start included).
    With ``profile_steps``, also a ``torch.profiler`` summary of that many steady steps."""
    from fastai.callback.core import Callback, CancelValidException

    from doodle_utils.training import build_learner, make_loaders, pick_device

    def sync():
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    class Clock(Callback):
        order = 100

        def before_train(self):
            sync()
            self.t0 = time.perf_counter()

        def before_batch(self):
            if self.training and self.iter == WARM_BATCHES:
                sync()
                self.t_warm = time.perf_counter()

        def after_train(self):
            sync()
            now = time.perf_counter()
            self.times.append((now - self.t0, now - self.t_warm))

        def before_validate(self):
            raise CancelValidException

    cfg = _config(arch, size, bs, steps, variant, workers)
    dls, _ = make_loaders(cfg, pick_device())
    clock = Clock()
    clock.times = []
    learn = build_learner(cfg, dls, len(dls.train.source.countries), extra_cbs=[clock], announce_device=False)
    learn.fit(2, 1e-3)  # the first epoch warms up (compiling, cuDNN autotuning, worker start)
    whole, steady = clock.times[-1]
    out = {"steady": bs * (steps - WARM_BATCHES) / steady, "epoch": bs * steps / whole}
    if profile_steps:
        out["profile"] = _profile(learn, profile_steps)
    return out


def _profile(learn, steps: int) -> dict:
    """``torch.profiler`` over ``steps`` training steps of ``learn`` (after ``WARM_BATCHES``):
    wall time per step, the device's busy share (its kernels' time over the wall time) and the
    top operations by device and by host time."""
    from fastai.callback.core import Callback, CancelFitException
    from torch.profiler import ProfilerActivity, profile

    cuda = torch.cuda.is_available()

    class Window(Callback):
        order = 101

        def before_batch(self):
            if self.training and self.iter == WARM_BATCHES:
                if cuda:
                    torch.cuda.synchronize()
                self.prof.__enter__()
                self.t0 = time.perf_counter()

        def after_batch(self):
            if self.training and self.iter == WARM_BATCHES + steps - 1:
                if cuda:
                    torch.cuda.synchronize()
                self.wall = time.perf_counter() - self.t0
                self.prof.__exit__(None, None, None)
                raise CancelFitException

    steps = min(steps, len(learn.dls.train) - WARM_BATCHES)  # the window ends inside the epoch
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    win = Window()
    win.prof = profile(activities=acts)
    learn.fit(1, 1e-3, cbs=[win])
    events = win.prof.key_averages()
    dev_us = sum(e.self_device_time_total for e in events) if cuda else 0.0
    key = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    top = sorted(events, key=lambda e: e.self_device_time_total if cuda else e.self_cpu_time_total, reverse=True)
    return {"steps": steps, "ms_per_step": win.wall / steps * 1e3,
            "device_busy": dev_us / 1e6 / win.wall if cuda else None,
            "top_device" if cuda else "top_host": [(e.key, round((e.self_device_time_total if cuda else
                                                                   e.self_cpu_time_total) / steps / 1e3, 3))
                                                   for e in top[:12]],
            "top_host_total": [(e.key, round(e.cpu_time_total / steps / 1e3, 3))
                               for e in sorted(events, key=lambda e: e.cpu_time_total, reverse=True)[:12]],
            "table": events.table(sort_by=key, row_limit=15)}


def loader_only(arch: str, size: int, bs: int, steps: int, variant: str, workers: int) -> float:
    """Images/s the training loader delivers on the device with no model (second epoch)."""
    from doodle_utils.training import make_loaders, pick_device

    dls, _ = make_loaders(_config(arch, size, bs, steps, variant, workers), pick_device())
    rate = 0.0
    for _ in range(2):
        t0 = time.perf_counter()
        for b in dls.train:
            pass
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        rate = bs * steps / (time.perf_counter() - t0)
    return rate


HOST_STEPS = 400  # timed training steps per loop (host time per step)
HOST_REPEATS = 3  # timed passes of each loop; the fastest is kept (other work on the machine only slows one)


def _host_store() -> Path:
    """A small synthetic competition's training store for the host-time rows (made once)."""
    from doodle_utils.data.store import pack_competition
    from doodle_utils.data.synth import make_competition

    folder = WORK / "host"
    if not (folder / "store" / "train" / "manifest.json").exists():
        make_competition(folder / "data", classes=8, per_class=40, test_per_class=2, seed=0)
        pack_competition(folder / "data", folder / "store", workers=1, valid_frac=0.2, seed=0)
    return folder / "store" / "train"


class _Tiny(torch.nn.Module):
    """A model whose compute is negligible: the image's channel means through one linear layer."""

    def __init__(self, classes: int):
        super().__init__()
        self.fc = torch.nn.Linear(3, classes)

    def forward(self, x: torch.Tensor, country: torch.Tensor | None = None) -> torch.Tensor:
        return self.fc(x.mean(dim=(2, 3)))


class _Repeat:
    """A training loader that yields one real batch ``steps`` times; every other attribute is
    the real loader's (the suite's callbacks read and set them)."""

    def __init__(self, dl, batch, steps: int):
        self.__dict__.update(_dl=dl, _batch=batch, _steps=steps)

    def __iter__(self):
        return (self._batch for _ in range(self._steps))

    def __len__(self) -> int:
        return self._steps

    def __getattr__(self, name):
        return getattr(self._dl, name)

    def __setattr__(self, name, value):
        setattr(self._dl, name, value)


def host_time(bs: int = 512, steps: int = HOST_STEPS) -> list[dict]:
    """Host time per training step with a model whose compute is negligible, one thread: a plain
    PyTorch loop, fastai's ``Learner.fit`` with its default callbacks, and the suite's training
    loop (:func:`doodle_utils.training.build_learner` with the callbacks a run adds: epoch seed,
    snapshots, checkpoint, history, the SGDR schedule, the metrics) on the same real batch."""
    import tempfile
    from functools import partial

    from fastai.callback.core import Callback, CancelValidException
    from fastai.learner import Learner
    from fastai.losses import CrossEntropyLossFlat
    from fastai.optimizer import OptimWrapper

    from doodle_utils.training import TrainConfig, build_learner, make_loaders
    from doodle_utils.training.callbacks import Checkpoint, EpochSeed, History, Snapshots
    from doodle_utils.training.fit import _sgdr_scheduler

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    WORK.mkdir(parents=True, exist_ok=True)
    out = Path(tempfile.mkdtemp(prefix="host_", dir=WORK))
    cfg = TrainConfig(store_dir=str(_host_store()), out_dir=str(out), arch="resnet18", size=16, bs=bs,
                      epoch_size=bs * steps, cycles=1, lr=1e-3, augment={}, render_on="cpu", num_workers=0,
                      progress=False, channels_last=False, resume=False, opt="adamw", precision="fp32",
                      pretrained_path="")
    dls, _ = make_loaders(cfg, torch.device("cpu"))
    batch = next(iter(dls.train))
    classes = len(dls.train.source.words)

    class Clock(Callback):
        order = 100

        def before_train(self):
            self.t0 = time.perf_counter()

        def after_train(self):
            self.seconds.append(time.perf_counter() - self.t0)

        def before_validate(self):
            raise CancelValidException

    def fastai_loop(learn, sgdr: bool) -> float:
        clock = Clock()
        clock.seconds = []
        learn.dls.loaders[0] = _Repeat(learn.dls.loaders[0], batch, steps)
        learn.add_cb(clock)
        for _ in range(1 + HOST_REPEATS):  # the first epoch warms up
            learn.fit(1, 1e-3, cbs=_sgdr_scheduler(cfg) if sgdr else None)
        return min(clock.seconds[1:]) / steps

    def plain() -> float:
        torch.manual_seed(0)
        model = _Tiny(classes)
        opt = torch.optim.AdamW(model.parameters(), 1e-3)
        *xb, yb = batch
        loss_func = torch.nn.CrossEntropyLoss()
        seconds = []
        for _ in range(1 + HOST_REPEATS):  # the first pass warms up
            t0 = time.perf_counter()
            for _ in range(steps):
                loss = loss_func(model(*xb), yb)
                loss.backward()
                opt.step()
                opt.zero_grad()
            seconds.append(time.perf_counter() - t0)
        return min(seconds[1:]) / steps

    rows = []
    try:
        rows.append({"loop": "plain PyTorch (forward, loss, backward, AdamW step, zero_grad)", "s": plain()})
        adamw = partial(OptimWrapper, opt=torch.optim.AdamW, betas=(0.9, 0.99), eps=1e-5)  # fastai's own wrapper
        learn = Learner(dls, _Tiny(classes), loss_func=CrossEntropyLossFlat(), opt_func=adamw, path=out)
        learn.remove_cbs([cb for cb in learn.cbs if type(cb).__name__ == "ProgressCallback"])
        rows.append({"loop": "fastai Learner.fit, its default callbacks", "s": fastai_loop(learn, False)})
        dls, _ = make_loaders(cfg, torch.device("cpu"))
        cbs = [EpochSeed(), Snapshots(out / "snapshots", cfg.snapshot_epochs()), Checkpoint(out, "host", [])]
        learn = build_learner(cfg, dls, len(dls.train.source.countries), cbs, announce_device=False)
        learn.add_cb(History(out / "history.csv", keep=False, echo=False))
        learn.model = _Tiny(classes)
        rows.append({"loop": "the suite's training loop (its callbacks, SGDR schedule, metrics)", "s": fastai_loop(learn, True)})
    finally:
        torch.set_num_threads(threads)
        shutil.rmtree(out, ignore_errors=True)  # the run folder of the timed loops (its checkpoint, history)
    for r in rows:
        r["us_per_step"] = r.pop("s") * 1e6
        r["ratio"] = r["us_per_step"] / rows[0]["us_per_step"]
    return rows


def _selected(configs) -> list[tuple[str, int]]:
    """``configs``, or the ones ``DOODLE_BENCH_MODELS`` names (``arch@size``, comma-separated)."""
    want = os.environ.get("DOODLE_BENCH_MODELS")
    if not want:
        return list(configs)
    picked = []
    for item in want.split(","):
        arch, _, size = item.strip().partition("@")
        if not size.isdigit():
            raise SystemExit(f"DOODLE_BENCH_MODELS: {item!r} is not ARCH@SIZE (e.g. resnet18@64, points@128)")
        picked.append((arch, int(size)))
    return picked


def _save(out: dict) -> None:
    WORK.mkdir(parents=True, exist_ok=True)
    text = json.dumps(out, indent=1)
    (WORK / "results_train.json").write_text(text)
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "results_train.json").write_text(text)


def run() -> dict:
    t_start = time.perf_counter()
    budget = float(os.environ.get("DOODLE_BENCH_SECONDS", "inf"))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cuda = device.type == "cuda"
    name = torch.cuda.get_device_name() if cuda else platform.processor() or platform.machine()
    workers = min(8, os.cpu_count() or 1) if cuda else 0
    bs, steps, e2e_steps = (512, 30, 100) if cuda else (64, 12, WARM_BATCHES + 8)
    variants = ("host", "compiled", "resident", "resident+compiled") if cuda else ("host", "compiled")
    _store()
    out: dict = {"device": name, "compile_mode": COMPILE_MODE, "rows": [], "memory": [], "skipped": []}
    out["host"] = host_time()
    print(f"\nhost time per training step, one thread, a model of negligible compute, batch 512 "
          f"({platform.processor() or platform.machine()}):")
    print("| loop | µs a step | × plain PyTorch |\n| --- | ---: | ---: |")
    for r in out["host"]:
        print(f"| {r['loop']} | {r['us_per_step']:,.0f} | {r['ratio']:.2f} |")
    _save(out)
    for i, (arch, size) in enumerate(_selected(GPU_CONFIGS if cuda else CPU_CONFIGS)):
        if time.perf_counter() - t_start > budget:
            out["skipped"].append(f"{arch}@{size}")
            continue
        for b in (bs, 1024) if cuda and (arch, size) == ("resnet18", 64) else (bs,):
            row: dict = {"model": arch, "size": size, "bs": b}
            row["limit"], row["peak_gib"], _ = step_limit(arch, size, b, device, steps)
            row["limit_compiled"], row["peak_gib_compiled"], row["compile_s"] = \
                step_limit(arch, size, b, device, steps, COMPILE_MODE)
            for v in variants if b == bs else ("host", "resident+compiled"):
                if "resident" in v and arch == "points":
                    continue  # the point model's features are made on the host (loader workers)
                row[f"e2e_{v}"] = end_to_end(arch, size, b, e2e_steps, v, workers,
                                             profile_steps=20 if i == 0 and b == bs and v == variants[-1] else 0)
            if cuda and b == bs:
                for v in ("host", "resident") if arch != "points" else ("host",):
                    row[f"loader_{v}"] = loader_only(arch, size, b, e2e_steps, v, workers)
            best = max(row[k]["steady"] for k in row if k.startswith("e2e_"))
            row["epoch_minutes_49.7M"] = KAGGLE_TRAIN / best / 60
            out["rows"].append(row)
            print(json.dumps({k: {a: b for a, b in v.items() if a != "profile"} if isinstance(v, dict) else v
                              for k, v in row.items()}), flush=True)
            _save(out)
    if cuda:
        for b in (256, 512, 1024, 2048):
            out["memory"].append({"model": "resnet18", "size": 64, "bs": b,
                                  "peak_gib": step_limit("resnet18", 64, b, device, 5)[1]})
    _save(out)
    _print(out, e2e_steps)
    return out


def _print(out: dict, e2e_steps: int) -> None:
    rows = out["rows"]
    print(f"\ntraining images/s on {out['device']}, compiled = torch.compile mode {out['compile_mode']!r}:")
    cols = [(k, k.replace("e2e_", "e2e ").replace("loader_", "loader alone, ")) for k in
            ("e2e_host", "e2e_compiled", "e2e_resident", "e2e_resident+compiled", "loader_host", "loader_resident")
            if any(k in r for r in rows)]
    print("| model | size | batch | limit eager | limit compiled (compile s) | " + " | ".join(c for _, c in cols)
          + " | 49.7M epoch, min |")
    print("| --- | ---: | ---: | ---: | ---: |" + " ---: |" * len(cols) + " ---: |")
    for r in rows:
        top = max(r["limit"], r["limit_compiled"])

        def cell(v, top=top) -> str:
            if v is None:
                return "-"
            if isinstance(v, dict):
                return f"{v['steady']:,.0f} ({v['steady'] / top:.2f}) [{v['epoch']:,.0f}]"
            return f"{v:,.0f} ({v / top:.2f})"

        print(f"| {r['model']} | {r['size']} | {r['bs']} | {r['limit']:,.0f} | {r['limit_compiled']:,.0f} "
              f"({r['compile_s']:.0f}) | " + " | ".join(cell(r.get(k)) for k, _ in cols)
              + f" | {r['epoch_minutes_49.7M']:.1f} |")
    print(f"e2e cells: steady state from batch {WARM_BATCHES} (ratio to the better limit) [whole epoch of "
          f"{e2e_steps} batches]")
    for m in out["memory"]:
        print(f"peak memory resnet18@64 batch {m['bs']}: {m['peak_gib']:.2f} GiB")
    for r in rows:
        for k, v in r.items():
            if isinstance(v, dict) and "profile" in v:
                p = v["profile"]
                busy = "" if p["device_busy"] is None else f", device busy {p['device_busy']:.0%} of the wall time"
                print(f"\nprofile of {r['model']}@{r['size']} {k}: {p['ms_per_step']:.2f} ms a step{busy}")
                print(p["table"])
    if out["skipped"]:
        print("not measured (DOODLE_BENCH_SECONDS ran out):", ", ".join(out["skipped"]))


if __name__ == "__main__":
    run()
