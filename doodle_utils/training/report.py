"""Figures and summaries of a training run for notebook 03 (from its folder and its Learner)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.store import Store
from ..paths import preds_dir


def plot_history(history: pd.DataFrame, points: bool = False):
    """Losses and MAP@3 per epoch, beside what each epoch trained with (LR, batch size and, for
    the image model, image size; ``points``: the point model, whose ``size`` is its point budget
    and is left out). Epochs are counted from 1, on whole-number ticks."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(12, 3.4), constrained_layout=True)
    ax = fig.subplots(1, 3)
    e = history["epoch"] + 1
    ax[0].plot(e, history["train_loss"], "o-", label="train (smoothed)")
    ax[0].plot(e, history["valid_loss"], "o-", label="valid")
    ax[0].set(title="loss", xlabel="epoch", ylabel="cross-entropy"), ax[0].legend()
    ax[1].plot(e, history["map3"], "o-", label="MAP@3")
    ax[1].plot(e, history["accuracy"], "o-", label="top-1")
    ax[1].set(title="validation", xlabel="epoch", ylabel="score", ylim=(0, 1)), ax[1].legend()
    lines = ax[2].plot(e, history["lr"], "o-", color="C3", label="learning rate")
    ax[2].set(title="what each epoch trained with", xlabel="epoch", ylabel="LR (its last batch)", yscale="log")
    twin = ax[2].twinx()
    lines += twin.step(e, history["bs"], where="mid", color="C2", label="batch size")
    if not points:
        lines += twin.step(e, history["size"], where="mid", color="C4", label="image size (px)")
    twin.set(ylabel="batch size" if points else "batch / image size")
    twin.set_ylim(bottom=0)
    ax[2].legend(lines, [x.get_label() for x in lines], loc="lower left", fontsize=8)
    for a in ax:
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
    return fig


def plot_schedule(lrs: list[float], iters_per_epoch: int):
    """The learning rate of every training batch of this fit (restarts show as jumps)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 2.8), constrained_layout=True)
    ax = fig.subplots()
    x = np.arange(len(lrs)) / max(iters_per_epoch, 1)
    ax.plot(x, lrs)
    ax.set(xlabel="epoch", ylabel="learning rate", title="LR per batch")
    return fig


def plot_per_class(per_class: pd.DataFrame, n: int = 12):
    """MAP@3 of the worst and best ``n`` classes."""
    from matplotlib.figure import Figure

    show = pd.concat([per_class.head(n), per_class.tail(n)]).drop_duplicates("word")
    fig = Figure(figsize=(8, 0.22 * len(show) + 1), constrained_layout=True)
    ax = fig.subplots()
    ax.barh(show["word"], show["map3"], color=np.where(show["map3"] < per_class["map3"].median(), "C3", "C0"))
    ax.invert_yaxis()
    ax.set(xlabel="validation MAP@3", xlim=(0, 1), title=f"worst and best {n} classes")
    return fig


def snapshot_table(preds_dir: str | Path) -> pd.DataFrame:
    """Validation MAP@3 of each snapshot, from the predictions' manifest."""
    man = json.loads((Path(preds_dir) / "manifest.json").read_text())
    return pd.DataFrame(man["snapshots"])


def load_valid(preds_dir: str | Path, snapshot: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(probabilities, labels, words) of one snapshot on the validation split."""
    man = json.loads((Path(preds_dir) / "manifest.json").read_text())
    probs = np.load(Path(preds_dir) / f"{snapshot}_valid.npy").astype(np.float32)
    return probs, np.asarray(man["valid_labels"]), man["words"]


def run_table(out_dir: str | Path) -> pd.DataFrame:
    """One row per training run under ``<out_dir>/train`` (image and point models alike):
    what it is, its parameter count, its training budget and speed, and its validation MAP@3
    (last epoch, and the best snapshot). Runs from before ``config.json`` existed are skipped."""
    import torch

    rows = []
    for folder in sorted(Path(out_dir).glob("train/*/config.json")):
        folder = folder.parent
        cfg = json.loads((folder / "config.json").read_text())
        hist_path = folder / "history.csv"
        if not hist_path.exists():
            continue
        hist = pd.read_csv(hist_path)
        points = cfg.get("model", "image") == "points"
        snaps = sorted(folder.glob("snapshots/snap_*.pth"))
        n_params = (sum(v.numel() for k, v in torch.load(snaps[-1], map_location="cpu", weights_only=True).items()
                        if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
                    if snaps else None)
        snaps_map3 = (snapshot_table(preds_dir(folder)).get("valid_map3", pd.Series(dtype=float)).dropna()
                      if (preds_dir(folder) / "manifest.json").exists() else pd.Series(dtype=float))
        per_epoch = cfg.get("epoch_size") or _train_size(cfg["store_dir"])
        train_s = hist["train_s"].sum() if "train_s" in hist else float("nan")
        row = {"run": folder.name, "model": "points" if points else "image", "arch": cfg["arch"],
               "input": (f"{cfg['points']} pts → {cfg['grid']}² grid × {cfg['point_dim']}" if points
                         else f"{cfg['variant']} {cfg['size']} px"),
               "params_M": n_params / 1e6 if n_params else float("nan"), "epochs": len(hist),
               "train_s": train_s,
               "drawings_s": (per_epoch * len(hist) / train_s) if per_epoch and train_s == train_s else float("nan"),
               "valid_map3_last": float(hist["map3"].iloc[-1]),
               "valid_map3_best_snapshot": float(snaps_map3.max()) if len(snaps_map3) else float("nan")}
        rows.append(row)
    return pd.DataFrame(rows)


def _train_size(store_dir: str) -> int | None:
    """Drawings in a store's training split (None when the store is gone)."""

    try:
        return len(Store(store_dir, verify="none").train_idx)
    except (FileNotFoundError, ValueError):
        return None
