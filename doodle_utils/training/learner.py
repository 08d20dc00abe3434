"""fastai's ``Learner`` with events sent only to the callbacks that handle them, and its
cross-entropy loss on plain tensors (:class:`CrossEntropyFlat`) and its PyTorch-optimizer wrapper's
hyper-parameters read without fastcore's containers (:class:`LeanOptimWrapper`).

fastai sends each of a training step's ~8 events (``before_batch``, ``after_pred``,
``after_loss``, ``before_backward``, ``after_backward``, ``before_step``, ``after_step``,
``after_batch``) to every callback, sorting them by ``order`` each time; a callback without
the event looks it up through its learner and then the model (fastcore's ``GetAttr``) before
doing nothing. With the suite's ~12 callbacks that is ~100 calls and ~900 failed attribute
lookups a step: on the CPU, with a model whose compute is negligible, the suite's training loop
took 3.7-3.9x a plain PyTorch loop's host time per step (1.5-1.7x with this module) (``python -m benchmarks train``, host
rows), and on a GPU each of those microseconds is one the device may wait for. Here each event
goes to the callbacks whose class defines it, in fastai's order; ``after_fit`` still goes to
every callback (fastai resets each one's ``run`` flag there). The table is made once per event
and made again whenever a callback is added or removed. Why not fastai's own: it has no such
switch; this keeps every callback's semantics (``Callback.__call__`` still decides whether it
runs: ``run``, ``run_train``, ``run_valid``) and only skips calls that would do nothing.
"""
from __future__ import annotations

import torch
from fastai.callback.core import Callback, event
from fastai.learner import Learner
from fastai.losses import CrossEntropyLossFlat
from fastai.optimizer import OptimWrapper, set_item_pg
from fastai.torch_core import TensorBase

ALWAYS = ("after_fit",)  # events every callback receives: Callback.__call__ resets its run flag there


def handles(cb: Callback, event_name: str) -> bool:
    """Whether ``cb``'s class (or an instance attribute) defines ``event_name``: the callbacks
    fastai's dispatch would run code in for that event."""
    return event_name in ALWAYS or callable(getattr(type(cb), event_name, None)) or event_name in vars(cb)


class LeanLearner(Learner):
    """A ``Learner`` whose events reach only their handlers (see the module docstring)."""

    def _handlers(self, event_name: str) -> list[Callback]:
        table = self.__dict__.setdefault("_dispatch", {})
        cbs = table.get(event_name)
        if cbs is None:
            if not hasattr(event, event_name):
                raise Exception(f"missing {event_name}")
            cbs = table[event_name] = [cb for cb in self.cbs.sorted("order") if handles(cb, event_name)]
        return cbs

    def __call__(self, event_name):
        for name in [event_name] if isinstance(event_name, str) else event_name:
            self._call_one(name)

    def _call_one(self, event_name: str):
        for cb in self._handlers(event_name):
            cb(event_name)

    def _set_device(self, b):
        """fastai's, except that a batch of plain tensors already on the model's device (what
        the suite's loaders give) is passed on as it is rather than walked and copied to itself."""
        dev = next(self.model.parameters()).device
        if isinstance(b, tuple) and all(type(t) is torch.Tensor and t.device == dev for t in b):
            return b
        return super()._set_device(b)

    def add_cb(self, cb):
        self.__dict__.pop("_dispatch", None)
        return super().add_cb(cb)

    def remove_cb(self, cb):
        self.__dict__.pop("_dispatch", None)
        return super().remove_cb(cb)

    def __getstate__(self):  # an exported learner carries no table of callbacks
        state = super().__getstate__()
        state.pop("_dispatch", None)
        return state


class CrossEntropyFlat(CrossEntropyLossFlat):
    """fastai's ``CrossEntropyLossFlat`` (its softmax activation and argmax decoding, which
    ``get_preds``, ``predict`` and the interpretation use) computed on plain tensors. fastai's
    wraps the prediction and the target in its ``TensorBase`` first, so the loss, its backward
    graph and everything that reads the loss (the smoothed loss, the recorder) go through
    ``TensorBase.__torch_function__``'s Python dispatch: 12 such calls a training step here."""

    def __call__(self, inp: torch.Tensor, targ: torch.Tensor, **kwargs) -> torch.Tensor:
        inp = inp.as_subclass(torch.Tensor) if isinstance(inp, TensorBase) else inp
        targ = targ.as_subclass(torch.Tensor) if isinstance(targ, TensorBase) else targ
        return self.func(inp.reshape(-1, inp.shape[-1]), targ.reshape(-1).long(), **kwargs)


class LeanOptimWrapper(OptimWrapper):
    """fastai's ``OptimWrapper`` (a PyTorch optimizer driven by fastai's schedulers) with its
    hyper-parameter table read and written without fastcore's generic containers: the
    recorder reads ``hypers`` every step and the scheduler sets the learning rate every step,
    and fastai's versions took ~0.3 ms a step of host time here. The same table: each
    parameter group's settings, tuples split into ``name__i``, renamed by ``fwd_map``."""

    @property
    def hypers(self) -> list[dict]:
        fwd, out = self.fwd_map, []
        for pg in self.opt.param_groups:
            h = {}
            for k, v in pg.items():
                if k == "params":
                    continue
                if isinstance(v, (tuple, list)):
                    for i, x in enumerate(v):
                        h[fwd.get(f"{k}__{i}", f"{k}__{i}")] = x
                else:
                    h[fwd.get(k, k)] = v
            out.append(h)
        return out

    def set_hyper(self, k, v):
        if isinstance(v, (int, float)):  # one value for every group: fastai's L() round trip skipped
            for pg in self.opt.param_groups:
                set_item_pg(pg, self.bwd_map[k], v)
            return
        super().set_hyper(k, v)
