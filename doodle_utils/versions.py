"""The versions of the libraries a kernel finds, against the ones the suite is tested with.

A Kaggle kernel runs on Kaggle's image, not on this project's pinned environment: its
torch, fastai, timm, numba and numpy are whatever the image holds that day. The bundle's
set-up cell calls :func:`check_versions` with the project's pins (read from
``pyproject.toml`` at bundle time by :func:`pinned_versions`), which prints one warning per
difference known to matter and a note for the others; it never stops the kernel.
"""
from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

WATCHED = ("torch", "fastai", "timm", "numba", "numpy")
# what is known to break, per library: (test on (found, tested) major.minor tuples, why)
RULES = {
    "numpy": (lambda f, t: f[0] != t[0],
              "numpy 1 and 2 differ in copy and type-promotion rules and in the binary interface "
              "numba's compiled kernels are built against"),
    "torch": (lambda f, t: f < (2, 3) or f[0] != t[0],
              "fastai's mixed precision uses torch.amp.GradScaler('cuda') (torch 2.3+), the loaders "
              "pin memory and the checkpoints load with weights_only"),
    "fastai": (lambda f, t: f[:2] != t[:2],
               "the suite's callbacks and Learner extensions follow fastai's internals, which change "
               "between minor releases"),
    "timm": (lambda f, t: f < (0, 9),
             "timm 0.9 renamed models and pretrained tags (arch.tag) and changed how weights load"),
    "numba": (lambda f, t: f < t[:2],
              "older numba may not compile the suite's kernels or support the installed numpy"),
}


def _minor(version: str) -> tuple[int, int]:
    nums = [int(x) for x in re.findall(r"\d+", version)[:2]]
    return (nums + [0, 0])[0], (nums + [0, 0])[1]


def pinned_versions(pyproject: str | Path) -> dict[str, str]:
    """The ``"name==version"`` pins of :data:`WATCHED` in a ``pyproject.toml`` (read as text:
    ``tomllib`` needs Python 3.11, the suite runs on 3.10)."""
    return _watched_pins(Path(pyproject).read_text())


def _watched_pins(text: str) -> dict[str, str]:
    """The ``name==version`` pins of :data:`WATCHED` in ``text`` (pyproject's quoted
    dependencies, or requirement lines from a distribution's metadata)."""
    pins = dict(re.findall(r'(?:^|")([A-Za-z0-9_.-]+)==([^"\s;]+)', text, re.M))
    return {k: pins[k] for k in WATCHED if k in pins}


def tested_versions(repo: Path) -> dict[str, str]:
    """The project's pins: from ``repo/pyproject.toml`` in a checkout, else from the installed
    distribution's metadata (a wheel install has no pyproject.toml beside it)."""
    if (repo / "pyproject.toml").is_file():
        return pinned_versions(repo / "pyproject.toml")
    try:
        reqs = metadata.requires("doodle-utils") or []
    except metadata.PackageNotFoundError:
        return {}
    return _watched_pins("\n".join(reqs))


def installed_versions(names=WATCHED) -> dict[str, str | None]:
    """The installed version of each library (None where it is missing)."""
    out = {}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            out[n] = None
    return out


def version_report(found: dict[str, str | None], tested: dict[str, str]) -> tuple[list[str], list[str]]:
    """(warnings, notes): differences known to matter, and the other differences."""
    warnings, notes = [], []
    for name, want in tested.items():
        have = found.get(name)
        if have is None:
            warnings.append(f"{name} is not installed (the suite is tested with {want})")
            continue
        if have == want:
            continue
        test, why = RULES.get(name, (lambda f, t: False, ""))
        if test(_minor(have), _minor(want)):
            warnings.append(f"{name} {have} here, the suite is tested with {want}: {why}")
        else:
            notes.append(f"{name} {have} (tested: {want})")
    return warnings, notes


def check_versions(tested: dict[str, str], found: dict[str, str | None] | None = None) -> list[str]:
    """Print a warning per difference known to matter and one note line for the rest; returns
    the warnings."""
    warnings, notes = version_report(installed_versions(tested) if found is None else found, tested)
    for w in warnings:
        print(f"warning: {w}")
    if notes:
        print("versions differing from the tested ones, none known to matter: " + "; ".join(notes))
    if not warnings and not notes:
        print("library versions: as tested (" + ", ".join(f"{k} {v}" for k, v in tested.items()) + ")")
    return warnings
