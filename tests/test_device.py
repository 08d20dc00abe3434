"""Per-device choices (precision, render engine) on faked GPUs, and training in several
processes launched from one ``train`` call (gloo on CPU)."""
from __future__ import annotations

import json
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from doodle_utils import devices
from doodle_utils.data.store import Store, content_digest
from doodle_utils.devices import announce, device_choices
from doodle_utils.render import _triton as render_triton
from doodle_utils.training import RunStateError, build_learner, make_loaders, resolve_processes, train

from conftest import tiny_train_config

GPUS = {  # name, compute capability, what "auto" should pick: precision, render engine
    "h100": ("NVIDIA H100 80GB HBM3", (9, 0), "bf16", "triton"),
    "a100": ("NVIDIA A100-SXM4-40GB", (8, 0), "bf16", "triton"),
    "t4": ("Tesla T4", (7, 5), "fp16", "triton"),
    "v100": ("Tesla V100-SXM2-16GB", (7, 0), "fp16", "triton"),
    "p100": ("Tesla P100-PCIE-16GB", (6, 0), "fp32", "torch"),
}


@pytest.fixture(autouse=True)
def _fresh(monkeypatch):
    """Forget what was read of the devices, before and after each test."""
    monkeypatch.delenv("DOODLE_NO_TRITON", raising=False)
    devices.clear_cache()
    yield
    devices.clear_cache()


def fake_gpus(monkeypatch, gpu: str, count: int = 1) -> None:
    """Make torch.cuda report ``count`` GPUs of kind ``gpu`` (which all claim bf16, as a T4 does)."""
    name, cap, _, _ = GPUS[gpu]
    cuda = torch.cuda
    monkeypatch.setattr(cuda, "is_available", lambda: True)
    monkeypatch.setattr(cuda, "device_count", lambda: count)
    monkeypatch.setattr(cuda, "current_device", lambda: 0)
    monkeypatch.setattr(cuda, "get_device_capability", lambda device=None: cap)
    monkeypatch.setattr(cuda, "get_device_name", lambda device=None: name)
    monkeypatch.setattr(cuda, "is_bf16_supported", lambda *a, **k: True)  # what a T4 says (emulation)


@pytest.mark.parametrize("gpu", sorted(GPUS))
def test_auto_picks_native_bf16_else_fp16_else_fp32_and_triton_from_sm_7(monkeypatch, gpu):
    fake_gpus(monkeypatch, gpu)
    name, cap, precision, engine = GPUS[gpu]
    c = device_choices("cuda")
    assert (c.device, c.name, c.capability, c.precision, c.render_engine) == ("cuda:0", name, cap, precision, engine)
    assert render_triton.available("cuda") == (engine == "triton")
    assert name in c.line() and f"sm {cap[0]}.{cap[1]}" in c.line() and precision in c.line()


def test_cpu_is_fp32_with_the_torch_engine():
    c = device_choices("cpu")
    assert (c.precision, c.render_engine, c.capability) == ("fp32", "torch", None)
    assert device_choices("cpu", engine="triton").render_engine == "triton"  # Triton's interpreter (tests)
    for p in ("bf16", "fp16"):
        with pytest.raises(ValueError, match="needs a CUDA device"):
            device_choices("cpu", precision=p)
    with pytest.raises(ValueError, match="precision must be"):
        device_choices("cpu", precision="fp8")


def test_explicit_bf16_without_native_bf16_warns_and_keeps_it(monkeypatch):
    fake_gpus(monkeypatch, "t4")
    with pytest.warns(UserWarning, match="emulated"):
        assert device_choices("cuda", precision="bf16").precision == "bf16"
    assert device_choices("cuda", precision="fp32").precision == "fp32"
    fake_gpus(monkeypatch, "a100")
    devices.clear_cache()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert device_choices("cuda", precision="bf16").precision == "bf16"


def test_triton_asked_on_an_unsupported_gpu_or_without_triton_is_a_clear_error(monkeypatch):
    fake_gpus(monkeypatch, "p100")
    with pytest.raises(ValueError, match=r"Tesla P100.*sm 6\.0.*Triton needs sm >= 7\.0"):
        device_choices("cuda", engine="triton")
    assert device_choices("cuda", engine="torch").render_engine == "torch"
    fake_gpus(monkeypatch, "t4")
    monkeypatch.setitem(sys.modules, "triton", None)  # `import triton` now fails
    devices.clear_cache()
    c = device_choices("cuda")
    assert c.render_engine == "torch" and "triton does not import" in c.reason
    with pytest.raises(ValueError, match="triton does not import"):
        device_choices("cuda", engine="triton")


def test_doodle_no_triton_keeps_the_torch_engine(monkeypatch):
    fake_gpus(monkeypatch, "h100")
    monkeypatch.setenv("DOODLE_NO_TRITON", "1")
    c = device_choices("cuda")
    assert c.render_engine == "torch" and "DOODLE_NO_TRITON" in c.reason
    assert device_choices("cuda", engine="triton").render_engine == "triton"


def test_the_choice_is_printed_once_per_process(monkeypatch, capsys):
    monkeypatch.setattr(devices, "_announced", set())
    fake_gpus(monkeypatch, "t4")
    c = device_choices("cuda")
    assert announce(c) and not announce(device_choices("cuda"))
    out = capsys.readouterr().out.splitlines()
    assert out == [f"device: {c.line()}"]
    assert "Tesla T4 (sm 7.5); precision fp16, GPU render engine triton" in out[0]


@pytest.fixture(scope="module")
def stores(four_class_stores):
    return four_class_stores


_cfg = tiny_train_config


@pytest.mark.parametrize("gpu, amp", [("t4", "fp16"), ("a100", "bf16"), ("p100", None)])
def test_the_learner_gets_the_chosen_mixed_precision(monkeypatch, stores, tmp_path, gpu, amp):
    """fp16 through fastai's MixedPrecision (a GradScaler, enabled for fp16 only), bf16 where native."""
    from fastai.callback.fp16 import MixedPrecision

    dls, _ = make_loaders(_cfg(stores, tmp_path), torch.device("cpu"))
    fake_gpus(monkeypatch, gpu)
    dls.device = torch.device("cuda")  # the learner is only built (nothing runs on the fake GPU)
    learn = build_learner(_cfg(stores, tmp_path), dls, 1)
    mp = [cb for cb in learn.cbs if isinstance(cb, MixedPrecision)]
    assert [cb.amp_mode.value for cb in mp] == ([amp] if amp else [])


def test_processes_default_to_one_per_visible_gpu(monkeypatch, stores, tmp_path):
    assert resolve_processes(0) == (max(torch.cuda.device_count(), 1) if torch.cuda.is_available() else 1)
    assert resolve_processes(3) == 3
    fake_gpus(monkeypatch, "t4", count=2)
    assert resolve_processes(0) == 2
    _cfg(stores, tmp_path, processes=2).check()
    with pytest.raises(ValueError, match="processes=3: more than the 2 visible"):
        _cfg(stores, tmp_path, processes=3).check()
    with pytest.raises(ValueError, match="processes"):
        _cfg(stores, tmp_path, processes=-1).check()
    with pytest.raises(ValueError, match="extra callbacks"):
        train(_cfg(stores, tmp_path), extra_cbs=[object()])


def test_fingerprint_counts_the_processes_not_the_request(stores, tmp_path):
    one = _cfg(stores, tmp_path)
    assert one.fingerprint() == _cfg(stores, tmp_path, processes=1).fingerprint() == one.fingerprint(1)
    assert one.fingerprint(2) != one.fingerprint(1)
    # a checkpoint of two processes, resumed in one: the error says how it was trained
    folder = tmp_path / "two"
    folder.mkdir()
    (folder / "state.json").write_text(json.dumps({"fingerprint": one.fingerprint(2), "processes": 2, "epoch": 0}))
    (folder / "checkpoint.pth").write_bytes(b"")
    with pytest.raises(RunStateError, match=r"trained in 2 process\(es\), now 1: set processes=2"):
        train(_cfg(stores, folder, processes=1, resume=True))


@pytest.mark.skipif(torch.cuda.is_available() and torch.cuda.device_count() < 2,
                    reason="with CUDA, two processes need two GPUs (without CUDA they use gloo)")
def test_train_with_two_processes_launches_torchrun_and_loads_the_run(monkeypatch, stores, tmp_path, capsys):
    """``processes=2`` on CPU: one ``train`` call runs two gloo processes under torchrun, streams
    their output and returns the finished run as a one-process run would."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    cfg = _cfg(stores, tmp_path / "ddp", processes=2, epoch_size=64, test_store_dir=str(stores[1]))
    r = train(cfg)
    out = capsys.readouterr().out
    assert "training in 2 processes" in out and out.count("device: cpu") >= 2  # both processes' lines came through
    assert [p.name for p in r.snapshots] == ["snap_00.pth"] and r.resumed_from is None
    assert set(r.preds["snap_00"]) == {"valid", "test"} and r.preds["snap_00"]["test"].exists()
    assert list(pd.read_csv(r.folder / "history.csv").epoch) == [0, 1]
    state = json.loads((r.folder / "state.json").read_text())
    store = content_digest(Store(stores[0]).manifest)
    assert state["processes"] == 2 and state["fingerprint"] == cfg.fingerprint(2, store) != cfg.fingerprint(1, store)
    # each process trained half of every epoch: 64 drawings / 2 / bs 16 = 2 batches per epoch
    assert r.iters_per_epoch == 2 and len(r.lrs) == 4
    snap = torch.load(r.snapshots[0], weights_only=True)
    mine = r.learn.model.state_dict()
    assert all(torch.equal(mine[k].cpu(), v) for k, v in snap.items())
    assert r.learn.dls.train.n == 64
    probs = np.load(r.preds["snap_00"]["valid"])
    assert probs.shape[1] == 4


@pytest.mark.skipif(render_triton.triton is None, reason="needs the triton package")
@pytest.mark.parametrize("sm", [70, 75])
def test_the_triton_kernel_compiles_for_the_oldest_gpus_it_is_chosen_on(sm):
    """Triton's README lists sm 8.0+ as supported; the renderer is chosen from sm 7.0 (PyTorch's
    floor for Triton), so the kernel must compile for a V100 (7.0) and a T4 (7.5). Compiled
    ahead of time for that target with Triton's bundled ptxas: no GPU needed."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    sig = {"tab_ptr": "*fp32", "run_ptr": "*i32", "val_ptr": "*fp32", "po_ptr": "*i64", "out_ptr": "*fp32",
           "s_n": "i32", "s_c": "i32", "s_y": "i32", "s_x": "i32", "canvas": "i32", "reach": "fp32",
           "slope": "fp32", "n_tiles_x": "i32", "C": "constexpr", "T": "constexpr"}
    assert list(sig) == render_triton._raster_kernel.arg_names
    src = ASTSource(fn=render_triton._raster_kernel, signature=sig, constexprs={"C": 3, "T": render_triton.TILE})
    k = triton.compile(src, target=GPUTarget("cuda", sm, 32), options={"enable_fp_fusion": False})
    assert f".target sm_{sm}" in k.asm["ptx"] and len(k.asm["cubin"]) > 0
