"""Google's raw -> simplified pipeline (doodle_utils.simplify): hand-checked cases, the oracle
(Google's own simplified files), a plain dense reference implementation, and properties."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from doodle_utils.simplify import (_simplify_kernel, agreement_report, simplify_packed,
                                   simplify_strokes)

SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "quickdraw_sample"
# All 1,124 pairs of the sample agree exactly; a regression costing more than ~5 drawings fails.
MIN_EXACT_FRACTION = 0.995


def _arr(points) -> np.ndarray:
    return np.asarray(points, dtype=np.float64)


def _dense_reference(strokes: list[np.ndarray]) -> list[np.ndarray]:
    """The pipeline as plainly as possible: materialise every resampled point, then RDP over all
    of them (the recursive ``rdp`` package's rules), then round. Slow, obviously right."""
    pts = np.concatenate(strokes)
    mn = pts.min(axis=0)
    ext = (pts.max(axis=0) - mn).max()
    out = []
    for a in strokes:
        v = (a - mn) * 255.0 / ext if ext > 0 else a - mn
        n = len(v)
        if n == 1:
            r = v[[0, 0]]
        else:
            d = np.diff(v, axis=0)
            seg = np.sqrt(d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1])
            cum = np.concatenate([[0.0], np.cumsum(seg)])
            s = np.arange(0.0, cum[-1], 1.0)
            if len(s) == 0:
                s = np.zeros(1)
            g = np.minimum(np.searchsorted(cum, s, side="right") - 1, n - 2)
            with np.errstate(divide="ignore", invalid="ignore"):
                t = np.where(seg[g] > 0, (s - cum[g]) / seg[g], 0.0)[:, None]
            r = np.vstack([v[g] * (1.0 - t) + v[g + 1] * t, v[-1]])
        keep = np.zeros(len(r), bool)
        keep[[0, -1]] = True
        stack = [(0, len(r) - 1)]
        while stack:
            i, j = stack.pop()
            if j - i < 2:
                continue
            (sx, sy), p = r[i], r[i + 1:j]
            cx, cy = r[j] - r[i]
            if cx == 0 and cy == 0:
                dist = np.sqrt((p[:, 0] - sx) * (p[:, 0] - sx) + (p[:, 1] - sy) * (p[:, 1] - sy))
            else:
                cross = cx * (sy - p[:, 1]) - cy * (sx - p[:, 0])
                dist = np.abs(cross) / np.sqrt(cx * cx + cy * cy)
            k = int(np.argmax(dist))  # the first of equal maxima
            if dist[k] > 2.0:
                keep[i + 1 + k] = True
                stack += [(i, i + 1 + k), (i + 1 + k, j)]
        out.append(np.round(r[keep]).astype(np.int64))
    return out


def _same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(x.shape == y.shape and np.array_equal(x, y)
                                    for x, y in zip(a, b))


def _read_raw(path: Path, limit: int) -> list[list[np.ndarray]]:
    with open(path, encoding="utf-8") as f:
        rows = [json.loads(line) for _, line in zip(range(limit), f)]
    return [[_arr(s[:2]).T for s in r["drawing"]] for r in rows]


@pytest.fixture(scope="module")
def real_drawings() -> list[list[np.ndarray]]:
    if not (SAMPLE / "raw").is_dir():
        pytest.skip(f"real Quick, Draw! sample not found at {SAMPLE}")
    files = sorted((SAMPLE / "raw").glob("*.ndjson"))
    return [d for f in files[::25] for d in _read_raw(f, 8)]


# --- hand-checkable cases ----------------------------------------------------------------------

def test_collinear_points_collapse_to_endpoints():
    x = np.arange(0.0, 101.0)
    out = simplify_strokes([np.column_stack([x, 2 * x])])
    # extent 200 (y): x 100 -> 127.5 -> 128 (half to even), y 200 -> 255
    assert [o.tolist() for o in out] == [[[0, 0], [128, 255]]]


def test_square_maps_onto_0_255_with_its_corners():
    sq = _arr([[10, 20], [110, 20], [110, 120], [10, 120], [10, 20]])
    out = simplify_strokes([sq])
    assert out[0].dtype == np.uint8 and out[0].shape == (5, 2)
    assert out[0].tolist() == [[0, 0], [255, 0], [255, 255], [0, 255], [0, 0]]


def test_rectangle_is_scaled_uniformly_by_its_longer_side():
    rect = _arr([[-50, 30], [150, 30], [150, 130], [-50, 130], [-50, 30]])  # 200 x 100
    out = simplify_strokes([rect])[0].astype(int)
    assert out[:, 0].min() == 0 and out[:, 0].max() == 255
    assert out[:, 1].min() == 0 and out[:, 1].max() == 128  # 127.5, half to even


def test_single_point_drawing_becomes_two_copies_of_the_origin():
    assert [o.tolist() for o in simplify_strokes([_arr([[7.5, -3.0]])])] == [[[0, 0], [0, 0]]]
    # a zero-length stroke of several points likewise, in a drawing with extent
    out = simplify_strokes([_arr([[5, 5], [5, 5], [5, 5]]), _arr([[0, 0], [10, 0]])])
    # extent 10: 5 -> 127.5 -> 128 on both axes
    assert [o.tolist() for o in out] == [[[128, 128], [128, 128]], [[0, 0], [255, 0]]]


def test_horizontal_line_has_zero_height_without_dividing_by_zero():
    out = simplify_strokes([_arr([[3, 10], [20, 10], [53, 10]])])
    assert [o.tolist() for o in out] == [[[0, 0], [255, 0]]]


def test_l_shape_keeps_its_corner():
    t = np.linspace(0, 100, 41)
    arm1 = np.column_stack([np.zeros_like(t), t])
    arm2 = np.column_stack([t[1:], np.full(40, 100.0)])
    out = simplify_strokes([np.vstack([arm1, arm2])])
    assert [o.tolist() for o in out] == [[[0, 0], [0, 255], [255, 255]]]


def test_time_column_is_ignored():
    xy = _arr([[0, 0], [30, 40], [90, 10]])
    xyt = np.column_stack([xy, [0, 15, 70]])
    assert _same(simplify_strokes([xy]), simplify_strokes([xyt]))


@pytest.mark.parametrize("bad, match", [
    ([], "no strokes"),
    ([np.zeros((0, 2))], "no points"),
    ([np.zeros((3, 4))], "shape"),
    ([_arr([[0, 0], [np.nan, 1]])], "non-finite"),
])
def test_bad_drawings_raise_value_error(bad, match):
    with pytest.raises(ValueError, match=match):
        simplify_strokes(bad)


def test_bad_packed_offsets_raise_value_error():
    xy = np.zeros((4, 2))
    with pytest.raises(ValueError, match="stroke_offsets"):
        simplify_packed(xy, np.array([0, 3]), np.array([0, 1]))
    with pytest.raises(ValueError, match="empty stroke"):
        simplify_packed(xy, np.array([0, 2, 2, 4]), np.array([0, 3]))
    with pytest.raises(ValueError, match="drawing_offsets"):
        simplify_packed(xy, np.array([0, 4]), np.array([0, 2]))


def test_empty_batch():
    xy, so, do = simplify_packed(np.zeros((0, 2)), np.array([0]), np.array([0]))
    assert xy.shape == (0, 2) and so.tolist() == [0] and do.tolist() == [0]


# --- Google's own output, and the dense reference -----------------------------------------------

def test_agreement_with_googles_simplified_files():
    if not (SAMPLE / "raw").is_dir() or not (SAMPLE / "simplified").is_dir():
        pytest.skip(f"real Quick, Draw! sample (raw/ and simplified/) not found at {SAMPLE}")
    rep = agreement_report(SAMPLE / "raw", SAMPLE / "simplified")
    assert rep["pairs"] >= 1000
    assert rep["exact_fraction"] >= MIN_EXACT_FRACTION, rep


def test_packed_equals_per_drawing(real_drawings):
    drawings = real_drawings[:40]
    strokes = [s for d in drawings for s in d]
    so = np.concatenate([[0], np.cumsum([len(s) for s in strokes])])
    do = np.concatenate([[0], np.cumsum([len(d) for d in drawings])])
    xy, oso, odo = simplify_packed(np.concatenate(strokes), so, do)
    assert odo.tolist() == do.tolist() and xy.dtype == np.uint8
    for i, d in enumerate(drawings):
        packed = [xy[oso[s]:oso[s + 1]] for s in range(odo[i], odo[i + 1])]
        assert _same(packed, simplify_strokes(d))


def test_equals_dense_reference_on_real_drawings(real_drawings):
    for d in real_drawings:
        assert _same([o.astype(np.int64) for o in simplify_strokes(d)], _dense_reference(d))


def test_fast_path_equals_general_path(real_drawings):
    strokes = [s for d in real_drawings for s in d]
    so = np.concatenate([[0], np.cumsum([len(s) for s in strokes])]).astype(np.int64)
    do = np.concatenate([[0], np.cumsum([len(d) for d in real_drawings])]).astype(np.int64)
    xy = np.concatenate(strokes)
    fast = _simplify_kernel(xy, so, do, 2.0, False)
    general = _simplify_kernel(xy, so, do, 2.0, True)
    assert np.array_equal(fast[0], general[0]) and np.array_equal(fast[1], general[1])


# --- properties ---------------------------------------------------------------------------------

# Small integer coordinates: many exact ties, parallel segments, retraced lines, repeated points.
_points = st.lists(st.tuples(st.integers(0, 12), st.integers(0, 12)), min_size=1, max_size=12)
_strokes = st.tuples(_points, st.booleans()).map(  # optionally retraced back to its start
    lambda t: _arr(t[0] + t[0][::-1][1:] if t[1] else t[0]))
_drawings = st.lists(_strokes, min_size=1, max_size=3)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_drawings)
def test_equals_dense_reference_on_tie_heavy_drawings(drawing):
    assert _same([o.astype(np.int64) for o in simplify_strokes(drawing)], _dense_reference(drawing))


@settings(max_examples=80, deadline=None)
@given(_drawings, st.integers(-1000, 1000), st.integers(-1000, 1000), st.integers(-3, 3))
def test_invariant_under_exact_translation_and_power_of_two_scaling(drawing, dx, dy, k):
    moved = [(s + [dx, dy]) * 2.0 ** k for s in drawing]  # exact in float64
    assert _same(simplify_strokes(moved), simplify_strokes(drawing))


@settings(max_examples=80, deadline=None)
@given(st.lists(st.lists(st.tuples(st.floats(-1e4, 1e4), st.floats(-1e4, 1e4)), min_size=1,
                         max_size=15), min_size=1, max_size=4))
@example([[(0.0, 3.1780479825390137e-257), (0.0, 1.0), (0.0, 0.0)]])  # a chord whose squared length underflows
def test_output_shape_and_stroke_endpoints(drawing):
    strokes = [_arr(s) for s in drawing]
    out = simplify_strokes(strokes)
    pts = np.concatenate(strokes)
    mn = pts.min(axis=0)
    ext = (pts.max(axis=0) - mn).max()
    assert len(out) == len(strokes)
    for s, o in zip(strokes, out):
        assert o.dtype == np.uint8 and o.ndim == 2 and o.shape[1] == 2 and len(o) >= 2
        scaled = (s[[0, -1]] - mn) * 255.0 / ext if ext > 0 else s[[0, -1]] - mn
        assert np.array_equal(o[[0, -1]], np.round(scaled))
