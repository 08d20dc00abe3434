"""Kaggle kernel bundles: metadata the kaggle CLI accepts, and a bundle that runs on its own."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import nbformat
import pytest
import yaml

from doodle_utils import kaggle
from conftest import ROOT, make_nb


@pytest.fixture()
def bundle_setup(tmp_path):
    d = tmp_path / "notebooks"
    d.mkdir()
    nb = make_nb(d / "01_first.ipynb", "n: int = 1  # a count\nout_dir: str = ''",
                 "import doodle_utils, os\nfrom doodle_utils.results import record_metrics\n"
                 "record_metrics(out_dir or '.', '01_first', {'n': n, 'pkg': os.path.dirname(doodle_utils.__file__)})")
    nb3 = make_nb(d / "03_train.ipynb", "epochs: int = 1\nout_dir: str = ''", "print(epochs)")
    prof = tmp_path / "kaggle.yaml"
    prof.write_text(yaml.safe_dump({
        "run_name": "kaggle", "output_root": "/kaggle/working",
        "params": {"n": 4, "epochs": 9},
        "kaggle": {"user": "someone", "gpu_notebooks": ["03"], "dataset_sources": ["someone/imagenet-weights"]},
    }))
    return [nb, nb3], prof


def test_bundle_metadata_is_what_kaggle_accepts(tmp_path, bundle_setup):
    nbs, prof = bundle_setup
    folders = kaggle.bundle(tmp_path / "bundle", prof, notebooks=nbs)
    assert [f.name for f in folders] == ["01_first", "03_train"]
    for f in folders:
        assert kaggle.validate_metadata(f) == []
    m1 = json.loads((folders[0] / "kernel-metadata.json").read_text())
    m3 = json.loads((folders[1] / "kernel-metadata.json").read_text())
    assert m1["id"] == "someone/doodle-01-first" and m1["title"] == "doodle 01 first"
    assert m1["code_file"] == "01_first.ipynb" and (folders[0] / "01_first.ipynb").exists()
    assert (m1["language"], m1["kernel_type"], m1["enable_internet"]) == ("python", "notebook", False)
    assert m1["competition_sources"] == ["quickdraw-doodle-recognition"]
    assert m1["dataset_sources"] == ["someone/imagenet-weights"]
    assert (m1["enable_gpu"], m3["enable_gpu"]) == (False, True)
    nb = nbformat.read(folders[1] / "03_train.ipynb", as_version=4)
    pcell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    assert pcell.source.splitlines()[0] == "epochs: int = 9"
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")


@pytest.mark.parametrize("field, value, problem", [
    ("title", "abc", "at least five"),
    ("id", "noslash", "'{username}/{kernel-slug}'"),
    ("id", "me/abc", "slug must be at least five"),
    ("language", "julia", "language must be"),
    ("kernel_type", "app", "kernel_type must be"),
    ("enable_internet", True, "enable_internet must be false"),
    ("competition_sources", [], "must include"),
    ("code_file", "missing.ipynb", "source file not found"),
    ("dataset_sources", ["no-owner"], "'owner/slug'"),
])
def test_validation_catches_what_push_would_reject(tmp_path, bundle_setup, field, value, problem):
    nbs, prof = bundle_setup
    folder = kaggle.bundle(tmp_path / "bundle", prof, notebooks=nbs)[0]
    meta_path = folder / "kernel-metadata.json"
    meta = json.loads(meta_path.read_text())
    meta[field] = value
    meta_path.write_text(json.dumps(meta))
    assert any(problem in p for p in kaggle.validate_metadata(folder))


def test_bundled_notebook_runs_from_its_folder_alone(tmp_path, bundle_setup):
    nbs, prof = bundle_setup
    folder = kaggle.bundle(tmp_path / "bundle", prof, notebooks=nbs)[0]
    alone = tmp_path / "elsewhere" / "kernel"
    shutil.copytree(folder, alone)
    out = alone / "out"
    # papermill from the bundle folder only; the output folder stands in for /kaggle/working
    subprocess.run([sys.executable, "-m", "papermill", "01_first.ipynb", "executed.ipynb",
                    "-p", "out_dir", str(out), "--no-progress-bar"], cwd=alone, check=True,
                   capture_output=True)
    m = json.loads((out / "metrics" / "01_first.json").read_text())
    assert m["n"] == 4  # the Kaggle profile's value, injected at bundle time
    assert "doodle_utils_" in m["pkg"] and "/work/" not in m["pkg"].split("doodle_utils_")[0][-6:]
    executed = nbformat.read(alone / "executed.ipynb", as_version=4)
    printed = "".join(o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.outputs)
    assert "doodle_utils from" in printed and "doodle_utils_" in printed


def test_set_parameter_defaults_keeps_types_and_comments():
    src = "a: int = 1  # first\nb = 'x'\nc: list = [1,\n  2]  # multi-line\nd: float = 0.5\n"
    out = kaggle.set_parameter_defaults(src, {"a": 7, "c": [3], "b": "/kaggle/working"})
    assert out == "a: int = 7  # first\nb = '/kaggle/working'\nc: list = [3]  # multi-line\nd: float = 0.5\n"
    with pytest.raises(ValueError, match="does not declare"):
        kaggle.set_parameter_defaults(src, {"zzz": 1})


def test_suite_bundle_attaches_what_each_kernel_reads(tmp_path):
    """The store is packed once (01) and attached by the notebooks that open it (04 stacks with
    its drawings' metadata); 04 attaches the training kernels, 05 attaches 04; only the training kernels get a GPU. Whether the paths
    are right is what the emulated chain (test_kaggle_chain.py) checks, by running it."""
    folders = {f.name: f for f in kaggle.bundle(tmp_path / "bundle", ROOT / "params" / "kaggle.yaml", user="me")}
    meta = {k: json.loads((f / "kernel-metadata.json").read_text()) for k, f in folders.items()}
    assert all(kaggle.validate_metadata(f) == [] for f in folders.values())
    sources = {k: m["kernel_sources"] for k, m in meta.items()}
    assert sources == {"01_eda": [], "02_rendering": ["me/doodle-01-eda"], "03_train": ["me/doodle-01-eda"],
                       "06_point_cnn": ["me/doodle-01-eda"],
                       "04_snapshot_ensemble": ["me/doodle-01-eda", "me/doodle-03-train", "me/doodle-06-point-cnn"],
                       "05_balance_submit": ["me/doodle-04-snapshot-ensemble"]}
    assert [k for k, m in meta.items() if m["enable_gpu"]] == ["03_train", "06_point_cnn"]


def test_chain_paths_follow_kaggles_mounts():
    chain = kaggle.Chain(["01_eda", "03_train", "04_snapshot_ensemble"], ["01_eda", "03_train"],
                         "/kaggle/working/store", "/kaggle/working", "/mnt/in")
    assert chain.packer == "01_eda"
    assert chain.store_for("01_eda") == ("/kaggle/working/store", [])
    assert chain.store_for("03_train") == ("/mnt/in/doodle-01-eda/store", ["01_eda"])
    assert chain.consumed("04_snapshot_ensemble") == ("train_dirs", ["03_train"], ["/mnt/in/doodle-03-train"])
    own = kaggle.Chain(["01_eda", "03_train"], ["01_eda", "03_train"], "/kaggle/temp/store", "/kaggle/working")
    assert own.packer is None and own.store_for("03_train") == ("/kaggle/temp/store", [])  # each packs its own


def test_version_check_warns_only_where_it_matters():
    from doodle_utils.versions import pinned_versions, version_report

    tested = pinned_versions(ROOT / "pyproject.toml")
    assert set(tested) == {"torch", "fastai", "timm", "numba", "numpy"} and tested["fastai"] == "2.8.12"
    same = dict(tested)
    assert version_report(same, tested) == ([], [])
    newer_patch = {**tested, "timm": "1.0.99", "torch": "2.14.9"}
    warnings, notes = version_report(newer_patch, tested)
    assert warnings == [] and len(notes) == 2
    old = {**tested, "numpy": "1.26.4", "fastai": "2.7.19", "timm": "0.6.13", "torch": None}
    warnings, _ = version_report(old, tested)
    assert [w.split()[0] for w in warnings] == ["torch", "fastai", "timm", "numpy"]
    assert "not installed" in warnings[0] and "type-promotion" in warnings[-1]


def test_tested_versions_without_a_checkout(tmp_path):
    """A wheel install has no pyproject.toml beside the package: the pins come from its metadata."""
    from doodle_utils.versions import pinned_versions, tested_versions

    assert tested_versions(tmp_path) == pinned_versions(ROOT / "pyproject.toml") == tested_versions(ROOT)
