"""A trained model used after training: `load_run` predicts what training recorded, and
`doodle predict` / `doodle export` answer for files of drawings, and with an `error:` line for
a bad value."""
from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from conftest import tiny_train_config


@pytest.fixture(scope="module")
def run(six_class_stores, tmp_path_factory):
    """A finished two-snapshot run of a simplified store."""
    from doodle_utils.training import train

    out = tmp_path_factory.mktemp("predict_run")
    cfg = tiny_train_config(six_class_stores, out, schedule="sgdr", cycles=2, epochs=2, epoch_size=64)
    return train(cfg).folder


@pytest.fixture(scope="module")
def valid_file(run, tmp_path_factory):
    """The run's validation drawings as Google's ndjson, with the probabilities it recorded."""
    from doodle_utils import data
    from doodle_utils.data.store import Store

    manifest = json.loads((run / "preds" / "manifest.json").read_text())
    st = Store(manifest["valid_store"])
    idx = np.asarray(manifest["valid_idx"])
    meta = pd.DataFrame({"key_id": np.asarray(st.key_id)[idx], "word": [st.words[c] for c in st.labels(idx)],
                         "countrycode": [st.countries[c] for c in np.asarray(st.country)[idx]],
                         "recognized": True, "timestamp": "2017-03-01 00:00:00.00000 UTC"})
    path = tmp_path_factory.mktemp("drawings") / "valid.ndjson"
    data.write_ndjson(path, meta, st.drawings(idx))
    return path, manifest


def _doodle(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "doodle_utils", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def test_predictions_are_added_batch_by_batch_with_fastais_numbers(run, valid_file, monkeypatch):
    """predict_views adds each batch's probabilities into one array (fastai's get_preds keeps
    three copies of a split: ~1 GB for the blend split at Kaggle's size); the numbers are those
    of get_preds, views averaged, with a last batch shorter than the rest."""
    import math

    import torch

    from doodle_utils import prediction
    from doodle_utils.training import load_run, predict_views

    learn = load_run(run)
    dl = learn.dls.test_dl(prediction.read_drawings(valid_file[0])[1]).new(bs=7)
    assert dl.n % 7
    want, _ = learn.get_preds(dl=dl, reorder=False)
    got = predict_views(learn, dl)
    assert got.dtype == torch.float32 and got.shape == want.shape and torch.allclose(got, want, atol=1e-6)
    flipped, _ = learn.get_preds(dl=dl.new(batches=dl.batches.tta_views(["flip"])[1]), reorder=False)
    assert not torch.allclose(want, flipped, atol=1e-3)
    assert torch.allclose(predict_views(learn, dl, ["flip"]), (want + flipped) / 2, atol=1e-6)
    # and fastai gathered no batch of its own (what held the split's copies)
    import fastai.learner

    held = []

    class Spy(fastai.learner.GatherPredsCallback):
        def after_batch(self):
            super().after_batch()
            held.append(len(self.preds) + len(self.targets))

    monkeypatch.setattr(fastai.learner, "GatherPredsCallback", Spy)
    predict_views(learn, dl, ["flip"])
    assert len(held) == 2 * math.ceil(dl.n / 7) and not any(held)


def test_a_loaded_run_predicts_what_training_recorded(run, valid_file):
    from doodle_utils import prediction

    path, manifest = valid_file
    for snap in ("snap_00", "snap_01"):
        learn = prediction.load_model(run, snap)
        ids, drawings = prediction.read_drawings(path)
        probs = prediction.predict_probs(learn, drawings)
        recorded = np.load(run / "preds" / f"{snap}_valid.npy").astype(np.float32)
        assert probs.shape == recorded.shape and np.abs(probs - recorded).max() < 2e-3, snap
    assert list(learn.dls.vocab) == manifest["words"]


def test_doodle_predict_writes_each_drawings_top_words(run, valid_file, tmp_path):
    path, manifest = valid_file
    done = _doodle("predict", run, path, "--top", "2")
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(io.StringIO(done.stdout), dtype={"key_id": str})
    assert list(table.columns) == ["key_id", "word_1", "prob_1", "word_2", "prob_2"]
    recorded = np.load(run / "preds" / "snap_01_valid.npy").astype(np.float32)
    words = np.asarray(manifest["words"])
    assert (table.word_1.to_numpy() == words[recorded.argmax(1)]).mean() > 0.95  # float16 ties aside
    assert np.allclose(table.prob_1, recorded.max(1), atol=2e-3) and (table.prob_1 >= table.prob_2).all()
    # an exported model answers the same, written to a file
    assert _doodle("export", run, tmp_path / "model.pkl").returncode == 0
    done = _doodle("predict", tmp_path / "model.pkl", path, "--top", "2", "--out", tmp_path / "p.csv")
    assert done.returncode == 0 and done.stdout == "", done.stderr
    again = pd.read_csv(tmp_path / "p.csv", dtype={"key_id": str})
    assert again.equals(table)


def test_doodle_predict_reads_stroke_lists_from_json(run, tmp_path):
    drawing = [[[0, 40, 80, 120], [10, 60, 10, 60]], [[0, 120], [100, 100]]]
    (tmp_path / "one.json").write_text(json.dumps(drawing))
    (tmp_path / "two.json").write_text(json.dumps([drawing, {"key_id": "7", "drawing": drawing}]))
    one = pd.read_csv(io.StringIO(_doodle("predict", run, tmp_path / "one.json").stdout), dtype={"key_id": str})
    two = pd.read_csv(io.StringIO(_doodle("predict", run, tmp_path / "two.json").stdout), dtype={"key_id": str})
    assert list(one.key_id) == ["0"] and list(two.key_id) == ["0", "7"]
    assert two.iloc[0, 1:].tolist() == two.iloc[1, 1:].tolist() == one.iloc[0, 1:].tolist()


@pytest.mark.parametrize("case, args, message", [
    ("top 0", ["{run}", "{json}", "--top", "0"], "--top must be at least 1"),
    ("top over the classes", ["{run}", "{json}", "--top", "7"], "between 1 and the model's 6 classes"),
    ("a snapshot it lacks", ["{run}", "{json}", "--snapshot", "snap_9"],
     "no snapshot 'snap_9' (there are snap_00, snap_01)"),
    ("not a run folder", ["{tmp}", "{json}"], "not a training run folder"),
    ("no such model", ["{tmp}/nope.pkl", "{json}"], "no such model"),
    ("not a model file", ["{json}", "{json}"], "not a model written by `doodle export`"),
    ("an unknown drawing file", ["{run}", "{tmp}/x.txt"], "unknown drawing file"),
    ("no such drawing file", ["{run}", "{tmp}/none.ndjson"], "none.ndjson"),
    ("malformed strokes", ["{run}", "{bad}"], "drawing 0, stroke 1: expected [xs, ys] or [xs, ys, ts]"),
    ("not JSON", ["{run}", "{tmp}/broken.json"], "not JSON"),
])
def test_doodle_predict_names_a_bad_value(run, tmp_path, capsys, case, args, message):
    from doodle_utils.cli import main

    (tmp_path / "ok.json").write_text(json.dumps([[[0, 50], [0, 50]]]))
    (tmp_path / "bad.json").write_text(json.dumps([[[0, 50], [0, 50]], [[1, 2, 3], [4]]]))
    (tmp_path / "broken.json").write_text("[[[0, 50")
    (tmp_path / "x.txt").write_text("hello")
    fill = dict(run=run, json=tmp_path / "ok.json", bad=tmp_path / "bad.json", tmp=tmp_path)
    assert main(["predict", *(a.format(**fill) for a in args)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err, (case, err)


def test_test_time_augmentation_averages_the_mirrored_drawing(run, tmp_path):
    """``tta=["flip"]`` is the mean of the drawing's and its mirror image's probabilities;
    the CLI takes it, and refuses a view it does not know."""
    from doodle_utils import prediction
    from doodle_utils.cli import main

    learn = prediction.load_model(run)
    drawing = [[[0, 40, 80, 120], [10, 60, 10, 60]], [[0, 200], [100, 130]]]
    mirrored = [[[255 - x for x in xs], ys] for xs, ys in drawing]
    plain, mirror = prediction.predict_probs(learn, [drawing, mirrored])
    both = prediction.predict_probs(learn, [drawing], tta=["flip"])[0]
    assert np.abs(both - (plain + mirror) / 2).max() < 1e-4 and np.abs(both - plain).max() > 1e-4
    dropped = prediction.predict_probs(learn, [drawing], tta=["dropout"])[0]
    assert np.isclose(dropped.sum(), 1, atol=1e-4)
    (tmp_path / "d.json").write_text(json.dumps(drawing))
    done = _doodle("predict", run, tmp_path / "d.json", "--tta", "flip", "--top", "1")
    assert done.returncode == 0, done.stderr
    assert float(done.stdout.splitlines()[1].split(",")[2]) == pytest.approx(both.max(), abs=1e-4)
    with pytest.raises(SystemExit) as e:
        main(["predict", str(run), str(tmp_path / "d.json"), "--tta", "mirror"])
    assert e.value.code == 2
    assert json.loads((run / "preds" / "manifest.json").read_text())["snapshots"][0]["tta"] == []


def test_a_run_with_tta_records_it_and_keeps_its_label(six_class_stores, tmp_path):
    from doodle_utils.training import TrainConfig, train

    cfg = tiny_train_config(six_class_stores, tmp_path, epochs=1, epoch_size=32, tta=["flip"])
    assert cfg.default_label() == tiny_train_config(six_class_stores, tmp_path, epochs=1, epoch_size=32).default_label()
    result = train(cfg)
    assert json.loads((result.folder / "preds" / "manifest.json").read_text())["snapshots"][0]["tta"] == ["flip"]
    with pytest.raises(ValueError, match=r"tta=\['mirror'\].*flip"):
        TrainConfig(store_dir="s", out_dir="o", tta=["mirror"]).check()


def test_lenient_reading_reports_the_rows_it_left_out(run, valid_file, tmp_path, capsys):
    """A malformed row stops a strict read with its line; with --lenient the rest is predicted
    and the skip is counted on standard error, never lost silently."""
    from doodle_utils.cli import main

    path, _ = valid_file
    lines = path.read_text().splitlines()
    bad = tmp_path / "bad.ndjson"
    bad.write_text("\n".join(lines[:3] + ['{"key_id": "9", "drawing": [[[1, 2], [3]]]}'] + lines[3:6]) + "\n")
    assert main(["predict", str(run), str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "bad.ndjson" in err and "line 4" in err, err
    assert main(["predict", str(run), str(bad), "--lenient"]) == 0
    out, err = capsys.readouterr()
    assert len(out.strip().splitlines()) == 1 + 6  # the header and the six good drawings
    assert "skipped 1 rows" in err and "line 4" in err, err
