"""The import paths of the flat package (before the layers became subpackages) keep working
for one release, with a DeprecationWarning that names the new path.

A meta-path finder answers only for the old names below; the module it hands out *is* the new
module (``doodle_utils.store is doodle_utils.data.store``), so attributes, monkeypatching and
pickles that name an old path (``doodle_utils.train.DoodleNet``) all still work. Written here
because the standard library has no alias for a whole module path, and a shim file per old
name would put fourteen files back into the folder the move emptied.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

PACKAGE = __name__.rpartition(".")[0]
REMOVAL = "0.3"  # the release that drops the old paths
MOVED = {"store": "data.store", "synth": "data.synth", "simplify": "data.simplify",
         "variants": "render.variants", "pen": "render.pen", "render_numba": "render._numba",
         "render_torch": "render._torch", "render_triton": "render._triton",
         "pointcnn": "models.points", "train": "training", "loaders": "training.loaders",
         "train_report": "training.report", "ensemble": "postprocess.ensemble", "balance": "postprocess.balance"}


def new_path(old: str) -> str | None:
    """The module ``doodle_utils.<old>`` now lives at, or None when it did not move."""
    return f"{PACKAGE}.{MOVED[old]}" if old in MOVED else None


def _caller_level() -> int:
    """``stacklevel`` for a warning from :meth:`_Alias.exec_module` that points at the user's
    ``import`` line: ``warnings`` itself skips the import machinery's frames, so only the
    others count."""
    level, frame = 1, sys._getframe(2)  # 1 is exec_module
    while frame is not None:
        name = frame.f_code.co_filename
        if not ("importlib" in name and "_bootstrap" in name):
            level += 1
            if name != __file__:
                break
        frame = frame.f_back
    return level


class _Alias(importlib.abc.Loader):
    def __init__(self, target: str):
        self.target = target

    def create_module(self, spec):
        return None  # a plain module, replaced in exec_module

    def exec_module(self, module) -> None:
        warnings.warn(f"{module.__name__} moved to {self.target} (the package's layers are subpackages now); "
                      f"the old path stops working in doodle_utils {REMOVAL}", DeprecationWarning,
                      stacklevel=_caller_level())
        # the import system returns whatever sys.modules holds under the name after this call
        sys.modules[module.__name__] = importlib.import_module(self.target)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        package, _, old = fullname.rpartition(".")
        if package != PACKAGE or old not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, _Alias(new_path(old)))


def install() -> None:
    """Put the finder on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.append(_Finder())
