"""Relabel unrecognized training drawings with a trained model (the 11th place's rule).

Kaggle's training labels are the game's prompt, its test labels people's; a drawing the game
did not recognize is often something else. :func:`relabel` predicts every unrecognized drawing
of a run's training split with the run's model and, where its top guess differs from the label
with probability above ``threshold`` (the 11th place: 0.9), takes the guess. It writes a label
column beside the store (:func:`doodle_utils.paths.label_column`, the store untouched) that a
later run trains on with ``unrecognized="relabel"`` and ``labels_file``; validation keeps its
labels. ``doodle relabel RUN`` runs it.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..data.store import Store, write_label_column
from ..paths import label_column
from .fit import load_run, predict_views
from .loaders import Source

CHUNK = 1 << 18  # unrecognized drawings predicted at a time: Kaggle's ~5M at once would be
# 6.8 GB of float32 probabilities (340 classes); only each one's top guess is kept


def relabel(run: str | Path, threshold: float = 0.9, snapshot: str | None = None, out: str | Path | None = None,
            device: torch.device | str | None = None) -> dict:
    """Write the label column of ``run``'s training store with its confident disagreements on
    unrecognized training drawings changed; returns what was done (counts, the file)."""
    if not 0 < threshold < 1:
        raise ValueError(f"threshold {threshold!r}: a probability between 0 and 1")
    run = Path(run)
    learn = load_run(run, snapshot, device)
    store_dir = json.loads((run / "config.json").read_text())["store_dir"]
    st = Store(store_dir)
    words = learn.dls.valid.source.words
    if list(st.words) != list(words):
        raise ValueError(f"{run}: its model predicts other classes than {store_dir} holds")
    train = st.train_idx
    unrec = train[np.asarray(st.recognized)[train] == 0]
    column = st.labels().astype(np.int32)
    guess, p = np.zeros(len(unrec), np.int32), np.zeros(len(unrec), np.float32)
    for a in range(0, len(unrec), CHUNK):
        src = Source(store_dir, idx=unrec[a:a + CHUNK], country_vocab=learn.dls.valid.source.countries)
        probs = predict_views(learn, learn.dls.valid.new(source=src)).numpy()
        guess[a:a + CHUNK], p[a:a + CHUNK] = probs.argmax(axis=1), probs.max(axis=1)
    change = (guess != column[unrec]) & (p > threshold)
    changed = unrec[change]
    column[changed] = guess[change]
    out = Path(out) if out else label_column(store_dir, f"{run.name}_{snapshot or 'last'}_p{threshold:g}")
    before = st.labels(changed)
    moves: dict[str, int] = {}
    for a, b in zip(before, column[changed]):
        key = f"{words[a]} -> {words[b]}"
        moves[key] = moves.get(key, 0) + 1
    about = {"run": str(run), "snapshot": snapshot or "last", "threshold": threshold,
             "training_drawings": int(len(train)), "unrecognized": int(len(unrec)), "changed": int(len(changed)),
             "most_common": dict(sorted(moves.items(), key=lambda kv: -kv[1])[:20])}
    write_label_column(out, column, st, about)
    return {**about, "file": str(out)}
