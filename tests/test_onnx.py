"""Export for serving: `doodle export RUN model.onnx` writes a graph ONNX Runtime runs on the
CPU, with the run's preprocessing in its metadata; it gives the same top-3 as PyTorch on every
validation drawing (probabilities within 1e-4), for the image model and the point model, at
any batch size."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import tiny_train_config


@pytest.fixture(scope="module", params=["image", "points"])
def exported(request, six_class_stores, tmp_path_factory):
    from doodle_utils.training import train

    out = tmp_path_factory.mktemp(f"onnx_{request.param}")
    extra = dict(model="points", points=32, grid=8) if request.param == "points" else {}
    run = train(tiny_train_config(six_class_stores, out, epochs=1, epoch_size=64, **extra)).folder
    done = subprocess.run([sys.executable, "-m", "doodle_utils", "export", str(run), str(out / "model.onnx")],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return run, out / "model.onnx"


def test_onnx_runtime_gives_pytorchs_top3_on_every_validation_drawing(exported):
    from doodle_utils import prediction

    run, onnx_file = exported
    torch_model, onnx_model = prediction.load_model(run), prediction.load_model(onnx_file)
    from doodle_utils.data.store import Store

    manifest = json.loads((run / "preds" / "manifest.json").read_text())
    drawings = Store(manifest["valid_store"]).drawings(np.asarray(manifest["valid_idx"]))
    assert len(drawings) > 50
    a, b = prediction.predict_probs(onnx_model, drawings), prediction.predict_probs(torch_model, drawings)
    assert a.shape == b.shape and np.abs(a - b).max() < 1e-4
    assert (np.argsort(-a, 1, kind="stable")[:, :3] == np.argsort(-b, 1, kind="stable")[:, :3]).all()
    one = prediction.predict_probs(onnx_model, drawings.take([5]))  # any batch size
    assert np.abs(one[0] - a[5]).max() < 1e-5
    assert onnx_model.meta["words"] == manifest["words"]


def test_the_onnx_model_names_its_preprocessing(exported):
    import onnx

    run, onnx_file = exported
    model = onnx.load(str(onnx_file))
    meta = json.loads({p.key: p.value for p in model.metadata_props}["doodle"])
    config = json.loads((run / "config.json").read_text())
    assert meta["input"] == config["model"] and meta["kind"] == "simplified"
    if meta["input"] == "image":
        assert meta["inputs"] == ["image", "country"] and meta["variant"] == config["variant"]
        assert meta["render"]["size"] == config["size"] and meta["render"]["line_width"] == config["line_width"]
    else:
        assert meta["inputs"] == ["features", "mask", "country"] and meta["points"] == config["points"]
    assert all(i.type.tensor_type.shape.dim[0].dim_param for i in model.graph.input)  # batch left open


def test_a_file_that_is_no_onnx_model_is_named(tmp_path, capsys):
    from doodle_utils.cli import main

    (tmp_path / "fake.onnx").write_text("no model")
    (tmp_path / "d.json").write_text("[[[0, 50], [0, 50]]]")
    assert main(["predict", str(tmp_path / "fake.onnx"), str(tmp_path / "d.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "fake.onnx: not an ONNX model" in err
