"""Submission files: written atomically and checked like Kaggle would, bad rows named."""
from __future__ import annotations

import re

import numpy as np
import pytest

from doodle_utils.cli import main
from doodle_utils.kaggle import SubmissionError, check_submission, write_submission

WORDS = ["The Eiffel Tower", "cat", "dog", "ice cream"]


def _sample(tmp_path, keys):
    p = tmp_path / "sample_submission.csv"
    p.write_text("key_id,word\n" + "".join(f"{k},cat dog ice_cream\n" for k in keys))
    return p


def test_write_submission_spells_labels_and_validates(tmp_path):
    keys = [5201369160328536, 5888095244609575, 42]
    sample = _sample(tmp_path, keys)
    out = write_submission(tmp_path / "sub.csv", keys, np.array([[0, 1, 2], [3, 0, 1], [2, 3, 0]]), WORDS, sample)
    lines = out.read_text().splitlines()
    assert lines[0] == "key_id,word"
    assert lines[1] == "5201369160328536,The_Eiffel_Tower cat dog"
    assert check_submission(out, sample, WORDS) == 3


@pytest.mark.parametrize("body, message", [
    ("key,word\n1,cat\n", "header"),
    ("key_id,word\n1,cat dog cat\n", "line 2 (key_id 1): a label repeats"),
    ("key_id,word\n1,cat\n2,cat dog ice_cream The_Eiffel_Tower\n", "line 3 (key_id 2): 4 labels"),
    ("key_id,word\n1,cat\n2,\n", "line 3 (key_id 2): 0 labels"),
    ("key_id,word\n1,cat\n1,dog\n", "line 3: key_id 1 repeats line 2"),
    ("key_id,word\nx1,cat\n", "line 2: key_id 'x1' is not a number"),
    ("key_id,word\n1,cat\n2,horse\n", "line 3 (key_id 2): unknown class 'horse'"),
    ("key_id,word\n1,ice cream\n", "unknown class 'ice'"),
])
def test_bad_rows_are_named(tmp_path, body, message):
    p = tmp_path / "bad.csv"
    p.write_text(body)
    with pytest.raises(SubmissionError, match=re.escape(message)):
        check_submission(p, None, WORDS)


def test_key_ids_must_match_the_sample(tmp_path):
    sample = _sample(tmp_path, [1, 2])
    p = tmp_path / "s.csv"
    p.write_text("key_id,word\n1,cat\n3,dog\n")
    with pytest.raises(SubmissionError, match="line 3: key_id 3 is not in"):
        check_submission(p, sample)
    p.write_text("key_id,word\n1,cat\n")
    with pytest.raises(SubmissionError, match="1 rows"):
        check_submission(p, sample)


def test_a_failed_check_leaves_no_file(tmp_path):
    sample = _sample(tmp_path, [1, 2])
    with pytest.raises(SubmissionError):
        write_submission(tmp_path / "sub.csv", [1, 3], np.array([[1], [2]]), WORDS, sample)
    assert not (tmp_path / "sub.csv").exists() and not list(tmp_path.glob(".sub.csv*"))


def test_cli_check_submission_and_balance(tmp_path, capsys):
    sample = _sample(tmp_path, [1, 2])
    p = tmp_path / "s.csv"
    p.write_text("key_id,word\n1,cat\n2,cat cat\n")
    assert main(["check-submission", str(p), "--sample", str(sample)]) == 1
    assert "line 3 (key_id 2): a label repeats" in capsys.readouterr().err
    probs = np.random.default_rng(0).dirichlet(np.ones(4), 40).astype(np.float32)
    np.save(tmp_path / "p.npy", probs)
    assert main(["balance", str(tmp_path / "p.npy"), str(tmp_path / "r.npy"), "--method", "optimal"]) == 0
    ranked = np.load(tmp_path / "r.npy")
    assert ranked.shape == (40, 3) and np.bincount(ranked[:, 0], minlength=4).max() <= 10
    # every engine gives an assignment of the same (optimal) total
    from doodle_utils.postprocess.balance import ENGINES
    s = np.log(probs)
    totals = []
    for engine in ENGINES:
        assert main(["balance", str(tmp_path / "p.npy"), str(tmp_path / f"r_{engine}.npy"), "--method", "optimal",
                     "--engine", engine]) == 0
        first = np.load(tmp_path / f"r_{engine}.npy")[:, 0]
        totals.append(s[np.arange(40), first].sum())
    np.testing.assert_allclose(totals, totals[0], rtol=1e-6)
