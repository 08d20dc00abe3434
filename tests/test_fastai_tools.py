"""A trained model with fastai's own tools: ``dls.vocab``, ``show_batch``,
``ClassificationInterpretation`` (top losses, most confused), ``learn.predict`` on drawings in
Google's form, ``learn.export`` / ``load_learner`` in a fresh process — for the image model
and the point model."""
from __future__ import annotations

import json
import subprocess
import sys

import matplotlib
import numpy as np
import pytest
import torch

from conftest import tiny_train_config

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def google(d, i: int) -> list:
    """Drawing ``i`` of a batch as Google's stroke lists ([xs, ys] or [xs, ys, ts])."""
    return [np.asarray(s).T.tolist() for s in d.strokes(i)]


@pytest.fixture(scope="module", params=["image", "points"])
def trained(request, six_class_stores, tmp_path_factory):
    from doodle_utils.training import train

    out = tmp_path_factory.mktemp(f"fastai_{request.param}")
    extra = dict(model="points", points=32, grid=8) if request.param == "points" else {}
    return train(tiny_train_config(six_class_stores, out, epochs=1, epoch_size=96, **extra)).learn


def test_loaders_carry_the_vocabulary_and_show_a_batch_with_its_classes(trained):
    dls = trained.dls
    words = dls.valid.source.words
    assert list(dls.vocab) == words and dls.c == len(words) == 6
    assert dls.vocab.o2i[words[2]] == 2  # fastai's CategoryMap, in the store's order
    b = dls.valid.one_batch()
    axes = dls.valid.show_batch(b, max_n=6)
    assert [ax.get_title() for ax in axes] == [words[int(y)] for y in b[-1][:6]]
    picture = axes[0].get_images()[0].get_array()
    assert picture.shape[:2] == ((32, 32) if dls.valid.input == "image" else (64, 64)) and np.ptp(picture) > 0
    plt.close("all")


def test_classification_interpretation_plots_the_worst_drawings(trained):
    from fastai.interpret import ClassificationInterpretation

    interp = ClassificationInterpretation.from_learner(trained)
    valid = trained.dls.valid
    probs, targs = trained.get_preds(dl=valid)
    assert len(interp.losses) == len(valid.source)
    losses, idx = interp.top_losses(9)
    interp.plot_top_losses(9)
    titles = [ax.get_title() for ax in plt.gcf().axes if ax.get_title()]
    words = valid.source.words
    want = [f"{words[int(probs[i].argmax())]} / {words[int(targs[i])]} / {losses[k].item():.2f} / "
            f"{probs[i].max().item():.2f}" for k, i in enumerate(idx.tolist())]
    assert titles == want
    plt.close("all")
    pred = probs.argmax(1).numpy()
    cm = np.zeros((6, 6), int)
    np.add.at(cm, (targs.numpy(), pred), 1)
    np.fill_diagonal(cm, 0)
    assert sorted(c for *_, c in interp.most_confused()) == sorted(cm[cm > 0].tolist())
    interp.show_results([0, 1, 2])
    plt.close("all")


def test_predict_renders_a_drawing_as_validation_did(trained):
    """A validation drawing handed over as Google's stroke lists gets the probabilities the
    validation loader gave it: the same rendering, the same model."""
    valid = trained.dls.valid
    probs, _ = trained.get_preds(dl=valid)
    d, labels, _ = valid.source.take(np.arange(4))
    for i in range(4):
        word, cls, p = trained.predict(google(d, i))
        assert torch.allclose(p, probs[i], atol=1e-5)
        assert word == valid.source.words[int(cls)] and int(cls) == int(probs[i].argmax())
    # an ndjson row names its class: fastai's with_input path keeps it as the target
    assert trained.predict({"word": valid.source.words[int(labels[0])], "drawing": google(d, 0)})[0] == \
        valid.source.words[int(probs[0].argmax())]


def test_export_and_load_learner_predict_the_same_in_a_fresh_process(trained, tmp_path):
    d, _, _ = trained.dls.valid.source.take(np.arange(3))
    drawings = [google(d, i) for i in range(3)]
    here = [trained.predict(x)[2].tolist() for x in drawings]
    trained.export(tmp_path / "model.pkl")
    code = ("import json, sys, warnings; warnings.simplefilter('ignore'); from fastai.learner import load_learner; "
            "learn = load_learner(sys.argv[1]); "
            "print(json.dumps([learn.predict(x)[2].tolist() for x in json.loads(sys.argv[2])]))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "model.pkl"), json.dumps(drawings)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert np.allclose(json.loads(out.stdout.strip().splitlines()[-1]), here, atol=1e-5)
    assert len(trained.dls.valid.source) > 0  # the learner keeps its data after exporting


def test_raw_drawings_are_simplified_as_google_did_before_predicting(trained, sample_dir):
    """Google's raw drawing and Google's own simplified version of it predict the same: the
    raw one goes through the suite's bit-exact simplification first."""
    name = sorted(p.name for p in (sample_dir / "simplified").glob("*.ndjson"))[0]
    raw_file = sample_dir / "raw" / name
    simple = {json.loads(x)["key_id"]: json.loads(x) for x in (sample_dir / "simplified" / name).open()}
    rows = [r for r in map(json.loads, raw_file.open()) if r["key_id"] in simple][:3]
    assert rows
    for row in rows:
        p_raw = trained.predict(row)[2]
        p_simple = trained.predict(simple[row["key_id"]]["drawing"])[2]
        assert torch.allclose(p_raw, p_simple, atol=1e-6), row["key_id"]


@pytest.mark.parametrize("bad, message", [
    ([], "drawing 0: expected a non-empty list of strokes"),
    ([[[1, 2, 3], [4, 5]]], "drawing 0, stroke 0: expected [xs, ys] or [xs, ys, ts]"),
    ([[[1, 2], [3, 4]], [[1, 2], [3, 4], [0, 5]]], "strokes mix [xs, ys] and [xs, ys, ts]"),
    ({"drawing": [[["a"], ["b"]]]}, "drawing 0, stroke 0"),
])
def test_a_malformed_drawing_is_named(trained, bad, message):
    with pytest.raises(ValueError) as e:
        trained.predict(bad)
    assert message in str(e.value)


def test_a_model_that_reads_times_asks_for_them(tmp_path):
    """The point model of a store with timings reads each point's time: a drawing without
    times is refused with what to give, never predicted from made-up times."""
    from conftest import packed_competition
    from doodle_utils.training import train

    tr, te = packed_competition(tmp_path / "timed", classes=3, per_class=20, test_per_class=2, seed=3, kind="timed")
    learn = train(tiny_train_config((tr, te), tmp_path / "run", epochs=1, epoch_size=32, model="points",
                                    points=16, grid=8)).learn
    with pytest.raises(ValueError, match=r"reads each point's time .*\[xs, ys, ts\]"):
        learn.predict([[[0, 50, 100], [0, 50, 100]]])
    assert learn.predict([[[0, 50, 100], [0, 50, 100], [0, 10, 20]]])[2].shape == (3,)
