"""Every numbered notebook, executed by the runner with the smoke profile (the real papermill path)."""
from __future__ import annotations

import json
import re

import nbformat
import pytest

from conftest import ROOT
from doodle_utils import pipeline

PROFILES = sorted((ROOT / "params").glob("*.yaml"))


@pytest.mark.parametrize("profile", PROFILES, ids=[p.stem for p in PROFILES])
def test_profiles_validate_against_the_notebooks(profile):
    prof, per_nb = pipeline.load_profile(profile, check=False)
    assert set(per_nb) == {nb.stem for nb in pipeline.notebook_list()}
    assert all("out_dir" in p for p in per_nb.values())


def test_notebooks_are_committed_clean_and_parameterised():
    from jupyter_client.kernelspec import KernelSpecManager

    installed = KernelSpecManager().get_kernel_spec("python3").display_name
    for path in pipeline.notebook_list():
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert not any(c.outputs or c.execution_count for c in code), f"{path.name} has outputs"
        assert any("parameters" in c.metadata.get("tags", []) for c in code), f"{path.name}: no parameters cell"
        assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
        assert "## Results" in "".join(c.source for c in nb.cells if c.cell_type == "markdown")
        # the kernel JupyterLab starts them with, as it names itself: else Lab rewrites it on opening
        # and every notebook shows as modified before the user has touched it
        assert nb.metadata.kernelspec == {"name": "python3", "language": "python", "display_name": installed}, path


def test_papermill_reads_every_line_of_every_parameters_cell():
    """A parameter line papermill cannot parse (an '=' in its comment did it) is dropped with a
    log line: the notebook runs, but the parameter cannot be set from a profile or the CLI."""
    import papermill as pm

    for path in pipeline.notebook_list():
        cell = next(c for c in nbformat.read(path, as_version=4).cells if "parameters" in c.metadata.get("tags", []))
        lines = [x for x in cell.source.splitlines() if x.strip() and not x.lstrip().startswith("#")]
        names = {x.split("=")[0].split(":")[0].strip() for x in lines}
        assert names - set(pm.inspect_notebook(str(path))) == set(), path.name


def test_the_git_filter_keeps_outputs_out_of_commits(tmp_path):
    """What `make setup` installs in a clone: a notebook saved by JupyterLab with outputs is
    staged without them (the working copy keeps them), and the committed notebooks pass through
    the filter unchanged (a fresh clone is clean)."""
    import subprocess
    import sys
    from pathlib import Path

    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    made = subprocess.run(["make", "--no-print-directory", "git-filter", f"BIN={Path(sys.executable).parent}"],
                          cwd=clone, capture_output=True, text=True)
    assert made.returncode == 0 and "stripped of outputs" in made.stdout, made.stderr
    git = lambda *a: subprocess.run(["git", *a], cwd=clone, capture_output=True, text=True, check=True).stdout  # noqa: E731
    git("add", "--renormalize", "notebooks")  # every committed notebook through the filter
    assert git("diff", "--cached", "--name-only") == ""
    path = clone / "notebooks" / "01_eda.ipynb"
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if c.cell_type == "code")
    cell.execution_count = 3
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="hello\n")]
    nbformat.write(nb, path)
    git("add", "notebooks/01_eda.ipynb")
    staged = nbformat.reads(git("show", ":notebooks/01_eda.ipynb"), as_version=4)
    kept = nbformat.read(path, as_version=4)
    assert not any(c.get("outputs") or c.get("execution_count") for c in staged.cells if c.cell_type == "code")
    assert [c.id for c in staged.cells] == [c.id for c in kept.cells]
    assert next(c for c in kept.cells if c.cell_type == "code").outputs  # the working copy keeps them


def test_smoke_profile_runs_every_notebook(smoke_run):
    out, results = smoke_run
    names = [nb.stem for nb in pipeline.notebook_list()]
    assert [r.name for r in results] == names and all(r.status == "ran" for r in results)
    metrics = json.loads((out / "metrics.json").read_text())
    assert sorted(metrics) == sorted(names)
    assert names.index("06_point_cnn") < names.index("04_snapshot_ensemble")  # 04 ensembles both models
    for name in names:
        report = nbformat.read(out / f"{name}.ipynb", as_version=4)
        warned = [o.text for c in report.cells if c.cell_type == "code" for o in c.get("outputs", [])
                  if o.output_type == "stream" and o.name == "stderr" and "Warning" in o.text]
        assert not warned, (name, warned)  # e.g. torch.jit's FutureWarning from fastai's import
        # a report's tables and results read at 4 decimals, not pandas' 6 or a float's 16 (fastai's
        # own epoch table, an HTML display, is fastai's)
        long = [o.data["text/plain"][:200] for c in report.cells if c.cell_type == "code" for o in c.get("outputs", [])
                if o.output_type == "execute_result" and re.search(r"\d\.\d{5,}", o.data.get("text/plain", ""))]
        assert not long, (name, long)
    log = (out / "run.log").read_text()
    assert "run finished" in log
    for name in ("03_train", "06_point_cnn"):  # the epoch lines the notebooks print, passed on as they come
        assert f"{name}: epoch 1/2 · " in log and f"{name}: epoch 2/2 · " in log


def test_eda_results_on_the_synthetic_default(smoke_run):
    out, _ = smoke_run
    m = json.loads((out / "metrics.json").read_text())["01_eda"]
    assert m["n_drawings"] == 12 * 200 and m["n_classes"] == 12
    assert 0.85 < m["recognized_share"] < 1.0 and m["median_duration_s"] > 0
    for fig in m["figures"]:
        assert (out / "figures" / f"{fig}.png").stat().st_size > 5_000


def test_rendering_results_on_the_synthetic_default(smoke_run):
    out, _ = smoke_run
    m = json.loads((out / "metrics.json").read_text())["02_rendering"]
    assert m["variants"] == ["mono", "palette", "strokes3", "time3"]  # the smoke store has raw timings
    timed = m["variants"] + [f"{v} · numba" for v in m["variants"]] + ["baseline (cv2.line loop)"]
    assert sorted(m["images_s"]) == sorted(timed)  # both CPU engines
    for v in timed:
        assert set(m["images_s"][v]) == {"32", "64"} and min(m["images_s"][v].values()) > 0
    for fig in m["figures"]:
        assert (out / "figures" / f"{fig}.png").stat().st_size > 5_000


def test_smoke_pipeline_ends_with_a_validated_submission(smoke_run):
    from doodle_utils.kaggle import check_submission

    out, _ = smoke_run
    sample = out.parent / "data" / "sample_submission.csv"
    assert check_submission(out / "submission.csv", sample) == len(sample.read_text().splitlines()) - 1
    balanced = json.loads((out / "metrics" / "05_balance_submit.json").read_text())
    assert {r["method"] for r in balanced["test"]} == {"none", "greedy", "iterative", "optimal"}


def test_point_model_is_compared_and_ensembled(smoke_run):
    out, _ = smoke_run
    m = json.loads((out / "metrics.json").read_text())
    runs = {r["model"]: r for r in m["06_point_cnn"]["runs"]}
    assert set(runs) == {"image", "points"}
    assert runs["points"]["valid_map3_last"] == pytest.approx(m["06_point_cnn"]["valid_map3"])
    assert runs["points"]["drawings_s"] > 0 and runs["image"]["drawings_s"] > 0
    members = {r["model"].split("/")[0] for r in m["04_snapshot_ensemble"]["table"]}
    assert {m["03_train"]["run"], m["06_point_cnn"]["run"]} <= members
    # the smoke profile packs a blend split: 04 chooses there and scores on validation
    ens = m["04_snapshot_ensemble"]
    assert ens["chosen_on"] == "blend split" and all(r["blend_map3"] is not None for r in ens["table"])
    best = next(r for r in ens["table"] if r["model"].startswith("best single"))
    assert best["valid_map3"] == pytest.approx(ens["best_single_valid_map3"])
    # the profile stacks: LightGBM trained on the blend split, its row scored on validation, its
    # probabilities what 05 balanced into the submission (validated above)
    stacker = ens["table"][-1]
    assert ens["submitted"] == "stacker" and stacker["model"].startswith("stacker (LightGBM")
    assert stacker["chosen_on"].startswith("blend split") and stacker["valid_map3"] == ens["stacker_valid_map3"]
    assert (out / "ensemble" / "stacker.txt").exists() and "04_stacker_features" in ens["figures"]
    # run folders are named by the settings the smoke profile trains with
    assert m["03_train"]["run"].startswith("resnet18_palette32_")
    assert m["06_point_cnn"]["run"].startswith("points_resnet18_g16_p64_")
    for fig in m["06_point_cnn"]["figures"]:
        assert (out / "figures" / f"{fig}.png").stat().st_size > 5_000


def test_play_guesses_the_recorded_drawing_and_shows_the_worst(smoke_run):
    """Notebook 07 run headless: the recorded validation drawing stands in for the mouse, the
    pad's guesses for it are recorded (the model's own probabilities, best first), and the
    error analysis is drawn. It is no Kaggle kernel (its pad needs a browser)."""
    from doodle_utils import kaggle, pad, prediction
    from doodle_utils.training import load_run

    out, _ = smoke_run
    m = json.loads((out / "metrics" / "07_play.json").read_text())
    run = out / "train" / m["run"]
    probs = prediction.predict_probs(load_run(run), [pad.example_strokes(run, 0)[0]])[0]
    words = json.loads((run / "preds" / "manifest.json").read_text())["words"]
    want = [words[i] for i in probs.argsort()[::-1][:3]]
    assert [w for w, _ in m["example_guesses"]] == want and m["example_word"] in words
    assert (out / "figures" / "07_worst.png").stat().st_size > 5_000
    assert [kaggle.kaggle_kernel(nb) for nb in pipeline.notebook_list()] == \
        [nb.stem != "07_play" for nb in pipeline.notebook_list()]


def test_a_changed_setting_trains_beside_the_last_run_not_over_it(smoke_run, tmp_path):
    """The README's `doodle run params/smoke.yaml --only 03 --set size=48` after a run, through
    the command: a new folder named by the new settings, the earlier run untouched; quiet
    output: an epoch line per epoch, one line for the notebook, nothing from papermill or
    the kernel."""
    import subprocess
    import sys

    import yaml

    out, _ = smoke_run
    first = json.loads((out / "metrics.json").read_text())["03_train"]["run"]
    before = {p.name: p.stat().st_mtime_ns for p in (out / "train" / first / "snapshots").iterdir()}
    prof = yaml.safe_load((ROOT / "params" / "smoke.yaml").read_text())
    prof["output_root"] = str(out.parent)
    prof["params"].update(data_dir=str(out.parent / "data"), store_dir=str(out.parent / "store"))
    (tmp_path / "smoke.yaml").write_text(yaml.safe_dump(prof))
    proc = subprocess.run([sys.executable, "-m", "doodle_utils", "run", str(tmp_path / "smoke.yaml"), "--only", "03",
                           "--set", "size=48"], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    second = json.loads((out / "metrics.json").read_text())["03_train"]["run"]
    assert second.startswith("resnet18_palette48_") and second != first
    assert {p.name: p.stat().st_mtime_ns for p in (out / "train" / first / "snapshots").iterdir()} == before
    assert (out / "train" / second / "preds" / "manifest.json").exists()
    lines = [line.split(" ", 1)[1] for line in (proc.stdout + proc.stderr).splitlines()]  # without the time
    epochs = [x for x in lines if x.startswith("03_train: epoch ")]
    assert [x.split(" · ")[0] for x in epochs] == ["03_train: epoch 1/2", "03_train: epoch 2/2"]
    assert all("images/s" in x and "map3" in x for x in epochs)
    ran = [x for x in lines if x.startswith("03_train: ran in ")]
    assert len(ran) == 1 and "size=48" in ran[0] and f"run {second}" in ran[0]
    others = [x for x in lines if x not in epochs + ran]
    assert len(others) <= 5 and not any(w in " ".join(others) for w in ("Kernel", "Input Notebook", "Executing")), others
    log = (out / "run.log").read_text()
    assert "03_train: epoch 2/2 · " in log and "03_train: ran in " in log


def test_notebook_03_with_its_own_defaults_learns_on_the_demo_data(smoke_run, tmp_path):
    """Run as a newcomer would in JupyterLab: papermill, no profile, only the folders given
    (the defaults find the demo's data there); the defaults must train a real model, not the
    collapsed one GPU-scale defaults gave (MAP@3 0.28 on 12 classes, every drawing one class)."""
    import papermill as pm

    out, _ = smoke_run
    pm.execute_notebook(str(ROOT / "notebooks" / "03_train.ipynb"), str(tmp_path / "03.ipynb"), cwd=str(ROOT),
                        parameters={"data_dir": str(out.parent / "data"), "store_dir": str(out.parent / "store"),
                                    "out_dir": str(tmp_path / "out")})
    m = json.loads((tmp_path / "out" / "metrics" / "03_train.json").read_text())
    chance = 3 / 12  # MAP@3 of guessing on 12 balanced classes is ~0.15; a collapsed model scored 0.28
    assert m["valid_map3"] > 2 * chance, m["valid_map3"]


def test_every_readme_figure_exists_and_the_smoke_run_makes_it(smoke_run, tmp_path):
    """`make figures` refreshes docs/figures from a smoke run: every figure the README shows is
    committed, and the run makes each of them (copied here into a scratch copy of the README's
    folder, not over the committed ones)."""
    import shutil

    from doodle_utils.results import copy_readme_figures, readme_figures

    shown = readme_figures(ROOT / "README.md")
    assert len(shown) >= 6
    assert [rel for rel, *_ in shown if not (ROOT / rel).is_file()] == []
    out, _ = smoke_run
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    copied = copy_readme_figures(out, tmp_path / "README.md")
    assert sorted(p.relative_to(tmp_path).as_posix() for p in copied) == sorted(rel for rel, *_ in shown)
    assert all(p.stat().st_size > 5_000 for p in copied)
