"""The one place that resolves paths: parameters, then the environment, then repo defaults.

Order (STYLE.md): a non-empty parameter wins; inside a Kaggle kernel
(``KAGGLE_KERNEL_RUN_TYPE`` is set) the competition's input and ``/kaggle/working`` are
used; otherwise the project's defaults under ``outputs/``.

The project (:func:`project_root`) is the folder with ``notebooks/`` and ``params/``: the
checkout the package runs from, or, for an installed package, the folder ``doodle init``
made (found from the current folder upwards, so a notebook's kernel, which runs inside
``notebooks/``, finds it too).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]  # the folder holding doodle_utils: a checkout, or site-packages
PROJECT_FOLDERS = ("notebooks", "params")  # what makes a folder a project
BUNDLED = Path(__file__).resolve().parent / "_project"  # an installed wheel's copies of them (doodle init)
# Google's 345 Quick, Draw! categories (its categories.txt); Kaggle's 340 classes are among them
CATEGORIES_FILE = Path(__file__).resolve().parent / "quickdraw_categories.txt"
KAGGLE_INPUT = Path("/kaggle/input/quickdraw-doodle-recognition")
KAGGLE_WORKING = Path("/kaggle/working")
DEFAULT_RUN = "interactive"


# Where things live inside the folders below: defined here once, asked for everywhere.
STORE_NAMES = ("train", "test", "raw")  # <store_dir>/<name>: the packed stores
RUNS = "train"  # <out_dir>/train/<run_label>: one training run each
SNAPSHOTS, PREDS = "snapshots", "preds"  # in a run: snap_NN.pth; snap_NN_{valid,test}.npy and manifest.json
ENSEMBLE = "ensemble"  # <out_dir>/ensemble: notebook 04's blend, which notebook 05 reads


def _is_project(folder: Path) -> bool:
    return all((folder / name).is_dir() for name in PROJECT_FOLDERS)


def project_root(start: str | Path | None = None) -> Path:
    """Where the notebooks, profiles and default ``outputs/`` are: the checkout the package runs
    from, else the nearest folder from ``start`` (default: the current one) upwards that holds
    ``notebooks/`` and ``params/``, else ``start`` itself."""
    if _is_project(REPO):
        return REPO
    here = Path(start if start is not None else Path.cwd()).resolve()
    return next((d for d in (here, *here.parents) if _is_project(d)), here)


def project_sources() -> Path:
    """The folder holding the suite's own ``notebooks/`` and ``params/`` (what ``doodle init``
    copies): the checkout, or the installed wheel's bundled copies."""
    return REPO if _is_project(REPO) else BUNDLED


def store_path(store_dir: str | Path, name: str) -> Path:
    """The packed store ``name`` (train, test or raw) under ``store_dir``."""
    if name not in STORE_NAMES:
        raise ValueError(f"store name must be one of {STORE_NAMES}, got {name!r}")
    return Path(store_dir) / name


def label_column(store: str | Path, name: str) -> Path:
    """A label column for the store at ``store``, written beside it (the store itself is never
    edited): ``<store>_labels/<name>.npy``, with ``<name>.json`` saying how it was made."""
    store = Path(store)
    return store.parent / f"{store.name}_labels" / f"{name}.npy"


def runs_dir(out_dir: str | Path) -> Path:
    """The folder holding a run folder's training runs, one sub-folder per ``run_label``."""
    return Path(out_dir) / RUNS


def run_dir(out_dir: str | Path, run_label: str) -> Path:
    """One training run's folder: checkpoints, history, snapshots, predictions."""
    return runs_dir(out_dir) / run_label


def snapshots_dir(run: str | Path) -> Path:
    return Path(run) / SNAPSHOTS


def preds_dir(run: str | Path) -> Path:
    return Path(run) / PREDS


def ensemble_dir(out_dir: str | Path) -> Path:
    return Path(out_dir) / ENSEMBLE


def answers_file(data_dir: str | Path) -> Path:
    """Where a synthetic competition's hidden answers (``test_labels.csv``) live: beside the
    competition folder, not in it, so a kernel that attaches the competition never sees them."""
    d = Path(data_dir)
    return d.with_name(f"{d.name}_answers") / "test_labels.csv"


def on_kaggle() -> bool:
    """True inside a Kaggle kernel."""
    return bool(os.environ.get("KAGGLE_KERNEL_RUN_TYPE"))


@dataclass(frozen=True)
class RunDirs:
    """Where a notebook reads and writes."""

    data_dir: Path   # the competition folder (Kaggle layout)
    store_dir: Path  # packed stores: store_dir/train, store_dir/test
    out_dir: Path    # everything this run writes (figures/, metrics/, predictions)

    @property
    def figures(self) -> Path:
        return self.out_dir / "figures"

    def store(self, name: str) -> Path:
        """The packed store ``name`` (train, test or raw)."""
        return store_path(self.store_dir, name)

    @property
    def ensemble(self) -> Path:
        return ensemble_dir(self.out_dir)


def resolve_dirs(data_dir: str = "", store_dir: str = "", out_dir: str = "") -> RunDirs:
    """Resolve a notebook's folders from its parameters (empty string: use the default).

    Args:
        data_dir: competition folder; default ``/kaggle/input/...`` on Kaggle, else
            ``outputs/smoke/data`` (the synthetic default ``make demo`` writes).
        store_dir: packed stores; default ``<out_dir>/store`` on Kaggle (writable), else
            ``outputs/smoke/store``.
        out_dir: run outputs; default ``/kaggle/working`` on Kaggle, else ``outputs/interactive``.
    """
    if on_kaggle():
        d = Path(data_dir) if data_dir else KAGGLE_INPUT
        o = Path(out_dir) if out_dir else KAGGLE_WORKING
        s = Path(store_dir) if store_dir else o / "store"
    else:
        root = project_root()
        d = Path(data_dir) if data_dir else root / "outputs" / "smoke" / "data"
        o = Path(out_dir) if out_dir else root / "outputs" / DEFAULT_RUN
        s = Path(store_dir) if store_dir else root / "outputs" / "smoke" / "store"
    o.mkdir(parents=True, exist_ok=True)
    return RunDirs(d.resolve(), s.resolve(), o.resolve())
