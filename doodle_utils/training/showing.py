"""fastai's show functions for doodle batches: ``show_batch``, ``show_results`` and
``ClassificationInterpretation.plot_top_losses`` draw each input as the model sees it, titled
with class names.

fastai picks these functions by the types of a batch's input and target (its type dispatch);
a doodle batch has more than one input (the image or the point features, then the country
code, and the point mask), which fastai's image versions read as if the second input were the
label. So the pictures are a :class:`DoodlePicture` (a ``TensorImage``), and the three
functions are registered for it here, reading a sample's picture first and its class last.
"""
from __future__ import annotations

import numpy as np
import torch
from fastai.data.core import show_batch, show_results
from fastai.data.transforms import Category
from fastai.interpret import plot_top_losses
from fastai.torch_core import L, TensorCategory, TensorImage
from fastai.vision.data import get_grid
from matplotlib import colormaps

POINT_PICTURE = 64  # pixels of the picture of a point model's input


class DoodlePicture(TensorImage):
    """An input as the model sees it: the rendered image, or the point model's points."""


class Unshown(int):
    """An input a picture does not show (the country code, the point mask): kept in a
    sample so that its positions match the batch's, drawn as nothing."""

    def show(self, ctx=None, **kwargs):
        return ctx


def pictures(dl, inputs: tuple) -> DoodlePicture:
    """(N, C, H, W) pictures in 0..1 of a batch's inputs: the images themselves, or the valid
    points of each drawing coloured by drawing order (white background, like the game's)."""
    x = inputs[0].float()
    if dl.input != "points":
        return DoodlePicture(x.clamp(0, 1))
    feats, mask = x.numpy(), inputs[1].numpy().astype(bool)
    n, s = len(feats), POINT_PICTURE
    out = np.ones((n, s, s, 3), np.float32)
    colours = colormaps["viridis"]
    for i in range(n):
        f = feats[i][mask[i]]
        if not len(f):
            continue
        px = np.clip((f[:, :2] * (s - 1)).round().astype(int), 0, s - 1)
        out[i, px[:, 1], px[:, 0]] = colours(np.linspace(0, 1, len(f)))[:, :3]
    return DoodlePicture(torch.from_numpy(out).permute(0, 3, 1, 2))


def samples(dl, b: tuple, max_n: int) -> L:
    """Per drawing: (picture, the other inputs unshown, class name)."""
    pics = pictures(dl, b[:dl.n_inp])
    words = dl.source.words
    ys = b[dl.n_inp] if len(b) > dl.n_inp else None
    out = []
    for i in range(min(len(pics), max_n)):
        rest = tuple(Unshown(int(v[i].flatten()[0]) if v[i].numel() else 0) for v in b[1:dl.n_inp])
        word = (Category(words[int(ys[i])]),) if ys is not None else ()
        out.append((pics[i], *rest, *word))
    return L(out)


def pre_show(dl, b: tuple, max_n: int):
    """fastai's (inputs, targets, samples) triple: the pictures, the labels, the samples."""
    ys = b[dl.n_inp] if len(b) > dl.n_inp else None
    return pictures(dl, b[:dl.n_inp])[:max_n], None if ys is None else TensorCategory(ys[:max_n]), samples(dl, b, max_n)


def _titled(ax, picture: DoodlePicture, title: str, color: str = "black", **kwargs):
    picture = picture if picture.shape[0] != 1 else picture[0]
    ax.imshow(picture.permute(1, 2, 0).numpy() if picture.ndim == 3 else picture.numpy(),
              cmap="gray" if picture.ndim == 2 else None, vmin=0, vmax=1)
    ax.set_title(title, color=color, fontsize=9)
    ax.axis("off")
    return ax


def _show_batch(x: DoodlePicture, y, samples, ctxs=None, max_n=9, nrows=None, ncols=None, figsize=None, **kwargs):
    if ctxs is None:
        ctxs = get_grid(min(len(samples), max_n), nrows=nrows, ncols=ncols, figsize=figsize)
    return [_titled(ax, s[0], str(s[-1]) if len(s) > 1 else "") for s, ax, _ in zip(samples, ctxs, range(max_n))]


def _show_results(x: DoodlePicture, y, samples, outs, ctxs=None, max_n=9, nrows=None, ncols=None, figsize=None,
                  **kwargs):
    if ctxs is None:
        ctxs = get_grid(min(len(samples), max_n), nrows=nrows, ncols=ncols, figsize=figsize,
                        title="true / predicted")
    return [_titled(ax, s[0], f"{s[-1]} / {o[-1]}", "green" if str(s[-1]) == str(o[-1]) else "red")
            for s, o, ax, _ in zip(samples, outs, ctxs, range(max_n))]


def _plot_top_losses(x: DoodlePicture, y: TensorCategory, samples, outs, raws, losses, nrows=None, ncols=None,
                     figsize=None, **kwargs):
    axs = get_grid(len(samples), nrows=nrows, ncols=ncols, figsize=figsize,
                   title="predicted / true / loss / probability")
    for ax, s, o, r, loss in zip(axs, samples, outs, raws, losses):
        _titled(ax, s[0], f"{o[-1]} / {s[-1]} / {loss.item():.2f} / {r.max().item():.2f}")


show_batch.dispatch(_show_batch)
show_results.dispatch(_show_results)
plot_top_losses.dispatch(_plot_top_losses)
