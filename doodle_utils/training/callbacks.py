"""The training run's fastai callbacks: epoch seeding, progressive sizes, resumable plateau
trackers, the checkpoint commit (:class:`Checkpoint`, :func:`committed_state`), history,
snapshots, and the loss kept on the GPU. Why each exists is in :mod:`.fit`'s docstring.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from fastai.callback.core import Callback
from fastai.callback.progress import ProgressCallback
from fastai.callback.tracker import ReduceLROnPlateau, TrackerCallback
from fastai.learner import AvgLoss, AvgMetric, AvgSmoothLoss
from fastai.torch_core import find_bs

from .._files import atomic_path, sha256_file, write_text_atomic
from ..devices import world_size
from ..paths import SNAPSHOTS, preds_dir, snapshots_dir
from ..progress import epoch_line


def base_dl(dl):
    """The DoodleDL inside a fastai DistributedDL wrapper (or the loader itself)."""
    return getattr(dl, "dl", dl)


def skipped(cb: Callback) -> bool:
    """True in an epoch that a resumed fit skips (fastai still calls ``after_epoch`` there)."""
    from fastai.learner import SkipToEpoch

    skip = max((c._skip_to for c in cb.learn.cbs if isinstance(c, SkipToEpoch)), default=0)
    return cb.epoch < skip


def set_batch_size(learn, bs: int) -> None:
    """Change the training batch size (on the wrapper too when training is distributed)."""
    for dl in {id(x): x for x in (learn.dls.train, base_dl(learn.dls.train))}.values():
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
            base_dl(dl).epoch = self.epoch


class ProgressiveResize(TrainOnly):
    """Render at ``sizes[e]`` from epoch ``e`` on (e.g. ``{0: 64, 2: 96, 4: 128}``)."""

    order = -9

    def __init__(self, sizes: dict[int, int]):
        self.sizes = {int(k): int(v) for k, v in sizes.items()}

    def size_at(self, epoch: int) -> int:
        return self.sizes[max(k for k in self.sizes if k <= epoch)]

    def before_epoch(self):
        for dl in (self.dls.train, self.dls.valid):
            base_dl(dl).size = self.size_at(self.epoch)


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
            old = base_dl(self.dls.train).bs
            new = int(min(old * self.factor, self.max_bs))
            if new > old:
                set_batch_size(self.learn, new)
                print(f"Epoch {self.epoch}: batch size {old} -> {new}")


NEXT_CHECKPOINT = "checkpoint.next.pth"  # an epoch's weights before its state commits them


class RunStateError(RuntimeError):
    """A run folder holding part of a run that cannot be resumed as it is: names what is wrong."""


def committed_state(folder: Path) -> dict | None:
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
        state = {"epoch": int(self.epoch), "bs": int(base_dl(self.dls.train).bs), "processes": world_size(),
                 "fingerprint": self.fingerprint, "trackers": [t.tracker_state() for t in self.trackers],
                 "checkpoint_sha256": sha256_file(nxt)}
        write_text_atomic(self.folder / "state.json", json.dumps(state, indent=1))  # the commit
        os.replace(nxt, self.folder / "checkpoint.pth")


class History(TrainOnly):
    """One row per finished epoch in ``history.csv``: the recorder's losses and metrics plus
    what the epoch trained with: the learning rate of its last batch, batch size, image size
    (the point budget for the point model), and ``train_s``, the seconds of its training
    phase (loading and rendering included, validation not). fastai's CSVLogger is not used
    because on resume it writes its header again and a row for every skipped epoch. With
    ``echo`` it also prints the epoch's one line (:func:`doodle_utils.progress.epoch_line`:
    losses, metrics, training images/s, the time left), which ``doodle run`` shows while the
    notebook runs."""

    order = TrackerCallback.order + 5

    def __init__(self, path: Path, keep: bool, echo: bool = False):
        self.path, self.keep, self.echo = Path(path), keep, echo

    def before_fit(self):
        import pandas as pd

        super().before_fit()
        self.rows = pd.read_csv(self.path).to_dict("records") if self.keep and self.path.exists() else []
        self.epoch_s: list[float] = []

    def before_epoch(self):
        self.t_epoch = time.perf_counter()

    def before_train(self):
        self.t0 = time.perf_counter()

    def before_validate(self):
        """What this epoch trained with (before a plateau callback changes it)."""
        dl = base_dl(self.dls.train)
        self.trained_with = {"lr": float(self.opt.hypers[-1]["lr"]), "bs": int(dl.bs), "size": int(dl.size),
                             "train_s": time.perf_counter() - self.t0}
        self.images = int(self.n_iter) * int(dl.bs)  # this process's share when distributed

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
        if self.echo:
            self.epoch_s.append(time.perf_counter() - self.t_epoch)
            left = (self.n_epoch - self.epoch - 1) * sum(self.epoch_s) / len(self.epoch_s)
            values = {n: row[n] for n in names if n not in ("accuracy", "top3_accuracy")}
            print(epoch_line(self.epoch + 1, self.n_epoch, values, self.images / max(row["train_s"], 1e-9), left),
                  flush=True)


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



class _OnDevice(AvgSmoothLoss):
    """fastai's smoothed loss without the copy to the host (see :class:`DeviceLoss`)."""

    def accumulate(self, learn):
        self.count += 1
        loss = learn.loss.mean().detach().float()
        # lerp's formula; torch.lerp itself refuses the 0-dim CPU start value with CUDA
        self.val = loss + self.beta * (self.val - loss)


class _DeviceTotal:
    """A batch-size-weighted running total kept on the device, read (one copy) as a float."""

    def reset(self):
        self.total, self.count = None, 0

    def _add(self, v: torch.Tensor, bs: int) -> None:
        v = v.detach().float() * bs
        self.total = v if self.total is None else self.total + v
        self.count += bs

    @property
    def value(self):
        return float(self.total) / self.count if self.count else None


class DeviceMetric(_DeviceTotal, AvgMetric):
    """fastai's ``AvgMetric`` (a batch metric averaged over the validation set, weighted by
    batch size) with its running total kept on the device: fastai's copies every batch's value
    to the host (``learn.to_detach``), a wait for the GPU per validation batch; here the total
    is read once, when the recorder asks for the epoch's value. The value is this process's
    (as fastai's: a scalar metric is not gathered across processes)."""

    def accumulate(self, learn):
        self._add(self.func(learn.pred, *learn.yb), find_bs(learn.yb))


class DeviceAvgLoss(_DeviceTotal, AvgLoss):
    """fastai's validation loss (``AvgLoss``) with its running total kept on the device (see
    :class:`DeviceMetric`)."""

    def accumulate(self, learn):
        self._add(learn.loss.mean(), find_bs(learn.yb))


class DeviceLoss(Callback):
    """Keeps fastai's smoothed training loss and the validation loss on the device.

    fastai's ``AvgSmoothLoss`` copies every batch's loss to the host, and its progress bar
    prints it every batch: each is a wait for the GPU, after which it sits idle while the host
    queues the next batch. Here the running mean stays on the device; the loss history is
    copied once per epoch (before anything reads it) and the progress bar shows the loss every
    50 batches (:class:`QuietProgress`). The validation loss is summed on the device too
    (:class:`DeviceAvgLoss`); the metrics are :class:`DeviceMetric` (``build_learner``).
    """

    order = -10  # before the Recorder resets its smoothed loss

    def before_fit(self):
        rec = getattr(self.learn, "recorder", None)
        if rec is not None:
            # set on the recorder itself (fastai's Callback.__setattr__ warns: the learner has these names too)
            object.__setattr__(rec, "smooth_loss", _OnDevice(beta=rec.smooth_loss.beta))
            object.__setattr__(rec, "loss", DeviceAvgLoss())

    def after_epoch(self):
        rec = getattr(self.learn, "recorder", None)
        if rec is None:
            return
        for i, v in enumerate(rec.losses):  # the epoch's (the GPU has finished them: no wait)
            if isinstance(v, torch.Tensor) and v.device.type != "cpu":
                rec.losses[i] = v.detach().cpu()


class CudaGraphSteps(Callback):
    """Marks each batch as a new step for ``torch.compile``'s CUDA graphs (``compile`` modes
    "reduce-overhead" and "max-autotune"): a replay overwrites the last one's outputs, and
    fastai still holds the last batch's prediction (``learn.pred``) when the next begins, so
    the graphs are told where a step starts rather than left to infer it."""

    order = -20

    def before_batch(self):
        torch.compiler.cudagraph_mark_step_begin()


class QuietProgress(ProgressCallback):
    """fastai's progress bar, showing the loss every 50 batches (reading it waits for the GPU)."""

    def after_batch(self):
        self.pbar.update(self.iter + 1)
        if self.iter % 50 == 0 and hasattr(self, "smooth_loss"):
            self.pbar.comment = f"{self.smooth_loss.item():.4f}"


class AddProbs(Callback):
    """Adds each predicted batch's class probabilities (the loss's activation of the model's
    output, times ``weight``) into the next rows of ``out``, a float32 array made at the first
    batch when not given. fastai's ``get_preds`` keeps every batch's output, then their
    concatenation and its softmax: three copies of a split's probabilities (~1 GB for the
    248,500 blend drawings of Kaggle's size, 340 classes; found by the full-size rehearsal).
    Run it with ``get_preds(..., with_preds=False, with_targs=False, reorder=False)``."""

    order = 90  # after the model and mixed precision, before anything that reads pred

    def __init__(self, rows: int, out: np.ndarray | None = None, weight: float = 1.0):
        self.rows, self.out, self.weight, self.pos = rows, out, weight, 0

    def before_validate(self):
        self.pos = 0

    def after_batch(self):
        act = getattr(self.learn.loss_func, "activation", None) or (lambda x: x)
        p = act(self.learn.pred.detach().float()).cpu().numpy()
        if self.out is None:
            self.out = np.zeros((self.rows, p.shape[1]), np.float32)
        if self.pos + len(p) > len(self.out):
            raise RuntimeError(f"the loader gave more than the {len(self.out)} rows expected")
        self.out[self.pos:self.pos + len(p)] += p * np.float32(self.weight) if self.weight != 1 else p
        self.pos += len(p)
