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

Checkpoints are written by :class:`Checkpoint` rather than fastai's ``SaveModelCallback``
because a killed run must never leave a half-written file or a split state. Each epoch commits
once: the weights go to ``checkpoint.next.pth``, then ``state.json`` (with the epoch and the
new checkpoint's SHA-256) replaces the old one atomically — the commit — and only then is the
new checkpoint renamed to ``checkpoint.pth``. On resume (:func:`_committed_state`) a
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

import dataclasses
import hashlib
import json
import logging
import os
import time
import types
import typing
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fastai.callback.core import Callback
from fastai.callback.progress import ProgressCallback
from fastai.callback.tracker import ReduceLROnPlateau, TrackerCallback
from fastai.learner import AvgSmoothLoss

from ._files import atomic_path, folder_lock, save_npy_atomic, sha256_file, write_text_atomic
from .devices import PRECISIONS, announce, device_choices
from .loaders import Augment, DoodleDL, LoaderConfig, PseudoLabels, make_dls
from .metrics import map3, map_at_k, top3_accuracy
from .models import DoodleNet, check_arch, create_backbone  # noqa: F401 (importable from here, as before models.py)
from .paths import SNAPSHOTS, preds_dir, run_dir, snapshots_dir, store_path
from .pointcnn import RESAMPLING, STEMS, PointCNN
from .render import RENDERERS
from .store import Store

log = logging.getLogger("doodle.train")
SCHEDULES = ("one_cycle", "sgdr", "plateau", "grow_batch")
MODELS = ("image", "points")
OPTIMIZERS = ("adam", "adamw", "sgd")


# --------------------------------------------------------------------------- configuration

DEFAULT_AUGMENT = {"flip": 0.5, "rotate": 8.0, "scale": 0.1, "shift": 0.05, "stroke_dropout": 0.05}


@dataclass
class TrainConfig:
    """Everything a training run depends on: the one definition of every training parameter
    and its default. Notebooks 03 and 06 declare the same defaults in their ``parameters``
    cells (a test holds them equal), ``doodle train`` takes these names, and the profiles'
    values are checked against these types (:meth:`check`). An empty string, 0 or ``{}``
    means "none" where the comment says so (papermill parameters have no ``None``)."""

    store_dir: str
    out_dir: str
    test_store_dir: str | None = None
    model: str = "image"  # "image": DoodleNet on rendered drawings; "points": pointcnn.PointCNN
    arch: str = "resnet18"  # any timm model name
    pretrained_path: str = ""  # local ImageNet weights file; empty: none
    country_dim: int = 0  # width of a country-code embedding joined before the head; 0: none
    drop_rate: float = 0.0
    variant: str = "palette"  # renderer: mono, palette, strokes3 (time3 needs a timed or raw store)
    size: int = 64  # image size
    progressive_sizes: dict[int, int] = field(default_factory=dict)  # {first epoch: size}, e.g. {0: 64, 2: 96}
    line_width: float = 2.0  # in output pixels
    bs: int = 256  # batch size
    accumulate: int = 1  # batches per optimiser step (effective batch bs * accumulate)
    sampling: str = "uniform"  # uniform, or balanced (each class equally often)
    epoch_size: int = 0  # drawings per epoch; 0: the whole training split
    augment: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_AUGMENT))
    render_on: str = "auto"  # "cpu", "gpu", or "auto": the GPU when there is one
    num_workers: int = 0  # loader processes (CPU rendering runs there)
    schedule: str = "sgdr"  # one_cycle, sgdr, plateau or grow_batch
    epochs: int = 3  # for one_cycle, plateau and grow_batch (sgdr: cycles x cycle_len)
    cycles: int = 3  # SGDR cycles (one snapshot each)
    cycle_len: int = 1  # epochs in the first cycle
    cycle_mult: int = 1  # each cycle this many times longer than the last
    lr: float = 3e-3
    wd: float = 1e-2
    opt: str = "adam"  # "adam" (fastai's), "adamw" (PyTorch's, foreach kernels) or "sgd"
    plateau_patience: int = 1
    plateau_factor: float = 2.0  # LR divisor (plateau) or batch multiplier (grow_batch)
    plateau_min_delta: float = 0.0  # an improvement smaller than this counts as a plateau
    max_bs: int = 4096
    label_smoothing: float = 0.0
    precision: str = "auto"  # "auto" (devices.device_choices), "fp32", "bf16" or "fp16"
    channels_last: bool = False  # the trunk in channels-last memory format (the grid already is)
    compile: bool = False  # torch.compile the model
    pseudo_preds: str = ""  # test probabilities (.npy) to pseudo-label from; empty: none
    pseudo_threshold: float = 0.95
    pseudo_frac: float = 0.25
    resume: bool = True
    seed: int = 0
    progress: bool = True
    processes: int = 0  # training processes: 0 one per visible CUDA device (1 without one); >1 runs torchrun
    # the point model (model="points"; see doodle_utils.pointcnn)
    points: int = 128  # point budget per drawing
    grid: int = 32  # scatter grid side
    point_dim: int = 64  # features per point (the trunk's input channels)
    dilations: list[int] = field(default_factory=lambda: [1, 2, 4, 8])  # one 1-D conv block each
    point_kernel: int = 5  # 1-D kernel width (odd)
    stem: str = "auto"  # the trunk's stem: drop (ResNet family), keep, or auto
    resample: str = "length"  # which points: spread along the pen path ("length") or the drawing's own ("index")
    ink: bool = False  # one of the point_dim features is the constant 1 (marks the cells the pen crossed)

    def check(self) -> None:
        """Raise ValueError naming the parameter that cannot work."""
        def bad(name: str, why: str):
            raise ValueError(f"training parameter {name}={getattr(self, name)!r}: {why}")
        hints = typing.get_type_hints(TrainConfig)
        for f in dataclasses.fields(self):
            if not _type_ok(getattr(self, f.name), hints[f.name]):
                bad(f.name, f"must be {_type_name(hints[f.name])}")
        if self.schedule not in SCHEDULES:
            bad("schedule", f"one of {SCHEDULES}")
        if self.precision not in PRECISIONS:
            bad("precision", f"one of {PRECISIONS}")
        if self.opt not in OPTIMIZERS:
            bad("opt", f"one of {OPTIMIZERS}")
        if self.model not in MODELS:
            bad("model", f"one of {MODELS}")
        if self.model == "points":
            if self.points < 2:
                bad("points", "a drawing needs a budget of at least 2 points")
            if self.grid < 2 or self.point_dim < 1:
                bad("grid" if self.grid < 2 else "point_dim", "too small")
            if not self.dilations or any(int(x) < 1 for x in self.dilations):
                bad("dilations", "a non-empty list of positive integers")
            if self.point_kernel < 1 or self.point_kernel % 2 == 0:
                bad("point_kernel", "a positive odd number")
            if self.stem not in STEMS:
                bad("stem", f"one of {STEMS}")
            if self.resample not in RESAMPLING:
                bad("resample", f"one of {RESAMPLING}")
            if self.progressive_sizes:
                bad("progressive_sizes", "image sizes do not apply to the point model")
        if self.variant not in RENDERERS:
            bad("variant", f"one of {sorted(RENDERERS)}")
        try:
            check_arch(self.arch)
        except ValueError as e:
            bad("arch", "not a timm model; " + str(e).split(": ", 1)[-1])
        if self.render_on not in ("auto", "cpu", "gpu"):
            bad("render_on", "'auto', 'cpu' or 'gpu'")
        if self.render_on == "gpu" and not torch.cuda.is_available():
            bad("render_on", "no CUDA device here")
        for name in ("bs", "epochs", "cycles", "cycle_len", "cycle_mult", "accumulate", "size"):
            if getattr(self, name) < 1:
                bad(name, "must be at least 1")
        if not self.lr > 0:
            bad("lr", "must be positive")
        unknown = set(self.augment) - {f.name for f in dataclasses.fields(Augment)}
        if unknown:
            bad("augment", f"unknown keys {sorted(unknown)}")
        if self.progressive_sizes and min(int(k) for k in self.progressive_sizes) != 0:
            bad("progressive_sizes", "the first entry must start at epoch 0")
        if self.pseudo_preds and not self.test_store_dir:
            bad("pseudo_preds", "pseudo-labelling needs test_store_dir")
        if self.processes < 0:
            bad("processes", "0 (one per visible CUDA device) or a count")
        if world_size() < 2 and torch.cuda.is_available() and self.processes > torch.cuda.device_count():
            bad("processes", f"more than the {torch.cuda.device_count()} visible CUDA device(s)")

    def cycle_lengths(self) -> list[int]:
        """Epochs of each SGDR cycle (``cycle_len`` growing by ``cycle_mult``)."""
        return [self.cycle_len * self.cycle_mult ** i for i in range(self.cycles)]

    @property
    def n_epochs(self) -> int:
        return sum(self.cycle_lengths()) if self.schedule == "sgdr" else self.epochs

    def snapshot_epochs(self) -> list[int]:
        """Epoch counts after which a snapshot is saved (cycle ends for SGDR, else the end)."""
        if self.schedule == "sgdr":
            return [int(e) for e in np.cumsum(self.cycle_lengths())]
        return [self.epochs]

    def fingerprint(self, world: int = 1) -> str:
        """Hash of what decides the training trajectory (not ``resume``/``progress``/workers):
        the configuration and, for ``world`` > 1 processes, their number (each step averages
        ``world`` batches); ``processes`` itself is a request, resolved into ``world``."""
        d = {k: v for k, v in dataclasses.asdict(self).items()
             if k not in ("resume", "progress", "num_workers", "out_dir", "processes")}
        if world > 1:
            d["world_size"] = world
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- callbacks

def _base_dl(dl):
    """The DoodleDL inside a fastai DistributedDL wrapper (or the loader itself)."""
    return getattr(dl, "dl", dl)


def skipped(cb: Callback) -> bool:
    """True in an epoch that a resumed fit skips (fastai still calls ``after_epoch`` there)."""
    from fastai.learner import SkipToEpoch

    skip = max((c._skip_to for c in cb.learn.cbs if isinstance(c, SkipToEpoch)), default=0)
    return cb.epoch < skip


def set_batch_size(learn, bs: int) -> None:
    """Change the training batch size (on the wrapper too when training is distributed)."""
    for dl in {id(x): x for x in (learn.dls.train, _base_dl(learn.dls.train))}.values():
        dl.bs = bs


class TrainOnly(Callback):
    """A callback for fits only: fastai also sends fit and epoch events around ``get_preds``
    (where a checkpoint, snapshot or size change would be wrong), so it stands down there,
    as fastai's trackers do."""

    def before_fit(self):
        self.run = not hasattr(self, "gather_preds") and not hasattr(self, "lr_finder")


class EpochSeed(TrainOnly):
    """Give the loaders the epoch number, which seeds their sample and augmentation."""

    order = -10

    def before_epoch(self):
        for dl in (self.dls.train, self.dls.valid):
            _base_dl(dl).epoch = self.epoch


class ProgressiveResize(TrainOnly):
    """Render at ``sizes[e]`` from epoch ``e`` on (e.g. ``{0: 64, 2: 96, 4: 128}``)."""

    order = -9

    def __init__(self, sizes: dict[int, int]):
        self.sizes = {int(k): int(v) for k, v in sizes.items()}

    def size_at(self, epoch: int) -> int:
        return self.sizes[max(k for k in self.sizes if k <= epoch)]

    def before_epoch(self):
        for dl in (self.dls.train, self.dls.valid):
            _base_dl(dl).size = self.size_at(self.epoch)


class _Restorable:
    """Tracker state that survives a resume: ``restore`` is applied after ``before_fit``."""

    restore: dict | None = None

    def _apply_restore(self):
        if self.restore:
            self.best, self.wait = self.restore["best"], self.restore["wait"]

    def tracker_state(self) -> dict:
        return {"best": float(self.best), "wait": int(self.wait)}


class ResumableReduceLROnPlateau(_Restorable, ReduceLROnPlateau):
    """fastai's ReduceLROnPlateau whose best value and patience counter can be restored."""

    def before_fit(self):
        super().before_fit()
        self._apply_restore()

    def after_epoch(self):
        if not skipped(self):
            super().after_epoch()


class GrowBatchOnPlateau(_Restorable, TrackerCallback):
    """When ``monitor`` stalls for ``patience`` epochs, multiply the training batch size by
    ``factor`` (up to ``max_bs``) instead of lowering the learning rate."""

    order = TrackerCallback.order + 2

    def __init__(self, monitor: str = "valid_loss", min_delta: float = 0.0, patience: int = 1,
                 factor: float = 2.0, max_bs: int = 4096):
        super().__init__(monitor=monitor, min_delta=min_delta, reset_on_fit=True)
        self.patience, self.factor, self.max_bs = patience, factor, max_bs

    def before_fit(self):
        self.wait = 0
        super().before_fit()
        self._apply_restore()

    def after_epoch(self):
        if skipped(self):
            return
        super().after_epoch()
        if self.new_best:
            self.wait = 0
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.wait = 0
            old = _base_dl(self.dls.train).bs
            new = int(min(old * self.factor, self.max_bs))
            if new > old:
                set_batch_size(self.learn, new)
                print(f"Epoch {self.epoch}: batch size {old} -> {new}")


NEXT_CHECKPOINT = "checkpoint.next.pth"  # an epoch's weights before its state commits them


class RunStateError(RuntimeError):
    """A run folder holding part of a run that cannot be resumed as it is: names what is wrong."""


def _committed_state(folder: Path) -> dict | None:
    """The committed state of a run folder, with its files made consistent with it; None for
    a folder without any run. Removes stale temporary files and an uncommitted checkpoint,
    finishes a commit interrupted before its rename, cuts ``history.csv`` back to the committed
    epoch.

    Raises:
        RunStateError: a checkpoint, history or snapshot without a readable ``state.json``, or
            a checkpoint that does not match the state's checksum.
    """
    import pandas as pd


    for sub in (folder, snapshots_dir(folder), preds_dir(folder)):
        for tmp in sub.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
    state_file, ckpt, nxt = folder / "state.json", folder / "checkpoint.pth", folder / NEXT_CHECKPOINT
    parts = [p.name for p in (ckpt, nxt, folder / "history.csv") if p.exists()] + \
        [f"{SNAPSHOTS}/{p.name}" for p in sorted(snapshots_dir(folder).glob("*.pth"))]
    if not state_file.exists():
        if parts:
            raise RunStateError(f"{folder}: holds {', '.join(parts)} but no state.json, so which epoch they "
                                "belong to is unknown; start over with resume=False (deletes them) or use another out_dir")
        return None
    try:
        state = json.loads(state_file.read_text())
        epoch = int(state["epoch"])
    except (ValueError, KeyError, TypeError) as e:
        raise RunStateError(f"{state_file}: unreadable ({e}); start over with resume=False or use another out_dir")
    want = state.get("checkpoint_sha256")
    if nxt.exists():
        if want is not None and sha256_file(nxt) == want:
            os.replace(nxt, ckpt)  # committed, killed before the rename
        else:
            nxt.unlink()  # never committed
    if not ckpt.exists():
        raise RunStateError(f"{folder}: state.json records epoch {epoch} but checkpoint.pth is missing; "
                            "start over with resume=False or use another out_dir")
    if want is not None and sha256_file(ckpt) != want:
        raise RunStateError(f"{ckpt}: does not match the checksum state.json records for epoch {epoch} "
                            "(corrupted or replaced); start over with resume=False or use another out_dir")
    hist = folder / "history.csv"
    if hist.exists():
        rows = pd.read_csv(hist)
        if "epoch" in rows and (rows["epoch"] > epoch).any():  # written before a commit that never came
            with atomic_path(hist) as tmp:
                rows[rows["epoch"] <= epoch].to_csv(tmp, index=False)
    return state


class Checkpoint(TrainOnly):
    """After each epoch, atomically save weights + optimiser and the run's state (epoch,
    batch size, tracker state, fingerprint); only on the main process."""

    order = TrackerCallback.order + 10

    def __init__(self, folder: Path, fingerprint: str, trackers: list):
        self.folder, self.fingerprint, self.trackers = Path(folder), fingerprint, trackers

    def after_epoch(self):
        from fastai.learner import save_model
        from fastai.torch_core import rank_distrib

        if rank_distrib() or skipped(self):
            return

        nxt = self.folder / NEXT_CHECKPOINT
        with atomic_path(nxt) as tmp:
            save_model(tmp, self.learn.model, self.learn.opt, with_opt=True)
        state = {"epoch": int(self.epoch), "bs": int(_base_dl(self.dls.train).bs), "processes": world_size(),
                 "fingerprint": self.fingerprint, "trackers": [t.tracker_state() for t in self.trackers],
                 "checkpoint_sha256": sha256_file(nxt)}
        write_text_atomic(self.folder / "state.json", json.dumps(state, indent=1))  # the commit
        os.replace(nxt, self.folder / "checkpoint.pth")


class History(TrainOnly):
    """One row per finished epoch in ``history.csv``: the recorder's losses and metrics plus
    what the epoch trained with: the learning rate of its last batch, batch size, image size
    (the point budget for the point model), and ``train_s``, the seconds of its training
    phase (loading and rendering included, validation not). fastai's CSVLogger is not used
    because on resume it writes its header again and a row for every skipped epoch."""

    order = TrackerCallback.order + 5

    def __init__(self, path: Path, keep: bool):
        self.path, self.keep = Path(path), keep

    def before_fit(self):
        import pandas as pd

        super().before_fit()
        self.rows = pd.read_csv(self.path).to_dict("records") if self.keep and self.path.exists() else []

    def before_train(self):
        self.t0 = time.perf_counter()

    def before_validate(self):
        """What this epoch trained with (before a plateau callback changes it)."""
        dl = _base_dl(self.dls.train)
        self.trained_with = {"lr": float(self.opt.hypers[-1]["lr"]), "bs": int(dl.bs), "size": int(dl.size),
                             "train_s": time.perf_counter() - self.t0}

    def after_epoch(self):
        import pandas as pd
        from fastai.torch_core import rank_distrib

        if rank_distrib() or skipped(self):
            return
        names = self.recorder.metric_names[1:-1]  # without "epoch" and "time"
        row = {"epoch": int(self.epoch), **{n: float(v) for n, v in zip(names, self.recorder.values[-1])},
               **self.trained_with}
        self.rows.append(row)
        with atomic_path(self.path) as tmp:
            pd.DataFrame(self.rows).to_csv(tmp, index=False)


class Snapshots(TrainOnly):
    """Save the weights at the end of each listed epoch count (cycle ends) as snap_NN.pth."""

    order = Checkpoint.order - 1

    def __init__(self, folder: Path, ends: list[int]):
        self.folder, self.ends = Path(folder), [int(e) for e in ends]

    def after_epoch(self):
        from fastai.torch_core import get_model, rank_distrib

        if rank_distrib() or skipped(self) or self.epoch + 1 not in self.ends:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        k = self.ends.index(self.epoch + 1)
        with atomic_path(self.folder / f"snap_{k:02d}.pth") as tmp:
            torch.save(get_model(self.learn.model).state_dict(), tmp)


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


def build_learner(cfg: TrainConfig, dls, n_countries: int, extra_cbs: list | None = None):
    """The fastai Learner for ``cfg`` (model, loss, optimiser, metrics, precision)."""
    from functools import partial

    import fastai.callback.fp16  # noqa: F401  (adds Learner.to_bf16 / to_fp16)
    import fastai.callback.schedule  # noqa: F401  (adds Learner.fit_one_cycle)
    from fastai.callback.channelslast import ChannelsLast
    from fastai.learner import Learner
    from fastai.losses import CrossEntropyLossFlat
    from fastai.metrics import accuracy
    from fastai.optimizer import SGD, Adam


    base = _base_dl(dls.train)
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
    learn = Learner(dls, model, loss_func=CrossEntropyLossFlat(label_smoothing=cfg.label_smoothing),
                    opt_func=opt_func, metrics=[map3, accuracy, top3_accuracy], wd=cfg.wd,
                    path=cfg.out_dir, model_dir=".", cbs=cbs)
    dev = dls.device or pick_device()
    choice = device_choices(dev, cfg.precision)  # ValueError: a mixed precision without CUDA
    announce(choice)
    if choice.precision != "fp32":  # fastai's MixedPrecision; fp16 scales the loss (GradScaler)
        learn = learn.to_bf16() if choice.precision == "bf16" else learn.to_fp16()
    if cfg.compile:
        learn.model.compile()
    if cfg.accumulate > 1:
        from fastai.callback.training import GradientAccumulation
        learn.add_cb(GradientAccumulation(n_acc=cfg.bs * cfg.accumulate))
    progress = [cb for cb in learn.cbs if type(cb).__name__ == "ProgressCallback"]
    learn.remove_cbs(progress)
    if dev.type == "cuda":
        learn.add_cb(DeviceLoss())
    if cfg.progress:
        learn.add_cb(QuietProgress() if dev.type == "cuda" or not progress else progress[0])
    return learn


class _OnDevice(AvgSmoothLoss):
    """fastai's smoothed loss without the copy to the host (see :class:`DeviceLoss`)."""

    def accumulate(self, learn):
        self.count += 1
        loss = learn.loss.mean().detach().float()
        # lerp's formula; torch.lerp itself refuses the 0-dim CPU start value with CUDA
        self.val = loss + self.beta * (self.val - loss)


class DeviceLoss(Callback):
    """Keeps fastai's smoothed training loss on the GPU.

    fastai's ``AvgSmoothLoss`` copies every batch's loss to the host, and its progress bar
    prints it every batch: each is a wait for the GPU, after which it sits idle while the host
    queues the next batch. Here the running mean stays on the device; the loss history is
    copied once per epoch (before anything reads it) and the progress bar shows the loss every
    50 batches (:class:`QuietProgress`).
    """

    order = -10  # before the Recorder resets its smoothed loss

    def before_fit(self):
        if hasattr(self.learn, "recorder"):
            self.learn.recorder.smooth_loss = _OnDevice(beta=self.learn.recorder.smooth_loss.beta)

    def after_epoch(self):
        rec = getattr(self.learn, "recorder", None)
        if rec is None:
            return
        for i, v in enumerate(rec.losses):  # the epoch's (the GPU has finished them: no wait)
            if isinstance(v, torch.Tensor) and v.device.type != "cpu":
                rec.losses[i] = v.detach().cpu()


class QuietProgress(ProgressCallback):
    """fastai's progress bar, showing the loss every 50 batches (reading it waits for the GPU)."""

    def after_batch(self):
        self.pbar.update(self.iter + 1)
        if self.iter % 50 == 0 and hasattr(self, "smooth_loss"):
            self.pbar.comment = f"{self.smooth_loss.item():.4f}"


def _torch_adamw(params, lr: float, **kwargs):
    """PyTorch's AdamW (multi-tensor ``foreach`` kernels on a GPU) behind fastai's
    ``OptimWrapper``, with fastai Adam's defaults (betas 0.9/0.99, eps 1e-5, decoupled weight
    decay); the schedulers drive its lr and momentum as they drive fastai's. Unlike fastai's
    Adam it also decays norm weights and biases. Why: fastai's Adam steps each parameter in
    Python, several small kernels each, which on a GPU costs more host time than resnet18's
    whole step (see benchmarks/RESULTS.md, training throughput)."""
    from fastai.optimizer import OptimWrapper

    return OptimWrapper(params, opt=torch.optim.AdamW, lr=lr, betas=(0.9, 0.99), eps=1e-5, **kwargs)


def _sgdr_scheduler(cfg: TrainConfig):
    from fastai.callback.schedule import ParamScheduler, SchedCos, combine_scheds

    lens = cfg.cycle_lengths()
    pcts = [n / sum(lens) for n in lens]
    return ParamScheduler({"lr": combine_scheds(pcts, [SchedCos(cfg.lr, 0) for _ in lens])})


def make_loaders(cfg: TrainConfig, device: torch.device):
    """(DataLoaders, test loader) for ``cfg``."""
    render_on = cfg.render_on if cfg.render_on != "auto" else ("gpu" if device.type == "cuda" else "cpu")
    # the loaders' settings are TrainConfig's of the same name, except these
    lcfg = LoaderConfig(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(LoaderConfig) if hasattr(cfg, f.name)}
                        | dict(size=(ProgressiveResize(cfg.progressive_sizes).size_at(0) if cfg.progressive_sizes
                                     else cfg.size),
                               augment=Augment(**cfg.augment), render_on=render_on, input=cfg.model,
                               channels_last=cfg.channels_last and cfg.model == "image", pseudo=None))
    if cfg.pseudo_preds:
        vocab = Store(cfg.store_dir, verify="none").countries
        lcfg.pseudo = PseudoLabels.from_predictions(cfg.test_store_dir, np.load(cfg.pseudo_preds),
                                                    cfg.pseudo_threshold, cfg.pseudo_frac, vocab)
    return make_dls(lcfg, device)


def world_size() -> int:
    """Processes in this training job (``WORLD_SIZE``, set by torchrun or accelerate launch)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


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


def _train(cfg: TrainConfig, folder: Path, extra_cbs: list | None, predict: bool) -> TrainResult:
    torch.manual_seed(cfg.seed)
    device = pick_device()
    if device.index is not None:  # torchrun: this process's GPU, before anything is allocated
        torch.cuda.set_device(device)
    dls, test_dl = make_loaders(cfg, device)
    n_countries = len(_base_dl(dls.train).source.countries)
    trackers: list = []
    if cfg.schedule == "plateau":
        trackers.append(ResumableReduceLROnPlateau(patience=cfg.plateau_patience, factor=cfg.plateau_factor,
                                                   min_delta=cfg.plateau_min_delta))
    elif cfg.schedule == "grow_batch":
        trackers.append(GrowBatchOnPlateau(patience=cfg.plateau_patience, factor=cfg.plateau_factor,
                                           max_bs=cfg.max_bs, min_delta=cfg.plateau_min_delta))
    fp = cfg.fingerprint(world_size())
    cbs = [EpochSeed(), Snapshots(snapshots_dir(folder), cfg.snapshot_epochs()), Checkpoint(folder, fp, trackers)]
    if cfg.progressive_sizes:
        cbs.append(ProgressiveResize(cfg.progressive_sizes))
    learn = build_learner(cfg, dls, n_countries, cbs + list(extra_cbs or []))

    start, resumed = 0, None
    state_file = folder / "state.json"
    state = _committed_state(folder) if cfg.resume else None
    if state is not None:
        if state.get("fingerprint") != fp:
            was = state.get("processes", 1)
            hint = (f" (trained in {was} process(es), now {world_size()}: set processes={was})"
                    if was != world_size() else "")
            raise ValueError(f"{folder}: holds a checkpoint of a different configuration "
                             f"({state.get('fingerprint')} != {fp}){hint}; use another out_dir or resume=False")
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
    learn.add_cb(History(folder / "history.csv", keep=start > 0))
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
        preds = predict_snapshots(learn, snaps, dls.valid, test_dl, preds_dir(folder))
    return TrainResult(learn, folder, snaps, resumed, preds, lrs, iters)


_CHILD = "import sys; from doodle_utils.train import _torchrun_child; _torchrun_child(*sys.argv[1:])"


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

    root = Path(__file__).resolve().parents[1]
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
    learn = build_learner(dataclasses.replace(cfg, compile=False), dls, len(_base_dl(dls.train).source.countries))
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


def predict_snapshots(learn, snaps: list[Path], valid_dl: DoodleDL, test_dl: DoodleDL | None,
                      folder: Path) -> dict[str, dict[str, Path]]:
    """Class probabilities of each snapshot on the validation and test drawings (float16
    .npy files) and a manifest naming the classes, labels and test key_ids."""
    from fastai.torch_core import get_model


    folder.mkdir(parents=True, exist_ok=True)
    src = _base_dl(valid_dl).source
    labels = src.labels
    model = get_model(learn.model)
    out: dict[str, dict[str, Path]] = {}
    entries = []
    for snap in snaps:
        model.load_state_dict(torch.load(snap, map_location=learn.dls.device or "cpu", weights_only=True))
        paths, entry = {}, {"snapshot": snap.stem}
        for split, dl in (("valid", valid_dl), ("test", test_dl)):
            if dl is None:
                continue
            probs, _ = learn.get_preds(dl=dl, reorder=False)
            probs = probs.float().numpy()
            paths[split] = save_npy_atomic(folder / f"{snap.stem}_{split}.npy", probs.astype(np.float16))
            if split == "valid":
                entry["valid_map3"] = map_at_k(probs, labels)
        out[snap.stem] = paths
        entries.append(entry)
    manifest = {"words": src.words, "valid_store": src.store_dir, "valid_idx": src.idx.tolist(),
                "valid_labels": labels.tolist(), "snapshots": entries}
    if test_dl is not None:
        tsrc = _base_dl(test_dl).source
        manifest["test_store"] = tsrc.store_dir
        manifest["test_key_id"] = [str(k) for k in np.asarray(tsrc.store.key_id)[tsrc.idx]]
    write_text_atomic(folder / "manifest.json", json.dumps(manifest))
    return out


# what a notebook's parameters hold besides TrainConfig's: where to read and write, the packing
RUN_PARAMETERS = {"data_dir": "competition folder; empty: the default (doodle_utils.paths)",
                  "store_dir": "packed stores (train/, test/); empty: the default",
                  "out_dir": "run outputs; the model goes to <out_dir>/train/<run_label>",
                  "run_label": "sub-folder of this configuration; empty: <arch>_<variant><size> "
                               "(points_<arch>_g<grid> for the point model)",
                  "pack": "packing settings (kind, valid_frac, seed, workers)"}


def default_run_label(params: dict[str, Any]) -> str:
    """The run folder's name when none is given: the model, trunk and input size, e.g.
    ``resnet18_palette64`` or ``points_resnet18_g32`` (notebooks 03's and 06's defaults)."""
    d = TrainConfig.__dataclass_fields__
    get = lambda k: params.get(k, d[k].default)  # noqa: E731
    if get("model") == "points":
        return f"points_{get('arch')}_g{get('grid')}"
    return f"{get('arch')}_{get('variant')}{get('size')}"


def parameters_help() -> str:
    """Every training parameter with its default and the comment beside it in TrainConfig
    (``doodle train --help``)."""
    import inspect
    import re

    comments = {}
    for line in inspect.getsource(TrainConfig).splitlines():
        m = re.match(r"\s+(\w+): [^=]+=.*?#\s*(.*)$", line)
        if m:
            comments[m[1]] = m[2]
    rows = [(k, why) for k, why in RUN_PARAMETERS.items()]
    default = TrainConfig(store_dir="", out_dir="")
    for f in dataclasses.fields(TrainConfig):
        if f.name in ("store_dir", "out_dir", "test_store_dir"):
            continue
        rows.append((f"{f.name} = {getattr(default, f.name)!r}", comments.get(f.name, "")))
    width = 26
    lines = []
    for k, why in rows:
        if len(k) <= width or not why:
            lines.append(f"  {k:<{width}}  {why}".rstrip())
        else:  # a long default: its comment on the next line
            lines += [f"  {k}", f"  {'':<{width}}  {why}"]
    return "training parameters (--set NAME=VALUE, or a YAML file of them):\n" + "\n".join(lines)


def run_config(params: dict[str, Any], store_dir: str | Path, out_dir: str | Path, run_label: str) -> TrainConfig:
    """Notebook 03's configuration: its parameters plus the run's stores (``<store_dir>/train``,
    and ``<store_dir>/test`` when one was packed) and ``<out_dir>/train/<run_label>``."""
    test = store_path(store_dir, "test")
    return config_from_params({**params, "store_dir": str(store_path(store_dir, "train")),
                               "test_store_dir": str(test) if (test / "manifest.json").exists() else None,
                               "out_dir": str(run_dir(out_dir, run_label))})


def _type_ok(value: Any, hint: Any) -> bool:
    """Whether ``value`` fits a TrainConfig annotation (int is no bool; a float may be an int)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is dict:
        return isinstance(value, dict) and all(_type_ok(k, args[0]) and _type_ok(v, args[1]) for k, v in value.items())
    if origin is list:
        return isinstance(value, list) and all(_type_ok(v, args[0]) for v in value)
    return isinstance(value, hint)


def _type_name(hint: Any) -> str:
    return str(hint).replace("typing.", "").replace("<class '", "").replace("'>", "")


def config_from_params(params: dict[str, Any], strict: bool = False) -> TrainConfig:
    """A TrainConfig from a notebook's parameters; other keys are ignored, or with ``strict``
    an error naming them."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(params) - names)
    if strict and unknown:
        raise ValueError(f"unknown training parameters {unknown} (known: {sorted(names)})")
    kw = {k: v for k, v in params.items() if k in names}
    if isinstance(kw.get("progressive_sizes"), dict):
        kw["progressive_sizes"] = {int(k): int(v) for k, v in kw["progressive_sizes"].items()}
    return TrainConfig(**kw)
