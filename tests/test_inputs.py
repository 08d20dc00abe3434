"""Every input validated at the door (issue 14, item 6): the CLI run with bad values, profiles
with bad values, submissions Kaggle would reject, names that would write outside the output
root, the Kaggle set-up cell's temporary folder. A user's mistake is an ``error:`` line and
exit 2 (a failed check, exit 1), never a traceback, and nothing is written before it."""
from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import build_wheel
from doodle_utils import kaggle
from doodle_utils.cli import main
from doodle_utils.data.synth import make_competition


@pytest.fixture(scope="module")
def comp(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs") / "comp"
    make_competition(d, classes=3, per_class=20, test_per_class=4, seed=1)
    return d


def _doodle(*args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "doodle_utils", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd)


@pytest.mark.parametrize("args, said", [
    (["pack", "{comp}", "{tmp}/s", "--valid-frac", "5"], "valid_frac must be in (0, 1), got 5.0"),
    (["pack", "{comp}", "{tmp}/s", "--valid-frac", "nan"], "valid_frac must be a finite number"),
    (["pack", "{comp}", "{tmp}/s", "--valid-frac", "-1"], "valid_frac must be in (0, 1)"),
    (["pack", "{comp}", "{tmp}/s", "--blend-frac", "1"], "blend_frac must be in [0, 1), got 1.0"),
    (["pack", "{comp}", "{tmp}/s", "--valid-frac", "0.5", "--blend-frac", "0.5"],
     "valid_frac 0.5 + blend_frac 0.5 leave no drawing to train on"),
    (["pack", "{comp}", "{tmp}/s", "--workers", "0"], "workers must be at least 1, got 0"),
    (["synth", "{tmp}/c", "--classes", "0"], "classes must be between 1 and"),
    (["synth", "{tmp}/c", "--unrecognized", "2"], "unrecognized must be in [0, 1], got 2.0"),
    (["synth", "{tmp}/c", "--per-class", "-1"], "per_class must be at least 0"),
    (["train", "--set", "data_dir={tmp}/nothing"], "no competition data here"),
    (["train", "--set", "data_dir={tmp}/nothing"], "kaggle competitions download -c quickdraw-doodle-recognition"),
    (["train", "--set", "size=abc"], "size='abc': must be int"),
    (["train", "--set", "bs=0"], "bs=0: must be at least 1"),
    (["train", "--set", "cycle=2"], "unknown training parameter(s) ['cycle']; did you mean 'cycles'?"),
    (["train", "--set", "arch=resnet_18"], "arch='resnet_18': not a timm model; did you mean resnet18"),
    (["train", "--set", "schedule=cosine"], "schedule='cosine': one of"),
    (["train", "--set", "compile=fast"], "compile='fast': one of ('off', 'default'"),
    (["train", "--set", "x=["], "not a YAML value"),
    (["train", "--set", "novalue"], "expected KEY=VALUE"),
])
def test_cli_bad_values_are_error_lines(comp, tmp_path, capsys, args, said):
    argv = [a.format(comp=comp, tmp=tmp_path) for a in args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and said in err and "Traceback" not in err
    assert not (tmp_path / "s").exists() and not (tmp_path / "c").exists()  # nothing written


def test_cli_bad_values_as_a_user_runs_them(comp, tmp_path):
    """The same door through the console entry point, in a subprocess."""
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    for args, said in [(["pack", comp, tmp_path / "s", "--workers", "-3"], "workers must be at least 1"),
                       (["train", tmp_path / "list.yaml"], "a training configuration is a mapping")]:
        proc = _doodle(*args, cwd=tmp_path)
        assert proc.returncode == 2 and said in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("profile, said", [
    ("run_name: ../x\n", "run_name '../x' must stay inside"),
    ("run_name: /tmp/elsewhere\n", "run_name '/tmp/elsewhere' must stay inside"),
    ("run_name: x\ndata:\n  pack: {workers: two}\n", "data.pack: workers must be an integer, got 'two'"),
    ("run_name: x\ndata:\n  pack: {valid_frac: 1.5}\n", "data.pack: valid_frac must be in (0, 1)"),
    ("run_name: x\ndata:\n  pack: {blend_frac: -0.1}\n", "data.pack: blend_frac must be in [0, 1)"),
    ("run_name: x\ndata:\n  synth: {classes: 3, per_class: zero}\n", "data.synth: per_class must be an integer"),
    ("run_name: x\ndata: [1, 2]\n", "'data' must be a mapping"),
    ("run_name: x\nparams: [lr, 3]\n", "'params' must be a mapping"),
    ("run_name: x\nparams: {n_exmples: 3}\n", "unknown key 'params.n_exmples': no notebook declares it; did you mean "
                                              "'n_examples'?"),
    ("run_name: x\nnotebooks:\n  03_train: {sise: 48}\n", "03_train does not declare it; did you mean 'size'?"),
    ("run_name: x\nnotebooks:\n  03_trian: {}\n", "unknown notebook 'notebooks.03_trian'; did you mean '03_train'?"),
    ("run_name: x\ndata:\n  pack: {valid_fraction: 0.1}\n", "did you mean 'valid_frac'?"),
    ("run_name: x\nparam: {}\n", "unknown key 'param'; did you mean 'params'?"),
    ("run_name: x\nnotebooks:\n  03_train: [1]\n", "'notebooks.03_train' must be a mapping"),
    ("run_name: x\nnotebooks:\n  05_balance_submit: {submission_name: ../../s.csv}\n",
     "submission_name '../../s.csv' must stay inside"),
])
def test_profile_bad_values_are_error_lines(tmp_path, capsys, profile, said):
    (tmp_path / "p.yaml").write_text(profile + f"output_root: {tmp_path / 'out'}\n")
    assert main(["run", str(tmp_path / "p.yaml")]) == 2
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "elsewhere").exists()


# --------------------------------------------------------------------------- submissions

def _sub(tmp_path, body: bytes):
    p = tmp_path / "sub.csv"
    p.write_bytes(b"key_id,word\n" + body)
    return p


@pytest.mark.parametrize("body, said", [
    (b"1,cat\tdog\n", "labels are separated by spaces"),
    (b"1,cat\n2,smiley face\n", "line 3 (key_id 2): unknown class 'smiley'"),
    (b"1,dragonfly\n", "unknown class 'dragonfly'"),
    ("\u0661\u0662,cat\n".encode(), "key_id '١٢' is not a number"),
    (b"1,cat\n2,c\xffat\n", "line 3: not UTF-8 text"),
    (b"1,cat\n2,c\x00at\n", "line 3 (key_id 2): unknown class"),
])
def test_submission_checks_without_a_word_list(tmp_path, body, said):
    with pytest.raises(kaggle.SubmissionError) as e:
        kaggle.check_submission(_sub(tmp_path, body))
    assert said in str(e.value)


def test_submission_classes_come_from_the_competition_beside_the_sample(comp, tmp_path, capsys):
    words, source = kaggle.known_classes(comp / "sample_submission.csv")
    assert source.endswith("train_simplified") and len(words) == 3
    sample_keys = [line.split(",")[0] for line in (comp / "sample_submission.csv").read_text().splitlines()[1:]]
    other = "dragon" if "dragon" not in words else "smiley_face"  # a real class, not this competition's
    sub = _sub(tmp_path, "".join(f"{k},{kaggle.label(words[0])} {other}\n" for k in sample_keys).encode())
    assert main(["check-submission", str(sub), "--sample", str(comp / "sample_submission.csv")]) == 1
    assert f"unknown class '{other}'" in capsys.readouterr().err
    truncated = _sub(tmp_path, "".join(f"{k},{kaggle.label(words[0])}\n" for k in sample_keys[:-3]).encode())
    assert main(["check-submission", str(truncated), "--sample", str(comp / "sample_submission.csv")]) == 1
    assert f"{len(sample_keys) - 3} rows" in capsys.readouterr().err
    good = _sub(tmp_path, "".join(f"{k},{kaggle.label(words[1])}\n" for k in sample_keys).encode())
    assert main(["check-submission", str(good), "--sample", str(comp / "sample_submission.csv")]) == 0
    assert "labels among 3 classes" in capsys.readouterr().out
    # no competition beside it: Google's 345 categories, which hold Kaggle's 340
    words, source = kaggle.known_classes(tmp_path / "sample_submission.csv")
    assert len(words) == 345 and "The Great Wall of China" in words and "Google" in source


def test_an_installed_package_carries_the_class_list(tmp_path):
    """A wheel (not the editable checkout) holds the category list, and its CLI uses it."""
    wheel = build_wheel(tmp_path)
    assert "doodle_utils/quickdraw_categories.txt" in zipfile.ZipFile(wheel).namelist()
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(tmp_path / "site"),
                    str(wheel)], check=True, capture_output=True)
    sub = _sub(tmp_path, b"1,The_Great_Wall_of_China cat\n2,unicorn\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    proc = subprocess.run([sys.executable, "-c", "import doodle_utils, sys; print(doodle_utils.__file__); "
                           "from doodle_utils.cli import main; sys.exit(main(sys.argv[1:]))",
                           "check-submission", str(sub)], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert str(tmp_path / "site") in proc.stdout, "the installed copy was not the one imported"
    assert proc.returncode == 1 and "line 3 (key_id 2): unknown class 'unicorn'" in proc.stderr


# --------------------------------------------------------------------------- Kaggle set-up cell

def test_setup_cell_never_trusts_a_folder_it_did_not_make(tmp_path):
    """A folder planted under the kernel's temp dir with the name the cell would use is not imported."""
    import hashlib

    blob = kaggle.package_zip()
    digest = hashlib.sha256(blob).hexdigest()[:12]
    planted = tmp_path / f"doodle_utils_{digest}" / "doodle_utils"
    planted.mkdir(parents=True)
    (planted / "__init__.py").write_text("raise SystemExit('planted package imported')\n")
    cells = kaggle.setup_cells(blob, tested={})
    code = cells[1].source + "\n" + cells[2].source + "\nprint('FROM', doodle_utils.__file__)\n"
    env = {**os.environ, "TMPDIR": str(tmp_path), "PYTHONPATH": ""}
    (tmp_path / "cell.py").write_text(code)
    proc = subprocess.run([sys.executable, str(tmp_path / "cell.py")], capture_output=True, text=True, env=env,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    used = proc.stdout.split("FROM ")[-1].strip()
    assert used.startswith(str(tmp_path)) and str(planted) not in used


# --------------------------------------------------------------------------- stale stores

def test_repacking_a_source_without_a_test_file_drops_the_old_test_store(comp, tmp_path, capsys):
    from doodle_utils.data.store import Store, StoreError, pack_competition

    pack_competition(comp, tmp_path / "store", workers=1, valid_frac=0.2)
    Store(tmp_path / "store" / "test")
    other = tmp_path / "other"
    make_competition(other, classes=2, per_class=10, test_per_class=2, seed=5)
    (other / "test_simplified.csv").unlink()
    (other / "test_raw.csv").unlink()
    pack_competition(other, tmp_path / "store", workers=1, valid_frac=0.2)
    assert "no longer valid" in capsys.readouterr().out
    with pytest.raises(StoreError):
        Store(tmp_path / "store" / "test")


def test_version_is_the_installed_package_s(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"doodle {version('doodle-utils')}"


def _test_rows(comp: Path) -> list[str]:
    return [line.split(",")[0] for line in (comp / "sample_submission.csv").read_text().splitlines()[1:]]


def test_doodle_submit_balances_writes_and_checks(comp, tmp_path):
    """`doodle submit` as a user outside the notebooks runs it: probabilities in, a checked,
    balanced submission out, from a bare .npy (rows: sample_submission's key_ids) or from
    notebook 04's ensemble folder."""
    import numpy as np
    import pandas as pd

    from doodle_utils.kaggle import check_submission
    from doodle_utils.postprocess import ensemble

    keys = _test_rows(comp)
    words = sorted(p.stem for p in (comp / "train_simplified").glob("*.csv"))
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(len(words)), len(keys)).astype(np.float32)
    probs[:, 0] += 0.5  # every drawing leans to class 0: balancing must spread them
    np.save(tmp_path / "probs.npy", probs / probs.sum(1, keepdims=True))
    proc = _doodle("submit", tmp_path / "probs.npy", tmp_path / "sub.csv", "--sample", comp / "sample_submission.csv",
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "optimal balancing" in proc.stdout and "checked against" in proc.stdout
    assert check_submission(tmp_path / "sub.csv", comp / "sample_submission.csv") == len(keys)
    first = pd.read_csv(tmp_path / "sub.csv").word.str.split().str[0]
    assert first.value_counts().max() - first.value_counts().min() <= 1  # equal class counts

    members = ensemble.Members([ensemble.Member("r/snap_00", probs[:4], probs)], np.zeros(4, int), words, keys)
    ensemble.save(tmp_path / "ens", members, np.ones(1), "arith")
    proc = _doodle("submit", tmp_path / "ens", tmp_path / "sub2.csv", "--method", "greedy", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert check_submission(tmp_path / "sub2.csv", comp / "sample_submission.csv") == len(keys)


@pytest.mark.parametrize("make, args, said", [
    (lambda d, n: (d / "p.npy").write_bytes(b"\x00garbage"), ["{d}/p.npy", "--sample", "{s}"], "not a numpy array file"),
    (lambda d, n: __import__("numpy").save(d / "p.npy", __import__("numpy").ones((n, 5))),
     ["{d}/p.npy", "--sample", "{s}"], "probabilities of shape (12, 5), but 12 test drawings and 3 classes"),
    (lambda d, n: __import__("numpy").save(d / "p.npy", __import__("numpy").ones((n, 3))), ["{d}/p.npy"],
     "a bare array needs --sample"),
    (lambda d, n: (d / "w.txt").write_bytes(b"\xff\xfe\x00"), ["{d}/p.npy", "--sample", "{s}", "--words", "{d}/w.txt"],
     "cannot read the class names"),
    (lambda d, n: (d / "notens").mkdir(), ["{d}/notens"], "not an ensemble folder of notebook 04"),
])
def test_doodle_submit_bad_inputs_are_error_lines(comp, tmp_path, make, args, said):
    import numpy as np

    np.save(tmp_path / "p.npy", np.full((len(_test_rows(comp)), 3), 1 / 3))
    make(tmp_path, len(_test_rows(comp)))
    argv = [a.format(d=tmp_path, s=comp / "sample_submission.csv") for a in args]
    proc = _doodle("submit", *argv, tmp_path / "out.csv", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and said in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "out.csv").exists()


def test_every_option_of_every_command_says_what_it_is_and_its_default():
    """`doodle CMD --help` as a user reads it: every argument has a help text, and an option
    with a default shows it."""
    import argparse

    from doodle_utils.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    missing, no_default = [], []
    for name, parser in sub.choices.items():
        text = " ".join(parser.format_help().split())  # as read, not as wrapped
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            if not action.help:
                missing.append(f"{name} {action.dest}")
            elif action.default not in (None, False, [], argparse.SUPPRESS) and f"(default: {action.default}" not in text:
                no_default.append(f"{name} {action.dest}")
    assert not missing, missing
    assert not no_default, no_default
