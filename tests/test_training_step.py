"""The training step on the device: ``compile`` modes give eager PyTorch's loss and gradients on
the same batch, and validation keeps its metrics on the device (read once an epoch, not once a
batch)."""
from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from torch.overrides import TorchFunctionMode

from doodle_utils.metrics import map_at_k
from doodle_utils.training import TrainConfig, build_learner, load_run, make_loaders, train

from conftest import tiny_train_config

HOST_READS = {"item", "cpu", "tolist", "numpy", "__float__", "__int__", "__bool__"}


@pytest.fixture(scope="module")
def stores(four_class_stores):
    return four_class_stores


def _learner(stores, tmp_path, device="cpu", **kw):
    cfg = tiny_train_config(stores, tmp_path / "run", **kw)
    dls, _ = make_loaders(cfg, torch.device(device))
    learn = build_learner(cfg, dls, len(dls.train.source.countries), announce_device=False)
    learn.model.to(device)
    return learn


def _loss_and_grads(learn, batch, repeats: int = 1):
    """The loss and gradients of one step on ``batch``, taken ``repeats`` times (the last kept:
    CUDA graphs are recorded on a compiled model's second call and replayed from its third)."""
    learn.model.train()
    *xb, yb = batch
    for _ in range(repeats):
        torch.compiler.cudagraph_mark_step_begin()
        learn.model.zero_grad(set_to_none=True)
        loss = learn.loss_func(learn.model(*xb), yb)
        loss.backward()
        out = loss.detach().clone(), {n: p.grad.detach().clone() for n, p in learn.model.named_parameters()}
    return out


NO_COMPILER = shutil.which("c++") is None and shutil.which("g++") is None
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"))]


@pytest.mark.skipif(NO_COMPILER, reason="torch.compile's CPU code generation needs a C++ compiler")
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
def test_a_compiled_step_gives_the_eager_loss_and_gradients_on_the_same_batch(stores, tmp_path, monkeypatch,
                                                                              mode, device):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # eager and compiled in plain fp32
    torch.manual_seed(0)
    eager = _learner(stores, tmp_path, device, precision="fp32")
    compiled = _learner(stores, tmp_path, device, precision="fp32", compile=mode)
    compiled.model.load_state_dict(eager.model.state_dict())
    batch = next(iter(eager.dls.train))
    loss_e, grads_e = _loss_and_grads(eager, batch)
    loss_c, grads_c = _loss_and_grads(compiled, batch, repeats=3)
    assert compiled.model._compiled_call_impl is not None  # the learner's model is the compiled one
    assert torch.allclose(loss_c, loss_e, rtol=1e-5, atol=1e-6), (loss_c, loss_e)
    assert grads_c.keys() == grads_e.keys()
    for name, g in grads_e.items():
        assert torch.allclose(grads_c[name], g, rtol=1e-3, atol=1e-5), name
    # the state dict keeps its names: a compiled run's checkpoints load into an eager model
    assert compiled.model.state_dict().keys() == eager.model.state_dict().keys()


@pytest.mark.skipif(NO_COMPILER, reason="torch.compile's CPU code generation needs a C++ compiler")
def test_a_compiled_run_trains_validates_resumes_and_predicts(stores, tmp_path):
    """The user's path: `compile` set in a run's parameters, through training (CUDA graphs on a
    GPU), validation (the model in eval mode: another graph), a resumed epoch and the snapshots'
    predictions; its checkpoint loads into an eager model."""
    from fastai.callback.core import Callback

    class Kill(Callback):
        order = 200

        def after_epoch(self):
            assert self.learn.model._compiled_call_impl is not None  # the model trained is the compiled one
            raise KeyboardInterrupt("killed after the first epoch")

    kw = dict(compile="reduce-overhead" if torch.cuda.is_available() else "default", epochs=2, schedule="one_cycle")
    with pytest.raises(KeyboardInterrupt):
        train(tiny_train_config(stores, tmp_path / "run", **kw), extra_cbs=[Kill()], predict=False)
    done = train(tiny_train_config(stores, tmp_path / "run", **{**kw, "resume": True}))
    assert done.resumed_from == 1
    hist = pd.read_csv(tmp_path / "run" / "history.csv")
    assert len(hist) == 2 and np.isfinite(hist[["train_loss", "valid_loss", "map3"]].to_numpy()).all()
    probs = np.load(done.preds[done.snapshots[-1].stem]["valid"]).astype(np.float32)
    assert np.isfinite(probs).all() and np.allclose(probs.sum(1), 1, atol=1e-2)
    eager = load_run(tmp_path / "run")  # an eager learner of the same run
    assert eager.model._compiled_call_impl is None


def test_compile_was_a_switch_and_a_run_named_then_keeps_its_name():
    for old, mode in ((False, "off"), (True, "default")):
        cfg = TrainConfig(store_dir="s", out_dir="o/x", compile=old)
        assert cfg.compile == mode
    # labels and fingerprints recorded before compile had modes (the suite at cd6114a)
    assert TrainConfig(store_dir="s", out_dir="o/x").default_label() == "resnet18_palette32_67a36d"
    assert TrainConfig(store_dir="s", out_dir="o/x", compile="max-autotune").fingerprint(1, "abc") == \
        "9478a822e947f6d9"
    with pytest.raises(ValueError, match="compile='fast': one of"):
        TrainConfig(store_dir="s", out_dir="o/x", compile="fast").check()


class _HostReads(TorchFunctionMode):
    """Counts the calls that read a tensor's value on the host (on a GPU: a wait for it)."""

    def __init__(self):
        super().__init__()
        self.n = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") in HOST_READS:
            self.n += 1
        return func(*args, **(kwargs or {}))


def _validate(learn, batches: int):
    dl = learn.dls.valid
    learn.dls.valid = dl.new(bs=-(-dl.n // batches))
    assert len(learn.dls.valid) == batches
    with _HostReads() as reads:
        values = learn.validate()
    learn.dls.valid = dl
    return values, reads.n


def test_validation_reads_its_loss_and_metrics_once_not_once_a_batch(stores, tmp_path):
    torch.manual_seed(0)
    learn = _learner(stores, tmp_path)
    (loss2, *mets2), reads2 = _validate(learn, 2)
    (loss6, *mets6), reads6 = _validate(learn, 6)
    assert reads6 == reads2, (reads2, reads6)  # fastai's AvgMetric: one more read per metric a batch
    # the same values however the drawings are batched, and the metric over the whole split
    assert loss6 == pytest.approx(loss2, rel=1e-5) and mets6 == pytest.approx(mets2, rel=1e-5)
    probs, labels = learn.get_preds(dl=learn.dls.valid)
    assert mets2[0] == pytest.approx(map_at_k(probs.numpy(), labels.numpy()), rel=1e-5)
    assert mets2[1] == pytest.approx(float(np.mean(probs.numpy().argmax(1) == labels.numpy())), rel=1e-5)
    names = [m.name for m in learn.metrics]
    assert names == ["map3", "accuracy", "top3_accuracy"]  # the columns of history.csv


def test_a_resident_run_trains_the_same_model_as_the_host_loader(stores, tmp_path, monkeypatch):
    """`resident=True` in a run's parameters: the same batches (tests/test_resident.py), so on
    the CPU the same losses, metrics and weights, epoch for epoch, as the host loader's run
    rendering on the device (here the CPU: render_packed's torch engine, as the resident path)."""
    import dataclasses

    from doodle_utils.training import fit
    from doodle_utils.training.resident import ResidentDL

    spec = fit.batch_spec
    monkeypatch.setattr(fit, "batch_spec", lambda *a, **k: dataclasses.replace(spec(*a, **k), render_on="gpu"))
    kw = dict(epochs=2, augment={"flip": 0.5, "rotate": 10, "scale": 0.1, "stroke_dropout": 0.1}, opt="adamw")
    host = train(tiny_train_config(stores, tmp_path / "host", **kw), predict=False)
    dev = train(tiny_train_config(stores, tmp_path / "dev", resident=True, **kw), predict=False)
    assert isinstance(dev.learn.dls.train, ResidentDL) and not isinstance(host.learn.dls.train, ResidentDL)
    cols = ["train_loss", "valid_loss", "map3", "accuracy"]
    a, b = (pd.read_csv(tmp_path / f / "history.csv")[cols] for f in ("host", "dev"))
    pd.testing.assert_frame_equal(a, b)
    for (name, p), q in zip(host.learn.model.state_dict().items(), dev.learn.model.state_dict().values()):
        assert torch.equal(p, q), name
    with pytest.raises(ValueError, match="resident=True: the point model"):
        tiny_train_config(stores, tmp_path / "pts", resident=True, model="points").check()
