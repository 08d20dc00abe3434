"""The point-sequence model: features, the scatter (cells, collisions, masking, gradients),
the trunk's stem, and training through the same fastai machinery as the image models."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from doodle_utils.data import Drawings
from doodle_utils.models.points import FEATURES, PointCNN, cell_index, point_features, sample_points, scatter_mean
from doodle_utils.postprocess import ensemble
from doodle_utils.training import TrainConfig, train
from doodle_utils.training.loaders import BatchSpec, DoodleDL, Source

F = {name: i for i, name in enumerate(FEATURES)}


def _drawing(strokes, t=None) -> Drawings:
    if t is None:
        return Drawings.from_strokes([[np.asarray(s) for s in strokes]])
    return Drawings.from_strokes([[np.column_stack([s, ts]) for s, ts in zip(strokes, t)]], dtype=np.float64)


# --------------------------------------------------------------------------- features

def test_features_of_a_small_drawing_pen_state_moves_and_padding():
    d = _drawing([[[0, 0], [255, 0]], [[255, 255], [0, 255], [0, 128]]])
    f, m = point_features(d, 8, resample="index")
    assert f.shape == (1, 8, len(FEATURES)) and m.tolist() == [[True] * 5 + [False] * 3]
    np.testing.assert_allclose(f[0, :5, F["x"]], [0, 1, 1, 0, 0])
    np.testing.assert_allclose(f[0, :5, F["y"]], [0, 0, 1, 1, 128 / 255])
    np.testing.assert_allclose(f[0, :5, F["dx"]], [0, 1, 0, -1, 0])
    np.testing.assert_allclose(f[0, :5, F["dy"]], [0, 0, 1, 0, 128 / 255 - 1])
    assert f[0, :5, F["pen_down"]].tolist() == [0, 1, 0, 1, 1]  # the second stroke starts pen-up
    assert f[0, :5, F["stroke_end"]].tolist() == [0, 1, 0, 0, 1]
    # no timings: stroke index plus position in the stroke, over the stroke count
    np.testing.assert_allclose(f[0, :5, F["time"]], [0, 0.5, 0.5, 0.75, 1.0])
    assert (f[0, 5:] == 0).all()


def test_length_resampling_spreads_the_budget_along_the_pen_path():
    d = _drawing([[[0, 0], [255, 0]], [[0, 255], [0, 0]]])
    # 2 strokes: 4 fixed ends, 4 samples at arc 0, 170, 340, 510 of 510; those at 0 and 510
    # repeat fixed points
    f, m = point_features(d, 8)
    assert m[0].tolist() == [True] * 6 + [False] * 2
    np.testing.assert_allclose(f[0, :6, F["x"]] * 255, [0, 170, 255, 0, 0, 0], atol=1e-4)
    np.testing.assert_allclose(f[0, :6, F["y"]] * 255, [0, 0, 0, 255, 170, 0], atol=1e-4)
    assert f[0, :6, F["pen_down"]].tolist() == [0, 1, 1, 0, 1, 1]
    assert f[0, :6, F["stroke_end"]].tolist() == [0, 0, 1, 0, 0, 1]
    np.testing.assert_allclose(f[0, :6, F["time"]], [0, 1 / 3, 0.5, 0.5, 2 / 3, 1], atol=1e-6)
    # a long straight simplified segment is covered, not just its two corners
    lf, lm = point_features(_drawing([[[0, 128], [255, 128]]]), 32)
    cells = cell_index(torch.from_numpy(lf[:, :, :2]), torch.from_numpy(lm), 16)
    assert set(cells[lm].tolist()) == set(range(8 * 16, 9 * 16))  # every cell of row 8
    with pytest.raises(ValueError, match="resample"):
        point_features(d, 8, resample="arc")


def test_raw_timings_give_time_since_start_over_duration():
    d = _drawing([[[10, 10], [20, 10]], [[20, 30], [10, 30]]], t=[[0, 100], [300, 400]])
    f, m = point_features(d, 4)
    np.testing.assert_allclose(f[0, :, F["time"]], [0, 0.25, 0.75, 1.0])
    np.testing.assert_allclose(f[0, :, F["dt"]], [0, 0.25, 0.5, 0.25])
    # raw coordinates are aligned and scaled into the 256 box, as the renderer does
    np.testing.assert_allclose(f[0, :, F["x"]], [0, 0.5, 0.5, 0], atol=1e-6)


def test_long_drawings_are_resampled_to_the_budget_keeping_first_and_last():
    pts = np.stack([np.arange(100), np.zeros(100)], 1).astype(np.uint8)
    d = Drawings.concat([_drawing([pts[:60], pts[60:]]), _drawing([pts[:3]])])
    sel, drawing, pos = sample_points(d, 10)
    assert np.bincount(drawing).tolist() == [10, 3]
    first = sel[drawing == 0]
    assert first[0] == 0 and first[-1] == 99 and (np.diff(first) >= 10).all()
    f, m = point_features(d, 10, resample="index")
    assert m.sum(1).tolist() == [10, 3]
    # the stroke boundary between the kept points is still marked
    assert f[0, :, F["pen_down"]].sum() == 8


# --------------------------------------------------------------------------- the scatter

def test_a_point_lands_in_its_cell_with_its_feature_and_collisions_average():
    g = 4
    xy = torch.tensor([[[0.55, 0.20], [0.60, 0.24], [0.05, 0.95], [0.9, 0.9]]])
    mask = torch.tensor([[True, True, True, False]])
    idx = cell_index(xy, mask, g)
    assert idx.tolist() == [[0 * g + 2, 0 * g + 2, 3 * g + 0, g * g]]  # x -> column, y -> row; masked -> dump
    vals = torch.tensor([[[1.0, 2.0], [3.0, 6.0], [5.0, 7.0], [100.0, 100.0]]])
    out = scatter_mean(vals, idx, g * g)
    assert out.shape == (1, g * g, 2)
    assert out[0, 2].tolist() == [2.0, 4.0]  # the mean of the two colliding points
    assert out[0, 12].tolist() == [5.0, 7.0]
    occupied = torch.zeros(g * g, dtype=torch.bool)
    occupied[[2, 12]] = True
    assert (out[0, ~occupied] == 0).all()  # empty cells, and the masked point went nowhere
    assert cell_index(torch.tensor([[[1.0, 1.0]]]), torch.tensor([[True]]), g).item() == g * g - 1


def test_rasterise_places_features_in_image_orientation():
    model = PointCNN("test_resnet", 3, grid=8, point_dim=4).eval()
    vals = torch.arange(8.0).view(1, 2, 4)

    class Fixed(torch.nn.Module):  # the scatter alone: fixed per-point features
        def forward(self, feats, mask):
            return vals

    model.encoder = Fixed()
    feats = torch.zeros(1, 2, len(FEATURES))
    feats[0, 0, :2] = torch.tensor([0.9, 0.1])  # right, top
    feats[0, 1, :2] = torch.tensor([0.1, 0.9])  # left, bottom
    img = model.rasterise(feats, torch.ones(1, 2, dtype=torch.bool))
    assert img.shape == (1, 4, 8, 8)
    assert img[0, :, 0, 7].tolist() == [0, 1, 2, 3] and img[0, :, 7, 0].tolist() == [4, 5, 6, 7]
    assert img.abs().sum() == sum(range(8))


def test_gradients_reach_every_1d_conv_and_padding_changes_nothing():
    torch.manual_seed(0)
    model = PointCNN("test_resnet", 5, grid=8, point_dim=16, dilations=[1, 2, 4])
    d = Drawings.from_strokes([[np.array([[10, 20], [200, 30], [100, 220]])], [np.array([[5, 5], [250, 250]])]])
    f, m = (torch.from_numpy(a) for a in point_features(d, 6))
    model(f, m).logsumexp(1).sum().backward()
    convs = [mod for mod in model.encoder.modules() if isinstance(mod, torch.nn.Conv1d)]
    assert len(convs) == 3
    for conv in convs:
        assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0
    model.eval()
    garbage = f.clone()
    garbage[~m] = 7.0
    with torch.no_grad():
        torch.testing.assert_close(model(f, m), model(garbage, m))


def test_ink_channel_marks_the_cells_the_pen_crossed():
    model = PointCNN("test_resnet", 3, grid=8, point_dim=16, ink=True).eval()
    f, m = (torch.from_numpy(a) for a in point_features(_drawing([[[0, 0], [255, 255]]]), 32))
    with torch.no_grad():
        img = model.rasterise(f, m)
    assert img.shape == (1, 16, 8, 8)
    assert torch.equal(img[0, -1], torch.eye(8))  # the diagonal, exactly 1 where the pen went


def test_stem_is_dropped_for_resnets_and_kept_on_request():
    dropped = PointCNN("resnet18", 4, grid=16, point_dim=64)
    assert isinstance(dropped.net.body.conv1, torch.nn.Identity)
    assert isinstance(dropped.net.body.maxpool, torch.nn.Identity)
    # a point_dim other than the stem's width gets a 1x1 projection
    proj = PointCNN("test_resnet", 4, grid=16, point_dim=20, stem="drop")
    assert isinstance(proj.net.body.conv1, torch.nn.Conv2d) and proj.net.body.conv1.kernel_size == (1, 1)
    kept = PointCNN("test_resnet", 4, grid=16, point_dim=20, stem="keep")
    assert kept.net.body.conv1[0].in_channels == 20
    x = torch.rand(2, 10, len(FEATURES)), torch.ones(2, 10, dtype=torch.bool)
    assert proj(*x).shape == kept(*x).shape == (2, 4)
    with pytest.raises(ValueError, match="ResNet-family"):
        PointCNN("mobilenetv3_small_050", 4, stem="drop")


# --------------------------------------------------------------------------- training

@pytest.fixture(scope="module")
def stores(six_class_stores):
    return six_class_stores[0].parent  # the folder of train/ and test/


def test_point_loader_batches(stores):
    dl = DoodleDL(Source(stores / "train", split="train"), BatchSpec(input="points", points=24), bs=8)
    f, m, c, y = dl.after_batch(next(iter(dl.create_batches(dl.get_idxs()))))
    assert f.shape == (8, 24, len(FEATURES)) and f.dtype == torch.float32 and m.shape == (8, 24)
    assert dl.size == 24 and dl.channels == len(FEATURES)
    with pytest.raises(ValueError, match="input"):
        DoodleDL(Source(stores / "train", split="train"), BatchSpec(input="pixels"))


def test_point_model_trains_with_snapshots_and_predictions_notebook_04_can_ensemble(stores, tmp_path):
    common = dict(store_dir=str(stores / "train"), test_store_dir=str(stores / "test"), arch="test_resnet",
                  bs=16, epoch_size=96, lr=3e-3, progress=False, resume=False, schedule="sgdr", cycles=2, augment={})
    pts = train(TrainConfig(out_dir=str(tmp_path / "train" / "points"), model="points", points=32, grid=8,
                            point_dim=16, dilations=[1, 2], **common))
    img = train(TrainConfig(out_dir=str(tmp_path / "train" / "image"), size=32, **common))
    assert [p.stem for p in pts.snapshots] == ["snap_00", "snap_01"]
    hist = pd.read_csv(pts.folder / "history.csv")
    assert hist["size"].tolist() == [32, 32] and (hist["train_s"] > 0).all()
    assert json.loads((pts.folder / "config.json").read_text())["model"] == "points"
    for split, n in (("valid", 60), ("test", 48)):
        p = np.load(pts.preds["snap_01"][split])
        assert p.shape == (n, 6) and np.allclose(p.astype(np.float32).sum(1), 1, atol=1e-2)
    runs = ensemble.load_runs(ensemble.run_dirs(tmp_path))
    assert {m.name.split("/")[0] for m in runs.members} == {"image", "points"}
    # a point model's run resumes like any other: nothing left to train, same snapshots
    again = train(TrainConfig(out_dir=str(tmp_path / "train" / "points"), model="points", points=32, grid=8,
                              point_dim=16, dilations=[1, 2], **{**common, "resume": True}), predict=False)
    assert again.resumed_from == 2


def test_point_model_parameters_are_checked(stores, tmp_path):
    base = dict(store_dir=str(stores / "train"), out_dir=str(tmp_path), model="points")
    for kw, name in ((dict(points=1), "points"), (dict(dilations=[]), "dilations"), (dict(point_kernel=4), "point_kernel"),
                     (dict(stem="cut"), "stem"), (dict(progressive_sizes={0: 32}), "progressive_sizes"),
                     (dict(model="graph"), "model")):
        with pytest.raises(ValueError, match=name):
            TrainConfig(**{**base, **kw}).check()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_point_model_on_cuda_bf16_matches_fp32():
    torch.manual_seed(0)
    model = PointCNN("resnet18", 10, grid=16).cuda().eval()
    d = Drawings.from_strokes([[np.random.default_rng(i).integers(0, 256, (30, 2))] for i in range(8)])
    f, m = (torch.from_numpy(a).cuda() for a in point_features(d, 64))
    with torch.no_grad():
        ref = model(f, m)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            low = model(f, m)
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float().softmax(1), ref.softmax(1), atol=0.03, rtol=0)


@pytest.mark.parametrize("resample", ["length", "index"])
def test_invariants_on_real_raw_and_simplified_drawings(sample_dir, resample):
    from doodle_utils.data import read_file

    for name in ("The Eiffel Tower.ndjson", "snowflake.ndjson", "yoga.ndjson"):
        for folder in ("raw", "simplified"):
            path = sample_dir / folder / name
            if not path.exists():
                continue
            _, d, _ = read_file(path)
            budget = 48
            f, m = point_features(d, budget, resample)
            n = m.sum(1)
            assert np.isfinite(f).all() and (n >= 1).all() and (n <= budget).all()
            assert (m[:, :-1] >= m[:, 1:]).all()  # padding only at the end
            xy = f[..., :2][m]
            assert xy.min() >= 0 and xy.max() <= 1
            for i in range(len(d)):
                fi = f[i, m[i]]
                assert (np.diff(fi[:, F["time"]]) >= -1e-6).all(), (path, i)  # time runs forward
                starts = int((fi[:, F["pen_down"]] == 0).sum())
                ends = int(fi[:, F["stroke_end"]].sum())
                assert starts == ends
                if resample == "length" or d.point_counts()[i] <= budget:
                    # every stroke is there while the budget holds its ends
                    if 2 * d.stroke_counts()[i] <= budget:
                        assert starts == d.stroke_counts()[i], (path, i)


@pytest.mark.parametrize("resample", ["length", "index"])
def test_a_drawing_gets_the_same_features_in_any_batch(sample_dir, resample):
    """Features are a function of the drawing alone: arc lengths summed over the whole batch
    once made a few real drawings in ten gain or lose a point next to other drawings."""
    from doodle_utils.data import read_file

    for folder in ("raw", "simplified"):
        _, d, _ = read_file(sample_dir / folder / "The Eiffel Tower.ndjson")
        f, m = point_features(d, 32, resample)
        rev_f, rev_m = point_features(d.take(np.arange(len(d))[::-1]), 32, resample)
        for i in range(len(d)):
            alone_f, alone_m = point_features(d.take([i]), 32, resample)
            assert np.array_equal(alone_m[0], m[i]) and np.array_equal(alone_f[0], f[i]), (folder, i)
            assert np.array_equal(rev_f[len(d) - 1 - i], f[i])
