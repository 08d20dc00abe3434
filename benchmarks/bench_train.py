"""Training throughput: fastai end to end from the packed store against the model's own limit.

For each (model, size) — resnet18@64, resnet34@128, seresnext26d_32x4d@128 on a GPU;
resnet18@32 and @64 on a CPU-only machine (informational) — measured in one run:

* ``limit``: training steps (forward, loss, backward, PyTorch Adam step) on one batch already
  on the device — bf16 autocast and channels-last on a GPU, fp32 on a CPU;
* ``e2e gpu-render``: ``doodle_utils.training`` (fastai ``Learner.fit``, ``opt="adamw"``)
  sampling from the store, gathering and augmenting in 8 loader workers and rendering
  ``palette`` on the GPU with the Triton kernel (GPU only); also with fastai's own Adam and no
  workers (the previous default set-up), to show what each change is worth;
* ``e2e cpu-render``: the same with OpenCV rendering in N loader worker processes;
* ``loader alone``: the images/s the training loader delivers on the device, no model (GPU only);
* ``host``: the training loop's host time per step on the CPU (one thread, a model whose compute
  is negligible, one real batch given again and again): a plain PyTorch loop, fastai's
  ``Learner.fit`` with its defaults, and the suite's loop with its callbacks (the target: at
  most 2x the plain loop).

Images/s are counted over the training phase of an epoch (validation cancelled; 100 batches
on a GPU), after a warm-up epoch: in the steady state (from the 10th batch to the end) and
over the whole epoch (which also pays for starting the loader's workers); the ratio is
against ``limit`` (target on the H100: at least 0.9). On a GPU the peak memory of the limit
run is reported per batch size. Data: the smoke run's store
(``outputs/smoke/store/train``), made with ``make demo`` (the host rows make their own small store). Results go to
``benchmarks/_work/results_train.json``. Run: ``python -m benchmarks train``.
"""
from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / "_work"
STORE = ROOT / "outputs" / "smoke" / "store" / "train"
GPU_CONFIGS = (("resnet18", 64), ("resnet34", 128), ("seresnext26d_32x4d", 128))
CPU_CONFIGS = (("resnet18", 32), ("resnet18", 64))
WARM_BATCHES = 10  # batches of an epoch before the steady-state clock starts


def step_limit(arch: str, size: int, bs: int, device: torch.device, steps: int) -> tuple[float, float]:
    """(images/s, peak GiB) of training steps on one batch already on ``device``."""
    from doodle_utils.training import DoodleNet

    model = DoodleNet(arch, 340, 3).to(device)
    cuda = device.type == "cuda"
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    x = torch.rand(bs, 3, size, size, device=device)
    if cuda:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 340, (bs,), device=device)

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

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
    return rate, peak


def _config(arch: str, size: int, bs: int, steps: int, render_on: str, workers: int, opt: str):
    from doodle_utils.training import TrainConfig

    return TrainConfig(store_dir=str(STORE), out_dir=str(WORK / "train"), arch=arch, size=size, bs=bs,
                       epoch_size=bs * steps, schedule="one_cycle", epochs=1, lr=1e-3, augment={}, render_on=render_on, num_workers=workers, progress=False,
                       channels_last=torch.cuda.is_available(), resume=False, opt=opt)


def end_to_end(arch: str, size: int, bs: int, steps: int, render_on: str, workers: int,
               opt: str = "adamw") -> dict[str, float]:
    """Training images/s of ``doodle_utils.training`` in an epoch of ``steps`` batches: ``steady``
    from batch ``WARM_BATCHES`` to the end, ``epoch`` the whole epoch (worker start included)."""
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

    cfg = _config(arch, size, bs, steps, render_on, workers, opt)
    dls, _ = make_loaders(cfg, pick_device())
    clock = Clock()
    clock.times = []
    learn = build_learner(cfg, dls, len(dls.train.source.countries), extra_cbs=[clock])
    learn.fit(2, 1e-3)  # the first epoch warms up (cuDNN autotuning, worker start)
    whole, steady = clock.times[-1]
    return {"steady": bs * (steps - WARM_BATCHES) / steady, "epoch": bs * steps / whole}


def loader_only(size: int, bs: int, steps: int, render_on: str, workers: int) -> float:
    """Images/s the training loader delivers on the device with no model (second epoch)."""
    from doodle_utils.training import make_loaders, pick_device

    dls, _ = make_loaders(_config("resnet18", size, bs, steps, render_on, workers, "adamw"), pick_device())
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
    for r in rows:
        r["us_per_step"] = r.pop("s") * 1e6
        r["ratio"] = r["us_per_step"] / rows[0]["us_per_step"]
    return rows


def run() -> dict:
    if not (STORE / "manifest.json").exists():
        raise SystemExit(f"{STORE}: no store; run `make demo` first")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cuda = device.type == "cuda"
    workers = min(16, os.cpu_count() or 1)
    gpu_workers = min(8, workers)
    configs = GPU_CONFIGS if cuda else CPU_CONFIGS
    bs, steps, e2e_steps = (512, 30, 100) if cuda else (64, 4, 14)
    host = host_time()
    print(f"\nhost time per training step, one thread, a model of negligible compute, batch 512 ({platform.processor() or platform.machine()}):")
    print("| loop | µs a step | × plain PyTorch |\n| --- | ---: | ---: |")
    for r in host:
        print(f"| {r['loop']} | {r['us_per_step']:,.0f} | {r['ratio']:.2f} |")
    rows = []
    for arch, size in configs:
        limit, peak = step_limit(arch, size, bs, device, steps)
        row = {"model": arch, "size": size, "bs": bs, "limit": limit, "peak_gib": peak}
        if cuda:
            row["e2e_gpu_render"] = end_to_end(arch, size, bs, e2e_steps, "gpu", gpu_workers)
            row["e2e_gpu_render_fastai_adam_w0"] = end_to_end(arch, size, bs, e2e_steps, "gpu", 0, "adam")
            row["loader_gpu_render"] = loader_only(size, bs, e2e_steps, "gpu", gpu_workers)
            row["loader_cpu_render"] = loader_only(size, bs, e2e_steps, "cpu", workers)
        row["e2e_cpu_render"] = end_to_end(arch, size, bs, max(e2e_steps, WARM_BATCHES + 4), "cpu",
                                           workers if cuda else 0)
        rows.append(row)
        print(json.dumps(row), flush=True)
    mem = []
    if cuda:
        for b in (256, 512, 1024, 2048):
            mem.append({"model": "resnet18", "size": 64, "bs": b,
                        "peak_gib": step_limit("resnet18", 64, b, device, 5)[1]})
    name = torch.cuda.get_device_name() if cuda else platform.processor() or platform.machine()
    print(f"\ntraining images/s on {name} ({'bf16, channels-last' if cuda else 'CPU, fp32'}), batch {bs}:")
    cols = [("e2e_gpu_render", f"e2e, GPU rendering, AdamW, {gpu_workers} workers"),
            ("e2e_gpu_render_fastai_adam_w0", "e2e, GPU rendering, fastai Adam, no workers"),
            ("e2e_cpu_render", f"e2e, CPU rendering ({workers if cuda else 0} workers)"),
            ("loader_gpu_render", "loader alone, GPU rendering"), ("loader_cpu_render", "loader alone, CPU rendering")]
    cols = [(k, label) for k, label in cols if any(k in r for r in rows)]
    print("| model | size | limit (batch on device) | " + " | ".join(label for _, label in cols) + " |")
    print("| --- | ---: | ---: |" + " ---: |" * len(cols))
    def cell(v) -> str:
        return "-" if v is None else f"{v:,.0f} ({v / r['limit']:.2f})"

    for r in rows:  # end to end: steady state, then (the whole epoch, worker start included)
        cells = [cell(r[k]["steady"]) + f" [{cell(r[k]['epoch'])}]" if isinstance(r.get(k), dict)
                 else cell(r.get(k)) for k, _ in cols]
        print(f"| {r['model']} | {r['size']} | {r['limit']:,.0f} (1.00) | " + " | ".join(cells) + " |")
    print("e2e cells: steady state from batch", WARM_BATCHES, "[whole epoch of", e2e_steps, "batches]")
    for m in mem:
        print(f"peak memory resnet18@64 batch {m['bs']}: {m['peak_gib']:.2f} GiB")
    WORK.mkdir(parents=True, exist_ok=True)
    out = {"device": name, "rows": rows, "memory": mem, "host": host}
    (WORK / "results_train.json").write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    run()
