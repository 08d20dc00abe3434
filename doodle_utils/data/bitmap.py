"""A doodle from a bitmap (PNG, JPEG, ...): its ink traced back into strokes, so that a photo
or screenshot of a drawing can be predicted like a stroke log.

The steps: grey levels (OpenCV); the ink separated from the paper by Otsu's threshold, with
the paper taken to be the colour of most of the image's border (dark ink on light paper or
light on dark both work); the ink thinned to one-pixel lines (scikit-image's
``skeletonize``); each connected line traced as the closed path around it (OpenCV's
``findContours`` on the skeleton: every line is walked out and back, which draws the same
pixels as walking it once); the paths ordered top to bottom, left to right, as strokes in the
image's pixel coordinates. Google's simplification (``store.as_kind``) then aligns and scales
them to the 0..255 frame like any raw drawing.

What it cannot know: the order the strokes were drawn in, their direction and any timing. A
model that renders stroke order (``palette``, ``strokes3``) sees the traced order instead;
one that reads times (``time3``; the point model on a store with timings) is refused. Text,
shading, several drawings in one image and paper texture are all taken as ink. Measured on
the suite's own renderings: ``tests/test_bitmap.py``.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .drawings import Drawings

IMAGE_FILES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
MIN_INK_PIXELS = 2


def ink_mask(image: np.ndarray) -> np.ndarray:
    """Boolean (H, W) mask of the ink of a grey, BGR or BGRA image (alpha: transparent is paper)."""
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[2] == 4:  # transparent pixels are paper, whatever their colour
        alpha = img[:, :, 3:4].astype(np.float32) / 255
        img = (img[:, :, :3].astype(np.float32) * alpha + 255 * (1 - alpha)).astype(np.uint8)
    grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY) if img.ndim == 3 else img.astype(np.uint8)
    if grey.max() == grey.min():
        return np.zeros(grey.shape, bool)
    _, dark = cv2.threshold(grey, 0, 255, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    dark = dark > 0
    border = np.concatenate([dark[0], dark[-1], dark[:, 0], dark[:, -1]])
    return ~dark if border.mean() > 0.5 else dark  # the paper is what most of the border is


def strokes_from_mask(mask: np.ndarray) -> list[np.ndarray]:
    """The ink's lines as (n, 2) float arrays of (x, y) pixel coordinates, top to bottom."""
    from skimage.morphology import skeletonize

    skeleton = skeletonize(mask).astype(np.uint8)
    contours, _ = cv2.findContours(skeleton, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    strokes = [c[:, 0, :].astype(np.float64) for c in contours]
    strokes = [np.vstack([s, s[:1]]) if len(s) > 1 else np.vstack([s, s]) for s in strokes]  # the walk closes
    strokes.sort(key=lambda s: (s[:, 1].min(), s[:, 0].min()))
    return strokes


def drawing_from_image(image: str | Path | np.ndarray) -> Drawings:
    """One drawing traced from an image file or array (raw: float coordinates, no times).
    ValueError names the file when it cannot be read or holds no ink."""
    name = str(image) if isinstance(image, (str, Path)) else "image"
    if isinstance(image, (str, Path)):
        img = cv2.imread(str(image), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise ValueError(f"{name}: not an image OpenCV can read")
    else:
        img = np.asarray(image)
    mask = ink_mask(img)
    if mask.sum() < MIN_INK_PIXELS:
        raise ValueError(f"{name}: no ink found (a blank image)")
    strokes = strokes_from_mask(mask)
    return Drawings.from_strokes([strokes], np.float64)
