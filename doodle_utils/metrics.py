"""The competition's metric (MAP@3) and the accuracies reported beside it.

MAP@k with one true label per drawing is the mean of 1/rank of the true class among the top k
predictions (0 when it is not there). The numpy versions score saved predictions; the torch
versions are fastai metrics (``AvgMetric`` averages them over batches weighted by batch size,
which equals the score over the whole validation set).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch


TOP_K_ROWS = 1 << 14  # rows ranked at a time: a whole split's negated copy, int64 positions and
# tie mask are 13 bytes a score (1.1 GB for Kaggle's 248,500 blend drawings; the full-size rehearsal)


def top_k(probs: np.ndarray, k: int = 3) -> np.ndarray:
    """(N, k) class indices, best first (ties broken by the lower class index); ranked
    :data:`TOP_K_ROWS` rows at a time (a memory-mapped ``probs`` is read a block at a time)."""
    if len(probs) > TOP_K_ROWS:
        return np.concatenate([top_k(probs[a:a + TOP_K_ROWS], k) for a in range(0, len(probs), TOP_K_ROWS)])
    probs = np.asarray(probs)
    k = min(k, probs.shape[1])
    part = np.argpartition(-probs, k - 1, axis=1)[:, :k]
    vals = np.take_along_axis(probs, part, axis=1)
    # argpartition picks any of the classes tied at the k-th value: where a tie crosses the
    # cut (rare: float16 ensembles make some), those rows are sorted stably instead
    kth = vals.min(axis=1, keepdims=True)
    cut = np.flatnonzero((probs == kth).sum(axis=1) > (vals == kth).sum(axis=1))
    if len(cut):
        part[cut] = np.argsort(-probs[cut], axis=1, kind="stable")[:, :k]
        vals = np.take_along_axis(probs, part, axis=1)
    order = np.lexsort((part, -vals), axis=1)
    return np.take_along_axis(part, order, axis=1)


def map_at_k(probs: np.ndarray, labels: np.ndarray, k: int = 3) -> float:
    """MAP@k of class scores (N, C) against true labels (N,)."""
    labels = np.asarray(labels)
    if len(labels) == 0:
        raise ValueError("map_at_k of no predictions")
    return float(map_at_k_ranked(top_k(probs, k), labels))


def ap_at_k(probs: np.ndarray, labels: np.ndarray, k: int = 3) -> np.ndarray:
    """Each drawing's precision at its label's rank (1, 1/2, ... 1/k, or 0): MAP@k is their
    mean, and their spread gives its standard error."""
    hit = top_k(probs, k) == np.asarray(labels)[:, None]
    return (hit / np.arange(1, k + 1)).sum(axis=1)


def map_at_k_ranked(ranked: np.ndarray, labels: np.ndarray) -> float:
    """MAP@k of ranked predictions (N, k) — e.g. a submission's three words as indices."""
    hit = np.asarray(ranked) == np.asarray(labels)[:, None]
    return float((hit / np.arange(1, hit.shape[1] + 1)).sum(axis=1).mean())


def per_class_accuracy(probs: np.ndarray, labels: np.ndarray, words: list[str]) -> pd.DataFrame:
    """Top-1 accuracy, top-3 accuracy, MAP@3 and count per class, worst MAP@3 first."""
    labels = np.asarray(labels)
    ranked = top_k(probs, 3)
    hit = ranked == labels[:, None]
    df = pd.DataFrame({"word": np.asarray(words, dtype=object)[labels], "top1": hit[:, 0],
                       "top3": hit.any(axis=1), "map3": (hit / np.arange(1, 4)).sum(axis=1)})
    out = df.groupby("word").agg(n=("top1", "size"), top1=("top1", "mean"), top3=("top3", "mean"),
                                 map3=("map3", "mean"))
    return out.sort_values(["map3", "n"]).reset_index()


def confused_pairs(probs: np.ndarray, labels: np.ndarray, words: list[str], n: int = 10) -> pd.DataFrame:
    """The most frequent (true, predicted) top-1 mistakes."""
    pred = np.asarray(probs).argmax(axis=1)
    labels = np.asarray(labels)
    wrong = pred != labels
    w = np.asarray(words, dtype=object)
    df = pd.DataFrame({"true": w[labels[wrong]], "predicted": w[pred[wrong]]})
    return df.value_counts().head(n).rename("count").reset_index()


# --------------------------------------------------------------------------- fastai metrics

def map3(inp: torch.Tensor, targ: torch.Tensor) -> torch.Tensor:
    """MAP@3 of a batch of logits (a fastai metric: pass the function in ``metrics``)."""
    k = min(3, inp.shape[-1])
    top = inp.topk(k, dim=-1).indices
    hit = (top == targ.view(-1, 1)).float()
    return (hit / torch.arange(1, k + 1, device=inp.device, dtype=torch.float32)).sum(dim=1).mean()


def top3_accuracy(inp: torch.Tensor, targ: torch.Tensor) -> torch.Tensor:
    """Share of drawings whose class is among the three best scores."""
    k = min(3, inp.shape[-1])
    return (inp.topk(k, dim=-1).indices == targ.view(-1, 1)).any(dim=1).float().mean()
