"""What a notebook records for the runner and the tests: metrics and figures.

A notebook's **Results** section calls :func:`record_metrics`; the runner merges every
notebook's file into the run's ``metrics.json``. Figures go to ``<out_dir>/figures``.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ._files import write_text_atomic


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
