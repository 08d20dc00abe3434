"""A doodle from an image: drawings rendered to PNG (dark on light, light on dark, transparent)
are traced back into strokes that render like the originals; `doodle predict` takes the PNG
and predicts what the traced strokes predict; a blank or unreadable image is named."""
from __future__ import annotations

import io

import cv2
import numpy as np
import pandas as pd
import pytest

from doodle_utils.data import Drawings
from doodle_utils.data.bitmap import drawing_from_image
from doodle_utils.data.store import Store, as_kind
from doodle_utils.render import RenderSpec, render


@pytest.fixture(scope="module")
def drawings(six_class_stores) -> Drawings:
    st = Store(six_class_stores[0], verify="none")
    return st.drawings(np.asarray(st.valid_idx)[:24])


def _ink(d: Drawings, size: int = 64) -> np.ndarray:
    return render(d, "mono", RenderSpec(size=size))[:, 0] > 64


@pytest.mark.parametrize("style", ["dark on light", "light on dark", "transparent"])
def test_a_rendered_drawing_is_traced_back_into_the_same_lines(drawings, style):
    big = render(drawings, "mono", RenderSpec(size=256, line_width=4))[:, 0]  # white ink on black
    ious = []
    for i in range(len(drawings)):
        ink = big[i]
        if style == "dark on light":
            img = cv2.cvtColor(255 - ink, cv2.COLOR_GRAY2BGR)
        elif style == "light on dark":
            img = ink
        else:  # black ink, alpha = ink; the hidden colour of transparent pixels is black too
            img = np.dstack([np.zeros_like(ink)] * 3 + [ink])
        traced = as_kind(drawing_from_image(img), "simplified")
        a, b = _ink(drawings.take([i]))[0], _ink(traced)[0]
        ious.append((a & b).sum() / (a | b).sum())
    assert min(ious) > 0.6 and np.mean(ious) > 0.8, np.round(ious, 2)


def test_blank_and_unreadable_images_are_named(tmp_path):
    cv2.imwrite(str(tmp_path / "blank.png"), np.full((50, 50), 255, np.uint8))
    (tmp_path / "fake.png").write_text("not a picture")
    with pytest.raises(ValueError, match=r"blank.png: no ink found"):
        drawing_from_image(tmp_path / "blank.png")
    with pytest.raises(ValueError, match=r"fake.png: not an image"):
        drawing_from_image(tmp_path / "fake.png")


def test_doodle_predict_takes_an_image_and_a_folder_of_them(drawings, six_class_stores, tmp_path):
    import subprocess
    import sys

    from conftest import tiny_train_config
    from doodle_utils import prediction
    from doodle_utils.training import train

    run = train(tiny_train_config(six_class_stores, tmp_path / "out", epochs=1, epoch_size=32)).folder
    big = render(drawings.take(np.arange(3)), "mono", RenderSpec(size=256, line_width=4))[:, 0]
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"d{i}.png"), 255 - big[i])
    learn = prediction.load_model(run)
    traced = [drawing_from_image(folder / f"d{i}.png") for i in range(3)]
    want = prediction.predict(learn, Drawings.concat(traced), [f"d{i}.png" for i in range(3)], top=2)
    for target, rows in ((folder / "d1.png", want.iloc[[1]]), (folder, want)):
        done = subprocess.run([sys.executable, "-m", "doodle_utils", "predict", str(run), str(target), "--top", "2"],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        got = pd.read_csv(io.StringIO(done.stdout), dtype={"key_id": str})
        pd.testing.assert_frame_equal(got, rows.reset_index(drop=True), check_dtype=False, atol=1e-4)
    empty = tmp_path / "empty"
    empty.mkdir()
    from doodle_utils.cli import main
    assert main(["predict", str(run), str(empty)]) == 2
