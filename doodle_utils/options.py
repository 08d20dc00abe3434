"""Option values checked at the door: one error type for a value of the wrong type or range.

The CLI, the profile loader and the library's entry points (``store.pack``,
``synth.make_competition``) check with the same functions, so a bad value gets the same
message whichever way it came in, before anything is written. Hand-written rather than a
validation library (pydantic, attrs): a handful of scalar checks, and the suite's errors
stay plain ``ValueError`` subclasses that its CLI turns into ``error:`` lines.
"""
from __future__ import annotations

import difflib
import math
from pathlib import Path
from typing import Callable, Iterable


class OptionError(ValueError):
    """An option's value has the wrong type or lies outside its range; the message names it."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``choices`` (difflib), else ``""``."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def integer(name: str, value: object, lo: int | None = None, hi: int | None = None) -> int:
    """``value`` as an int in ``[lo, hi]`` (a bool or a float is not an int)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise OptionError(f"{name} must be an integer, got {value!r}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise OptionError(f"{name} must be {_range(lo, hi)}, got {value}")
    return value


def number(name: str, value: object, lo: float | None = None, hi: float | None = None,
           open_lo: bool = False, open_hi: bool = False) -> float:
    """``value`` as a finite float between ``lo`` and ``hi`` (ends open when asked)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise OptionError(f"{name} must be a finite number, got {value!r}")
    below = lo is not None and (value <= lo if open_lo else value < lo)
    above = hi is not None and (value >= hi if open_hi else value > hi)
    if below or above:
        left = "(" if open_lo else "["
        right = ")" if open_hi else "]"
        raise OptionError(f"{name} must be in {left}{lo}, {hi}{right}, got {value}")
    return float(value)


def flag(name: str, value: object) -> bool:
    """``value`` as a bool (true/false, not 0/1 or a string)."""
    if not isinstance(value, bool):
        raise OptionError(f"{name} must be true or false, got {value!r}")
    return value


def choice(name: str, value: object, choices: Iterable[str]) -> str:
    """``value`` as one of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        raise OptionError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value  # type: ignore[return-value]


def check(rules: dict[str, Callable[[object], object]], values: dict[str, object], what: str) -> None:
    """Check each of ``values`` by its rule in ``rules``; an unknown name is an error too
    (``what`` names the kind of option in that message)."""
    for k, v in values.items():
        if k not in rules:
            raise OptionError(f"unknown {what} option {k!r} (known: {list(rules)})")
        rules[k](v)


def child_path(root: str | Path, name: object, what: str) -> Path:
    """``root / name`` for a relative ``name`` that stays inside ``root`` (no ``..``, no
    absolute path): a run or file name chosen by a user never writes elsewhere."""
    if not isinstance(name, str) or not name.strip() or name.strip() in (".", ".."):
        raise OptionError(f"{what} must be a non-empty name, got {name!r}")
    p = Path(name)
    if p.is_absolute() or ".." in p.parts or "\\" in name:
        raise OptionError(f"{what} {name!r} must stay inside {root} (a relative name without '..')")
    return Path(root) / p


def _range(lo: int | None, hi: int | None) -> str:
    if lo is not None and hi is not None:
        return f"between {lo} and {hi}"
    return f"at least {lo}" if lo is not None else f"at most {hi}"
