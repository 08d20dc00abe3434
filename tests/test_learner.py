"""The host-light training loop (doodle_utils.training.learner): the same events reach the same
callbacks in the same order as in fastai's Learner, the loss and its gradients are fastai's,
and the optimizer wrapper's hyper-parameter table is fastai's."""
from __future__ import annotations

import pytest
import torch
from fastai.callback.core import Callback, CancelBatchException
from fastai.data.core import DataLoaders
from fastai.learner import Learner
from fastai.losses import CrossEntropyLossFlat
from fastai.optimizer import OptimWrapper

from doodle_utils.training.learner import CrossEntropyFlat, LeanLearner, LeanOptimWrapper

EVENTS = ("before_fit", "before_epoch", "before_train", "before_batch", "after_pred", "after_loss",
          "before_backward", "after_backward", "before_step", "after_step", "after_cancel_batch", "after_batch",
          "after_train", "before_validate", "after_validate", "after_epoch", "after_fit")


class _Batches:
    """A loader of a few fixed batches (fastai's Learner only iterates and counts them)."""

    def __init__(self, batches):
        self.batches = batches

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def _data(n_batches: int = 3, bs: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    batches = [(torch.randn(bs, 5, generator=g), torch.randint(0, 4, (bs,), generator=g)) for _ in range(n_batches)]
    return DataLoaders(_Batches(batches), _Batches(batches[:1]))


def _recorders(log: list):
    """Callbacks handling different events, one cancelling a batch, one adding a callback
    mid-fit, one that fastai must not run in validation."""

    class Every(Callback):
        order = 5

    for e in EVENTS:
        setattr(Every, e, lambda self, e=e: log.append(("every", e, self.training, self.iter if "batch" in e else -1)))

    class Few(Callback):
        order = -3

        def before_batch(self):
            log.append(("few", "before_batch", self.training, self.iter))
            if self.training and self.iter == 1 and self.epoch == 0:
                raise CancelBatchException

        def after_fit(self):
            log.append(("few", "after_fit"))

    class TrainOnly(Callback):
        run_valid = False

        def after_batch(self):
            log.append(("train-only", "after_batch", self.training))

    class Later(Callback):
        order = 50

        def after_epoch(self):
            log.append(("later", "after_epoch", self.epoch))

    class AddsOne(Callback):
        def before_epoch(self):
            if self.epoch == 1 and not any(isinstance(c, Later) for c in self.learn.cbs):
                self.learn.add_cb(Later())

    return [Every(), Few(), TrainOnly(), AddsOne()]


def _fit(cls, log: list) -> Learner:
    torch.manual_seed(0)
    learn = cls(_data(), torch.nn.Linear(5, 4), loss_func=CrossEntropyLossFlat(), cbs=_recorders(log))
    learn.remove_cbs([cb for cb in learn.cbs if type(cb).__name__ == "ProgressCallback"])
    learn.fit(2, 1e-2)
    return learn


def test_every_event_reaches_the_same_callbacks_in_the_same_order_as_in_fastai():
    mine, theirs = [], []
    lean, plain = _fit(LeanLearner, mine), _fit(Learner, theirs)
    assert mine == theirs and len(mine) > 60
    assert ("later", "after_epoch", 1) in mine  # a callback added during the fit gets its events
    assert ("few", "after_fit") in mine
    for a, b in zip(lean.model.parameters(), plain.model.parameters()):
        assert torch.equal(a, b)  # and they trained alike
    assert [cb.run for cb in lean.cbs] == [True] * len(lean.cbs)  # after_fit reset every callback's run flag


def test_an_exported_lean_learner_carries_no_table_of_callbacks():
    learn = _fit(LeanLearner, [])
    assert "_dispatch" in learn.__dict__ and "_dispatch" not in learn.__getstate__()


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_the_plain_tensor_loss_is_fastais_with_its_gradients(smoothing):
    g = torch.Generator().manual_seed(1)
    logits, targ = torch.randn(16, 7, generator=g), torch.randint(0, 7, (16,), generator=g)
    theirs_in, mine_in = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    theirs = CrossEntropyLossFlat(label_smoothing=smoothing)(theirs_in, targ)
    mine = CrossEntropyFlat(label_smoothing=smoothing)(mine_in, targ.int())  # int32 targets become long, as fastai's
    theirs.backward()
    mine.backward()
    assert type(mine) is torch.Tensor and type(theirs) is not torch.Tensor  # fastai's is its TensorBase
    assert torch.allclose(mine, theirs) and torch.allclose(mine_in.grad, theirs_in.grad)
    loss = CrossEntropyFlat()
    assert torch.allclose(loss.activation(logits), torch.softmax(logits, dim=-1))
    assert torch.equal(loss.decodes(logits), logits.argmax(dim=-1))


def test_the_optimizer_wrappers_hyper_parameters_are_fastais():
    def make(cls):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
        groups = [list(model[0].parameters()), list(model[1].parameters())]
        return cls(groups, opt=torch.optim.AdamW, lr=1e-3, betas=(0.9, 0.99), eps=1e-5)

    mine, theirs = make(LeanOptimWrapper), make(OptimWrapper)
    assert mine.hypers == theirs.hypers and len(mine.hypers) == 2 and "mom" in mine.hypers[0]
    for k, v in [("lr", 0.01), ("mom", 0.8), ("lr", [0.1, 0.2]), ("lr", slice(1e-4, 1e-2)),
                 ("sqr_mom", 0.95), ("wd", 0)]:
        mine.set_hyper(k, v)
        theirs.set_hyper(k, v)
        assert mine.hypers == theirs.hypers, (k, v)
        assert mine.opt.param_groups[0]["betas"] == theirs.opt.param_groups[0]["betas"]


def test_a_batch_already_on_the_models_device_is_passed_on_as_it_is():
    learn = LeanLearner(_data(), torch.nn.Linear(5, 4), loss_func=CrossEntropyFlat())
    b = (torch.randn(2, 5), torch.tensor([0, 1]))
    assert learn._set_device(b) is b
    listed = [torch.randn(2, 5), torch.tensor([0, 1])]  # anything else takes fastai's way
    assert isinstance(learn._set_device(listed), list)

