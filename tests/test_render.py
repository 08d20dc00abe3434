"""CPU renderers: shapes, geometry, and each variant's defining property, on hand-made drawings."""
from __future__ import annotations

import numpy as np
import pytest

from doodle_utils.data import Drawings
from doodle_utils.render import RENDERERS, RenderSpec, render, render_baseline, segments


def simplified(*strokes) -> Drawings:
    return Drawings.from_strokes([[np.array(s, np.uint8) for s in strokes]])


def raw(*strokes) -> Drawings:
    return Drawings.from_strokes([[np.array(s, np.float64) for s in strokes]], dtype=np.float64)


SPEC = RenderSpec(size=64, line_width=2, antialias=False, pad=2)


def _torch(d, variant="mono", spec=RenderSpec()):
    from doodle_utils.render._torch import render_torch

    return render_torch(d, variant, spec).numpy()


RENDER = {"cpu": render, "torch": _torch}
both = pytest.mark.parametrize("draw", sorted(RENDER))
TWO = simplified([[0, 0], [255, 0]], [[0, 255], [255, 255]])  # two horizontal strokes


@both
def test_three_point_drawing_lands_where_expected(draw):
    d = simplified([[0, 0], [255, 255], [255, 0]])
    img = RENDER[draw](d, "mono", SPEC)[0, 0]
    assert img.shape == (64, 64)
    # the diagonal passes through the centre; corners at the padded canvas edges are inked
    assert img[31:33, 31:33].max() == 255
    assert img[2, 2] == 255 and img[61, 61] == 255 and img[2, 61] == 255
    assert img[61, 2] == 0 and img[0, :].max() == 0  # opposite corner empty, padding blank


@pytest.mark.parametrize("variant", sorted(RENDERERS))
def test_every_variant_renders_its_channels(variant):
    d = raw([[10, 10, 0], [200, 30, 100], [120, 220, 250]], [[50, 50, 400], [60, 150, 500]])
    out = render(d, variant, SPEC)
    assert out.shape == (1, RENDERERS[variant].channels, 64, 64) and out.dtype == np.uint8
    assert (out > 0).any(axis=(0, 2, 3)).all()  # every channel has ink


@both
def test_mono_fade_dims_later_strokes(draw):
    spec = RenderSpec(size=64, line_width=2, antialias=False, fade=True)
    strokes = [[[0, 20 * i], [255, 20 * i]] for i in range(13)]
    img = RENDER[draw](simplified(*strokes), "mono", spec)[0, 0]
    rows = [int(img[2 + round(20 * i * 59 / 255)].max()) for i in range(13)]
    assert rows == [255 - 13 * min(i, 10) for i in range(13)]


def test_palette_shows_stroke_order():
    img = render(TWO, "palette", SPEC)[0]
    first, last = img[:, 2, 32], img[:, 61, 32]
    from matplotlib import colormaps
    want0 = (np.array(colormaps["viridis"](0.0)[:3]) * 255).round()
    want1 = (np.array(colormaps["viridis"](1.0)[:3]) * 255).round()
    np.testing.assert_array_equal(first, want0)
    np.testing.assert_array_equal(last, want1)


@both
def test_strokes3_gradients_are_monotone(draw):
    d = simplified([[0, 128], [64, 128], [128, 128], [192, 128], [255, 128]], [[0, 10], [255, 10]])
    img = RENDER[draw](d, "strokes3", SPEC)[0]
    row = img[:, 2 + round(128 * 59 / 255)]
    inked = row[0] > 0
    along = row[1][inked]
    assert along[0] == 32 and np.all(np.diff(along.astype(int)) >= 0) and along.max() == 255
    # channel 2: the first stroke is 32, the second 255
    assert set(np.unique(row[2][inked])) == {32}
    assert img[2, 2 + round(10 * 59 / 255), 30] == 255


@both
def test_time3_needs_times_and_encodes_them(draw):
    with pytest.raises(ValueError, match="raw drawings"):
        RENDER[draw](TWO, "time3", SPEC)
    # a slow first half and a fast second half along one line (raw: aligned to the top edge)
    d = raw([[0, 128, 0], [128, 128, 1000], [255, 128, 1050]])
    img = RENDER[draw](d, "time3", SPEC)[0]
    y = 2
    since, speed = img[0, y], img[1, y]
    assert since[10] < since[50] and speed[10] < speed[50]


def test_segments_are_shared_geometry():
    seg = segments(TWO, "palette", SPEC)
    assert seg.p0.shape == (2, 2) and seg.value.shape == (2, 3) and seg.canvas == 64
    np.testing.assert_allclose(seg.p0[0], [2, 2]) and np.testing.assert_allclose(seg.p1[1], [61, 61])
    big = segments(TWO, "mono", RenderSpec(size=64, base=256, pad=2))
    assert big.canvas == 256 and big.p1[1, 0] == pytest.approx(255 - 8)


def test_base_canvas_downsamples_to_the_output_size():
    out = render(TWO, "mono", RenderSpec(size=32, base=256, line_width=2))
    assert out.shape == (1, 1, 32, 32) and out.max() > 128


def test_baseline_draws_the_popular_kernel_style():
    out = render_baseline(TWO, size=64)
    assert out.shape == (1, 1, 64, 64) and out.max() > 200


def test_unknown_variant():
    with pytest.raises(KeyError, match="unknown renderer"):
        render(TWO, "sketchy")


def test_raw_drawings_are_aligned_and_scaled_per_drawing(sample_dir):
    """Each raw drawing's minimum goes to 0 and its longer side to 255, one drawing at a time,
    whatever sits beside it in the batch (empty drawings and single points included)."""
    from doodle_utils.data import read_file
    from doodle_utils.render import scaled

    d = read_file(sorted((sample_dir / "raw").glob("*.ndjson"))[0])[1].take(np.arange(20))
    got = scaled(d)
    pts = d.stroke_offsets[d.drawing_offsets]
    for i in range(len(d)):
        v = d.xy[pts[i]:pts[i + 1]].astype(np.float64)
        lo = v.min(axis=0)
        np.testing.assert_array_equal(got[pts[i]:pts[i + 1]], (v - lo) * (255.0 / (v.max(axis=0) - lo).max()))
    xy, t = np.array([[5.0, 7.0], [1.0, 2.0], [3.0, 9.0]]), np.array([0.0, 0.0, 10.0])
    odd = Drawings(xy, t, np.array([0, 1, 3]), np.array([0, 1, 1, 2]))  # a dot, no strokes, a line
    np.testing.assert_allclose(scaled(odd), [[0, 0], [0, 0], [255 * 2 / 7, 255]])


# --------------------------------------------------------------------------- drawings with times in the frame

def _timed(d: Drawings, t: np.ndarray) -> Drawings:
    """``d``'s points with times, as a timed store gives them (in the 0..255 frame)."""
    return Drawings(d.xy, t, d.stroke_offsets, d.drawing_offsets, in_frame=True)


@both
def test_timed_points_are_drawn_where_they_are(draw):
    draw = RENDER[draw]
    """A timed store's points are in the frame already: a drawing that does not reach 255 is
    not stretched (as raw screen points would be)."""
    small = simplified([[10, 10], [100, 10]], [[10, 60], [100, 60]])
    t = np.array([0, 100, 300, 400], np.int32)
    for variant in ("mono", "palette", "strokes3"):
        assert np.array_equal(draw(_timed(small, t), variant, SPEC), draw(small, variant, SPEC)), variant
    stretched = Drawings(small.xy.astype(np.float32), t, small.stroke_offsets, small.drawing_offsets)
    assert not np.array_equal(draw(stretched, "mono", SPEC), draw(small, "mono", SPEC))


def test_augmentation_scales_timed_drawings():
    from doodle_utils.training.loaders import Augment, augment

    d = _timed(TWO, np.array([0, 100, 300, 400], np.int32))
    half = augment(d, Augment(scale=0.5), np.random.default_rng(0))
    assert half.in_frame
    before, after = render(d, "time3", SPEC), render(half, "time3", SPEC)
    assert (after > 0).sum() != (before > 0).sum()  # the size change survives rendering
