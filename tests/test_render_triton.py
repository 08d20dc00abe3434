"""The Triton rasteriser against the torch one it follows. On CPU tensors the kernel runs in
Triton's interpreter (so CI covers the kernel's logic); on a GPU the compiled kernel is checked
again, and shown not to wait for the device."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from doodle_utils.data import Drawings, synth
from doodle_utils.data.simplify import simplify_packed
from doodle_utils.render import RENDERERS, RenderSpec
from doodle_utils.render._torch import render_packed, render_torch, to_tensors

triton = pytest.importorskip("triton")
from doodle_utils.render import _triton as render_triton  # noqa: E402

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def batches() -> dict[str, Drawings]:
    """8 synthetic drawings of different classes: raw with times, and Google-simplified."""
    rng = np.random.default_rng(11)
    strokes = [synth.draw(synth.CLASSES[i], rng) for i in (0, 3, 5, 9, 10, 11, 15, 19)]
    r = Drawings.from_strokes(strokes, dtype=np.float64)
    xy, so, do = simplify_packed(r.xy, r.stroke_offsets, r.drawing_offsets)
    return {"raw": r, "simplified": Drawings(xy, None, so, do)}


def pick(batches, variant: str) -> Drawings:
    return batches["raw" if RENDERERS[variant].needs_time else "simplified"]


def both(d: Drawings, variant: str, spec: RenderSpec, device: str = "cpu", **kw) -> tuple[np.ndarray, np.ndarray]:
    a = render_torch(d, variant, spec, device=device, engine="torch", **kw)
    b = render_torch(d, variant, spec, device=device, engine="triton", **kw)
    assert b.device.type == torch.device(device).type and b.dtype == a.dtype and b.shape == a.shape
    return a.cpu().numpy(), b.cpu().numpy()


@pytest.mark.parametrize("variant", sorted(RENDERERS))
def test_interpreted_kernel_equals_the_torch_engine(batches, variant):
    d = pick(batches, variant)
    for spec in (RenderSpec(size=32), RenderSpec(size=24, base=48)):
        a, b = both(d, variant, spec)
        assert a.max() > 0
        np.testing.assert_array_equal(b, a, err_msg=str(spec))


def test_thick_lines_tiles_and_float_channels_last(batches):
    """A canvas of several tiles (40 px: 2 x 2 tiles, the last ones partly outside), a thick
    pen, and the training output (float 0..1, channels-last) equal the torch engine's."""
    d = batches["simplified"].take(np.arange(3))
    spec = RenderSpec(size=40, line_width=3.5)
    a, b = both(d, "palette", spec)
    np.testing.assert_array_equal(b, a)
    xy, so, do, t = to_tensors(d)
    want = render_packed(xy, so, do, t, "strokes3", spec, out_dtype=torch.float32, engine="torch")
    got = render_packed(xy, so, do, t, "strokes3", spec, out_dtype=torch.float32, engine="triton",
                        channels_last=True)
    assert got.is_contiguous(memory_format=torch.channels_last) and got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_real_drawings(sample_dir):
    """Google's simplified drawings of three classes, all strokes in painter's order."""
    from doodle_utils.data import read_file

    files = sorted((sample_dir / "simplified").glob("*.ndjson"))[:3]
    d = Drawings.concat([read_file(f)[1].take(np.arange(2)) for f in files])
    a, b = both(d, "palette", RenderSpec(size=32))
    np.testing.assert_array_equal(b, a)


def test_dots_edges_and_empty_batches():
    """A one-point stroke (a dot), lines along the canvas border, a crossing, and no drawings."""
    d = Drawings.from_strokes([
        [np.array([[0, 0], [255, 0], [255, 255]], np.uint8), np.array([[128, 128]], np.uint8)],
        [np.array([[0, 255], [255, 0]], np.uint8), np.array([[0, 0], [255, 255]], np.uint8)],
    ])
    a, b = both(d, "palette", RenderSpec(size=32, pad=0))
    np.testing.assert_array_equal(b, a)
    assert b[0, :, 16, 16].max() > 0  # the dot
    from doodle_utils.render.variants import palette_table

    # (16, 16) lies on the later stroke, (0,0)-(255,255): fully its colour, the last of the map
    assert b[1, :, 16, 16].tolist() == palette_table("viridis")[255].tolist()
    empty = Drawings.from_strokes([])
    assert render_torch(empty, "mono", RenderSpec(size=32), engine="triton").shape == (0, 1, 32, 32)


def test_engine_choice():
    d = Drawings.from_strokes([[np.array([[0, 0], [200, 90]], np.uint8)]])
    assert not render_triton.available("cpu")  # auto keeps the torch engine on CPU tensors
    with pytest.raises(ValueError, match="anti-aliased"):
        render_torch(d, "mono", RenderSpec(size=32, antialias=False), engine="triton")
    with pytest.raises(ValueError, match="engine must be"):
        render_torch(d, "mono", RenderSpec(size=32), engine="cairo")


@needs_cuda
@pytest.mark.gpu
@pytest.mark.parametrize("variant", sorted(RENDERERS))
def test_cuda_kernel_equals_the_torch_engine(batches, variant):
    d = pick(batches, variant)
    for spec in (RenderSpec(size=64), RenderSpec(size=128), RenderSpec(size=64, base=256),
                 RenderSpec(size=96, line_width=3)):
        a, b = both(d, variant, spec, device="cuda")
        diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-4, (spec, json.dumps([int(diff.max()), float(diff.mean())]))


@needs_cuda
@pytest.mark.gpu
def test_cuda_kernel_never_waits_for_the_device(batches):
    """The whole render (tables and kernel) queues work without a host sync, so a training
    step can be queued behind it; the sparse torch engine must sync (it sizes its columns)."""
    xy, so, do, t = to_tensors(batches["raw"], "cuda")
    spec = RenderSpec(size=64)
    for v in ("time3", "mono", "palette"):  # compile (one kernel per channel count), load the colour map
        render_packed(xy, so, do, t if v == "time3" else None, v, spec, engine="triton")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for v in sorted(RENDERERS):
            render_packed(xy, so, do, t if v == "time3" else None, v, spec, out_dtype=torch.float32, engine="triton")
        with pytest.raises(RuntimeError):
            render_packed(xy, so, do, None, "mono", spec, engine="torch")
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=needs_cuda)])
def test_timed_points_in_the_frame_equal_on_both_engines(batches, device):
    """A timed store's batch (simplified points with times, ``in_frame``): time3 equal on both
    engines, and the other variants equal to the simplified batch's (no re-normalisation)."""
    from doodle_utils.data.simplify import simplify_packed_timed

    r = batches["raw"]
    timed = Drawings(*simplify_packed_timed(r.xy, r.t, r.stroke_offsets, r.drawing_offsets), in_frame=True)
    spec = RenderSpec(size=32)
    a, b = both(timed, "time3", spec, device)
    assert a.max() > 0
    np.testing.assert_array_equal(b, a)
    for variant in ("palette", "strokes3"):
        _, t = both(timed, variant, spec, device)
        _, s = both(batches["simplified"], variant, spec, device)
        np.testing.assert_array_equal(t, s, err_msg=variant)
