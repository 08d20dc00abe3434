"""The ``doodle`` command, run as a user would (a subprocess)."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from doodle_utils import data
from conftest import ROOT


def doodle(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "doodle_utils", *args], capture_output=True, text=True, cwd=ROOT)
    if check and proc.returncode != 0:
        raise AssertionError(f"doodle {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_help_lists_every_subcommand():
    out = doodle("--help").stdout
    for cmd in ("synth", "simplify", "simplify-check", "pack", "verify", "run", "kaggle-bundle"):
        assert cmd in out


def test_pack_verify_and_errors(sample_dir, tmp_path):
    src = tmp_path / "src"
    for w in ("apple", "bear"):
        meta, d, _ = data.read_file(sample_dir / "simplified" / f"{w}.ndjson")
        data.write_csv(src / "train_simplified" / f"{w}.csv", meta, d)
    out = doodle("pack", str(src), str(tmp_path / "st"), "--workers", "2", "--valid-frac", "0.2").stdout
    assert "train: 50 drawings" in out
    assert "ok (simplified, 50 drawings, 2 classes, 10 validation)" in doodle("verify", str(tmp_path / "st" / "train"), "--full").stdout
    # a damaged store and a malformed source are reported, not tracebacks
    (tmp_path / "st" / "train" / "key_id.npy").write_bytes(b"junk")
    bad = doodle("verify", str(tmp_path / "st" / "train"), check=False)
    assert bad.returncode == 1 and "key_id.npy" in bad.stderr and "Traceback" not in bad.stderr
    p = src / "train_simplified" / "bear.csv"
    lines = p.read_text().splitlines()
    lines[5] = lines[5].replace('"[[[', '"[[[[', 1)
    p.write_text("\n".join(lines) + "\n")
    bad = doodle("pack", str(src), str(tmp_path / "st2"), check=False)
    assert bad.returncode == 2 and "bear.csv, line 6" in bad.stderr and "bad_json" in bad.stderr
    ok = doodle("pack", str(src), str(tmp_path / "st2"), "--lenient").stdout
    assert "skipped {'bad_json': 1}" in ok


def test_simplify_command_matches_the_library(sample_dir, tmp_path):
    from doodle_utils.data.simplify import simplify_strokes

    src = sample_dir / "raw" / "apple.ndjson"
    out = tmp_path / "apple.ndjson"
    assert "simplified" in doodle("simplify", str(src), str(out)).stdout
    meta, raw, _ = data.read_file(src)
    got = [json.loads(line) for line in open(out)]
    assert len(got) == len(raw)
    for i in (0, len(raw) // 2, len(raw) - 1):
        want = simplify_strokes(raw.strokes(i))
        assert got[i]["drawing"] == [[s[:, 0].tolist(), s[:, 1].tolist()] for s in want]
        assert got[i]["key_id"] == str(meta.key_id[i])


def test_run_reports_a_bad_profile_without_a_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("run_name: x\nparams: {no_such_parameter: 1}\n")
    res = doodle("run", str(bad), check=False)
    assert res.returncode == 2 and "unknown key 'params.no_such_parameter'" in res.stderr
    assert "Traceback" not in res.stderr


def test_synth_command_writes_kaggle_layout(tmp_path):
    out = tmp_path / "comp"
    doodle("synth", str(out), "--classes", "3", "--per-class", "10", "--test-per-class", "2")
    assert sorted(p.name for p in (out / "train_simplified").glob("*.csv")) == ["circle.csv", "hexagon.csv", "square.csv"] or \
        len(list((out / "train_simplified").glob("*.csv"))) == 3
    assert (out / "test_simplified.csv").read_text().splitlines()[0] == "key_id,countrycode,drawing"
    assert len((out / "test_simplified.csv").read_text().splitlines()) == 7


@pytest.mark.parametrize("fill, said", [
    (lambda p: p.__setitem__((1, 2), np.nan), "must be finite: row 1, class 2 is nan"),
    (lambda p: p.__setitem__((0, 0), np.inf), "must be finite"),
    (lambda p: np.log(p, out=p), "log-probabilities"),
])
def test_balance_refuses_what_is_not_probabilities(tmp_path, fill, said):
    p = np.full((6, 3), 1 / 3)
    fill(p)
    np.save(tmp_path / "p.npy", p)
    r = doodle("balance", str(tmp_path / "p.npy"), str(tmp_path / "out.npy"), "--method", "optimal", check=False)
    assert r.returncode == 2 and r.stderr.startswith("error: ") and said in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "out.npy").exists()


def test_balance_names_a_transposed_array(tmp_path):
    p = np.random.default_rng(0).dirichlet(np.ones(8), size=5).T  # (classes, drawings)
    np.save(tmp_path / "p.npy", p)
    r = doodle("balance", str(tmp_path / "p.npy"), str(tmp_path / "o.npy"), check=False)
    assert r.returncode == 2 and "transposed" in r.stderr


def test_kaggle_bundle_refuses_a_bad_user_before_writing(tmp_path):
    for bad in ("x y", "émile", ".", "a/b"):
        r = doodle("kaggle-bundle", str(tmp_path / "k"), "--user", bad, check=False)
        assert r.returncode == 2 and "error: Kaggle user name" in r.stderr and "Traceback" not in r.stderr
        assert not (tmp_path / "k").exists()
