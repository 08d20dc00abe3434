"""The batched torch renderer against the CPU one: geometry exactly, images within the stated
tolerances, palette order and overlaps, edge cases (the other defining properties are checked
for both renderers in test_render.py). Runs on CPU tensors; the CUDA tests
repeat the agreement on the GPU when there is one."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from doodle_utils.data import Drawings
from doodle_utils.render import RENDERERS, RenderSpec, render, segments
from doodle_utils.render._torch import (INK_THRESHOLD, MAX_MAD, MIN_IOU, render_packed, render_torch, segments_torch,
                                       to_tensors)
from doodle_utils.render.variants import VARIANTS

from conftest import SIZES, agreement, batch_for, raw, simplified, spec_grid  # noqa: F401 (shared render helpers)
SPEC = RenderSpec(size=64, line_width=2, antialias=False, pad=2)
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def assert_segments_equal(d: Drawings, variant: str, spec: RenderSpec, device: str = "cpu") -> None:
    want = segments(d, variant, spec)
    got = segments_torch(*to_tensors(d, device), variant=variant, spec=spec)
    for name in ("p0", "p1", "value", "drawing", "stroke"):
        np.testing.assert_array_equal(getattr(got, name).cpu().numpy(), getattr(want, name), err_msg=name)
    assert (got.canvas, got.channels, got.n_drawings) == (want.canvas, want.channels, want.n_drawings)


def test_every_variant_has_torch_values():
    """One registry: each variant holds its numpy and its torch values (this file's agreement
    tests walk it), and the old name still answers, with a warning."""
    assert set(VARIANTS) == set(RENDERERS) and all(v.torch_values is not None for v in VARIANTS.values())
    import doodle_utils.render._torch as rt

    with pytest.warns(DeprecationWarning, match="TORCH_VALUES"):
        assert set(rt.TORCH_VALUES) == set(VARIANTS)


@pytest.mark.parametrize("base", [None, 256])
@pytest.mark.parametrize("variant", sorted(RENDERERS))
def test_segments_torch_equals_segments(batches, variant, base):
    spec = RenderSpec(size=64, base=base, fade=True)
    assert_segments_equal(batch_for(batches, variant), variant, spec)
    if not RENDERERS[variant].needs_time:  # raw drawings render the other variants too
        assert_segments_equal(batches["raw"], variant, spec)


_points = st.lists(st.tuples(st.integers(0, 255), st.integers(0, 255), st.integers(0, 50)), min_size=1, max_size=6)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(_points, min_size=1, max_size=4), min_size=1, max_size=3))
def test_segments_torch_equals_segments_on_random_drawings(drawings):
    """Any drawing: 1-point strokes, repeated points, equal times, a raw drawing of one point."""
    strokes = [[np.array(s, np.float64) for s in d] for d in drawings]
    for s in (x for d in strokes for x in d):
        s[:, 2] = np.cumsum(s[:, 2])
    r = Drawings.from_strokes(strokes, dtype=np.float64)
    s = Drawings.from_strokes([[x[:, :2] for x in d] for d in strokes], dtype=np.uint8)
    for variant in sorted(RENDERERS):
        assert_segments_equal(r, variant, SPEC)
        if not RENDERERS[variant].needs_time:
            assert_segments_equal(s, variant, RenderSpec(size=32, base=256))


@pytest.mark.parametrize("antialias", [True, False])
@pytest.mark.parametrize("variant", sorted(RENDERERS))
def test_agrees_with_the_cpu_renderer(batches, variant, antialias):
    d = batch_for(batches, variant)
    for spec in spec_grid(antialias):
        mad, iou = agreement(render(d, variant, spec), render_torch(d, variant, spec).numpy())
        assert mad <= MAX_MAD[antialias] * 64 / spec.size, (spec, mad)
        assert iou >= MIN_IOU[antialias], (spec, iou)


@pytest.mark.parametrize("antialias", [True, False])
@pytest.mark.parametrize("line_width", [1, 3])
def test_agrees_at_odd_and_thin_line_widths(batches, line_width, antialias):
    d = batches["simplified"]
    spec = RenderSpec(size=64, line_width=line_width, antialias=antialias)
    mad, iou = agreement(render(d, "mono", spec), render_torch(d, "mono", spec).numpy())
    assert mad <= MAX_MAD[antialias] and iou >= MIN_IOU[antialias], (mad, iou)


@pytest.mark.parametrize("variant", sorted(RENDERERS))
def test_aliased_one_pixel_lines_are_exact(batches, variant):
    """OpenCV's 1-pixel LINE_8 line is reproduced pixel for pixel, painter's order included."""
    d = batch_for(batches, variant)
    for size in (32, 128):
        spec = RenderSpec(size=size, line_width=1, antialias=False)  # OpenCV thickness 1
        np.testing.assert_array_equal(render_torch(d, variant, spec).numpy(), render(d, variant, spec))


@pytest.mark.parametrize("variant", sorted(RENDERERS))
def test_shapes_dtypes_and_float_output(batches, variant):
    d = batch_for(batches, variant).take(np.arange(5))
    spec = RenderSpec(size=32)
    out = render_torch(d, variant, spec)
    assert out.shape == (5, RENDERERS[variant].channels, 32, 32) and out.dtype == torch.uint8
    assert out.is_contiguous() and out.device.type == "cpu"
    f = render_torch(d, variant, spec, out_dtype=torch.float32)
    assert f.dtype == torch.float32 and 0 <= f.min() and f.max() <= 1
    assert (f * 255 - out.float()).abs().max() <= 0.5 + 1e-3


@pytest.mark.parametrize("variant", sorted(RENDERERS))
def test_batch_equals_one_by_one(batches, variant):
    d = batch_for(batches, variant).take(np.arange(6))
    for spec in (RenderSpec(size=32), RenderSpec(size=32, antialias=False, base=256)):
        whole = render_torch(d, variant, spec)
        singles = torch.cat([render_torch(d.take([i]), variant, spec) for i in range(len(d))])
        assert torch.equal(whole, singles)


def test_packed_entry_takes_device_tensors(batches):
    d = batches["simplified"].take(np.arange(4))
    xy, so, do, t = to_tensors(d)
    assert torch.equal(render_packed(xy, so, do, t, "palette", SPEC), render_torch(d, "palette", SPEC))


def test_palette_shows_stroke_order():
    from matplotlib import colormaps

    two = simplified([[0, 0], [255, 0]], [[0, 255], [255, 255]])
    for antialias in (False, True):
        img = render_torch(two, "palette", RenderSpec(size=64, antialias=antialias)).numpy()[0]
        for row, where in ((2, 0.0), (61, 1.0)):
            want = (np.array(colormaps["viridis"](where)[:3]) * 255).round()
            np.testing.assert_array_equal(img[:, row, 32], want)


def test_later_strokes_are_drawn_over_earlier_ones():
    cross = simplified([[128, 0], [128, 255]], [[0, 128], [255, 128]])  # vertical, then horizontal
    for antialias in (False, True):
        img = render_torch(cross, "palette", RenderSpec(size=64, antialias=antialias)).numpy()[0]
        np.testing.assert_array_equal(img[:, 32, 32], img[:, 32, 10])  # the crossing has stroke 2's colour


def test_dots_empty_drawings_and_empty_batches():
    d = Drawings.from_strokes([
        [np.array([[100, 100]], np.uint8)],  # one 1-point stroke: a dot
        [],  # no strokes at all: blank
        [np.array([[10, 10], [10, 10]], np.uint8), np.array([[200, 50]], np.uint8)],  # zero-length + dot
    ])
    for antialias in (False, True):
        spec = RenderSpec(size=64, antialias=antialias)
        cpu, out = render(d, "mono", spec), render_torch(d, "mono", spec).numpy()
        assert out.shape == (3, 1, 64, 64)
        assert out[1].max() == 0 and cpu[1].max() == 0
        for i in (0, 2):  # the dots are where OpenCV puts them, about as big
            assert out[i].max() == 255
            _, iou = agreement(cpu[i:i + 1], out[i:i + 1])
            inked = [int((x[i] > INK_THRESHOLD).sum()) for x in (cpu, out)]
            assert iou >= 0.5 and abs(inked[0] - inked[1]) <= 0.25 * inked[0], (antialias, i, iou, inked)
    one_point = raw([[5, 5, 0]])  # raw drawing of one point: its extent is 0
    assert render_torch(one_point, "time3", SPEC).numpy().max() > 0
    empty = Drawings(np.zeros((0, 2), np.uint8), None, np.zeros(1, np.int64), np.zeros(1, np.int64))
    assert render_torch(empty, "palette", SPEC).shape == (0, 3, 64, 64)


def test_unknown_variant():
    with pytest.raises(KeyError, match="unknown renderer"):
        render_torch(simplified([[0, 0], [1, 1]]), "sketchy")


@needs_cuda
@pytest.mark.gpu
@pytest.mark.parametrize("variant", sorted(RENDERERS))
def test_cuda_agrees_with_cpu(batches, variant):
    d = batch_for(batches, variant)
    assert_segments_equal(d, variant, RenderSpec(size=64), device="cuda")
    for antialias in (True, False):
        for spec in spec_grid(antialias):
            gpu = render_torch(d, variant, spec, device="cuda")
            assert gpu.device.type == "cuda"
            gpu = gpu.cpu().numpy()
            mad, iou = agreement(render(d, variant, spec), gpu)
            assert mad <= MAX_MAD[antialias] * 64 / spec.size and iou >= MIN_IOU[antialias], (spec, mad, iou)
            same, _ = agreement(render_torch(d, variant, spec).numpy(), gpu)
            assert same <= 0.05, (spec, same)  # the CPU tensors up to float rounding
