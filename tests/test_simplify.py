"""Google's raw -> simplified pipeline (doodle_utils.simplify): hand-checked cases, the oracle
(Google's own simplified files), the plain dense reference implementation
(doodle_utils.reference_preprocessing.simplify), and properties; and the
timed variant (simplify_packed_timed): the same points, each with its raw twin's time."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from doodle_utils import data
from doodle_utils.data.simplify import (_simplify_kernel, agreement_report, simplify_packed,
                                   simplify_packed_timed, simplify_strokes)
# the pipeline as plainly as possible (every resampled point materialised, RDP over all of
# them, then rounding): slow, obviously right, and the reference ONNX clients port
from doodle_utils.reference_preprocessing import simplify as _dense_reference

SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "quickdraw_sample"
# All 1,124 pairs of the sample agree exactly; a regression costing more than ~5 drawings fails.
MIN_EXACT_FRACTION = 0.995


def _arr(points) -> np.ndarray:
    return np.asarray(points, dtype=np.float64)


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
    fast = _simplify_kernel(xy, so, do, 2.0, False, np.empty(0, np.int32), False)
    general = _simplify_kernel(xy, so, do, 2.0, True, np.empty(0, np.int32), False)
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


# --- the timed variant --------------------------------------------------------------------------

def _pack(drawings: list[list[np.ndarray]]):
    """CSR-pack drawings of (n, 3) [x, y, t] strokes: ``(xy, t, stroke_offsets,
    drawing_offsets)``."""
    strokes = [_arr(s) for d in drawings for s in d]
    so = np.concatenate([[0], np.cumsum([len(s) for s in strokes])]).astype(np.int64)
    do = np.concatenate([[0], np.cumsum([len(d) for d in drawings])]).astype(np.int64)
    pts = np.concatenate(strokes)
    return pts[:, :2].copy(), pts[:, 2].copy(), so, do


def _timed_strokes(drawings: list[list[np.ndarray]]) -> list[list[list[int]]]:
    """Kept times per stroke (a list over all strokes of all drawings)."""
    xy, t, so, do = _pack(drawings)
    _, t_out, oso, _ = simplify_packed_timed(xy, t, so, do)
    return [t_out[oso[s]:oso[s + 1]].tolist() for s in range(len(oso) - 1)]


@pytest.fixture(scope="module")
def real_raw() -> data.Drawings:
    """Raw drawings with their times, as the data module reads them (every 5th file, whole)."""
    if not (SAMPLE / "raw").is_dir():
        pytest.skip(f"real Quick, Draw! sample not found at {SAMPLE}")
    files = sorted((SAMPLE / "raw").glob("*.ndjson"))
    return data.Drawings.concat([data.read_file(f, lenient=True)[1] for f in files[::5]])


def test_timed_straight_and_l_shaped_strokes_by_hand():
    # scale 1 in all three drawings (extent 255)
    straight = [[0, 0, 0], [255, 0, 1000]]
    # corner at arc 255 exactly: resampled point 255 is the corner, on segment 1 at fraction 0
    l_whole = [[0, 0, 0], [255, 0, 1000], [255, 255, 3000]]
    # corner at arc 100.5: point 101 = (100.5, 0.5) is farthest from the chord (0,0)-(100.5,255)
    # (|255 x - 100.5 y| = 25577.25 > 25500 for point 100 = (100, 0)); no other split.
    # Its time: 200 + (2750 - 200) * (101 - 100.5) / 255 = 205.
    l_half = [[0, 0, 0], [100.5, 0, 200], [100.5, 255, 2750]]
    xy, t, so, do = _pack([[straight], [l_whole], [l_half]])
    oxy, t_out, oso, odo = simplify_packed_timed(xy, t, so, do)
    assert t_out.dtype == np.int32
    assert oso.tolist() == [0, 2, 5, 8] and odo.tolist() == [0, 1, 2, 3]
    assert oxy.tolist() == [[0, 0], [255, 0],
                            [0, 0], [255, 0], [255, 255],
                            [0, 0], [100, 0], [100, 255]]  # 100.5 and 0.5: halves to even
    assert t_out.tolist() == [0, 1000, 0, 1000, 3000, 0, 205, 2750]


def test_timed_interpolates_at_the_positions_fraction():
    # (0,0,t=0) -> (50,0,t=100) -> (255,0,t=2150) -> (255,255,t=2660), scale 1: the raw vertex
    # (50, 0) is not kept (collinear); the corner is at arc 255 exactly, resampled point 255 on
    # segment 2 at fraction 0: time 2150.
    assert _timed_strokes([[[[0, 0, 0], [50, 0, 100], [255, 0, 2150], [255, 255, 2660]]]]) == \
        [[0, 2150, 2660]]
    # the same with the corner at arc 255.5 (x 255.5 -> scaled by 255 / 255.5): check against
    # the dense reference's independent interpolation, and that the corner time lies between
    # the raw times around it
    stroke = _arr([[0, 0, 0], [50, 0, 100], [255.5, 0, 2155], [255.5, 255.5, 2666]])
    _, ref_t = _dense_reference([stroke[:, :2]], [stroke[:, 2]])
    got = _timed_strokes([[stroke]])
    assert got == [r.tolist() for r in ref_t]
    assert len(got[0]) == 3 and 2155 <= got[0][1] <= 2666


def test_timed_one_point_and_zero_length_strokes():
    one = [[5, 5, 40]]
    zero = [[5, 5, 100], [5, 5, 130], [5, 5, 170]]  # zero length: first and last raw time
    line = [[0, 0, 200], [10, 0, 250]]
    assert _timed_strokes([[one, zero, line]]) == [[40, 40], [100, 170], [200, 250]]
    # a drawing of one point (extent 0), and a lone zero-length drawing
    assert _timed_strokes([[[[7.5, -3, 12]]], [[[1, 1, 3], [1, 1, 9]]]]) == [[12, 12], [3, 9]]


def test_timed_first_point_takes_the_pen_down_time_after_a_pause():
    # the pen rests on (0,0) from t=0 to t=300: resampled point 0 lies on segment 1 (segment 0
    # has length 0) but is the stroke's first point, so it takes the first raw time
    assert _timed_strokes([[[[0, 0, 0], [0, 0, 300], [255, 0, 1300]]]]) == [[0, 1300]]


def test_timed_rounds_to_the_nearest_ms():
    # corner at arc 100.5 as in the L above, raw times 0 / 200 / 201: 200 + 1 * 0.5 / 255 -> 200;
    # float raw times are rounded too: 200.2 + 2550.5 * 0.5 / 255 = 205.2 -> 205, 2750.7 -> 2751
    assert _timed_strokes([[[[0, 0, 0], [100.5, 0, 200], [100.5, 255, 201]]]]) == \
        [[0, 200, 201]]
    assert _timed_strokes([[[[0, 0, 0.4], [100.5, 0, 200.2], [100.5, 255, 2750.7]]]]) == \
        [[0, 205, 2751]]
    # halves to even, like the coordinates
    assert _timed_strokes([[[[0, 0, 2.5]]], [[[0, 0, 3.5]]]]) == [[2, 2], [4, 4]]


def test_timed_points_equal_untimed_on_real_drawings(real_raw):
    d = real_raw
    assert len(d) >= 1500
    xy, t_out, so, do = simplify_packed_timed(d.xy, d.t, d.stroke_offsets, d.drawing_offsets)
    uxy, uso, udo = simplify_packed(d.xy, d.stroke_offsets, d.drawing_offsets)
    assert xy.dtype == uxy.dtype == np.uint8 and np.array_equal(xy, uxy)
    assert np.array_equal(so, uso) and np.array_equal(do, udo)
    assert t_out.dtype == np.int32 and t_out.shape == (len(xy),)
    # float times (another compiled specialisation) give the same, and so do int64 ones
    for t in (d.t.astype(np.float64), d.t.astype(np.int64)):
        again = simplify_packed_timed(d.xy, t, d.stroke_offsets, d.drawing_offsets)
        assert np.array_equal(again[0], xy) and np.array_equal(again[1], t_out)


def test_timed_stroke_ends_and_monotone_times_on_real_drawings(real_raw):
    d = real_raw
    _, t_out, so, _ = simplify_packed_timed(d.xy, d.t, d.stroke_offsets, d.drawing_offsets)
    rso = d.stroke_offsets
    raw_t = d.t.astype(np.int64)
    t_out = t_out.astype(np.int64)
    assert np.array_equal(t_out[so[:-1]], raw_t[rso[:-1]])  # first kept = first raw, per stroke
    assert np.array_equal(t_out[so[1:] - 1], raw_t[rso[1:] - 1])  # last kept = last raw
    monotone = checked = 0
    for s in range(len(so) - 1):
        rt = raw_t[rso[s]:rso[s + 1]]
        kt = t_out[so[s]:so[s + 1]]
        assert rt.min() <= kt.min() and kt.max() <= rt.max()
        if np.all(np.diff(rt) >= 0):
            checked += 1
            monotone += bool(np.all(np.diff(kt) >= 0))
    assert checked >= 0.99 * (len(so) - 1) and monotone == checked
    # and the times are real interpolations, not just copies of the stroke's end times
    inner = np.ones(len(t_out), bool)
    inner[so[:-1]] = inner[so[1:] - 1] = False
    assert inner.sum() > 1000
    assert not np.isin(t_out[inner], raw_t).all()


def test_timed_equals_dense_reference_on_real_drawings(real_raw):
    d = real_raw
    for i in range(0, len(d), 12):
        strokes = d.strokes(i)  # (n, 3) x, y, t
        _, ref_t = _dense_reference([s[:, :2] for s in strokes], [s[:, 2] for s in strokes])
        got = _timed_strokes([strokes])
        assert got == [r.tolist() for r in ref_t], i


def test_timed_fast_path_equals_general_path(real_raw):
    d = real_raw
    xy = d.xy.astype(np.float64)
    t = np.ascontiguousarray(d.t, dtype=np.int32)  # as simplify_packed_timed passes raw times
    fast = _simplify_kernel(xy, d.stroke_offsets, d.drawing_offsets, 2.0, False, t, True)
    general = _simplify_kernel(xy, d.stroke_offsets, d.drawing_offsets, 2.0, True, t, True)
    multi = int(np.sum(np.diff(d.stroke_offsets) > 1))  # 1-point strokes skip RDP
    assert general[2] == multi and 0 < fast[2] < multi
    for a, b in zip(fast[:2] + fast[3:], general[:2] + general[3:]):
        assert np.array_equal(a, b)


def _raw_times(n: int):
    """Non-decreasing integer times for ``n`` points, with pauses (equal times) and jumps."""
    return st.lists(st.integers(0, 400), min_size=n, max_size=n).map(
        lambda v: np.cumsum(v).astype(np.float64))


_timed_drawings = _drawings.flatmap(
    lambda dr: st.tuples(st.just(dr), st.tuples(*[_raw_times(len(s)) for s in dr])))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_timed_drawings)
def test_timed_equals_dense_reference_on_tie_heavy_drawings(drawing_times):
    drawing, times = drawing_times
    ref_xy, ref_t = _dense_reference(drawing, list(times))
    strokes = [np.column_stack([s, t]) for s, t in zip(drawing, times)]
    xy, t, so, do = _pack([strokes])
    oxy, t_out, oso, _ = simplify_packed_timed(xy, t, so, do)
    assert [oxy[oso[s]:oso[s + 1]].astype(np.int64).tolist() for s in range(len(drawing))] == \
        [r.tolist() for r in ref_xy]
    assert [t_out[oso[s]:oso[s + 1]].tolist() for s in range(len(drawing))] == \
        [r.tolist() for r in ref_t]


def test_timed_untimed_kernel_leaves_times_unread():
    xy, t, so, do = _pack([[[[0, 0, 0], [255, 0, 1000]]]])
    out = _simplify_kernel(xy, so, do, 2.0, False, np.empty(0, np.int32), False)
    assert out[0].tolist() == [[0, 0], [255, 0]] and out[3].shape == (0,)


@pytest.mark.parametrize("t, match", [
    (np.zeros(3), r"t must have shape \(4,\)"),
    (np.zeros(5), r"t must have shape \(4,\)"),
    (np.zeros((4, 1)), r"t must have shape \(4,\)"),
    (np.array([0.0, 1.0, np.nan, 3.0]), r"non-finite .* point 2"),
    (np.array([0.0, np.inf, 2.0, 3.0]), r"non-finite .* point 1"),
    (np.array([0.0, 1.0, 2.0, 3e9]), "int32"),
    (np.array(["a", "b", "c", "d"]), "numeric"),
    (None, "t is None"),
])
def test_timed_bad_times_raise_value_error(t, match):
    xy = np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 1.0], [3.0, 3.0]])
    with pytest.raises(ValueError, match=match):
        simplify_packed_timed(xy, t, np.array([0, 2, 4]), np.array([0, 2]))


def test_timed_bad_offsets_and_points_raise_value_error():
    t = np.zeros(4)
    with pytest.raises(ValueError, match="stroke_offsets"):
        simplify_packed_timed(np.zeros((4, 2)), t, np.array([0, 3]), np.array([0, 1]))
    with pytest.raises(ValueError, match="non-finite"):
        simplify_packed_timed(np.array([[0, 0], [np.nan, 1], [0, 0], [1, 1]]), t,
                              np.array([0, 4]), np.array([0, 1]))


def test_timed_empty_batch():
    xy, t, so, do = simplify_packed_timed(np.zeros((0, 2)), np.zeros(0, np.int32), np.array([0]),
                                          np.array([0]))
    assert xy.shape == (0, 2) and t.shape == (0,) and t.dtype == np.int32
    assert so.tolist() == [0] and do.tolist() == [0]
