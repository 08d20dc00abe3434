"""The papermill runner: profile validation, execution, skipping, failure reports, data prep."""
from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
import yaml

from conftest import make_nb
from doodle_utils import pipeline


RECORD = "from doodle_utils.results import record_metrics\nrecord_metrics(out_dir, NAME, {'n': n, 'word': word})"


@pytest.fixture()
def nbs(tmp_path):
    d = tmp_path / "notebooks"
    d.mkdir()
    a = make_nb(d / "01_first.ipynb", "n: int = 1  # a count\nword: str = 'x'\nout_dir: str = ''",
                "NAME = '01_first'", RECORD)
    b = make_nb(d / "02_second.ipynb", "n: int = 2\nratio: float = 0.5\nword: str = 'y'\nout_dir: str = ''",
                "NAME = '02_second'", RECORD)
    return [a, b]


def profile(tmp_path, **body) -> Path:
    body.setdefault("run_name", "t")
    body.setdefault("output_root", str(tmp_path / "out"))
    p = tmp_path / "p.yaml"
    p.write_text(yaml.safe_dump(body))
    return p


def test_each_notebook_gets_only_its_parameters(tmp_path, nbs):
    prof, per = pipeline.load_profile(profile(tmp_path, params={"n": 5, "ratio": 0.25},
                                              notebooks={"01_first": {"word": "z"}}), nbs)
    assert per["01_first"] == {"n": 5, "word": "z", "out_dir": str(tmp_path / "out" / "t")}
    assert per["02_second"] == {"n": 5, "ratio": 0.25, "out_dir": str(tmp_path / "out" / "t")}


def test_set_overrides_beat_the_profiles_per_notebook_values(tmp_path, nbs):
    prof, per = pipeline.load_profile(profile(tmp_path, params={"n": 5}, notebooks={"01_first": {"word": "z", "n": 7}}),
                                      nbs, overrides={"word": "cli"})
    assert per["01_first"]["word"] == "cli" and per["02_second"]["word"] == "cli"
    assert per["01_first"]["n"] == 7 and per["02_second"]["n"] == 5


@pytest.mark.parametrize("body, message", [
    ({"params": {"nope": 1}}, "unknown key 'params.nope'"),
    ({"params": {"n": "five"}}, "'n' for 01_first must be int"),
    ({"params": {"n": True}}, "must be int"),
    ({"params": {"out_dir": "x"}}, "set by the runner"),
    ({"notebooks": {"09_missing": {}}}, "unknown notebook 'notebooks.09_missing'"),
    ({"notebooks": {"01_first": {"ratio": 0.1}}}, "unknown key 'notebooks.01_first.ratio'"),
    ({"typo": 1}, "unknown key 'typo'"),
    ({"data": {"synth": {"clases": 3}}}, "unknown key 'data.synth.clases'"),
    ({"kaggle": {"usr": "me"}}, "unknown key 'kaggle.usr'"),
    ({"params": {"n": 1}, "must_exist": ["n"]}, "does not exist"),
])
def test_invalid_profiles_are_rejected_before_anything_runs(tmp_path, nbs, body, message):
    with pytest.raises(pipeline.ProfileError, match=message):
        pipeline.run(profile(tmp_path, **body), notebooks=nbs)
    assert not (tmp_path / "out" / "t" / "01_first.ipynb").exists()


def test_run_records_metrics_and_skips_unchanged(tmp_path, nbs):
    p = profile(tmp_path, params={"n": 7})
    res = pipeline.run(p, notebooks=nbs)
    assert [r.status for r in res] == ["ran", "ran"]
    out = tmp_path / "out" / "t"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == {"01_first": {"n": 7, "word": "x"}, "02_second": {"n": 7, "word": "y"}}
    assert (out / "01_first.ipynb").exists()
    # one line per notebook: its settings (not its folders), time, first results, report
    line = [x for x in (out / "run.log").read_text().splitlines() if "02_second: " in x]
    assert len(line) == 1 and " · n=7 · n 7, word y · " in line[0] and line[0].endswith("02_second.ipynb")
    assert "out_dir=" not in line[0]
    assert [r.status for r in pipeline.run(p, notebooks=nbs)] == ["skipped", "skipped"]
    # a file a notebook wrote deleted (say a training run's folder): that notebook runs again
    state = json.loads((out / "runner_state.json").read_text())
    assert state["02_second"]["outputs"] == ["metrics/02_second.json"]
    (out / "metrics" / "02_second.json").unlink()
    assert [r.status for r in pipeline.run(p, notebooks=nbs)] == ["skipped", "ran"]
    assert (out / "metrics" / "02_second.json").exists()
    assert "02_second: unchanged, but 1 of the files it wrote are gone (e.g. metrics/02_second.json): running it" \
        in (out / "run.log").read_text()
    assert [r.status for r in pipeline.run(p, notebooks=nbs, force=True)] == ["ran", "ran"]
    # a changed parameter of the first notebook re-runs it and everything after it
    p2 = profile(tmp_path, params={"n": 7}, notebooks={"01_first": {"word": "w"}})
    assert [r.status for r in pipeline.run(p2, notebooks=nbs)] == ["ran", "ran"]
    # a changed parameter of the second only re-runs the second
    p3 = profile(tmp_path, params={"n": 7}, notebooks={"01_first": {"word": "w"}, "02_second": {"ratio": 0.9}})
    assert [r.status for r in pipeline.run(p3, notebooks=nbs)] == ["skipped", "ran"]


def test_a_changed_package_runs_the_notebooks_again(tmp_path, nbs, monkeypatch):
    """The fingerprint covers doodle_utils' sources: an upgraded or edited package re-runs
    every notebook instead of keeping reports the old code made."""
    p = profile(tmp_path, params={"n": 7})
    assert [r.status for r in pipeline.run(p, notebooks=nbs)] == ["ran", "ran"]
    assert [r.status for r in pipeline.run(p, notebooks=nbs)] == ["skipped", "skipped"]
    digest = pipeline.package_digest()
    assert len(digest) == 64 and digest == pipeline.package_digest()
    monkeypatch.setattr(pipeline, "package_digest", lambda: "0" * 64)  # as after an edit of eda.py
    assert [r.status for r in pipeline.run(p, notebooks=nbs)] == ["ran", "ran"]


def test_only_and_from(tmp_path, nbs):
    p = profile(tmp_path)
    assert [r.name for r in pipeline.run(p, notebooks=nbs, only="02")] == ["02_second"]
    assert [r.name for r in pipeline.run(p, notebooks=nbs, start="01", force=True)] == ["01_first", "02_second"]
    with pytest.raises(pipeline.ProfileError, match="--only 07"):
        pipeline.run(p, notebooks=nbs, only="07")


def test_failing_notebook_stops_the_run_and_keeps_its_copy(tmp_path, nbs):
    d = nbs[0].parent
    bad = make_nb(d / "01_first.ipynb", "n: int = 1\nout_dir: str = ''", "x = 1", "raise ValueError(f'bad n={n}')", "y = 2")
    with pytest.raises(pipeline.RunError) as e:
        pipeline.run(profile(tmp_path, params={"n": 3}), notebooks=[bad, nbs[1]])
    msg = str(e.value)
    assert "01_first" in msg and "ValueError: bad n=3" in msg and "cell" in msg
    kept = nbformat.read(tmp_path / "out" / "t" / "failed" / "01_first" / "01_first.ipynb", as_version=4)
    assert any(o.get("ename") == "ValueError" for c in kept.cells if c.cell_type == "code" for o in c.outputs)
    assert str(e.value.result.output) in msg
    assert not (tmp_path / "out" / "t" / "02_second.ipynb").exists()
    assert not (tmp_path / "out" / "t" / "01_first.ipynb").exists()  # no good run yet: no report


FIGURE = ("import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt\n"
          "from doodle_utils.results import save_figure\n"
          "fig, ax = plt.subplots(); ax.set_title(f'n={n}'); save_figure(fig, out_dir, f'01_plot_{n}')\n"
          "save_figure(fig, out_dir, '01_shared')")


def test_a_failed_run_keeps_the_last_good_run_in_place(tmp_path, nbs):
    """The failed run's report, figures and metrics go to failed/<notebook>/; the good run's stay."""
    d = nbs[0].parent
    code = "from doodle_utils.results import record_metrics\nrecord_metrics(out_dir, '01_first', {'n': n})"
    make_nb(d / "01_first.ipynb", "n: int = 1\nout_dir: str = ''", FIGURE, code, "assert n < 5, f'n={n} too big'")
    prof = profile(tmp_path, params={"n": 3})
    run = tmp_path / "out" / "t"
    pipeline.run(prof, notebooks=[d / "01_first.ipynb"])
    good = {p: p.read_bytes() for p in [run / "01_first.ipynb", run / "figures" / "01_plot_3.png",
                                         run / "figures" / "01_shared.png", run / "metrics" / "01_first.json"]}
    with pytest.raises(pipeline.RunError):
        pipeline.run(prof, notebooks=[d / "01_first.ipynb"], overrides={"n": 7})
    for p, content in good.items():
        assert p.read_bytes() == content, f"{p} changed by the failed run"
    failed = run / "failed" / "01_first"
    assert not (run / "figures" / "01_plot_7.png").exists()
    assert sorted(p.relative_to(failed).as_posix() for p in failed.rglob("*") if p.is_file()) == [
        "01_first.ipynb", "figures/01_plot_7.png", "figures/01_shared.png", "metrics/01_first.json"]
    assert json.loads((failed / "metrics" / "01_first.json").read_text()) == {"n": 7}
    assert not list((run / ".running").iterdir())  # nothing left staged


def test_metrics_flag_a_notebook_whose_last_run_failed(tmp_path, nbs):
    d = nbs[0].parent
    code = "from doodle_utils.results import record_metrics\nrecord_metrics(out_dir, '01_first', {'n': n})"
    make_nb(d / "01_first.ipynb", "n: int = 1\nout_dir: str = ''", "assert n < 5, f'n={n} too big'", code)
    prof = profile(tmp_path, params={"n": 3})
    pipeline.run(prof, notebooks=[d / "01_first.ipynb"])
    metrics = tmp_path / "out" / "t" / "metrics.json"
    assert json.loads(metrics.read_text())["01_first"] == {"n": 3}
    with pytest.raises(pipeline.RunError):
        pipeline.run(prof, notebooks=[d / "01_first.ipynb"], overrides={"n": 7})
    m = json.loads(metrics.read_text())["01_first"]
    assert m["status"] == "failed" and "n=7 too big" in m["error"] and m["last_good"] == {"n": 3}


def test_data_is_synthesised_and_packed_once(tmp_path, nbs):
    data_nb = make_nb(nbs[0].parent / "01_first.ipynb",
                      "data_dir: str = ''\nstore_dir: str = ''\nout_dir: str = ''",
                      "from doodle_utils.data.store import Store\nfrom doodle_utils.results import record_metrics\n"
                      "record_metrics(out_dir, '01_first', {'n': len(Store(store_dir + '/train')), "
                      "'kind': Store(store_dir + '/train').kind, 'test': Store(store_dir + '/test').kind})")
    p = profile(tmp_path, data={"synth": {"classes": 2, "per_class": 10, "test_per_class": 3},
                                "pack": {"workers": 1, "valid_frac": 0.2, "kind": "timed"}},
                params={"data_dir": str(tmp_path / "d"), "store_dir": str(tmp_path / "s")},
                must_exist=["data_dir"])
    pipeline.run(p, notebooks=[data_nb])
    m = json.loads((tmp_path / "out" / "t" / "metrics.json").read_text())["01_first"]
    assert m == {"n": 20, "kind": "timed", "test": "timed"}  # Kaggle's raw CSVs, as data.pack says
    stamp = (tmp_path / "s" / "train" / "manifest.json").stat().st_mtime_ns
    res = pipeline.run(p, notebooks=[data_nb])
    assert res[0].status == "skipped"
    assert (tmp_path / "s" / "train" / "manifest.json").stat().st_mtime_ns == stamp  # not re-packed
    assert "up to date" in (tmp_path / "out" / "t" / "run.log").read_text()


def test_results_cells_show_plain_rounded_values():
    import numpy as np

    from doodle_utils.results import shown

    m = {"map3": np.float64(0.7361112236976624), "per": [np.float32(0.5), 2], "name": "x", "n": np.int64(3)}
    out = shown(m, "map3", "per", "n")
    assert out == {"map3": 0.7361, "per": [0.5, 2], "n": 3} and "np." not in repr(out)
    assert shown(m)["name"] == "x" and shown({"s": 12345.678}, digits=0) == {"s": 12346.0}
