"""The one line a training run prints per finished epoch, and how the runner recognises it.

Training (:class:`doodle_utils.training.callbacks.History`) prints :func:`epoch_line` to
stdout; ``doodle run`` reads the kernel's stdout while a notebook runs and passes the lines
that match :data:`EPOCH_LINE` to its console and ``run.log``. Both sides take the format from
here, a foundation module, so neither layer has to import the other.
"""
from __future__ import annotations

import re

EPOCH_LINE = re.compile(r"^epoch \d+/\d+ · ")


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}h{s // 60 % 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def epoch_line(epoch: int, n_epochs: int, values: dict[str, float], images_s: float, left_s: float | None) -> str:
    """``epoch 2/4 · train_loss 1.234 · valid_loss 1.111 · map3 0.612 · 2,345 images/s · 1m05s left``
    (``epoch`` counted from 1; ``left_s`` None: not known yet)."""
    parts = [f"epoch {epoch}/{n_epochs}"] + [f"{k} {v:.3f}" for k, v in values.items()]
    parts.append(f"{images_s:,.0f} images/s")
    if left_s is not None:
        parts.append("done" if epoch == n_epochs else f"{_duration(left_s)} left")
    return " · ".join(parts)
