"""Every numbered notebook, executed by the runner with the smoke profile (the real papermill path)."""
from __future__ import annotations

import json

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
    for path in pipeline.notebook_list():
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert not any(c.outputs or c.execution_count for c in code), f"{path.name} has outputs"
        assert any("parameters" in c.metadata.get("tags", []) for c in code), f"{path.name}: no parameters cell"
        assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
        assert "## Results" in "".join(c.source for c in nb.cells if c.cell_type == "markdown")


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("smoke")
    results = pipeline.run(ROOT / "params" / "smoke.yaml", output_root=tmp, progress_bar=False,
                           overrides={"data_dir": str(tmp / "data"), "store_dir": str(tmp / "store")})
    return tmp / "smoke", results


def test_smoke_profile_runs_every_notebook(smoke_run):
    out, results = smoke_run
    names = [nb.stem for nb in pipeline.notebook_list()]
    assert [r.name for r in results] == names and all(r.status == "ran" for r in results)
    metrics = json.loads((out / "metrics.json").read_text())
    assert sorted(metrics) == sorted(names)
    assert names.index("06_point_cnn") < names.index("04_snapshot_ensemble")  # 04 ensembles both models
    for name in names:
        assert (out / f"{name}.ipynb").exists()
    assert "run finished" in (out / "run.log").read_text()


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
    assert {"points_resnet18_g32", "resnet18_palette64"} <= members
    for fig in m["06_point_cnn"]["figures"]:
        assert (out / "figures" / f"{fig}.png").stat().st_size > 5_000
