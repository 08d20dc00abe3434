"""Synthetic Quick, Draw! data: procedural doodles drawn with a simulated pen, and a
mini-competition written in Kaggle's exact layout.

* A registry of drawable classes (:func:`register_class`, :data:`REGISTRY`,
  :data:`CLASSES`): each class is a function ``rng -> list of polylines`` in a unit frame,
  in the order and direction a person tends to draw them (a square in 1, 2 or 4 strokes, a
  house roof-first or walls-first, ...).
* :func:`draw` renders one of them as a Google *raw* drawing: strokes of ``[x, y, t]`` in
  screen pixels and milliseconds, with a random pose and size, a smooth hand warp, a pen
  that accelerates, slows at corners and sometimes pauses, pauses between strokes, and
  points sampled like a touch screen or mouse (frame ticks, no event while the pen rests).
  :func:`scribble` draws an unrecognizable doodle.
* :func:`make_competition` writes Kaggle's file set (``train_simplified/``, ``train_raw/``,
  ``test_simplified.csv``, ``test_raw.csv``, ``sample_submission.csv``) and, outside it, the
  hidden answers ``test_labels.csv``,
  deterministically for a seed; simplified strokes come from Google's simplification of the
  raw ones (:mod:`doodle_utils.data.simplify`).
* :func:`drawing_stats`, :func:`compare_with_real` and :func:`stats_table_markdown` check
  the synthetic drawings against the real sample of the same classes.

The pen constants and the per-class ``size/speed/care/pause`` were calibrated with
:func:`compare_with_real` against Google's raw files of the same classes
(https://quickdraw.withgoogle.com/data): strokes, raw and simplified points and durations per
drawing, and the distributions of sampling intervals and pen-up gaps. Speed on curves follows
the two-thirds power law of drawing movements (Lacquaniti, Terzuolo & Viviani 1983;
https://en.wikipedia.org/wiki/Two-thirds_power_law).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numba
import numpy as np
import pandas as pd

from .. import options
from .._files import atomic_path
from ..paths import answers_file
from .drawings import Drawings, read_file, write_csv, write_ndjson
from .simplify import simplify_packed

Polyline = np.ndarray  # (k, 2) float64 vertices in a unit frame, y pointing down
ShapeFn = Callable[[np.random.Generator], list[Polyline]]

# --------------------------------------------------------------------------- pen constants

BASE_SIZE_PX = 300.0  # median extent of a drawing on screen
SIZE_SIGMA = 0.3  # log-normal spread of the extent
BASE_SPEED = 1.0  # px/ms, cruising pen speed of a 300 px drawing
WOBBLE = 0.004  # amplitude of the along-stroke wobble, fraction of the extent
ACCEL_FRACTION = 0.13  # the pen reaches cruising speed after this fraction of the extent
DENSE_STEP_PX = 4.0  # spacing of the internal pen path
STROKE_GAP_MS = 330.0  # median pen-up pause between strokes (plus travel time)
PAUSE_RATE = 0.0045  # per ms of drawing: stalls within a stroke ...
PAUSE_MS = 75.0  # ... of this median length (log-normal)
TRAVEL_SPEED = 1.5  # px/ms while the pen is up
JITTER_PX = 0.3  # tremor: noise on the pen path
# device sampling period (ms) and its probability; a frame is dropped now and then
DEVICE_PERIODS = np.array([16.67, 8.33, 11.11, 33.33])
DEVICE_WEIGHTS = np.array([0.68, 0.22, 0.05, 0.05])
DROPPED_FRAME = 0.12
FRACTIONAL_DEVICE = 0.25  # share of drawings with fractional pixel coordinates (3 decimals)

# Country codes with weights roughly like Google's sample (US first, then a long tail).
COUNTRIES = {
    "US": 437, "GB": 70, "CA": 35, "DE": 26, "AU": 26, "SE": 22, "RU": 21, "PL": 20,
    "CZ": 20, "FR": 19, "KR": 19, "FI": 16, "BR": 15, "ID": 13, "SA": 11, "AT": 11,
    "IN": 10, "PH": 10, "NL": 9, "MX": 7, "RO": 7, "HU": 6, "BE": 6, "NZ": 6, "NO": 6,
    "TH": 6, "AE": 6, "MY": 6, "JP": 5, "PT": 5, "IT": 4, "ES": 4, "DK": 4, "UA": 3,
    "IE": 3, "SG": 3, "TW": 3, "HK": 2, "ZA": 2, "AR": 2, "CL": 2, "TR": 2, "IL": 2,
    "VN": 2, "EG": 1, "IS": 1, "EE": 1, "PE": 1, "KZ": 1, "RS": 1,
}
KEY_ID_RANGE = (4_500_000_000_000_000, 6_760_000_000_000_000)  # 16 digits, like Google's
TIMESTAMP_RANGE = ("2017-01-01T00:00:00", "2017-04-01T00:00:00")


# --------------------------------------------------------------------------- registry

@dataclass(frozen=True)
class ClassSpec:
    """A drawable class and how people draw it.

    Attributes:
        name: the Quick, Draw! word.
        fn: ``rng -> list of (k, 2) polylines`` in a unit frame (y down), in drawing order.
        size: typical extent relative to :data:`BASE_SIZE_PX`.
        speed: pen speed relative to :data:`BASE_SPEED`.
        care: probability of a pause at each sharp corner.
        pause: median length of such a pause, ms.
    """

    name: str
    fn: ShapeFn
    size: float = 1.0
    speed: float = 1.0
    care: float = 0.1
    pause: float = 150.0


REGISTRY: dict[str, ClassSpec] = {}


def register_class(name: str, *, size: float = 1.0, speed: float = 1.0, care: float = 0.1,
                   pause: float = 150.0) -> Callable[[ShapeFn], ShapeFn]:
    """Decorator registering a shape function under a Quick, Draw! class name.

    Args:
        name: the class word (must be one of Google's 345).
        size, speed, care, pause: see :class:`ClassSpec`.
    """
    def deco(fn: ShapeFn) -> ShapeFn:
        if name in REGISTRY:
            raise ValueError(f"class {name!r} registered twice")
        REGISTRY[name] = ClassSpec(name, fn, size, speed, care, pause)
        return fn
    return deco


# --------------------------------------------------------------------------- geometry helpers

def _arc(cx: float, cy: float, rx: float, ry: float, a0: float, a1: float, n: int | None = None
         ) -> np.ndarray:
    """Elliptic arc from angle ``a0`` to ``a1`` (radians; y down, so decreasing = counter-clockwise)."""
    n = n or max(4, int(abs(a1 - a0) / (2 * math.pi) * 40) + 2)
    a = np.linspace(a0, a1, n)
    return np.column_stack([cx + rx * np.cos(a), cy + ry * np.sin(a)])


def _loop(rng: np.random.Generator, cx: float = 0.0, cy: float = 0.0, rx: float = 1.0,
          ry: float = 1.0, start: float | None = None, ccw: bool | None = None, n: int = 40
          ) -> np.ndarray:
    """A hand-drawn closed ellipse in one stroke: starts near the top, drifts, over/undershoots."""
    if start is None:
        start = -math.pi / 2 + rng.normal(0, 0.5)
    if ccw is None:
        ccw = rng.random() < 0.7
    span = 2 * math.pi * (1 + rng.normal(0.04, 0.05))
    u = np.linspace(0, 1, n)
    a = start + (-1 if ccw else 1) * span * u
    r = (1 + rng.normal(0, 0.05) * u) * (1 + rng.normal(0, 0.04) * np.cos(2 * a + rng.uniform(0, 6.3)))
    return np.column_stack([cx + rx * r * np.cos(a), cy + ry * r * np.sin(a)])


def _line(p: Sequence[float], q: Sequence[float], rng: np.random.Generator, bow: float = 0.03
          ) -> np.ndarray:
    """A slightly bowed line from ``p`` to ``q`` (3 vertices)."""
    p, q = np.asarray(p, float), np.asarray(q, float)
    d = q - p
    mid = (p + q) / 2 + np.array([-d[1], d[0]]) * rng.normal(0, bow)
    return np.vstack([p, mid, q])


def _dot(x: float, y: float, rng: np.random.Generator, r: float = 0.02) -> np.ndarray:
    """A dot: a tiny stroke of 2 vertices."""
    return np.array([[x, y], [x + rng.normal(0, r), y + rng.normal(0, r)]])


def _bezier(p0: Sequence[float], p1: Sequence[float], p2: Sequence[float], n: int = 16) -> np.ndarray:
    """Quadratic Bezier curve from ``p0`` to ``p2`` with control point ``p1``."""
    u = np.linspace(0, 1, n)[:, None]
    p0, p1, p2 = (np.asarray(p, float) for p in (p0, p1, p2))
    return (1 - u) ** 2 * p0 + 2 * u * (1 - u) * p1 + u ** 2 * p2


def _regular(k: int, rng: np.random.Generator, r: float = 1.0, rot: float | None = None) -> np.ndarray:
    """Vertices of a regular k-gon, starting at the top-most one, in a random direction."""
    if rot is None:
        rot = rng.choice([0.0, math.pi / k])  # pointy or flat top
    a = -math.pi / 2 + rot + 2 * math.pi * np.arange(k) / k
    v = np.column_stack([r * np.cos(a), r * np.sin(a)])
    v = np.roll(v, -int(np.argmin(v[:, 1] + 0.01 * v[:, 0])), axis=0)
    if rng.random() < 0.6:  # counter-clockwise on screen
        v = np.vstack([v[:1], v[:0:-1]])
    return v + rng.normal(0, 0.03, v.shape)


def _close(path: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Close a polyline back to its start the way a hand does: overshoot, short gap or near miss."""
    p = np.vstack([path, path[:1]]).astype(float)
    r = rng.random()
    if r < 0.4:  # overshoot along the first side
        p = np.vstack([p, p[0] + (p[1] - p[0]) * rng.uniform(0.03, 0.2)])
    elif r < 0.65:  # stop short
        p[-1] = p[-2] + (p[-1] - p[-2]) * rng.uniform(0.85, 0.97)
    else:
        p[-1] += rng.normal(0, 0.02, 2)
    return p


def _polygon(verts: np.ndarray, rng: np.random.Generator,
             probs: tuple[float, float, float, float] = (0.65, 0.15, 0.12, 0.08)) -> list[np.ndarray]:
    """A closed polygon (vertices in drawing order) as strokes: one, two halves, sides or a chain.

    Args:
        verts: (k, 2) vertices, the first where the pen starts.
        probs: probabilities of one closed stroke, two halves from the first vertex, one
            stroke per side, and a chain of 2-3 consecutive pieces.
    """
    k = len(verts)
    mode = rng.choice(4, p=np.asarray(probs) / sum(probs))
    if mode == 0:
        return [_close(verts, rng)]
    if mode == 1:
        m = int(np.clip(round(k / 2 + rng.normal(0, 0.5)), 1, k - 1))
        return [verts[:m + 1].copy(), np.vstack([verts[:1], verts[:m - 1:-1]])]
    closed = np.vstack([verts, verts[:1]])
    if mode == 2:
        sides = [closed[i:i + 2].copy() for i in range(k)]
        return [s[::-1] if rng.random() < 0.15 else s for s in sides]
    cuts = np.sort(rng.choice(np.arange(1, k), size=min(k - 1, int(rng.integers(1, 3))), replace=False))
    bounds = [0, *cuts.tolist(), k]
    return [closed[a:b + 1].copy() for a, b in zip(bounds[:-1], bounds[1:])]


def _jit(p: np.ndarray, rng: np.random.Generator, s: float = 0.03) -> np.ndarray:
    """``p`` with Gaussian noise of scale ``s`` on every coordinate."""
    return p + rng.normal(0, s, p.shape)


# --------------------------------------------------------------------------- classes

@register_class("circle", speed=1.1)
def _circle(rng: np.random.Generator) -> list[np.ndarray]:
    ry = math.exp(rng.normal(0, 0.08))
    out = [_loop(rng, ry=ry)]
    if rng.random() < 0.04:  # traced a second time
        out.append(_loop(rng, rx=1.04, ry=ry * 1.04))
    return out


@register_class("square", speed=1.15, care=0.2, pause=200)
def _square(rng: np.random.Generator) -> list[np.ndarray]:
    v = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], float)
    if rng.random() < 0.2:
        v = np.roll(v, -int(rng.integers(1, 4)), axis=0)
    if rng.random() < 0.25:
        v = np.vstack([v[:1], v[:0:-1]])
    return _polygon(_jit(v, rng, 0.04), rng, (0.68, 0.14, 0.1, 0.08))


@register_class("triangle", speed=1.15, care=0.2, pause=200)
def _triangle(rng: np.random.Generator) -> list[np.ndarray]:
    v = _jit(np.array([[0, -1], [1, 0.75], [-1, 0.75]], float), rng, 0.05)
    if rng.random() < 0.45:
        v = v[[0, 2, 1]]
    if rng.random() < 0.15:  # "^" then the base
        base = v[[1, 2]] if rng.random() < 0.5 else v[[2, 1]]
        return [v[[1, 0, 2]], _line(*base, rng)]
    return _polygon(v, rng, (0.72, 0.06, 0.14, 0.08))


@register_class("hexagon", speed=0.85, care=0.7, pause=250)
def _hexagon(rng: np.random.Generator) -> list[np.ndarray]:
    return _polygon(_regular(6, rng), rng, (0.7, 0.08, 0.14, 0.08))


@register_class("octagon", speed=0.8, care=0.8, pause=500)
def _octagon(rng: np.random.Generator) -> list[np.ndarray]:
    return _polygon(_regular(8, rng), rng, (0.72, 0.06, 0.14, 0.08))


@register_class("star", speed=1.25, care=0.4, pause=200)
def _star(rng: np.random.Generator) -> list[np.ndarray]:
    a = -math.pi / 2 + 2 * math.pi * np.arange(5) / 5
    tips = np.column_stack([np.cos(a), np.sin(a)])
    if rng.random() < 0.55:  # pentagram, usually from the bottom-left tip
        order = np.array([3, 0, 2, 4, 1]) if rng.random() < 0.7 else np.array([0, 2, 4, 1, 3])
        v = _jit(tips[order], rng, 0.05)
        if rng.random() < 0.85:
            return [_close(v, rng)]
        closed = np.vstack([v, v[:1]])
        cut = int(rng.integers(2, 4))
        return [closed[:cut + 1], closed[cut:]]
    inner = np.column_stack([np.cos(a + math.pi / 5), np.sin(a + math.pi / 5)]) * rng.uniform(0.38, 0.55)
    v = np.empty((10, 2))
    v[0::2], v[1::2] = tips, inner
    if rng.random() < 0.5:
        v = np.vstack([v[:1], v[:0:-1]])
    return _polygon(_jit(v, rng, 0.04), rng, (0.8, 0.12, 0.0, 0.08))


@register_class("line", size=1.75, speed=1.2)
def _line_class(rng: np.random.Generator) -> list[np.ndarray]:
    r = rng.random()
    ang = rng.normal(0, 0.08) if r < 0.6 else (math.pi / 2 + rng.normal(0, 0.08) if r < 0.8
                                                else rng.choice([-1, 1]) * math.pi / 4 + rng.normal(0, 0.2))
    d = np.array([math.cos(ang), math.sin(ang)])
    p = _line(-d, d, rng, 0.02)
    return [p if rng.random() < 0.85 else p[::-1]]


@register_class("zigzag", size=1.6, speed=1.25, care=0.1)
def _zigzag(rng: np.random.Generator) -> list[np.ndarray]:
    k = int(rng.integers(5, 13))
    h = rng.uniform(0.15, 0.5)
    x = np.linspace(-1, 1, k)
    y = h * np.where(np.arange(k) % 2 == 0, 1, -1) * rng.uniform(0.8, 1.2, k)
    p = _jit(np.column_stack([x, y]), rng, 0.02)
    if rng.random() < 0.15:
        p = p[:, ::-1]
    if rng.random() < 0.05:
        m = k // 2
        return [p[:m + 1], p[m:]]
    return [p]


@register_class("squiggle", size=1.6, speed=1.1)
def _squiggle(rng: np.random.Generator) -> list[np.ndarray]:
    s = np.linspace(-1, 1, 80)
    f = rng.uniform(1.0, 3.5)
    amp = rng.uniform(0.15, 0.45) * (1 + 0.3 * np.sin(rng.uniform(1, 3) * s + rng.uniform(0, 6.3)))
    if rng.random() < 0.3:  # loopy, like a telephone cord
        w = 2 * math.pi * f * 1.5
        p = np.column_stack([s + 0.12 * np.sin(w * s), amp * np.cos(w * s)])
    else:
        p = np.column_stack([s, amp * np.sin(2 * math.pi * f * s / 2 + rng.uniform(0, 6.3))])
    if rng.random() < 0.12:
        m = int(rng.integers(25, 55))
        return [p[:m], p[m:] + rng.normal(0, 0.05, 2)]
    return [p]


@register_class("smiley face", speed=1.0)
def _smiley(rng: np.random.Generator) -> list[np.ndarray]:
    face = [_loop(rng)]
    ex, ey = rng.uniform(0.25, 0.45), -rng.uniform(0.2, 0.4)
    kind = rng.choice(3, p=[0.5, 0.3, 0.2])
    eyes = []
    for x in (-ex, ex):
        if kind == 0:
            eyes.append(_dot(x, ey, rng))
        elif kind == 1:
            eyes.append(_line((x, ey - 0.15), (x, ey + 0.1), rng))
        else:
            eyes.append(_loop(rng, x, ey, 0.1, 0.12, n=14))
    r = rng.uniform(0.4, 0.65)
    a = rng.uniform(0.12, 0.3) * math.pi
    mouth = [_arc(0, 0.05, r, r * rng.uniform(0.6, 1.1), math.pi - a, a)]
    if rng.random() < 0.1:
        mouth = [_close(mouth[0], rng)]
    nose = [_line((0, -0.05), (0.03, 0.15), rng)] if rng.random() < 0.12 else []
    parts = eyes + nose + mouth
    return face + parts if rng.random() < 0.85 else parts + face


@register_class("house", size=1.2, speed=1.1, care=0.3)
def _house(rng: np.random.Generator) -> list[np.ndarray]:
    w, top, bot = rng.uniform(0.6, 0.9), rng.uniform(-0.2, 0.1), 1.0
    eave = w + rng.uniform(0.0, 0.2)
    apex = np.array([rng.normal(0, 0.05), -1.0])
    walls = _jit(np.array([[-w, top], [w, top], [w, bot], [-w, bot]], float), rng, 0.03)
    roof = np.vstack([[-eave, top], apex, [eave, top]])
    r = rng.random()
    if r < 0.45:
        out = _polygon(walls, rng, (0.7, 0.1, 0.1, 0.1)) + [roof]
    elif r < 0.65:
        out = [roof, walls[[0, 3, 2, 1]]]
    elif r < 0.85:
        out = [_close(np.vstack([walls[3], walls[0], apex, walls[1], walls[2]]), rng)]
    else:
        out = _polygon(walls, rng, (1, 0, 0, 0)) + [_close(roof, rng)]
    if rng.random() < 0.7:
        dw, dh = rng.uniform(0.12, 0.25), rng.uniform(0.35, 0.6)
        dx = rng.uniform(-0.3, 0.3)
        out.append(np.array([[dx - dw, bot], [dx - dw, bot - dh], [dx + dw, bot - dh], [dx + dw, bot]]))
    for x in rng.choice([-0.45, 0.45], size=rng.choice(3, p=[0.55, 0.25, 0.2]), replace=False):
        s = rng.uniform(0.1, 0.18)
        y = top + rng.uniform(0.25, 0.35)
        out += _polygon(np.array([[x - s, y - s], [x + s, y - s], [x + s, y + s], [x - s, y + s]]), rng,
                        (0.8, 0.1, 0.05, 0.05))
        if rng.random() < 0.3:
            out += [np.array([[x, y - s], [x, y + s]]), np.array([[x - s, y], [x + s, y]])]
    if rng.random() < 0.15:
        cx = rng.uniform(0.3, 0.5)
        out.append(np.array([[cx, -0.55], [cx, -0.85], [cx + 0.15, -0.85], [cx + 0.15, -0.4]]))
    return out


@register_class("wheel", size=1.05, speed=1.0)
def _wheel(rng: np.random.Generator) -> list[np.ndarray]:
    out = [_loop(rng)]
    if rng.random() < 0.3:
        out.append(_loop(rng, rx=0.82, ry=0.82))
    hub = rng.uniform(0.12, 0.3) if rng.random() < 0.75 else 0.0
    if hub:
        out.append(_loop(rng, rx=hub, ry=hub, n=20))
    if rng.random() < 0.88:
        k = int(rng.choice([4, 5, 6, 8], p=[0.3, 0.15, 0.3, 0.25]))
        a = rng.uniform(0, math.pi) + 2 * math.pi * np.arange(k) / k
        rim = 0.8 if len(out) > 2 or rng.random() < 0.3 else 0.97
        if k % 2 == 0 and not hub and rng.random() < 0.6:  # diameters
            out += [_line(rim * np.array([math.cos(t), math.sin(t)]),
                          -rim * np.array([math.cos(t), math.sin(t)]), rng) for t in a[:k // 2]]
        else:
            out += [_line(max(hub, 0.03) * np.array([math.cos(t), math.sin(t)]),
                          rim * np.array([math.cos(t), math.sin(t)]), rng) for t in a]
    return out


@register_class("envelope", size=1.5, care=0.4, pause=200)
def _envelope(rng: np.random.Generator) -> list[np.ndarray]:
    h = rng.uniform(0.5, 0.75)
    rect = _jit(np.array([[-1, -h], [1, -h], [1, h], [-1, h]], float), rng, 0.03)
    tip = np.array([rng.normal(0, 0.05), rng.uniform(-0.1, 0.3)])
    flap = np.vstack([rect[0], tip, rect[1]])
    r = rng.random()
    if r < 0.15:  # everything in one stroke
        out = [np.vstack([rect[[1, 2, 3, 0]], tip, rect[1]])]
    else:
        out = _polygon(rect, rng, (0.8, 0.1, 0.05, 0.05)) + [flap if rng.random() < 0.8 else flap[::-1]]
    if rng.random() < 0.12:
        out.append(np.vstack([rect[3], tip * [1, 0.3] + [0, 0.1], rect[2]]))
    return out


@register_class("diamond", care=0.9, pause=450)
def _diamond(rng: np.random.Generator) -> list[np.ndarray]:
    if rng.random() < 0.75:
        w = rng.uniform(0.55, 0.9)
        v = np.array([[0, -1], [w, 0], [0, 1], [-w, 0]], float)
        if rng.random() < 0.4:
            v = np.vstack([v[:1], v[:0:-1]])
        return _polygon(_jit(v, rng, 0.04), rng, (0.62, 0.2, 0.1, 0.08))
    g = rng.uniform(-0.5, -0.2)  # girdle height of a gem
    outline = _jit(np.array([[-0.55, -0.8], [0.55, -0.8], [1, g], [0, 1], [-1, g]], float), rng, 0.03)
    out = [_close(outline, rng), _line(outline[4], outline[2], rng)]
    for x in rng.choice([-0.5, -0.2, 0.2, 0.5], size=int(rng.integers(0, 5)), replace=False):
        out.append(_line((x * 0.9, -0.8), (0, 1) if rng.random() < 0.6 else (x * 1.6, g), rng))
    return out


@register_class("moon", speed=0.9)
def _moon(rng: np.random.Generator) -> list[np.ndarray]:
    e = rng.uniform(0.2, 0.45)
    outer = _arc(0, 0, 1, 1, -math.pi / 2 + e, -1.5 * math.pi - e)
    inner = _bezier(outer[-1], (rng.uniform(-0.9, -0.1), 0), outer[0])  # bulges towards the back
    if rng.random() < 0.35:
        outer, inner = outer * [-1, 1], inner * [-1, 1]
    out = [np.vstack([outer, inner[1:]])] if rng.random() < 0.72 else [outer, inner]
    if rng.random() < 0.12:
        for _ in range(int(rng.integers(1, 4))):
            c = rng.uniform([0.5, -1], [1.2, 1])
            out.append(_loop(rng, c[0], c[1], 0.08, 0.08, n=12))
    return out


@register_class("sun", size=1.55, speed=1.25)
def _sun(rng: np.random.Generator) -> list[np.ndarray]:
    r = rng.uniform(0.35, 0.55)
    out = [_loop(rng, rx=r, ry=r)]
    k = int(rng.integers(4, 13))
    sgn = 1 if rng.random() < 0.6 else -1  # clockwise or not
    a = rng.uniform(0, 1) + sgn * 2 * math.pi * np.arange(k) / k
    r0, r1 = r + rng.uniform(0.08, 0.2), rng.uniform(0.8, 1.0)
    u = np.column_stack([np.cos(a), np.sin(a)])
    if rng.random() < 0.1:  # rays as one zigzag around the disc
        z = np.empty((2 * k + 1, 2))
        z[0:2 * k:2], z[1::2] = u * r0, np.column_stack([np.cos(a + sgn * math.pi / k), np.sin(a + sgn * math.pi / k)]) * r1
        z[-1] = z[0]
        out.append(z)
    else:
        out += [_line(p * r0, p * r1 * rng.uniform(0.9, 1.1), rng) for p in u]
    if rng.random() < 0.15:
        out += [_dot(-0.15, -0.1, rng), _dot(0.15, -0.1, rng),
                _arc(0, 0.05, 0.2, 0.15, 0.85 * math.pi, 0.15 * math.pi)]
    return out


def _bumps(pts: np.ndarray, rng: np.random.Generator, centre: np.ndarray) -> np.ndarray:
    """Outward half-circle bumps between consecutive points (a cloud outline)."""
    out = [pts[:1]]
    u = np.linspace(0, 1, 9)[1:, None]
    for p, q in zip(pts[:-1], pts[1:]):
        d = q - p
        n = np.array([d[1], -d[0]])
        if np.dot(n, (p + q) / 2 - centre) < 0:
            n = -n
        n = n / (np.linalg.norm(n) + 1e-12)
        h = np.linalg.norm(d) / 2 * rng.uniform(0.6, 1.1)
        out.append(p + u * d + np.sin(np.pi * u) * h * n)
    return np.vstack(out)


@register_class("cloud", size=1.3, speed=0.8)
def _cloud(rng: np.random.Generator) -> list[np.ndarray]:
    k = int(rng.integers(6, 11))
    a = math.pi * 0.75 + 2 * math.pi * np.arange(k + 1) / k * (1 if rng.random() < 0.6 else -1)
    base = np.column_stack([np.cos(a), 0.5 * np.sin(a)]) * rng.uniform(0.85, 1.15, (k + 1, 1))
    base[-1] = base[0]
    centre = np.zeros(2)
    if rng.random() < 0.35:  # flat bottom: bumps over the top, a line under
        top = base[base[:, 1] <= 0.2]
        if len(top) >= 3:
            top = top[np.argsort(top[:, 0])]
            bumps = _bumps(top, rng, centre)
            bottom = _line(bumps[-1], bumps[0], rng)
            if rng.random() < 0.7:
                return [np.vstack([bumps, bottom[1:]])]
            return [bumps, bottom]
    return [_bumps(base, rng, centre)]


@register_class("lightning", size=1.45, care=0.45, pause=250)
def _lightning(rng: np.random.Generator) -> list[np.ndarray]:
    r = rng.random()
    if r < 0.25:  # a simple zigzag bolt
        k = int(rng.integers(3, 6))
        y = np.linspace(-1, 1, k + 1)
        x = np.where(np.arange(k + 1) % 2 == 0, 0.3, -0.3) * rng.uniform(0.6, 1.3, k + 1)
        return [_jit(np.column_stack([x, y]), rng, 0.03)]
    v = np.array([[0.1, -1], [0.6, -1], [0.15, -0.15], [0.5, -0.15], [-0.4, 1], [-0.05, 0.1],
                  [-0.45, 0.1]], float)
    return _polygon(_jit(v, rng, 0.04), rng, (0.3, 0.4, 0.0, 0.3))


@register_class("ladder", size=1.4, speed=0.85)
def _ladder(rng: np.random.Generator) -> list[np.ndarray]:
    w = rng.uniform(0.25, 0.5)
    left, right = _line((-w, -1), (-w, 1), rng), _line((w, -1), (w, 1), rng)
    k = int(rng.integers(2, 7))
    ys = np.linspace(-1, 1, k + 2)[1:-1] + rng.normal(0, 0.03, k)
    if rng.random() < 0.25:
        ys = ys[::-1]
    rungs = [_line((-w, y), (w, y + rng.normal(0, 0.02)), rng) for y in ys]
    rungs = [p if rng.random() < 0.85 else p[::-1] for p in rungs]
    return [left, right, *rungs] if rng.random() < 0.8 else [left, *rungs, right]


@register_class("fence", size=1.9, speed=1.1)
def _fence(rng: np.random.Generator) -> list[np.ndarray]:
    k = int(rng.integers(3, 8))
    xs = np.linspace(-1, 1, k) + rng.normal(0, 0.03, k)
    h = rng.uniform(0.4, 0.7)
    if rng.random() < 0.25:  # pickets as one outline chain
        pts = []
        w = (xs[1] - xs[0]) * 0.35
        for x in xs:
            pts += [[x - w, h], [x - w, -h + 0.1], [x, -h], [x + w, -h + 0.1], [x + w, h]]
        posts = [np.array(pts)]
    else:
        pointy = rng.random() < 0.3
        posts = [np.array([[x - 0.05, h], [x - 0.05, -h + 0.1], [x, -h], [x + 0.05, -h + 0.1], [x + 0.05, h]])
                 if pointy else _line((x, -h), (x, h), rng) for x in xs]
    rails = [_line((-1.1, y), (1.1, y), rng) for y in sorted(rng.uniform(-0.35, 0.35, int(rng.integers(1, 3))))]
    return posts + rails if rng.random() < 0.6 else rails + posts


@register_class("mountain", size=1.75, speed=0.95, care=0.4, pause=200)
def _mountain(rng: np.random.Generator) -> list[np.ndarray]:
    k = int(rng.choice([1, 2, 3], p=[0.5, 0.3, 0.2]))
    px = np.sort(rng.uniform(-0.7, 0.7, k)) if k > 1 else np.array([rng.normal(0, 0.1)])
    ph = -rng.uniform(0.5, 1.0, k)
    pts = [[-1, 0.6]]
    for i, (x, y) in enumerate(zip(px, ph)):
        if i:
            pts.append([(px[i - 1] + x) / 2, rng.uniform(-0.2, 0.3)])
        pts.append([x, y])
    pts.append([1, 0.6])
    ridge = _jit(np.array(pts, float), rng, 0.03)
    out = [ridge]
    if rng.random() < 0.2:  # snow cap: a zigzag across the highest peak
        i = 1 + 2 * int(np.argmin(ph))
        peak, left, right = ridge[i], ridge[i - 1], ridge[i + 1]
        a = peak + (left - peak) * min(0.5, 0.3 / max(left[1] - peak[1], 1e-3))
        b = peak + (right - peak) * min(0.5, 0.3 / max(right[1] - peak[1], 1e-3))
        u = np.linspace(0, 1, 5)[:, None]
        cap = a + u * (b - a)
        cap[1::2, 1] -= 0.1
        out.append(cap)
    if rng.random() < 0.1:
        out.append(_line((-1.1, 0.62), (1.1, 0.62), rng))
    return out


@register_class("donut", speed=0.9)
def _donut(rng: np.random.Generator) -> list[np.ndarray]:
    r = rng.uniform(0.25, 0.45)
    out = [_loop(rng), _loop(rng, rx=r, ry=r, n=24)]
    if rng.random() < 0.1:
        out = out[::-1]
    if rng.random() < 0.15:  # wavy icing edge
        a = np.linspace(0, 2 * math.pi, 60)
        rr = 0.75 + 0.06 * np.sin(8 * a)
        out.append(np.column_stack([rr * np.cos(a), rr * np.sin(a)]))
    if rng.random() < 0.35:
        for _ in range(int(rng.integers(2, 9))):
            ang, rad = rng.uniform(0, 2 * math.pi), rng.uniform(r + 0.15, 0.85)
            c = rad * np.array([math.cos(ang), math.sin(ang)])
            d = rng.normal(0, 1, 2)
            out.append(np.vstack([c, c + 0.09 * d / np.linalg.norm(d)]))
    return out


@register_class("stairs", size=1.25, speed=1.1, care=0.3)
def _stairs(rng: np.random.Generator) -> list[np.ndarray]:
    k = int(rng.integers(3, 8))
    pts = [[-1, 1]]
    s = 2 / k
    for i in range(k):
        pts += [[-1 + i * s, 1 - (i + 1) * s], [-1 + (i + 1) * s, 1 - (i + 1) * s]]
    p = _jit(np.array(pts, float), rng, 0.02)
    if rng.random() < 0.3:
        p = p[::-1]
    out = [p]
    if rng.random() < 0.25:
        out.append(np.array([[1, -1], [1, 1], [-1, 1]], float))
    return out


@register_class("rainbow", size=1.75, speed=1.0)
def _rainbow(rng: np.random.Generator) -> list[np.ndarray]:
    k = int(rng.choice([1, 2, 3, 4, 5, 6], p=[0.2, 0.4, 0.2, 0.1, 0.06, 0.04]))
    step = rng.uniform(0.12, 0.2)
    arcs = [_arc(0, 0.5, 1 - i * step, (1 - i * step) * rng.uniform(0.9, 1.2), math.pi, 2 * math.pi)
            for i in range(k)]
    if rng.random() < 0.25 and k > 1:  # one serpentine stroke
        return [np.vstack([a if i % 2 == 0 else a[::-1] for i, a in enumerate(arcs)])]
    return [a if rng.random() < 0.8 else a[::-1] for a in arcs]


CLASSES: tuple[str, ...] = tuple(REGISTRY)
"""Registered classes, in registration order (:func:`make_competition` takes the first N)."""


# --------------------------------------------------------------------------- the pen

@numba.njit(cache=True)
def _pen_kernel(v: np.ndarray, sid: np.ndarray, extent: float, speed: float, care: float,
                pause_ms: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pen simulation over unit-frame vertices ``v`` of strokes ``sid`` (see :func:`_pen`).

    Returns the sampled points (K, 2), their times (K,) in integer ms and points per stroke.
    All randomness comes from numba's generator seeded with ``seed``.
    """
    np.random.seed(seed)
    n = len(v)
    n_strokes = sid[-1] + 1
    # pose: rotation, aspect, shear; scaled so that the largest side is `extent` px
    th, asp, shear = 0.07 * np.random.randn(), math.exp(0.12 * np.random.randn()), 0.04 * np.random.randn()
    m00, m01 = math.cos(th) * asp, math.cos(th) * shear - math.sin(th) / asp
    m10, m11 = math.sin(th) * asp, math.sin(th) * shear + math.cos(th) / asp
    v = np.column_stack((m00 * v[:, 0] + m01 * v[:, 1], m10 * v[:, 0] + m11 * v[:, 1]))
    span = max(v[:, 0].max() - v[:, 0].min(), v[:, 1].max() - v[:, 1].min(), 1e-9)
    v *= extent / span
    last = np.empty(n, np.bool_)
    for i in range(n):
        last[i] = i == n - 1 or sid[i + 1] != sid[i]

    # speed: cruise v_max, slower on tight curves (v ~ radius^(1/3), the 2/3 power law), much
    # slower at corners and stroke ends, with bounded acceleration in between
    v_max = BASE_SPEED * speed * (extent / BASE_SIZE_PX) ** 0.6 * math.exp(0.3 * np.random.randn())
    acc = v_max ** 2 / (2 * ACCEL_FRACTION * extent * math.exp(0.2 * np.random.randn()))
    seg = np.zeros((n, 2))
    seg_len = np.zeros(n)
    for i in range(n - 1):
        if not last[i]:
            seg[i] = v[i + 1] - v[i]
            seg_len[i] = math.hypot(seg[i, 0], seg[i, 1])
    v_vert = np.empty(n)  # speed through each vertex
    v_curve = np.ones(n)  # curvature limit near each vertex, as a fraction of v_max
    pause = np.zeros(n)
    for i in range(n):
        if i == 0 or last[i - 1]:
            v_vert[i] = v_max * (0.05 + 0.15 * np.random.random())
        elif last[i]:
            v_vert[i] = v_max * (0.1 + 0.25 * np.random.random())
        else:
            den = seg_len[i - 1] * seg_len[i]
            c = (seg[i - 1, 0] * seg[i, 0] + seg[i - 1, 1] * seg[i, 1]) / den if den > 0 else 1.0
            turn = math.acos(min(1.0, max(-1.0, c)))
            if turn > 1e-6:
                radius = 0.5 * (seg_len[i - 1] + seg_len[i]) / turn
                v_curve[i] = min(1.0, (radius / extent) ** (1 / 3))
            v_vert[i] = v_max * min(v_curve[i], max(0.05, 1 - turn / 1.8))
            if turn > 0.7 and np.random.random() < care:  # a careful drawer stops at the corner
                pause[i] = pause_ms * math.exp(0.6 * np.random.randn())
    cnt = np.ones(n, np.int64)
    for i in range(n):
        if not last[i]:
            cnt[i] = max(1, int(math.ceil(seg_len[i] / DENSE_STEP_PX))) if seg_len[i] > 1e-6 else 0
    stroke_dense = np.zeros(n_strokes, np.int64)
    for i in range(n):
        stroke_dense[sid[i]] += cnt[i]
    # hesitation: some strokes stop once somewhere in the middle
    hes_at = np.full(n_strokes, -1, np.int64)
    hes_ms = np.zeros(n_strokes)
    for s in range(n_strokes):
        if np.random.random() < 0.06:
            hes_at[s] = int(np.random.random() * stroke_dense[s])
            hes_ms[s] = 80 + 420 * np.random.random()

    gap_ms = STROKE_GAP_MS * min(1.3, 1.5 * n_strokes ** -0.3)  # quicker between many short strokes
    # the dense pen path, the time and the arc length at each of its points; a pause is a
    # second point at the same place (so the device, which reports movement only, goes quiet)
    m = 2 * cnt.sum()
    pts = np.empty((m, 2))
    t = np.empty(m)
    arc = np.empty(m)
    s_start = np.empty(n_strokes + 1, np.int64)
    j = 0
    now = 0.0
    length = 0.0
    prev_speed = 0.0
    k_in_stroke = 0
    s_prev = 0
    for i in range(n):
        s = sid[i]
        v_next = v_vert[i] if last[i] else v_vert[i + 1]
        cruise = v_max * min(v_curve[i], v_curve[i + 1] if i + 1 < n else 1.0)
        for k in range(cnt[i]):
            f = k / cnt[i]
            a = f * seg_len[i]
            x = v[i, 0] + f * seg[i, 0] + JITTER_PX * np.random.randn()
            y = v[i, 1] + f * seg[i, 1] + JITTER_PX * np.random.randn()
            sp = min(cruise, math.sqrt(v_vert[i] ** 2 + 2 * acc * a),
                     math.sqrt(v_next ** 2 + 2 * acc * (seg_len[i] - a)))
            hold = 0.0
            if j > 0:
                step = math.hypot(x - pts[j - 1, 0], y - pts[j - 1, 1])
                if s != s_prev:  # pen up: a pause, then travel to the new start
                    now += gap_ms * math.exp(0.75 * np.random.randn()) + step / TRAVEL_SPEED
                    k_in_stroke = 0
                    length = 0.0
                else:
                    dt = step / max(0.5 * (sp + prev_speed), 1e-3)
                    if np.random.random() < PAUSE_RATE * dt:  # the hand stalls for a moment
                        hold += PAUSE_MS * math.exp(0.9 * np.random.randn())
                    now += dt
                    length += step
            if k_in_stroke == 0:
                s_start[s] = j
            if k == 0:
                hold += pause[i]
            if k_in_stroke == hes_at[s]:
                hold += hes_ms[s]
            pts[j, 0], pts[j, 1], t[j], arc[j] = x, y, now, length
            j += 1
            if hold > 0:
                now += hold
                pts[j, 0], pts[j, 1], t[j], arc[j] = x, y, now, length
                j += 1
            prev_speed = sp
            s_prev = s
            k_in_stroke += 1
    m = j
    s_start[n_strokes] = m
    pts, t, arc = pts[:m], t[:m], arc[:m]

    # the hand's imprecision: a smooth warp of the whole drawing (a few % of the extent) ...
    amp = extent * 0.02 * math.exp(0.3 * np.random.randn())
    for w in range(3):
        ang = 2 * math.pi * np.random.random()
        kw = 2 * math.pi / (extent * (0.6 + 1.4 * np.random.random()))
        kx, ky = kw * math.cos(ang), kw * math.sin(ang)
        dx, dy = np.random.randn(), np.random.randn()
        scale = amp * (0.3 + 0.7 * np.random.random()) / max(math.hypot(dx, dy), 1e-9)
        ph = 2 * math.pi * np.random.random()
        for q in range(m):
            sn = math.sin(kx * pts[q, 0] + ky * pts[q, 1] + ph) * scale
            pts[q, 0] += sn * dx
            pts[q, 1] += sn * dy
    # ... and a wobble along each stroke (wavelengths of 10-50 % of the extent)
    wob = extent * WOBBLE * math.exp(0.4 * np.random.randn())
    for s in range(n_strokes):
        for w in range(4):
            kw = 2 * math.pi / (extent * (0.1 + 0.4 * np.random.random()))
            ph = 2 * math.pi * np.random.random()
            a = wob * (0.5 + np.random.random())
            for q in range(s_start[s], s_start[s + 1]):
                pts[q, w % 2] += a * math.sin(kw * arc[q] + ph)

    # placement on the screen and the device: sampling period, precision
    lo_x, lo_y = pts[:, 0].min(), pts[:, 1].min()
    off_x = 20 + max(20.0, 980 - extent) * np.random.random() - lo_x
    off_y = 15 + max(15.0, 545 - extent) * np.random.random() - lo_y
    r = np.random.random()
    period = DEVICE_PERIODS[-1]
    acc_w = 0.0
    for d in range(len(DEVICE_PERIODS)):
        acc_w += DEVICE_WEIGHTS[d]
        if r < acc_w:
            period = DEVICE_PERIODS[d]
            break
    fractional = np.random.random() < FRACTIONAL_DEVICE
    cap = int(t[-1] / (0.4 * period)) + 2 * n_strokes + 8
    out_xy = np.empty((cap, 2))
    out_t = np.empty(cap)
    out_len = np.zeros(n_strokes, np.int64)
    o = 0
    tick = period * np.random.random()
    for s in range(n_strokes):
        a, b = s_start[s], s_start[s + 1]
        di = a
        while tick <= t[a]:
            tick += period
        for e in range(3):  # 0: pen down, 1: frame ticks, 2: pen up
            while True:
                if e == 0:
                    x, y, now = pts[a, 0], pts[a, 1], t[a]
                elif e == 2:
                    x, y, now = pts[b - 1, 0], pts[b - 1, 1], t[b - 1]
                else:
                    if tick >= t[b - 1]:
                        break
                    now = tick
                    while t[di + 1] < now:
                        di += 1
                    f = (now - t[di]) / (t[di + 1] - t[di])
                    x = pts[di, 0] + f * (pts[di + 1, 0] - pts[di, 0])
                    y = pts[di, 1] + f * (pts[di + 1, 1] - pts[di, 1])
                    dropped = 2.0 if np.random.random() < DROPPED_FRAME else 1.0
                    tick += max(0.4 * period, period * dropped + 0.6 * np.random.randn())
                x += off_x
                y += off_y
                if fractional:
                    x, y = round(x * 1000) / 1000, round(y * 1000) / 1000
                else:
                    x, y = float(round(x)), float(round(y))
                if e == 1 and out_len[s] > 0:  # no event unless the pen moved
                    px, py = out_xy[o - 1, 0], out_xy[o - 1, 1]
                    if (math.hypot(x - px, y - py) <= 0.4) if fractional else (x == px and y == py):
                        continue
                out_xy[o, 0], out_xy[o, 1] = max(x, 0.0), max(y, 0.0)
                out_t[o] = round(now)
                out_len[s] += 1
                o += 1
                if e != 1:
                    break
    return out_xy[:o], out_t[:o] - out_t[0], out_len


def _pen(paths: list[np.ndarray], rng: np.random.Generator, spec: ClassSpec) -> list[np.ndarray]:
    """Simulate a person drawing ``paths`` (unit-frame polylines, in order) on a screen.

    The drawing gets a random pose and size; the pen accelerates from rest, cruises (slower
    on tight curves), slows at corners (stopping at some, see ``spec.care``) and at stroke
    ends, stalls now and then, lifts between strokes for a log-normal pause plus the travel,
    and follows a smooth random warp of the shape plus a wobble along each stroke. The
    device reports the pen-down and pen-up points and, at each frame tick (60 Hz mostly,
    with dropped frames), the pen position if it moved.

    Returns:
        Raw strokes (n, 3) [x, y, t]: pixels and integer ms since the first point.
    """
    paths = [p for p in paths if len(p)]
    sid = np.repeat(np.arange(len(paths)), [len(p) for p in paths])
    extent = BASE_SIZE_PX * spec.size * math.exp(rng.normal(0, SIZE_SIGMA))
    xy, t, counts = _pen_kernel(np.concatenate(paths).astype(np.float64), sid, extent, spec.speed,
                                spec.care, spec.pause, int(rng.integers(2**31)))
    pts = np.column_stack([xy, t])
    ends = np.cumsum(counts)
    return [pts[e - c:e] for c, e in zip(counts, ends)]


# --------------------------------------------------------------------------- public drawing API

_SCRIBBLE = ClassSpec("scribble", lambda rng: [], size=1.2, speed=1.2, care=0.0)


def draw(word: str, rng: np.random.Generator) -> list[np.ndarray]:
    """One raw drawing of ``word``.

    Args:
        word: a registered class (see :data:`CLASSES`).
        rng: the random generator; the drawing is a deterministic function of its state.

    Returns:
        Strokes as (n, 3) float64 arrays [x, y, t]: screen pixels (positive) and integer
        milliseconds since the drawing's first point (first t = 0, non-decreasing).
    """
    try:
        spec = REGISTRY[word]
    except KeyError:
        raise KeyError(f"no synthetic class {word!r}; known: {', '.join(CLASSES)}") from None
    return _pen(spec.fn(rng), rng, spec)


def scribble(rng: np.random.Generator) -> list[np.ndarray]:
    """An unrecognizable raw drawing: 1-4 random wandering strokes."""
    paths = []
    for _ in range(int(rng.choice([1, 2, 3, 4], p=[0.4, 0.3, 0.2, 0.1]))):
        n = int(rng.integers(4, 30))
        heading = np.cumsum(rng.normal(0, rng.uniform(0.3, 1.2), n)) + rng.uniform(0, 2 * math.pi)
        steps = np.column_stack([np.cos(heading), np.sin(heading)]) * rng.uniform(0.05, 0.3, (n, 1))
        paths.append(rng.uniform(-1, 1, 2) + np.vstack([np.zeros(2), np.cumsum(steps, axis=0)]))
    return _pen(paths, rng, _SCRIBBLE)


def _unrecognized(word: str, rng: np.random.Generator) -> list[np.ndarray]:
    """A drawing the game did not recognize: a scribble, or ``word`` abandoned part way."""
    if rng.random() < 0.5:
        return scribble(rng)
    strokes = draw(word, rng)
    cut = strokes[-1][-1, 2] * rng.uniform(0.15, 0.6)
    out = []
    for s in strokes:
        s = s[s[:, 2] <= cut]
        if len(s):
            out.append(s)
    return out if sum(map(len, out)) >= 2 else [strokes[0][:max(2, len(strokes[0]) // 3)]]


# --------------------------------------------------------------------------- the competition

def _pack(raws: Sequence[Sequence[np.ndarray]]) -> tuple[Drawings, Drawings]:
    """Pack raw drawings (float64 with at most 3 decimals, which the ndjson text and any reader
    reproduce exactly) and Google-simplify them (uint8)."""
    raw = Drawings.from_strokes(raws, dtype=np.float64)
    xy, so, do = simplify_packed(raw.xy, raw.stroke_offsets, raw.drawing_offsets)
    return raw, Drawings(xy, None, so, do)


def _key_ids(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` distinct 16-digit key_ids in random order."""
    keys = np.zeros(0, np.int64)
    while len(keys) < n:
        more = np.concatenate([keys, rng.integers(*KEY_ID_RANGE, size=n - len(keys) + 16, dtype=np.int64)])
        _, first = np.unique(more, return_index=True)
        keys = more[np.sort(first)]
    return keys[:n]


def _timestamps(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` timestamps in early 2017, formatted like Google's (``2017-03-27 00:14:57.31033 UTC``)."""
    lo, hi = (np.datetime64(s, "s") for s in TIMESTAMP_RANGE)
    secs = lo + rng.integers(0, int((hi - lo) / np.timedelta64(1, "s")), size=n)
    frac = rng.integers(0, 100_000, size=n)
    text = np.datetime_as_string(secs, unit="s")
    return [f"{s.replace('T', ' ')}.{(f'{f:05d}'.rstrip('0') or '0')} UTC" for s, f in zip(text, frac)]


def _meta(rng: np.random.Generator, keys: np.ndarray, word: str, recognized: np.ndarray) -> pd.DataFrame:
    """Metadata rows (:data:`doodle_utils.data.META_COLUMNS`) for one class."""
    codes = np.array(list(COUNTRIES))
    weights = np.array(list(COUNTRIES.values()), float)
    return pd.DataFrame({
        "key_id": keys.astype(np.int64),
        "word": word,
        "countrycode": rng.choice(codes, size=len(keys), p=weights / weights.sum()),
        "recognized": recognized.astype(bool),
        "timestamp": _timestamps(rng, len(keys)),
    })


def submission_words(words: Sequence[str]) -> str:
    """Words as one submission cell: space-separated, spaces inside a word replaced by ``_``.

    >>> submission_words(["The Eiffel Tower", "airplane", "donut"])
    'The_Eiffel_Tower airplane donut'
    """
    return " ".join(w.replace(" ", "_") for w in words)


_SYNTH_RULES = {  # synthetic-competition options: how each is checked
    "classes": lambda v: options.integer("classes", v, 1, len(CLASSES)),
    "per_class": lambda v: options.integer("per_class", v, lo=0),
    "test_per_class": lambda v: options.integer("test_per_class", v, lo=0),
    "seed": lambda v: options.integer("seed", v, lo=0),
    "unrecognized": lambda v: options.number("unrecognized", v, 0, 1),
    "raw_format": lambda v: options.choice("raw_format", v, ("csv", "ndjson")),
}
SYNTH_OPTIONS = tuple(_SYNTH_RULES)


def check_options(**values: object) -> None:
    """Raise :class:`~doodle_utils.options.OptionError` for a synthetic-competition option of
    the wrong type or range, or an unknown one (the CLI, profiles' ``data.synth`` and
    :func:`make_competition` all check here)."""
    options.check(_SYNTH_RULES, values, "synthetic-competition")


def make_competition(out_dir: str | os.PathLike, classes: int = 12, per_class: int = 200,
                     test_per_class: int = 20, seed: int = 0, unrecognized: float = 0.06,
                     raw_format: str = "csv") -> dict:
    """Write a synthetic mini-competition in Kaggle's exact file set.

    Files (each written atomically)::

        train_simplified/<word>.csv   countrycode,drawing,key_id,recognized,timestamp,word
        train_raw/<word>.csv          the same rows, raw strokes [[x...], [y...], [t...]]
        test_simplified.csv           key_id,countrycode,drawing (test_per_class per class, shuffled)
        test_raw.csv                  the same key_ids in the same order, raw strokes
        sample_submission.csv         key_id,word with the same three placeholder words each row

    and, outside that folder where a kernel attaching the competition never sees it, the
    answers ``<out_dir>_answers/test_labels.csv`` (key_id,word; :func:`.paths.answers_file`).
    ``raw_format="ndjson"`` writes Google's ``train_raw/<word>.ndjson`` instead of the raw
    CSVs (and no ``test_raw.csv``).

    Train rows are recognized except a fraction ``unrecognized`` (scribbles or abandoned
    drawings); test rows are all recognized drawings. The simplified strokes are Google's
    simplification of the raw ones exactly as written (3-decimal floats, read back unchanged). key_ids are unique across
    all files. The same arguments give byte-identical files.

    Args:
        out_dir: destination folder (created).
        classes: how many classes, the first ones of :data:`CLASSES`.
        per_class: train rows per class.
        test_per_class: test rows per class.
        seed: random seed.
        unrecognized: fraction of train rows with ``recognized=False``.
        raw_format: "csv" (Kaggle's raw files) or "ndjson" (Google's).

    Returns:
        A summary: ``classes``, ``seed``, ``train_rows``, ``train_unrecognized``,
        ``test_rows`` and ``files`` (relative path -> rows).
    """
    check_options(classes=classes, per_class=per_class, test_per_class=test_per_class, seed=seed,
                  unrecognized=unrecognized, raw_format=raw_format)
    out = Path(out_dir)
    words = CLASSES[:classes]
    meta_rng = np.random.default_rng([seed, 0])
    keys = _key_ids(meta_rng, classes * (per_class + test_per_class)).reshape(classes, -1)
    files: dict[str, int] = {}
    tests: list[tuple[pd.DataFrame, Drawings, Drawings]] = []
    n_unrec = 0
    for c, word in enumerate(words):
        rng = np.random.default_rng([seed, 1, c])
        rec = np.r_[rng.random(per_class) >= unrecognized, np.ones(test_per_class, bool)]
        raws = [draw(word, rng) if r else _unrecognized(word, rng) for r in rec]
        meta = _meta(rng, keys[c], word, rec)
        raw, simple = _pack(raws)
        train = np.arange(per_class)
        if per_class:
            write_csv(out / "train_simplified" / f"{word}.csv", meta.iloc[train], simple.take(train))
            raw_name = f"train_raw/{word}.{raw_format}"
            if raw_format == "csv":
                write_csv(out / raw_name, meta.iloc[train], raw.take(train))
            else:
                write_ndjson(out / raw_name, meta.iloc[train], raw.take(train))
            files[f"train_simplified/{word}.csv"] = files[raw_name] = per_class
        n_unrec += int((~rec).sum())
        test = np.arange(per_class, per_class + test_per_class)
        tests.append((meta.iloc[test], simple.take(test), raw.take(test)))
    test_meta = pd.concat([m for m, _, _ in tests], ignore_index=True)
    order = meta_rng.permutation(len(test_meta))
    test_meta = test_meta.iloc[order].reset_index(drop=True)
    write_csv(out / "test_simplified.csv", test_meta, Drawings.concat([d for _, d, _ in tests]).take(order),
                   test=True)
    n_test = len(test_meta)
    if raw_format == "csv":
        write_csv(out / "test_raw.csv", test_meta, Drawings.concat([r for _, _, r in tests]).take(order),
                       test=True)
        files["test_raw.csv"] = n_test
    with atomic_path(out / "sample_submission.csv") as tmp:
        pd.DataFrame({"key_id": test_meta["key_id"], "word": submission_words(words[:3])}).to_csv(tmp, index=False)
    answers = answers_file(out)
    with atomic_path(answers) as tmp:
        test_meta[["key_id", "word"]].to_csv(tmp, index=False)
    files.update({"test_simplified.csv": n_test, "sample_submission.csv": n_test,
                  str(Path("..") / answers.parent.name / answers.name): n_test})
    return {"classes": list(words), "seed": seed, "train_rows": classes * per_class,
            "train_unrecognized": n_unrec, "test_rows": n_test, "files": files}


# --------------------------------------------------------------------------- statistics

STAT_METRICS = ("strokes", "raw_points", "simplified_points", "duration_ms")


def _per_drawing(drawings: Drawings) -> dict[str, np.ndarray]:
    """Per-drawing counts; raw batches also get simplified points and durations."""
    out = {"strokes": drawings.stroke_counts(), "raw_points" if drawings.raw else "simplified_points":
           drawings.point_counts()}
    if drawings.raw:
        _, so, do = simplify_packed(drawings.xy.astype(np.float64), drawings.stroke_offsets,
                                    drawings.drawing_offsets)
        out["simplified_points"] = np.diff(so[do])
        last = drawings.stroke_offsets[drawings.drawing_offsets[1:]] - 1
        first = drawings.stroke_offsets[drawings.drawing_offsets[:-1]]
        out["duration_ms"] = (drawings.t[last] - drawings.t[first]).astype(np.int64)
    return out


def drawing_stats(drawings: Drawings) -> dict[str, dict[str, float]]:
    """10th percentile, median and 90th percentile per drawing of each metric.

    Args:
        drawings: a raw batch (all of :data:`STAT_METRICS`) or a simplified one (strokes and
            simplified points).

    Returns:
        ``{metric: {"n", "p10", "median", "p90"}}``.
    """
    out = {}
    for name, values in _per_drawing(drawings).items():
        p10, med, p90 = np.percentile(values, [10, 50, 90]) if len(values) else (np.nan,) * 3
        out[name] = {"n": len(values), "p10": float(p10), "median": float(med), "p90": float(p90)}
    return out


def compare_with_real(real_raw_dir: str | os.PathLike, seed: int = 0, per_class: int = 100,
                      classes: Sequence[str] | None = None) -> pd.DataFrame:
    """Synthetic vs real drawing statistics for the synthetic classes found in ``real_raw_dir``.

    Both sides are recognized drawings only; the real raw strokes are simplified with the
    same :func:`doodle_utils.data.simplify.simplify_packed` as the synthetic ones.

    Args:
        real_raw_dir: Google raw files ``<word>.ndjson`` (e.g. the real sample's ``raw/``).
        seed: seed of the synthetic drawings.
        per_class: synthetic drawings per class.
        classes: which classes (default: all of :data:`CLASSES` with a real file).

    Returns:
        Long table with columns ``word, metric, source ("synthetic"/"real"), n, p10, median, p90``.
    """
    real_raw_dir = Path(real_raw_dir)
    rows = []
    for c, word in enumerate(classes or CLASSES):
        path = real_raw_dir / f"{word}.ndjson"
        if not path.is_file():
            continue
        meta, real, _ = read_file(path, lenient=True)
        real = real.take(meta["recognized"].to_numpy())
        rng = np.random.default_rng([seed, 2, CLASSES.index(word)])
        syn, _ = _pack([draw(word, rng) for _ in range(per_class)])
        for source, batch in (("synthetic", syn), ("real", real)):
            for metric, s in drawing_stats(batch).items():
                rows.append({"word": word, "metric": metric, "source": source, **s})
    return pd.DataFrame(rows, columns=["word", "metric", "source", "n", "p10", "median", "p90"])


def stats_table_markdown(df: pd.DataFrame) -> str:
    """A markdown table of :func:`compare_with_real`'s output: one row per class, for each
    metric ``synthetic | real`` as ``median (p10-p90)``."""
    metrics = [m for m in STAT_METRICS if m in set(df["metric"])]
    head = ["class"] + [f"{m} {s}" for m in metrics for s in ("syn", "real")]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    cell = {(r.word, r.metric, r.source): f"{r.median:.0f} ({r.p10:.0f}–{r.p90:.0f})" for r in df.itertuples()}
    for word in dict.fromkeys(df["word"]):
        vals = [cell.get((word, m, s), "") for m in metrics for s in ("synthetic", "real")]
        lines.append("| " + " | ".join([word, *vals]) + " |")
    return "\n".join(lines) + "\n"
