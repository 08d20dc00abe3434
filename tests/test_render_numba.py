"""The compiled CPU renderer: the same images as render_torch on CPU tensors (same rules) up
to float rounding, OpenCV's within render_torch's tolerances, hand-checked pixels, edge
cases, and real Google drawings. The synthetic batch and the agreement measure are
test_render_torch's."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import agreement, batch_for, simplified, spec_grid
from doodle_utils import data
from doodle_utils.data import Drawings
from doodle_utils.render import RENDERERS, RenderSpec, render
from doodle_utils.render._numba import render_numba
from doodle_utils.render._torch import MAX_MAD, MIN_IOU, render_torch

# against render_torch: the same rules in float32, so only pixels where torch's CPU square root
# (not correctly rounded) and IEEE's land on different sides of a rounding step differ. Measured
# on the synthetic batch: anti-aliased MAD <= 0.00003, one level at <= 0.003% of pixels;
# aliased (a pixel is in or out) MAD <= 0.0018 at <= 0.004% of pixels.
MAX_MAD_TORCH = 0.01
MIN_SAME = 0.999


def versus_torch(d: Drawings, variant: str, spec: RenderSpec) -> tuple[float, float]:
    """(MAD, fraction of identical values) of render_numba against render_torch."""
    a = render_numba(d, variant, spec)
    b = render_torch(d, variant, spec).numpy()
    assert a.shape == b.shape and a.dtype == np.uint8 and a.flags.c_contiguous
    diff = np.abs(a.astype(np.int16) - b)
    return float(diff.mean()), float((diff == 0).mean())


@pytest.mark.parametrize("antialias", [True, False])
@pytest.mark.parametrize("variant", sorted(RENDERERS))
def test_equals_render_torch_up_to_float_rounding(batches, variant, antialias):
    d = batch_for(batches, variant)
    for spec in spec_grid(antialias):
        mad, same = versus_torch(d, variant, spec)
        assert mad <= MAX_MAD_TORCH and same >= MIN_SAME, (spec, mad, same)


@pytest.mark.parametrize("antialias", [True, False])
@pytest.mark.parametrize("line_width", [1, 3, 5])
def test_equals_render_torch_at_other_line_widths(batches, line_width, antialias):
    for variant in ("mono", "strokes3"):
        for base in (None, 256):
            spec = RenderSpec(size=64, line_width=line_width, antialias=antialias, base=base)
            mad, same = versus_torch(batches["simplified"], variant, spec)
            assert mad <= MAX_MAD_TORCH and same >= MIN_SAME, (spec, mad, same)


@pytest.mark.parametrize("antialias", [True, False])
@pytest.mark.parametrize("variant", sorted(RENDERERS))
def test_agrees_with_opencv(batches, variant, antialias):
    """Within the tolerances render_torch states for its own agreement with OpenCV."""
    d = batch_for(batches, variant)
    for spec in spec_grid(antialias):
        mad, iou = agreement(render(d, variant, spec), render_numba(d, variant, spec))
        assert mad <= MAX_MAD[antialias] * 64 / spec.size and iou >= MIN_IOU[antialias], (spec, mad, iou)


def test_aliased_one_pixel_lines_equal_opencv(batches):
    """render_torch's exact port of OpenCV's 1-pixel LINE_8 line, ported again."""
    for variant in ("palette", "time3"):
        d = batch_for(batches, variant)
        spec = RenderSpec(size=64, line_width=1, antialias=False)
        np.testing.assert_array_equal(render_numba(d, variant, spec), render(d, variant, spec))


def test_canvas_not_a_multiple_of_the_size_uses_opencv_area_resize(batches):
    d = batches["simplified"].take(np.arange(8))
    spec = RenderSpec(size=48, base=256)
    out = render_numba(d, "palette", spec)
    assert out.shape == (8, 3, 48, 48)
    mad, iou = agreement(render(d, "palette", spec), out)
    assert mad <= MAX_MAD[True] * 64 / 48 and iou >= MIN_IOU[True], (mad, iou)


def test_real_drawings(sample_dir):
    """Google's own simplified drawings (and raw ones for time3), against both renderers."""
    words = ["ant", "bicycle", "The Eiffel Tower"]
    simp = Drawings.concat([data.read_file(sample_dir / "simplified" / f"{w}.ndjson")[1] for w in words])
    raw = Drawings.concat([data.read_file(sample_dir / "raw" / f"{w}.ndjson")[1] for w in words[:1]])
    for variant, d in (("palette", simp), ("strokes3", simp), ("time3", raw)):
        for spec in (RenderSpec(size=64), RenderSpec(size=32, base=256)):
            mad, same = versus_torch(d, variant, spec)
            assert mad <= MAX_MAD_TORCH and same >= MIN_SAME, (variant, spec, mad, same)
            mad, iou = agreement(render(d, variant, spec), render_numba(d, variant, spec))
            assert mad <= MAX_MAD[True] * 64 / spec.size and iou >= MIN_IOU[True], (variant, spec, mad, iou)


def test_horizontal_line_profile_by_hand():
    """A line on canvas row 2 (line width 2: reach 2.25, slope 0.9): coverage at distance d is
    round(clip((2.25 - d) * 0.9, 0, 1) * 255): 255 at d = 0 and 1, 57 at d = 2, 0 beyond."""
    img = render_numba(simplified([[0, 0], [255, 0]]), "mono", RenderSpec(size=64, pad=2))[0, 0]
    np.testing.assert_array_equal(img[:6, 32], [57, 255, 255, 255, 57, 0])
    assert img[6:].max() == 0
    # the round caps: the segment ends at column 61, so column 63 is 2 px beyond it
    np.testing.assert_array_equal(img[2, 59:64], [255, 255, 255, 255, 57])


def test_empty_drawings_dots_and_empty_batches():
    d = Drawings.from_strokes([
        [np.array([[100, 100]], np.uint8)],  # one 1-point stroke: a dot
        [],  # no strokes at all: blank
        [np.array([[10, 10], [10, 10]], np.uint8), np.array([[200, 50]], np.uint8)],  # zero-length + dot
    ])
    for antialias in (True, False):
        spec = RenderSpec(size=64, antialias=antialias)
        out = render_numba(d, "mono", spec)
        assert out.shape == (3, 1, 64, 64)
        assert out[1].max() == 0
        np.testing.assert_array_equal(out, render_torch(d, "mono", spec).numpy())
        ys, xs = np.nonzero(out[0, 0])
        centre = 2 + 100 * 59 / 255  # the dot is round and centred on its point
        assert out[0, 0].max() == 255 and abs(ys.mean() - centre) < 0.5 and abs(xs.mean() - centre) < 0.5
    empty = Drawings(np.zeros((0, 2), np.uint8), None, np.zeros(1, np.int64), np.zeros(1, np.int64))
    assert render_numba(empty, "palette").shape == (0, 3, 64, 64)


def test_drawings_touching_the_canvas_border():
    """No padding, thick lines along all four edges: the stencil is clipped, nothing wraps."""
    frame = simplified([[0, 0], [255, 0], [255, 255], [0, 255], [0, 0]])
    for antialias in (True, False):
        for base in (None, 256):
            spec = RenderSpec(size=32, pad=0, line_width=4, antialias=antialias, base=base)
            out = render_numba(frame, "mono", spec)[0, 0]
            assert out[0].min() > 0 and out[-1].min() > 0 and out[:, 0].min() > 0 and out[:, -1].min() > 0
            assert out[8:-8, 8:-8].max() == 0  # the inside stays blank
            np.testing.assert_array_equal(out, render_torch(frame, "mono", spec).numpy()[0, 0])


def test_later_strokes_are_drawn_over_earlier_ones():
    from matplotlib import colormaps

    cross = simplified([[128, 0], [128, 255]], [[0, 128], [255, 128]])  # vertical, then horizontal
    last = (np.array(colormaps["viridis"](1.0)[:3]) * 255).round()
    for antialias in (True, False):
        img = render_numba(cross, "palette", RenderSpec(size=64, antialias=antialias))[0]
        np.testing.assert_array_equal(img[:, 32, 32], last)  # the crossing has stroke 2's colour
        np.testing.assert_array_equal(img[:, 32, 32], img[:, 32, 10])
        # and the other way round: the vertical stroke drawn last wins
        swapped = render_numba(simplified([[0, 128], [255, 128]], [[128, 0], [128, 255]]), "palette",
                               RenderSpec(size=64, antialias=antialias))[0]
        np.testing.assert_array_equal(swapped[:, 32, 32], swapped[:, 10, 32])


@pytest.mark.parametrize("variant", sorted(RENDERERS))
def test_batch_equals_one_by_one(batches, variant):
    """The scratch reused across drawings leaves nothing behind."""
    d = batch_for(batches, variant).take(np.arange(6))
    for spec in (RenderSpec(size=32), RenderSpec(size=32, base=256), RenderSpec(size=32, antialias=False)):
        whole = render_numba(d, variant, spec)
        singles = np.concatenate([render_numba(d.take([i]), variant, spec) for i in range(len(d))])
        np.testing.assert_array_equal(whole, singles)


def test_render_engine_argument(batches):
    d = batches["simplified"].take(np.arange(4))
    spec = RenderSpec(size=32)
    np.testing.assert_array_equal(render(d, "palette", spec, engine="numba"), render_numba(d, "palette", spec))
    np.testing.assert_array_equal(render(d, "palette", spec, engine="opencv"), render(d, "palette", spec))
    with pytest.raises(ValueError, match="'cairo'"):
        render(d, "palette", spec, engine="cairo")


def test_time3_needs_times_and_unknown_variants_fail():
    with pytest.raises(ValueError, match="raw drawings"):
        render_numba(simplified([[0, 0], [255, 0]]), "time3")
    with pytest.raises(KeyError, match="unknown renderer"):
        render_numba(simplified([[0, 0], [1, 1]]), "sketchy")
