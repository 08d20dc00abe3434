"""Every input validated at the door (issue 14, item 6): the CLI run with bad values, profiles
with bad values, submissions Kaggle would reject, names that would write outside the output
root, the Kaggle set-up cell's temporary folder. A user's mistake is an ``error:`` line and
exit 2 (a failed check, exit 1), never a traceback, and nothing is written before it."""
from __future__ import annotations

import os
import subprocess
import sys
import zipfile

import pytest

from conftest import ROOT
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
    (["pack", "{comp}", "{tmp}/s", "--workers", "0"], "workers must be at least 1, got 0"),
    (["synth", "{tmp}/c", "--classes", "0"], "classes must be between 1 and"),
    (["synth", "{tmp}/c", "--unrecognized", "2"], "unrecognized must be in [0, 1], got 2.0"),
    (["synth", "{tmp}/c", "--per-class", "-1"], "per_class must be at least 0"),
    (["train", "--set", "data_dir={tmp}/nothing"], "no competition data here"),
    (["train", "--set", "size=abc"], "size='abc': must be int"),
    (["train", "--set", "bs=0"], "bs=0: must be at least 1"),
    (["train", "--set", "cycle=2"], "unknown training parameter(s) ['cycle']"),
    (["train", "--set", "arch=resnet_18"], "arch='resnet_18': not a timm model; did you mean resnet18"),
    (["train", "--set", "schedule=cosine"], "schedule='cosine': one of"),
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
    ("run_name: x\ndata:\n  synth: {classes: 3, per_class: zero}\n", "data.synth: per_class must be an integer"),
    ("run_name: x\ndata: [1, 2]\n", "'data' must be a mapping"),
    ("run_name: x\nparams: [lr, 3]\n", "'params' must be a mapping"),
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
    import shutil

    src = tmp_path / "src"  # a clean copy: setuptools' build/ folder would keep stale files
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".venv", ".git", "outputs", "build", "*.egg-info",
                                                             "__pycache__", "benchmarks", "notebooks"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "wheel"), str(src)], check=True, capture_output=True)
    wheel = next((tmp_path / "wheel").glob("doodle_utils-*.whl"))
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
