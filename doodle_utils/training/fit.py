"""Training with fastai: timm backbones, one-cycle or SGDR snapshots, plateau tricks, resume.

:func:`train` runs one configuration (:class:`TrainConfig`, filled from notebook 03's
parameters) and leaves in its folder::

    checkpoint.pth, state.json   the last finished epoch (weights, optimiser, schedule position)
    history.csv                  one row per epoch (fastai's CSVLogger, appended on resume)
    snapshots/snap_NN.pth        the weights at the end of each cycle (SGDR) or of the run
    preds/snap_NN_{valid,test}.npy, preds/manifest.json
                                 class probabilities of every snapshot, for notebook 04

Schedules (``schedule``): ``one_cycle`` (``fit_one_cycle``); ``sgdr`` (cosine annealing with
warm restarts, ``cycles`` of ``cycle_len`` epochs growing by ``cycle_mult``; the schedule is
built from fastai's ``SchedCos``/``combine_scheds`` here because ``Learner.fit_sgdr`` divides
by ``cycle_mult - 1`` and so cannot do equal cycles); ``plateau`` (constant LR, divided by
``plateau_factor`` when the validation loss stalls: fastai's ``ReduceLROnPlateau``);
``grow_batch`` (constant LR, the batch size multiplied by ``plateau_factor`` instead:
"don't decay the learning rate, increase the batch size").

The learner is :class:`.learner.LeanLearner` (events sent only to the callbacks that handle
them), with :class:`.learner.CrossEntropyFlat` (fastai's loss on plain tensors) and, for
``opt="adamw"``, :class:`.learner.LeanOptimWrapper`: the training loop's host time per step
(``python -m benchmarks train``, host rows). The smoothed training loss, the validation loss
and the metrics are summed on the device and read once an epoch (:class:`.callbacks.DeviceLoss`,
:class:`.callbacks.DeviceMetric`), not copied to the host every batch.

``compile`` (a ``torch.compile`` mode, or "off"): the model is compiled in place
(``nn.Module.compile``: its state dict keeps its names, so checkpoints and snapshots load into
an eager model); inductor compiles the forward and, through AOTAutograd, the backward pass;
"reduce-overhead" and "max-autotune" also capture them in CUDA graphs on a GPU (one graph per
batch shape: training batches have one, ``drop_last``). The optimizer step stays PyTorch's
(``foreach`` AdamW for ``opt="adamw"``). What each mode is worth on a GPU is measured by
``python -m benchmarks train`` (the compiled step limit beside the eager one); the tests check
that a compiled step gives eager PyTorch's loss and gradients on the same batch.

Checkpoints are written by :class:`Checkpoint` rather than fastai's ``SaveModelCallback``
because a killed run must never leave a half-written file or a split state. Each epoch commits
once: the weights go to ``checkpoint.next.pth``, then ``state.json`` (with the epoch and the
new checkpoint's SHA-256) replaces the old one atomically — the commit — and only then is the
new checkpoint renamed to ``checkpoint.pth``. On resume (:func:`committed_state`) a
checkpoint the state does not name is discarded or, when it is the committed one, put in
place; the checkpoint is checked against the state's SHA-256; ``history.csv`` is cut back to
the committed epoch; stale temporary files are removed; a folder holding part of a run
without its state is an error, never a silent restart. With ``resume=True`` a run whose folder holds a checkpoint of the same
configuration continues from the epoch after it, at the same point of its LR schedule
(fastai's ``start_epoch``), with the same data order (loaders seed each epoch by its number)
and the callbacks' state (batch size, plateau counters) restored.

Devices: :func:`.devices.device_choices` picks the mixed precision for ``precision="auto"``
(bf16 on GPUs with native bfloat16, fp16 with gradient scaling on V100/T4, else fp32) and
the line saying what was chosen is printed once per process. Several processes
(``processes``; 0 means one per visible CUDA device): a run started outside torchrun with more
than one launches itself under torchrun (:func:`launch`: the same :func:`train` in each
process, data-parallel through fastai's ``distrib_ctx``), streams the processes' output, and
then loads the finished run in this process, so the caller gets the same :class:`TrainResult`
as from one process. ``bs`` is per process: each step averages the gradients of ``processes``
batches (the learning rate is not scaled).
"""
from __future__ import annotations

import math

import dataclasses
import json
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .._files import folder_lock, save_npy_atomic, sha256_file, write_text_atomic
from ..data import Drawings
from ..data.store import Store, content_digest
from ..devices import announce, device_choices, world_size
from ..metrics import map3, map_at_k, top3_accuracy
from ..models import DoodleNet, PointCNN
from ..paths import preds_dir, snapshots_dir
from ..render import RenderSpec
from .callbacks import (NEXT_CHECKPOINT, AddProbs, Checkpoint, CudaGraphSteps, DeviceLoss, DeviceMetric, EpochSeed,
                        GrowBatchOnPlateau, History, ProgressiveResize, QuietProgress, ResumableReduceLROnPlateau, RunStateError, Snapshots,
                        base_dl, committed_state, set_batch_size)
from .config import CUDA_GRAPH_MODES, FINGERPRINT_IGNORES, TrainConfig, config_from_params
from .learner import CrossEntropyFlat, LeanLearner, LeanOptimWrapper
from .resident import ResidentDL
from .loaders import (Augment, BatchSpec, DoodleDataLoaders, DoodleDL, DrawingsSource, PseudoLabels, Source,
                      Unrecognized, make_dls)

log = logging.getLogger("doodle.train")

# --------------------------------------------------------------------------- the run

@dataclass
class TrainResult:
    """What a run produced."""

    learn: Any
    folder: Path
    snapshots: list[Path]
    resumed_from: int | None  # the epoch a resumed run continued after, else None
    preds: dict[str, dict[str, Path]]  # snapshot name -> {"valid": path, "test": path}
    lrs: list[float] = field(default_factory=list)  # LR of every training batch of this fit
    iters_per_epoch: int = 0


def pick_device() -> torch.device:
    """This process's CUDA device (``LOCAL_RANK``'s under torchrun), else the CPU."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    if world_size() > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cuda")


def build_learner(cfg: TrainConfig, dls, n_countries: int, extra_cbs: list | None = None, announce_device: bool = True):
    """The fastai Learner for ``cfg`` (model, loss, optimiser, metrics, precision); the device
    line is printed once per process unless ``announce_device`` is False."""
    from functools import partial

    import fastai.callback.fp16  # noqa: F401  (adds Learner.to_bf16 / to_fp16)
    import fastai.callback.schedule  # noqa: F401  (adds Learner.fit_one_cycle)
    from fastai.callback.channelslast import ChannelsLast
    from fastai.metrics import accuracy
    from fastai.optimizer import SGD, Adam


    base = base_dl(dls.train)
    n_classes = len(base.source.words)
    if cfg.model == "points":
        model = PointCNN(cfg.arch, n_classes, base.channels, cfg.grid, cfg.point_dim, cfg.dilations,
                         cfg.point_kernel, cfg.stem, n_countries, cfg.country_dim, cfg.pretrained_path,
                         cfg.drop_rate, cfg.ink)
    else:
        model = DoodleNet(cfg.arch, n_classes, base.channels, n_countries, cfg.country_dim,
                          cfg.pretrained_path, cfg.drop_rate)
    opt_func = {"adam": Adam, "sgd": partial(SGD, mom=0.9), "adamw": _torch_adamw}[cfg.opt]
    cbs = list(extra_cbs or [])
    if cfg.channels_last:
        cbs.append(ChannelsLast())
    learn = LeanLearner(dls, model, loss_func=CrossEntropyFlat(label_smoothing=cfg.label_smoothing),
                        opt_func=opt_func, metrics=[DeviceMetric(m) for m in (map3, accuracy, top3_accuracy)],
                        wd=cfg.wd, path=cfg.out_dir, model_dir=".", cbs=cbs)
    dev = dls.device or pick_device()
    choice = device_choices(dev, cfg.precision)  # ValueError: a mixed precision without CUDA
    if announce_device:
        announce(choice)
    if choice.precision != "fp32":  # fastai's MixedPrecision; fp16 scales the loss (GradScaler)
        learn = learn.to_bf16() if choice.precision == "bf16" else learn.to_fp16()
    if cfg.compile != "off":  # in place: the state dict keeps its names (checkpoints, snapshots)
        learn.model.compile(mode=cfg.compile)
        if cfg.compile in CUDA_GRAPH_MODES:
            learn.add_cb(CudaGraphSteps())
    if cfg.accumulate > 1:
        from fastai.callback.training import GradientAccumulation
        learn.add_cb(GradientAccumulation(n_acc=cfg.bs * cfg.accumulate))
    progress = [cb for cb in learn.cbs if type(cb).__name__ == "ProgressCallback"]
    learn.remove_cbs(progress)
    learn.add_cb(DeviceLoss())
    if cfg.progress:
        learn.add_cb(QuietProgress() if dev.type == "cuda" or not progress else progress[0])
    return learn



def _torch_adamw(params, lr: float, **kwargs):
    """PyTorch's AdamW (multi-tensor ``foreach`` kernels on a GPU) behind fastai's
    ``OptimWrapper``, with fastai Adam's defaults (betas 0.9/0.99, eps 1e-5, decoupled weight
    decay); the schedulers drive its lr and momentum as they drive fastai's. Unlike fastai's
    Adam it also decays norm weights and biases. Why: fastai's Adam steps each parameter in
    Python, several small kernels each, which on a GPU costs more host time than resnet18's
    whole step (see benchmarks/RESULTS.md, training throughput)."""
    return LeanOptimWrapper(params, opt=torch.optim.AdamW, lr=lr, betas=(0.9, 0.99), eps=1e-5, **kwargs)


def _sgdr_scheduler(cfg: TrainConfig):
    from fastai.callback.schedule import ParamScheduler, SchedCos, combine_scheds

    lens = cfg.cycle_lengths()
    return ParamScheduler({"lr": combine_scheds(cycle_fractions(lens), [SchedCos(cfg.lr, 0) for _ in lens])})


def cycle_fractions(lens: list[int]) -> list[float]:
    """Each cycle's share of the schedule, summing to exactly 1.0 as fastai's
    ``combine_scheds`` asserts (ten cycles of 1/10 sum to 0.9999999999999999: the last share
    takes up the rounding)."""
    pcts = [n / sum(lens) for n in lens]
    pcts[-1] = 1.0 - sum(pcts[:-1])
    while sum(pcts) != 1.0:
        pcts[-1] = math.nextafter(pcts[-1], 2.0 if sum(pcts) < 1.0 else 0.0)
    return pcts


def batch_spec(cfg: TrainConfig, device: torch.device, epoch: int = 0,
               pseudo: PseudoLabels | None = None) -> BatchSpec:
    """How ``cfg``'s loaders make batches on ``device`` in ``epoch`` (its image size: the
    progressive schedule's at that epoch, else ``cfg.size``)."""
    render_on = cfg.render_on if cfg.render_on != "auto" else ("gpu" if device.type == "cuda" else "cpu")
    size = ProgressiveResize(cfg.progressive_sizes).size_at(epoch) if cfg.progressive_sizes else cfg.size
    # the spec's settings are TrainConfig's of the same name, except these
    same = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(BatchSpec) if hasattr(cfg, f.name)}
    return BatchSpec(**same | dict(input=cfg.model, render=RenderSpec(size=size, line_width=cfg.line_width),
                                   render_on=render_on, augment=Augment(**cfg.augment), pseudo=pseudo,
                                   channels_last=cfg.channels_last and cfg.model == "image"))


def make_loaders(cfg: TrainConfig, device: torch.device):
    """(DataLoaders, test loader) for ``cfg``."""
    pseudo = None
    if cfg.pseudo_preds:
        vocab = Store(cfg.store_dir, verify="none").countries
        pseudo = PseudoLabels.from_predictions(cfg.test_store_dir, np.load(cfg.pseudo_preds),
                                               cfg.pseudo_threshold, cfg.pseudo_frac, vocab)
    return make_dls(cfg.store_dir, batch_spec(cfg, device, pseudo=pseudo), cfg.bs, cfg.test_store_dir,
                    cfg.num_workers, device, Unrecognized(cfg.unrecognized, cfg.unrecognized_weight, cfg.labels_file),
                    loader=ResidentDL if cfg.resident else DoodleDL)


def resolve_processes(processes: int) -> int:
    """The process count ``processes`` asks for: 0 is one per visible CUDA device, 1 without one."""
    if processes:
        return processes
    return max(torch.cuda.device_count(), 1) if torch.cuda.is_available() else 1


@contextmanager
def _maybe_distributed(learn):
    """fastai's ``distrib_ctx`` when launched with several processes, else nothing.

    The loaders are wrapped in a ``DistributedDL`` (each process renders its share of every
    epoch's sample) whose index broadcast also works on CPU with the gloo backend: fastai's
    moves the indices to CUDA first, which only NCCL needs.
    """
    if world_size() < 2:
        yield
        return
    from fastai.distributed import DistributedDL

    class _DDL(DistributedDL):
        def _broadcast(self, t, rank):
            dev = "cuda" if torch.distributed.get_backend() == "nccl" else "cpu"
            t = torch.tensor(t, dtype=torch.int64, device=dev)
            torch.distributed.broadcast(t, rank)
            return t.cpu().tolist()

    original = list(learn.dls.loaders)
    learn.dls.loaders = [_DDL(dl) for dl in original]
    try:
        # SyncBatchNorm is GPU-only; accelerate picks gloo for CPU processes only when told cpu
        gpu = torch.cuda.is_available()
        with learn.distrib_ctx(sync_bn=gpu, cpu=not gpu):
            yield
    finally:
        learn.dls.loaders = original


def train(cfg: TrainConfig, extra_cbs: list | None = None, predict: bool = True) -> TrainResult:
    """Train (or resume) ``cfg``; save checkpoints, snapshots and their predictions.

    Outside a distributed run, ``cfg.processes`` resolving to more than one hands the run to
    :func:`launch` (torchrun); ``extra_cbs`` cannot travel there (ValueError).
    """
    cfg.check()
    n_proc = resolve_processes(cfg.processes)
    if n_proc > 1 and world_size() < 2:
        if extra_cbs:
            raise ValueError(f"extra callbacks cannot be passed to {n_proc} torchrun processes; set processes=1")
        return launch(cfg, n_proc, predict)
    from fastai.torch_core import rank_distrib

    folder = Path(cfg.out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    if rank_distrib():  # the main process holds the folder's lock for all of them
        return _train(cfg, folder, extra_cbs, predict)
    with folder_lock(folder, "training"):  # one writer per run folder
        return _train(cfg, folder, extra_cbs, predict)


def _recorded_fingerprint(folder: Path) -> str | None:
    """The configuration fingerprint a run folder's ``state.json`` records, if it has one."""
    try:
        return json.loads((folder / "state.json").read_text()).get("fingerprint")
    except (OSError, ValueError):
        return None


def _other_configuration(folder: Path, cfg: TrainConfig, state: dict | str, fp: str) -> str:
    """The error for a run folder that holds another configuration's run: which settings
    differ (from its ``config.json``), and the two ways on, neither of which loses it."""
    if isinstance(state, str):
        state = {"fingerprint": state}
    try:
        old = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        old = None
    new = json.loads(json.dumps(dataclasses.asdict(cfg), default=str))
    diffs = [] if old is None else [f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(new)
                                    if k not in FINGERPRINT_IGNORES and old.get(k) != new.get(k)]
    was, now = state.get("processes", 1), world_size()
    if was != now:  # each step averaged that many batches
        diffs.append(f"trained in {was} process(es), now {now}: set processes={was}")
    if not diffs:
        diffs.append(f"fingerprint {state.get('fingerprint')} != {fp}"
                     + ("; its config.json is missing" if old is None else
                        ": the same settings, so its training store differs (packed again: other drawings, "
                        "or another validation or blend split), or it was trained before runs recorded their store"))
    what = ", ".join(diffs)
    return (f"{folder}: run_label {folder.name!r} holds a run of another configuration ({what}); nothing was "
            f"changed. To keep both, give this run another run_label, or leave run_label empty to have one "
            f"named by its settings ({cfg.default_label()!r}); to replace the old run, delete {folder}")


def _train(cfg: TrainConfig, folder: Path, extra_cbs: list | None, predict: bool) -> TrainResult:
    torch.manual_seed(cfg.seed)
    device = pick_device()
    if device.index is not None:  # torchrun: this process's GPU, before anything is allocated
        torch.cuda.set_device(device)
    dls, test_dl = make_loaders(cfg, device)
    n_countries = len(base_dl(dls.train).source.countries)
    trackers: list = []
    if cfg.schedule == "plateau":
        trackers.append(ResumableReduceLROnPlateau(patience=cfg.plateau_patience, factor=cfg.plateau_factor,
                                                   min_delta=cfg.plateau_min_delta))
    elif cfg.schedule == "grow_batch":
        trackers.append(GrowBatchOnPlateau(patience=cfg.plateau_patience, factor=cfg.plateau_factor,
                                           max_bs=cfg.max_bs, min_delta=cfg.plateau_min_delta))
    # what it trains on: the store's content and, relabelled, the label column's
    labels = sha256_file(Path(cfg.labels_file))[:16] if cfg.labels_file else ""
    fp = cfg.fingerprint(world_size(), content_digest(base_dl(dls.train).source.store.manifest) + labels)
    cbs = [EpochSeed(), Snapshots(snapshots_dir(folder), cfg.snapshot_epochs()), Checkpoint(folder, fp, trackers)]
    if cfg.progressive_sizes:
        cbs.append(ProgressiveResize(cfg.progressive_sizes))
    learn = build_learner(cfg, dls, n_countries, cbs + list(extra_cbs or []))

    start, resumed = 0, None
    state_file = folder / "state.json"
    state = committed_state(folder) if cfg.resume else None
    if not cfg.resume:  # starting over deletes this configuration's run, never another's
        other = _recorded_fingerprint(folder)
        if other is not None and other != fp:
            raise RunStateError(_other_configuration(folder, cfg, other, fp))
    if state is not None:
        if state.get("fingerprint") != fp:
            raise RunStateError(_other_configuration(folder, cfg, state, fp))
        learn.create_opt()
        learn.load("checkpoint", with_opt=True, device=device)
        start = resumed = state["epoch"] + 1
        set_batch_size(learn, state["bs"])
        for t, s in zip(trackers, state.get("trackers", [])):
            t.restore = s
        log.info(f"resuming {folder} after epoch {state['epoch']}")
    else:
        for p in [state_file, folder / "checkpoint.pth", folder / NEXT_CHECKPOINT, folder / "history.csv",
                  *snapshots_dir(folder).glob("*.pth")]:
            p.unlink(missing_ok=True)
    write_text_atomic(folder / "config.json", json.dumps(dataclasses.asdict(cfg), indent=1, default=str))
    src = base_dl(dls.train).source  # what a prediction needs besides the weights (load_run)
    write_text_atomic(folder / VOCAB, json.dumps({"words": src.words, "countries": src.countries, "kind": src.kind}))
    learn.add_cb(History(folder / "history.csv", keep=start > 0, echo=cfg.progress))
    for t in trackers:
        learn.add_cb(t)

    iters = len(dls.train)
    if start < cfg.n_epochs:
        with _maybe_distributed(learn):
            iters = len(learn.dls.train)  # this process's share when distributed
            if cfg.schedule == "one_cycle":
                learn.fit_one_cycle(cfg.epochs, cfg.lr, start_epoch=start)
            elif cfg.schedule == "sgdr":
                learn.fit(cfg.n_epochs, cfg.lr, cbs=_sgdr_scheduler(cfg), start_epoch=start)
            else:
                learn.fit(cfg.epochs, cfg.lr, start_epoch=start)
    lrs = [float(x) for x in learn.recorder.lrs] if start < cfg.n_epochs else []  # predicting resets them
    snaps = sorted(snapshots_dir(folder).glob("snap_*.pth"))
    from fastai.torch_core import rank_distrib

    preds = {}
    if predict and not rank_distrib():  # one process predicts, with the whole model
        preds = predict_snapshots(learn, snaps, dls.valid, test_dl, preds_dir(folder), cfg.tta)
    return TrainResult(learn, folder, snaps, resumed, preds, lrs, iters)


_CHILD = "import sys; from doodle_utils.training.fit import _torchrun_child; _torchrun_child(*sys.argv[1:])"


def launch(cfg: TrainConfig, processes: int, predict: bool = True) -> TrainResult:
    """Train ``cfg`` in ``processes`` data-parallel processes started by torchrun, then load the
    finished run here.

    Each process runs :func:`train` (``torch.distributed.run --standalone``: a free port; NCCL
    on GPUs, one each, gloo on CPU); their output is streamed to this process's stdout. The
    package's folder goes first on the processes' ``PYTHONPATH``, so a copy that is only on
    ``sys.path`` (a Kaggle kernel's) is the one they import. Afterwards this process builds the
    learner on its own device with the run's last weights (``checkpoint.pth``; ``compile`` is
    left off), so ``result.learn`` and the files are as after a one-process run; ``lrs`` and
    ``iters_per_epoch`` are those of the first process.

    Raises:
        RuntimeError: the processes failed (the end of their output is in the message).
    """
    import collections
    import subprocess
    import sys
    import tempfile

    root = Path(__file__).resolve().parents[2]  # the folder holding doodle_utils
    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (str(root), os.environ.get("PYTHONPATH")) if p)}
    with tempfile.TemporaryDirectory(prefix="doodle_torchrun_") as tmp:
        config, result_file = Path(tmp) / "config.json", Path(tmp) / "result.json"
        config.write_text(json.dumps(dataclasses.asdict(cfg), default=str))
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
               "--no-python", sys.executable, "-c", _CHILD, str(config), str(result_file), str(int(predict))]
        print(f"training in {processes} processes: torchrun --nproc_per_node {processes}", flush=True)
        tail: collections.deque[str] = collections.deque(maxlen=60)
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            while chunk := proc.stdout.read1(1 << 16):  # as it comes, progress bars' \r kept
                text = chunk.decode(errors="replace")
                sys.stdout.write(text)
                sys.stdout.flush()
                tail.extend(text.splitlines(keepends=True))
            rc = proc.wait()
        except BaseException:  # interrupted: stop the processes (torchrun ends its workers)
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise
        if rc or not result_file.exists():
            raise RuntimeError(f"training in {processes} processes failed (torchrun exit status {rc}); "
                               f"the end of its output:\n{''.join(tail)}")
        done = json.loads(result_file.read_text())
    device = pick_device()
    dls, _ = make_loaders(cfg, device)
    learn = build_learner(dataclasses.replace(cfg, compile="off"), dls, len(base_dl(dls.train).source.countries))
    learn.load("checkpoint", with_opt=False, device=device)
    return TrainResult(learn, Path(cfg.out_dir), [Path(x) for x in done["snapshots"]], done["resumed_from"],
                       {k: {s: Path(v) for s, v in d.items()} for k, d in done["preds"].items()},
                       done["lrs"], done["iters_per_epoch"])


def _torchrun_child(config: str, result_file: str, predict: str) -> None:
    """One of :func:`launch`'s processes: train, and in the first write what the run returned."""
    from fastai.torch_core import rank_distrib

    cfg = config_from_params(json.loads(Path(config).read_text()), strict=True)
    r = train(cfg, predict=bool(int(predict)))
    if not rank_distrib():
        done = {"snapshots": [str(x) for x in r.snapshots], "resumed_from": r.resumed_from,
                "preds": {k: {s: str(v) for s, v in d.items()} for k, d in r.preds.items()},
                "lrs": r.lrs, "iters_per_epoch": r.iters_per_epoch}
        write_text_atomic(Path(result_file), json.dumps(done))


VOCAB = "vocab.json"  # in a run folder: the classes, the countries and the store's kind


def run_vocab(run: Path, cfg: TrainConfig) -> dict:
    """A run's ``words``, ``countries`` and store ``kind``: its vocab.json, or, for a run trained
    before that file existed, its training store's."""
    if (run / VOCAB).exists():
        return json.loads((run / VOCAB).read_text())
    try:
        st = Store(cfg.store_dir, verify="none")
    except (OSError, ValueError) as e:
        raise FileNotFoundError(f"{run}: no {VOCAB}, and its training store {cfg.store_dir} cannot be read "
                                f"for the class names ({e}); train it again or restore the store") from None
    return {"words": list(st.words), "countries": list(st.countries), "kind": st.kind}


def load_run(run: str | Path, snapshot: str | None = None, device: torch.device | str | None = None):
    """A trained run folder as a fastai ``Learner`` ready to predict (``learn.predict``,
    ``learn.dls.test_dl``, ``learn.export``): its configuration and vocabularies (no data), the
    weights of ``snapshot`` (``snap_NN``; default the last), on ``device`` (default: the CPU).
    Validation settings: no augmentation, the last epoch's image size (what the recorded
    predictions of every snapshot used); the model eager whatever the run's ``compile``.
    FileNotFoundError names what the folder lacks."""
    from fastai.torch_core import get_model

    run = Path(run)
    if not (run / "config.json").is_file():
        raise FileNotFoundError(f"{run}: not a training run folder (no config.json; runs are "
                                f"<out_dir>/train/<run_label>)")
    snaps = sorted(snapshots_dir(run).glob("snap_*.pth"))
    names = [p.stem for p in snaps]
    if not snaps:
        raise FileNotFoundError(f"{run}: no snapshots yet (snapshots/snap_NN.pth are written at the end "
                                f"of each cycle)")
    if snapshot is not None and snapshot not in names:
        raise FileNotFoundError(f"{run}: no snapshot {snapshot!r} (there are {', '.join(names)})")
    # eager: compiling (the run's ``compile``) would cost more than a prediction of a few drawings saves
    cfg = config_from_params({**json.loads((run / "config.json").read_text()), "progress": False, "resume": True,
                              "compile": "off"})
    vocab = run_vocab(run, cfg)
    dev = torch.device(device or "cpu")
    batches = batch_spec(cfg, dev, epoch=cfg.n_epochs - 1).for_eval()  # the size validation ended at
    empty = DrawingsSource(Drawings.concat([]), vocab["words"], vocab["countries"], vocab["kind"])
    loaders = [DoodleDL(empty, batches, bs=max(cfg.bs, 64) * 2, device=dev) for _ in range(2)]
    learn = build_learner(cfg, DoodleDataLoaders(*loaders, device=dev), len(vocab["countries"]),
                          announce_device=False)
    pth = snaps[names.index(snapshot)] if snapshot else snaps[-1]
    get_model(learn.model).load_state_dict(torch.load(pth, map_location=dev, weights_only=True))
    learn.model.eval()
    return learn


def predict_views(learn, dl: DoodleDL, tta: Sequence[str] = ()) -> torch.Tensor:
    """Class probabilities of ``dl``'s drawings, in order: the mean over the plain view and
    each test-time view in ``tta`` (:data:`.loaders.TTA_VIEWS`; the same drawings flipped, or
    with strokes dropped, by the loader's seed). A Learner's batches are added into one float32
    array as they come (:class:`.callbacks.AddProbs`)."""
    base = base_dl(dl)
    rows, views = base.n, base.batches.tta_views(tta)
    out = None
    for spec in views:
        view = dl if spec == base.batches else base.new(batches=spec)
        if not hasattr(learn, "validation_context"):  # an ONNX model (prediction.OnnxModel): whole
            p = learn.get_preds(dl=view, reorder=False)[0].numpy() / len(views)
            out = p if out is None else out + p
            continue
        add = AddProbs(rows, out, 1 / len(views))  # batch by batch: no split-sized copies
        learn.get_preds(dl=view, reorder=False, with_preds=False, with_targs=False, cbs=[add])
        if add.pos != rows:
            raise RuntimeError(f"predicted {add.pos} of {rows} drawings")
        out = add.out
    return torch.from_numpy(out if out is not None else np.zeros((0, len(base.vocab)), np.float32))


def predict_snapshots(learn, snaps: list[Path], valid_dl: DoodleDL, test_dl: DoodleDL | None,
                      folder: Path, tta: Sequence[str] = ()) -> dict[str, dict[str, Path]]:
    """Class probabilities of each snapshot on the validation, blend (when the store has that
    split) and test drawings (float16 .npy files; with ``tta``, averaged over test-time views:
    :func:`predict_views`) and a manifest naming the classes, labels, test key_ids and the views."""
    from fastai.torch_core import get_model


    folder.mkdir(parents=True, exist_ok=True)
    src = base_dl(valid_dl).source
    labels = src.labels
    blend_dl = None
    if isinstance(src, Source) and len(src.store.blend_idx):
        blend_dl = base_dl(valid_dl).new(source=Source(src.store_dir, split="blend"))
    model = get_model(learn.model)
    out: dict[str, dict[str, Path]] = {}
    entries = []
    for snap in snaps:
        model.load_state_dict(torch.load(snap, map_location=learn.dls.device or "cpu", weights_only=True))
        paths, entry = {}, {"snapshot": snap.stem, "tta": list(tta)}
        for split, dl in (("valid", valid_dl), ("blend", blend_dl), ("test", test_dl)):
            if dl is None:
                continue
            probs = predict_views(learn, dl, tta).numpy()
            paths[split] = save_npy_atomic(folder / f"{snap.stem}_{split}.npy", probs.astype(np.float16))
            if split in ("valid", "blend"):
                entry[f"{split}_map3"] = map_at_k(probs, base_dl(dl).source.labels)
        out[snap.stem] = paths
        entries.append(entry)
    manifest = {"words": src.words, "valid_store": src.store_dir, "valid_idx": src.idx.tolist(),
                "valid_labels": labels.tolist(), "snapshots": entries}
    if blend_dl is not None:
        bsrc = blend_dl.source
        manifest |= {"blend_idx": bsrc.idx.tolist(), "blend_labels": bsrc.labels.tolist()}
    if test_dl is not None:
        tsrc = base_dl(test_dl).source
        manifest["test_store"] = tsrc.store_dir
        manifest["test_key_id"] = [str(k) for k in np.asarray(tsrc.store.key_id)[tsrc.idx]]
    write_text_atomic(folder / "manifest.json", json.dumps(manifest))
    return out


