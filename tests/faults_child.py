"""Run a pack or a training and SIGKILL it at a named point (used by test_faults.py).

    python faults_child.py pack POINT SRC_DIR STORE_DIR
    python faults_child.py train POINT CONFIG_JSON

The point is reached by wrapping the suite's own functions in this process (no hook in the
product code); the process then kills itself with SIGKILL, as the OOM killer or a lost
Kaggle session would: no ``finally``, no ``atexit``.
"""
from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

PACK_POINTS = ("mid_part", "before_part_done", "after_part_done", "merge_start", "before_manifest",
               "after_manifest")
TRAIN_POINTS = ("after_history", "before_state", "after_state", "after_checkpoint_rename", "after_snapshot")
KILL_EPOCH = 1  # training points fire at the end of this epoch


def die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def run_pack(point: str, src: str, out: str) -> None:
    from doodle_utils.data import store

    write = store.write_text_atomic

    def write_and_maybe_die(path, text, *a, **k):
        name = Path(path).name
        if (point, name) in (("before_part_done", "done.json"), ("before_manifest", "manifest.json")):
            die()
        result = write(path, text, *a, **k)
        if (point, name) in (("after_part_done", "done.json"), ("after_manifest", "manifest.json")):
            die()
        return result

    store.write_text_atomic = write_and_maybe_die
    if point == "merge_start":
        store._merge = lambda *a, **k: die()
    if point == "mid_part":
        iter_file = store.iter_file

        def one_chunk_then_die(path, **kw):
            chunks = iter_file(path, **({"block_size": 2048} if Path(path).suffix == ".csv" else {}), **kw)
            yield next(chunks)
            die()

        store.iter_file = one_chunk_then_die
    store.pack_competition(src, out, workers=1, valid_frac=0.2, progress=None)


def run_train(point: str, config: str) -> None:
    from doodle_utils import training
    from doodle_utils.training import callbacks

    def after(cls, condition=lambda self: True):
        original = cls.after_epoch

        def wrapped(self):
            original(self)
            if self.epoch == KILL_EPOCH and condition(self):
                die()
        cls.after_epoch = wrapped

    if point == "after_history":
        after(training.History)
    elif point == "after_checkpoint_rename":
        after(training.Checkpoint)
    elif point == "after_snapshot":
        after(training.Snapshots, lambda self: self.epoch + 1 in self.ends)
    elif point in ("before_state", "after_state"):
        write = callbacks.write_text_atomic  # the state commit's writer
        seen = []

        def write_and_maybe_die(path, text, *a, **k):
            is_state = Path(path).name == "state.json"
            seen.append(is_state)
            if is_state and point == "before_state" and sum(seen) == KILL_EPOCH + 1:
                die()
            result = write(path, text, *a, **k)
            if is_state and point == "after_state" and sum(seen) == KILL_EPOCH + 1:
                die()
            return result

        callbacks.write_text_atomic = write_and_maybe_die
    cfg = training.config_from_params(json.loads(config))
    training.train(cfg, predict=False)


if __name__ == "__main__":
    what, point, *rest = sys.argv[1:]
    if point not in (PACK_POINTS if what == "pack" else TRAIN_POINTS):
        raise SystemExit(f"unknown {what} point {point!r}")
    (run_pack if what == "pack" else run_train)(point, *rest)
    print("finished without reaching the point")
