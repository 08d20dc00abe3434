"""What a notebook records for the runner and the tests: metrics and figures.

A notebook's **Results** section calls :func:`record_metrics`; the runner merges every
notebook's file into the run's ``metrics.json``. Figures go to ``<out_dir>/figures``.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from ._files import atomic_path, write_text_atomic


def _jsonable(v: Any) -> Any:
    if hasattr(v, "item") and callable(v.item) and getattr(v, "ndim", 1) == 0:
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


def record_metrics(out_dir: str | Path, notebook: str, metrics: dict[str, Any]) -> Path:
    """Write ``metrics`` of ``notebook`` to ``<out_dir>/metrics/<notebook>.json`` (atomically), in
    the notebook's order: the runner's line for the notebook shows its first single values."""
    path = Path(out_dir) / "metrics" / f"{notebook}.json"
    write_text_atomic(path, json.dumps(_jsonable(metrics), indent=1))
    return path


def shown(metrics: dict[str, Any], *keys: str, digits: int = 4) -> dict[str, Any]:
    """``metrics`` (or only ``keys`` of it) as a Results cell shows them: numbers as plain
    Python values rounded to ``digits`` decimals (no ``np.float64(...)`` reprs, no 16-digit
    tails); what is recorded keeps full precision."""
    def tidy(v: Any) -> Any:
        v = _jsonable(v)
        if isinstance(v, float):
            return round(v, digits)
        if isinstance(v, list):
            return [tidy(x) for x in v]
        if isinstance(v, dict):
            return {k: tidy(x) for k, x in v.items()}
        return v

    return {k: tidy(metrics[k]) for k in (keys or metrics)}


def read_metrics(out_dir: str | Path) -> dict[str, dict]:
    """All notebooks' recorded metrics under ``out_dir``, by notebook name."""
    folder = Path(out_dir) / "metrics"
    return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}


def save_figure(fig, out_dir: str | Path, name: str, dpi: int = 110) -> Path:
    """Save a matplotlib figure as ``<out_dir>/figures/<name>.png`` and return the path."""
    path = Path(out_dir) / "figures" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
    tmp.replace(path)
    return path


README_FIGURE = re.compile(r"\]\((docs/figures/(\d\d)_([\w-]+)\.png)\)")


def readme_figures(readme: str | Path) -> list[tuple[str, str, str]]:
    """The figures a README shows from ``docs/figures/``: (path, notebook number, what), for
    ``docs/figures/<NN>_<what>.png``."""
    return README_FIGURE.findall(Path(readme).read_text())


def copy_readme_figures(run_dir: str | Path, readme: str | Path, root: str | Path | None = None) -> list[Path]:
    """Copy a run's figures over the ones a README shows (``make figures``): for
    ``docs/figures/<NN>_<what>.png`` the run's newest ``figures/<NN>_<what>.png`` or
    ``figures/<NN>_<run label>_<what>.png``. Raises FileNotFoundError naming every README
    figure the run did not make."""
    import shutil

    figures, root = Path(run_dir) / "figures", Path(root) if root is not None else Path(readme).parent
    plan, missing = [], []
    for rel, nn, what in readme_figures(readme):
        found = sorted((p for p in figures.glob(f"{nn}_*.png") if p.stem == f"{nn}_{what}" or p.stem.endswith(f"_{what}")),
                       key=lambda p: p.stat().st_mtime)
        (plan.append((found[-1], root / rel)) if found else missing.append(rel))
    if missing:
        raise FileNotFoundError(f"{figures}: the run made no figure for {missing}")
    for src, dst in plan:
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
    return [dst for _, dst in plan]
