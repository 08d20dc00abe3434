"""The plain-numpy reference of an exported model's preprocessing
(doodle_utils.reference_preprocessing) against the suite's own: drawings brought to the
training form as ``as_kind`` does, images equal to the numba engine's pixels (and within the
render tolerances of OpenCV's), point features equal to the loader's, Google's simplified
files reproduced; and the file works alone, without the package. The whole client (the
script with ONNX Runtime against ``doodle predict``) is tested in test_onnx."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import SAMPLE, SIZES, agreement
from doodle_utils import reference_preprocessing as ref
from doodle_utils.data import Drawings
from doodle_utils.data.store import as_kind
from doodle_utils.models.points import point_features
from doodle_utils.render import RenderSpec, render
from doodle_utils.render._torch import MAX_MAD, MIN_IOU
from doodle_utils.render.variants import palette_table

# the image variants a model can be trained with, and the store kind each is drawn from
CASES = [("mono", "simplified", {}), ("mono", "simplified", {"fade": True}), ("palette", "simplified", {}),
         ("palette", "simplified", {"cmap": "magma"}), ("strokes3", "simplified", {}),
         ("time3", "timed", {}), ("time3", "raw", {})]


def _meta(kind: str, variant: str = "mono", spec: RenderSpec = RenderSpec(), **kw) -> dict:
    """The fields of an exported model's metadata the reference reads (prediction.preprocessing)."""
    return dict(kind=kind, times_needed=variant == "time3" or kw.get("input") == "points", input="image",
                variant=variant, render=dataclasses.asdict(spec), palette=palette_table(spec.cmap).tolist(), countries=[],
                points=64, resample="length") | kw


def _google(d: Drawings) -> list[list]:
    return [json.loads(s) for s in d.to_json()]


@pytest.fixture(scope="module")
def drawings(batches) -> list[list]:
    """Raw drawings with times in Google's form: the 36 synthetic ones, and 60 real ones when
    the sample is there."""
    real = []
    for f in sorted((SAMPLE / "raw").glob("*.ndjson"))[::23]:
        with open(f, encoding="utf-8") as fh:
            real += [json.loads(line)["drawing"] for _, line in zip(range(4), fh)]
    return _google(batches["raw"]) + real


def _prepared(drawings: list[list], meta: dict) -> list:
    return [ref.prepare(d, meta) for d in drawings]


@pytest.mark.parametrize("kind", ["simplified", "timed", "raw"])
def test_drawings_are_brought_to_the_training_form_like_as_kind(drawings, kind):
    suite = as_kind(Drawings.from_google(drawings), kind)
    for i, (xy, t) in enumerate(_prepared(drawings, _meta(kind))):
        strokes = suite.strokes(i)
        assert len(xy) == len(strokes)
        for a, s, ts in zip(xy, strokes, t or [None] * len(xy)):
            if kind == "raw":  # aligned and scaled when drawn: compare with the renderers' scaling
                continue
            assert np.array_equal(a, s[:, :2].astype(np.float64))
            if ts is not None:
                assert np.array_equal(ts, s[:, 2])
    if kind == "raw":
        from doodle_utils.render import scaled

        flat = np.concatenate([np.concatenate(xy) for xy, _ in _prepared(drawings, _meta(kind))])
        assert np.array_equal(flat, scaled(suite))


def test_a_simplified_drawing_is_kept_and_a_model_that_reads_times_needs_them():
    done = [[[0, 100, 255], [0, 50, 40]], [[3, 3], [200, 255]]]
    xy, t = ref.prepare(done, _meta("simplified"))
    assert t is None and [a.tolist() for a in xy] == [[[0, 0], [100, 50], [255, 40]], [[3, 200], [3, 255]]]
    with pytest.raises(ValueError, match=r"reads each point's time.*\[xs, ys, ts\]"):
        ref.prepare(done, _meta("timed", "time3"))
    xy, t = ref.prepare(done, _meta("timed", "mono"))  # a model that reads no times: simplified
    assert t is None
    with pytest.raises(ValueError, match="stroke 1"):
        ref.prepare([[[0, 1], [0, 1]], [[0, 1], [0]]], _meta("simplified"))
    with pytest.raises(ValueError, match="unknown store kind 'palette'"):
        ref.prepare(done, _meta("palette"))
    with pytest.raises(ValueError, match="drawing 2: stroke 0"):
        ref.model_inputs([done, done, [[["a"], [1]]]], _meta("simplified"))


@pytest.mark.parametrize("variant,kind,extra", CASES)
def test_images_equal_the_numba_engine_and_stay_within_opencvs_tolerance(drawings, variant, kind, extra):
    suite = as_kind(Drawings.from_google(drawings), kind)
    specs = [RenderSpec(size=s, **extra) for s in SIZES] + [RenderSpec(size=64, line_width=w, **extra) for w in (1, 5)]
    specs += [RenderSpec(size=64, base=256, **extra)]
    for spec in specs:
        meta = _meta(kind, variant, spec)
        mine = np.stack([ref.render(xy, t, meta) for xy, t in _prepared(drawings, meta)])
        assert mine.dtype == np.float32 and mine.min() >= 0 and mine.max() <= 1
        levels = np.rint(mine * 255).astype(np.uint8)
        assert np.array_equal(np.float32(levels) / np.float32(255), mine)
        assert np.array_equal(levels, render(suite, variant, spec, engine="numba")), spec
        mad, iou = agreement(levels, render(suite, variant, spec))
        assert mad <= MAX_MAD[True] * 64 / spec.size and iou >= MIN_IOU[True], (spec, mad, iou)


def test_a_canvas_that_is_not_a_multiple_of_the_size_is_area_averaged_like_opencv(drawings):
    suite = as_kind(Drawings.from_google(drawings), "simplified")
    for spec in (RenderSpec(size=96, base=256), RenderSpec(size=48, base=100)):
        meta = _meta("simplified", "palette", spec)
        mine = np.stack([ref.render(xy, t, meta) for xy, t in _prepared(drawings, meta)])
        diff = np.abs(np.rint(mine * 255) - render(suite, "palette", spec, engine="numba"))
        assert diff.max() <= 1 and (diff == 0).mean() > 0.995, spec  # OpenCV's rounding of fractional weights


@pytest.mark.parametrize("kind", ["simplified", "timed", "raw"])
@pytest.mark.parametrize("resample", ["length", "index"])
def test_point_features_equal_the_loaders_in_a_batch(drawings, kind, resample):
    suite = as_kind(Drawings.from_google(drawings), kind)
    for budget in (8, 64, 256):
        meta = _meta(kind, input="points", points=budget, resample=resample)
        feats, mask = point_features(suite, budget, resample)  # the whole batch, as the loader calls it
        for i, (xy, t) in enumerate(_prepared(drawings, meta)):
            f, m = ref.point_features(xy, t, meta)
            assert np.array_equal(m, mask[i]), (budget, i)
            assert np.array_equal(f, feats[i]), (budget, i)


def test_model_inputs_name_the_graphs_inputs(drawings):
    meta = _meta("simplified", "palette", countries=["DE", "US"])
    got = ref.model_inputs(drawings[:3], meta, ["US", None, "XX"])
    assert got["image"].shape == (3, 3, 64, 64) and got["image"].dtype == np.float32
    assert got["country"].tolist() == [1, 2, 2] and got["country"].dtype == np.int64
    meta = _meta("timed", input="points", points=32)
    got = ref.model_inputs(drawings[:2], meta)
    assert got["features"].shape == (2, 32, len(ref.FEATURES)) and got["mask"].dtype == bool


def test_simplify_reproduces_googles_simplified_files(sample_dir):
    raw = {}
    for f in sorted((sample_dir / "raw").glob("*.ndjson")):
        with open(f, encoding="utf-8") as fh:
            raw.update((str(r["key_id"]), r["drawing"]) for r in map(json.loads, fh))
    pairs = 0
    for f in sorted((sample_dir / "simplified").glob("*.ndjson"))[::5]:
        with open(f, encoding="utf-8") as fh:
            for _, line in zip(range(6), fh):
                row = json.loads(line)
                strokes = [np.asarray(s[:2], np.float64).T for s in raw[str(row["key_id"])]]
                got = ref.simplify(strokes)
                assert [g.T.tolist() for g in got] == row["drawing"], row["key_id"]
                pairs += 1
    assert pairs >= 50


def test_the_file_works_alone_with_numpy_only(tmp_path):
    """A client copies the file: it must not import the suite (blocked here) or anything but
    numpy and the standard library to prepare drawings."""
    copy = tmp_path / "reference_preprocessing.py"
    copy.write_text(Path(ref.__file__).read_text(encoding="utf-8"), encoding="utf-8")
    meta = _meta("simplified", "palette")
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    code = ("import sys, json; sys.modules['doodle_utils'] = None; sys.modules['torch'] = None; "
            "sys.modules['cv2'] = None; sys.modules['matplotlib'] = None; sys.modules['numba'] = None\n"
            "import reference_preprocessing as r\n"
            "x = r.model_inputs([[[[0, 50, 90], [10, 200, 30], [0, 10, 20]]]], json.load(open('meta.json')))\n"
            "print(x['image'].shape, round(float(x['image'].sum()), 3))\n"
            "print(sorted(m.split('.')[0] for m in sys.modules if m.split('.')[0] in "
            "('doodle_utils', 'torch', 'cv2', 'matplotlib', 'numba') and sys.modules[m] is not None))")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    shape, imported = done.stdout.splitlines()
    assert shape.startswith("(1, 3, 64, 64)") and imported == "[]"


def test_each_drawing_is_brought_to_the_training_form_on_its_own(drawings):
    """A drawing already in Google's simplified form is kept, even beside raw ones given with
    it (simplifying it again would rescale it): predictions decide per drawing, as the
    reference does."""
    from doodle_utils.training.loaders import DrawingsSource, as_source

    simple = [[[0, 100, 250], [0, 50, 40]], [[3, 3], [200, 240]]]
    untimed_raw = [[[0.5, 30.2, 60], [1, 80, 20]]]
    like = DrawingsSource(Drawings.concat([]), ["a"], [], "simplified")
    mixed = as_source([simple, untimed_raw, simple], like).drawings
    alone = [as_source([d], like).drawings.to_json()[0] for d in (simple, untimed_raw, simple)]
    assert mixed.to_json() == alone and mixed.xy.dtype == np.uint8
    assert json.loads(alone[0]) == simple
    meta = _meta("simplified")
    assert [[a.astype(int).T.tolist() for a in ref.prepare(d, meta)[0]] for d in (simple, untimed_raw)] == \
        [json.loads(alone[0]), json.loads(alone[1])]
