"""OpenCV's pen: what one line of a given thickness inks, shared by the three engines that
reproduce OpenCV (:mod:`._torch`, :mod:`.render_numba`, :mod:`.render_triton`).

The anti-aliased reach and slope were fitted on whole drawings (see :mod:`._torch`'s
docstring for the fit and the agreement it gives); the aliased rules are OpenCV's polygon and
midpoint circles.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True)
class Pen:
    """How one (thickness, antialias) pair draws, in canvas pixels."""

    thickness: int
    antialias: bool
    reach: float  # no ink farther than this from the segment
    aa_slope: float = 1.0  # AA coverage = clip((reach - d) * aa_slope, 0, 1)
    half_width: float = 0.0  # aliased: the polygon's half width (0: 1-pixel line)
    cap: int = 0  # aliased: radius of the end-point circles (0: none)


def opencv_pen(thickness: int, antialias: bool) -> Pen:
    """OpenCV's line of this thickness: fitted reach for AA, its polygon and circles for LINE_8."""
    if antialias:  # reach and slope fitted on whole drawings (see the module docstring)
        if thickness == 1:  # one anti-aliased 1-pixel line
            return Pen(1, True, 1.15, 1.0)
        hw = (thickness + (thickness & 1)) / 2  # odd: OpenCV widens the polygon to (t + 1) / 2
        return Pen(thickness, True, hw + 1.25, 0.9)
    if thickness == 1:  # exact (render_torch._thin_aliased)
        return Pen(1, False, 1.5)
    hw = (thickness + (thickness & 1)) / 2
    cap = (thickness + 1) // 2
    return Pen(thickness, False, max(hw, cap) + 1.0, half_width=hw, cap=cap)


@lru_cache(maxsize=32)
def circle_spans(radius: int) -> tuple[int, ...]:
    """Half-width of OpenCV's filled midpoint circle at each row offset 0..radius."""
    span = [-1] * (radius + 1)
    err, dx, dy, plus, minus = 0, radius, 0, 1, (radius << 1) - 1
    while dx >= dy:
        span[dy] = max(span[dy], dx)
        span[dx] = max(span[dx], dy)
        dy += 1
        err += plus
        plus += 2
        mask = (err <= 0) - 1
        err -= minus & mask
        dx += mask
        minus -= mask & 2
    return tuple(span)
