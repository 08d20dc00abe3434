"""The runner: numbered notebooks executed in order with papermill, from a profile.

The order is the numbering, except that 06 (the point model, a second training notebook)
runs before 04 (the ensemble of every training run's predictions).

A profile (``params/*.yaml``) names the run and its parameters::

    run_name: smoke                 # outputs go to <output_root>/<run_name>/
    output_root: outputs            # relative paths are relative to the profile's repo root
    data:                           # optional: make the data when data_dir is missing
      synth: {classes: 12, per_class: 200, test_per_class: 20, seed: 0}
      pack: {workers: 2, valid_frac: 0.1}
    params:                         # given to every notebook that declares them
      data_dir: outputs/smoke/data
      store_dir: outputs/smoke/store
    notebooks:                      # per-notebook overrides
      01_eda: {n_examples: 8}
    must_exist: [data_dir]          # parameters that name paths that must exist

Each notebook gets only the parameters its ``parameters`` cell declares (read with
``papermill.inspect_notebook``); a key that no notebook declares, a value of the wrong
type or a missing path is an error before anything runs. ``out_dir`` is always the run's
folder. A notebook whose code, parameters and inputs are unchanged since its last good run,
and whose files from that run are all still there, is skipped unless ``force``. A failing notebook stops the run with its name, cell and error;
its executed copy (up to the failure), figures and metrics go to ``failed/<notebook>/`` and
the last good run's report, figures and metrics stay in place (:class:`_Attempt`).
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml

from ._files import folder_lock, write_text_atomic
from .options import OptionError, child_path, did_you_mean
from .paths import project_root, resolve_dirs, store_path
from .progress import EPOCH_LINE
from .results import read_metrics

# the suite's notebooks in the order the runner runs them: both training notebooks (03, the
# image model; 06, the point model) come before the ensemble (04) that reads their predictions
PLANNED = ("01_eda", "02_rendering", "03_train", "06_point_cnn", "04_snapshot_ensemble", "05_balance_submit",
           "07_play")
TOP_KEYS = {"run_name", "output_root", "data", "params", "notebooks", "must_exist", "kernel", "kaggle"}
KAGGLE_KEYS = {"user", "gpu_notebooks", "dataset_sources", "kernel_input_root"}
DATA_KEYS = {"synth", "pack"}
# set by the runner, never by the profile: the run folder, and the profile's data.pack (so the
# notebooks that open the stores check them against the settings they were packed with)
RUNNER_PARAMS = {"out_dir", "pack"}
_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,), "list": (list,),
          "dict": (dict,)}
log = logging.getLogger("doodle.run")


class ProfileError(ValueError):
    """A profile that cannot run: names the file and the key."""


@dataclass
class Profile:
    """A validated run profile."""

    path: Path
    run_name: str
    out_dir: Path
    params: dict[str, Any]
    per_notebook: dict[str, dict[str, Any]]
    data: dict[str, dict] = field(default_factory=dict)
    must_exist: list[str] = field(default_factory=list)
    kernel: str = "python3"


def missing_notebooks(folder: Path | None = None) -> list[str]:
    """Planned notebooks that do not exist yet (in ``folder``, default the project's)."""
    have = {p.stem for p in notebook_list(folder)}
    return [n for n in PLANNED if n not in have]


def notebook_list(folder: Path | None = None) -> list[Path]:
    """The numbered notebooks (``NN_slug.ipynb``) of ``folder`` (default: the project's
    ``notebooks/``, :func:`.paths.project_root`) in run order: the suite's as ``PLANNED``
    orders them, then any others by name."""
    folder = project_root() / "notebooks" if folder is None else folder
    rank = {name: i for i, name in enumerate(PLANNED)}
    return sorted(folder.glob("[0-9][0-9]_*.ipynb"), key=lambda p: (rank.get(p.stem, len(PLANNED)), p.stem))


def declared_parameters(nb: Path) -> dict[str, dict]:
    """The parameters a notebook's ``parameters`` cell declares, with their types and defaults."""
    import papermill as pm

    return pm.inspect_notebook(str(nb))


def _resolve(value: Any, base: Path) -> Any:
    return str((base / value).resolve()) if isinstance(value, str) and value and not Path(value).is_absolute() else value


def load_profile(path: str | Path, notebooks: Sequence[Path] | None = None, overrides: dict | None = None,
                 check: bool = True, output_root: str | Path | None = None) -> tuple[Profile, dict[str, dict]]:
    """Read and validate a profile; return it with the parameters for each notebook.

    ``check=False`` skips the existence of ``must_exist`` paths (a Kaggle profile, checked here).

    Raises:
        ProfileError: unknown keys (naming the key), wrong types, missing paths.
    """
    path = Path(path)
    if not path.exists():
        raise ProfileError(f"{path}: no such profile")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ProfileError(f"{path}: not valid YAML ({e})") from e
    if not isinstance(raw, dict):
        raise ProfileError(f"{path}: a profile is a mapping of keys")
    for k in raw:
        if k not in TOP_KEYS:
            raise ProfileError(f"{path}: unknown key {k!r}{did_you_mean(k, TOP_KEYS)} (allowed: {sorted(TOP_KEYS)})")
    if not isinstance(raw.get("run_name"), str) or not raw["run_name"]:
        raise ProfileError(f"{path}: 'run_name' must be a non-empty string")
    root = project_root(path.resolve().parent)  # relative paths in a project's profile: from the project
    base = root if path.resolve().is_relative_to(root) else path.resolve().parent
    from .data.store import PACK_OPTIONS, check_pack_options  # lazy: numba and pyarrow, ~1 s; profile errors come first
    from .data.synth import SYNTH_OPTIONS, check_options as check_synth_options  # lazy: as store

    data = raw.get("data") or {}
    if not isinstance(data, dict):
        raise ProfileError(f"{path}: 'data' must be a mapping (synth:, pack:), got {data!r}")
    for k, v in data.items():
        if k not in DATA_KEYS:
            raise ProfileError(f"{path}: unknown key 'data.{k}'{did_you_mean(k, DATA_KEYS)} "
                               f"(allowed: {sorted(DATA_KEYS)})")
        if not isinstance(v or {}, dict):
            raise ProfileError(f"{path}: 'data.{k}' must be a mapping of options, got {v!r}")
        allowed = SYNTH_OPTIONS if k == "synth" else PACK_OPTIONS
        for kk in v or {}:
            if kk not in allowed:
                raise ProfileError(f"{path}: unknown key 'data.{k}.{kk}'{did_you_mean(kk, allowed)} "
                                   f"(allowed: {sorted(allowed)})")
        try:
            (check_synth_options if k == "synth" else check_pack_options)(**(v or {}))
        except OptionError as e:
            raise ProfileError(f"{path}: data.{k}: {e}") from None
    for k in ("params", "notebooks", "kaggle"):
        if not isinstance(raw.get(k) or {}, dict):
            raise ProfileError(f"{path}: '{k}' must be a mapping, got {raw[k]!r}")
    for kk in raw.get("kaggle") or {}:
        if kk not in KAGGLE_KEYS:
            raise ProfileError(f"{path}: unknown key 'kaggle.{kk}'{did_you_mean(kk, KAGGLE_KEYS)} "
                               f"(allowed: {sorted(KAGGLE_KEYS)})")
    params = dict(raw.get("params") or {})
    params.update(overrides or {})
    per_nb = raw.get("notebooks") or {}
    root = output_root if output_root is not None else raw.get("output_root", "outputs")
    if not isinstance(root, (str, Path)) or not str(root):
        raise ProfileError(f"{path}: 'output_root' must be a folder name, got {root!r}")
    try:
        out_dir = Path(_resolve(str(child_path(root, raw["run_name"], "run_name")), base))
    except OptionError as e:
        raise ProfileError(f"{path}: {e}") from None

    nbs = list(notebooks) if notebooks is not None else notebook_list()
    declared = {nb.stem: declared_parameters(nb) for nb in nbs}
    known = set().union(*[set(d) for d in declared.values()]) if declared else set()
    for k in params:
        if k in RUNNER_PARAMS:
            raise ProfileError(f"{path}: 'params.{k}' is set by the runner "
                               f"({'the run folder' if k == 'out_dir' else 'from data.pack'})")
        if k not in known:
            raise ProfileError(f"{path}: unknown key 'params.{k}': no notebook declares it"
                               f"{did_you_mean(k, known - RUNNER_PARAMS)} (declared: {sorted(known - RUNNER_PARAMS)})")
    for name, over in per_nb.items():
        if name not in declared:
            raise ProfileError(f"{path}: unknown notebook 'notebooks.{name}'{did_you_mean(name, declared)} "
                               f"(have: {sorted(declared)})")
        if not isinstance(over or {}, dict):
            raise ProfileError(f"{path}: 'notebooks.{name}' must be a mapping of parameters, got {over!r}")
        for k in over or {}:
            if k not in declared[name] or k in RUNNER_PARAMS:
                raise ProfileError(f"{path}: unknown key 'notebooks.{name}.{k}': {name} does not declare it"
                                   f"{did_you_mean(k, set(declared[name]) - RUNNER_PARAMS)}")
    per_notebook: dict[str, dict] = {}
    for name, decl in declared.items():
        p = {k: v for k, v in params.items() if k in decl}
        p.update((per_nb.get(name) or {}))
        p.update({k: v for k, v in (overrides or {}).items() if k in decl})  # --set beats the profile
        if "submission_name" in p:
            try:
                child_path(out_dir, p["submission_name"], "submission_name")
            except OptionError as e:
                raise ProfileError(f"{path}: {e}") from None
        for k, v in p.items():
            want = decl[k].get("inferred_type_name", "None")
            types = _TYPES.get(want)
            if types and not (isinstance(v, types) and not (want != "bool" and isinstance(v, bool))):
                raise ProfileError(f"{path}: '{k}' for {name} must be {want}, got {type(v).__name__} {v!r}")
            if k.endswith(("_dir", "_path", "_file")):
                p[k] = _resolve(v, base)
        if "out_dir" in decl:
            p["out_dir"] = str(out_dir)
        if "pack" in decl:
            p["pack"] = dict(data.get("pack") or {})
        per_notebook[name] = p
    if not isinstance(raw.get("must_exist") or [], list):
        raise ProfileError(f"{path}: 'must_exist' must be a list of parameter names, got {raw['must_exist']!r}")
    must = list(raw.get("must_exist") or [])
    for k in must:
        if k not in params:
            raise ProfileError(f"{path}: must_exist names {k!r}, which is not in params")
        if not isinstance(params[k], str):
            raise ProfileError(f"{path}: must_exist names {k!r}, whose value {params[k]!r} does not exist as a path")
    prof = Profile(path, raw["run_name"], out_dir, {k: _resolve(v, base) if k.endswith(("_dir", "_path", "_file")) else v
                                                    for k, v in params.items()},
                   per_notebook, data, must, raw.get("kernel", "python3"))
    if check and not data.get("synth"):
        check_paths(prof)
    return prof, per_notebook


def check_paths(prof: Profile) -> None:
    """Raise ProfileError for a ``must_exist`` parameter whose path is missing."""
    for k in prof.must_exist:
        if not Path(prof.params[k]).exists():
            raise ProfileError(f"{prof.path}: params.{k} = {prof.params[k]} does not exist")


# --------------------------------------------------------------------------- data preparation

def prepare_data(prof: Profile) -> dict[str, str]:
    """Make and pack the run's data when needed; return fingerprints of the inputs."""
    from .data.synth import make_competition  # lazy: numba and pyarrow, ~1 s (cli imports this module for every command)

    data_dir = Path(prof.params.get("data_dir", "")) if prof.params.get("data_dir") else None
    synth = prof.data.get("synth")
    if synth and data_dir is not None and not (data_dir / "test_simplified.csv").exists():
        log.info(f"synthesising the competition into {data_dir}")
        make_competition(data_dir, **synth)
    check_paths(prof)
    fingerprints = {}
    store_dir = prof.params.get("store_dir")
    if data_dir is not None and store_dir:
        pack_kw = dict(prof.data.get("pack") or {})
        pack_kw.setdefault("workers", None)
        pack_kw.setdefault("kind", "simplified")
        for name, m in ensure_stores(data_dir, Path(store_dir), **pack_kw).items():
            fingerprints[f"store/{name}"] = hashlib.sha256(
                json.dumps(m["arrays"], sort_keys=True).encode()).hexdigest()
    return fingerprints


def _pack_progress(line: str) -> None:
    """A pack's lines: one per file only in verbose runs; the store's own line, and any line
    that reports skipped rows or a part packed again, always."""
    quiet = line.lstrip().startswith("[") and "skipped" not in line
    (log.debug if quiet else log.info)(line.strip())


def ensure_stores(data_dir: str | Path, store_dir: str | Path, *, kind: str | None = None, allow_pack: bool = True,
                  **pack_kw) -> dict[str, dict]:
    """Pack ``data_dir`` into ``store_dir/{train,test}`` (and ``raw``) unless they are current.

    ``kind`` is the stores' kind (:data:`.store.KINDS`): "simplified" packs Kaggle's simplified
    files; "timed" and "raw" pack its raw ones (``train_raw/``, ``test_raw.csv``). None (a
    notebook opened on its own): the kind of the training store already there, else
    "simplified". Google's raw ndjson beside simplified training files also gives a ``raw``
    store (times for the EDA and ``time3``). A store is current when it was packed from the same unchanged files with the
    same kind, validation fraction and seed. ``allow_pack=False`` (one of several training
    processes) only checks: a store that is not current is an error, not packed here.
    """
    from .data import store  # lazy: numba and pyarrow, ~1 s (cli imports this module for every command)

    if not Path(data_dir).is_dir():
        raise FileNotFoundError(f"{data_dir}: no competition data here; run `make demo` for the synthetic "
                                "default, or download Kaggle's (`kaggle competitions download -c "
                                "quickdraw-doodle-recognition`, unzip it) and set data_dir to that folder")
    if kind is None:
        try:
            kind = store.Store(store_path(store_dir, "train"), verify="none").kind
        except store.StoreError:
            kind = "simplified"
    if kind not in store.KINDS:
        raise ValueError(f"kind must be one of {store.KINDS}, got {kind!r}")
    train, test = store.find_sources(data_dir, raw=kind in store.TIMED_KINDS)
    jobs = {"train": (train, {**pack_kw, "kind": kind}),
            "test": ([test] if test else [], {k: v for k, v in pack_kw.items() if k not in ("valid_frac", "blend_frac")}
                     | {"test": True, "kind": kind})}
    data_dir, store_dir = Path(data_dir), Path(store_dir)
    raw_dir = data_dir / "train_raw"
    if kind == "simplified" and raw_dir.is_dir() and train and train[0].parent.name != "train_raw":
        ndjson = sorted(raw_dir.glob("*.ndjson"))
        if ndjson:
            jobs["raw"] = (ndjson, {**pack_kw, "kind": "raw"})
    manifests = {}
    for name, (sources, kw) in jobs.items():
        if not sources:
            continue
        target = store_path(store_dir, name)
        writable = _writable(target)
        # a store another kernel packed (read-only here) is checked without the files' times,
        # which a new mount of the same files need not keep
        current = store.current_manifest(target, sources, kw["kind"], None if kw.get("test") else kw.get("valid_frac"),
                                         kw.get("seed"), check_mtime=writable,
                                         blend_frac=None if kw.get("test") else kw.get("blend_frac", 0.0))
        if current is None and not writable:
            raise store.StoreError(f"{target}: read-only and not packed from {data_dir} with kind {kw['kind']!r} "
                                   f"and these settings {({k: v for k, v in kw.items() if k != 'workers'})}; "
                                   "pack it where it is written (e.g. the first kernel of the chain), or set "
                                   "store_dir to a writable folder")
        if current is None and not allow_pack:
            raise store.StoreError(f"{target}: not packed from {data_dir} with these settings; several training "
                                   "processes do not pack: pack first (`doodle pack`, or one `doodle train` process)")
        if current is None:
            log.debug(f"packing {len(sources)} file(s) into {target} (kind {kw['kind']})")
            current = store.pack(sources, target, progress=_pack_progress, **kw)
        else:
            log.debug(f"{target}: up to date with its {len(sources)} source file(s)")
        manifests[name] = current
    return manifests


def training_config(params: dict[str, Any], allow_pack: bool = True):
    """What notebooks 03 and 06 train, from their parameters: ``(TrainConfig, RunDirs)``.

    The folders are resolved like every notebook's (:func:`.paths.resolve_dirs`: empty
    ``data_dir``/``store_dir``/``out_dir`` take the defaults), the stores packed when they are
    not current (:func:`ensure_stores`, with ``pack``), and the configuration for
    ``<out_dir>/train/<run_label>`` made (:func:`.training.run_config`; an empty ``run_label``
    is :func:`.training.default_run_label`) and checked. ``doodle train`` calls this too, so it
    trains exactly what notebook 03 trains for the same values. ``allow_pack=False`` (each of
    several torchrun processes) requires the stores packed already.
    """
    from .training import config_from_params, default_run_label, run_config  # lazy: torch and fastai, seconds

    # the values first, before any folder is made or any drawing packed (the test store is
    # only known after packing: a stand-in here, the real one checked below)
    config_from_params({**params, "store_dir": "", "out_dir": "", "test_store_dir": "-"}).check()
    dirs = resolve_dirs(params.get("data_dir", ""), params.get("store_dir", ""), params.get("out_dir", ""))
    ensure_stores(dirs.data_dir, dirs.store_dir, allow_pack=allow_pack, **(params.get("pack") or {}))
    label = params.get("run_label") or default_run_label(params)
    cfg = run_config(params, dirs.store_dir, dirs.out_dir, label)
    cfg.check()
    return cfg, dirs


def _writable(path: Path) -> bool:
    """Whether ``path`` (or, while it does not exist, its nearest existing parent) is writable."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    return os.access(p, os.W_OK)


# --------------------------------------------------------------------------- running

@dataclass
class NotebookResult:
    name: str
    status: str  # "ran", "skipped", "failed"
    seconds: float
    output: Path
    error: str = ""


def package_digest() -> str:
    """SHA-256 of the ``doodle_utils`` sources the notebooks call: part of every notebook's
    fingerprint, so a changed package (an upgrade, an edit) runs the notebooks again rather
    than keeping reports made by the old code (found by the full-size rehearsal, which changed
    the EDA's code and got the old report back)."""
    h = hashlib.sha256()
    root = Path(__file__).resolve().parent
    for f in sorted(root.rglob("*.py")):
        h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def _fingerprint(nb: Path, params: dict, inputs: dict[str, str], upstream: str) -> str:
    h = hashlib.sha256()
    h.update(nb.read_bytes())
    h.update(json.dumps(params, sort_keys=True, default=str).encode())
    h.update(json.dumps(inputs, sort_keys=True).encode())
    h.update(upstream.encode())
    return h.hexdigest()


def select(notebooks: Sequence[Path], only: str | None = None, start: str | None = None) -> list[Path]:
    """Notebooks whose name starts with ``only``, or from the one starting with ``start`` on."""
    nbs = list(notebooks)
    if only:
        nbs = [nb for nb in nbs if nb.stem.startswith(only)]
        if not nbs:
            raise ProfileError(f"--only {only}: no notebook matches")
    if start:
        idx = [i for i, nb in enumerate(nbs) if nb.stem.startswith(start)]
        if not idx:
            raise ProfileError(f"--from {start}: no notebook matches")
        nbs = nbs[idx[0]:]
    return nbs


def run(profile_path: str | Path, *, only: str | None = None, start: str | None = None,
        force: bool = False, notebooks: Sequence[Path] | None = None, verbose: bool = False,
        overrides: dict | None = None, output_root: str | Path | None = None) -> list[NotebookResult]:
    """Run a profile's notebooks; returns one result per notebook selected.

    Quiet by default: one line per notebook when it ends (name, settings, time, its first
    recorded results, the report) and, while a notebook trains, the epoch lines it prints
    (:mod:`.progress`), in the console and ``run.log``. ``verbose``: papermill's cell progress
    bar, every line the kernel prints, and the kernel's own start-up log.

    Raises:
        ProfileError: the profile is invalid (nothing has run).
        RunError: a notebook failed (the ones before it have run).
    """
    nbs_all = list(notebooks) if notebooks is not None else notebook_list()
    prof, per_nb = load_profile(profile_path, nbs_all, overrides, output_root=output_root)
    chosen = select(nbs_all, only, start)
    out = prof.out_dir
    out.mkdir(parents=True, exist_ok=True)
    with folder_lock(out, f"running {prof.run_name}"):  # one run per folder at a time
        return _run_locked(prof, per_nb, nbs_all, chosen, force, verbose)


def _run_locked(prof: Profile, per_nb: dict, nbs_all: list[Path], chosen: list[Path], force: bool,
                verbose: bool) -> list[NotebookResult]:
    out = prof.out_dir
    handler = logging.FileHandler(out / "run.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    log.addHandler(handler)
    level = log.level
    log.setLevel(logging.DEBUG)  # run.log keeps every line; the console's handler decides what it shows
    try:
        log.info(f"run {prof.run_name} from {prof.path} into {out}")
        inputs = {**prepare_data(prof), "doodle_utils": package_digest()}
        state_path = out / "runner_state.json"
        state = json.loads(state_path.read_text()) if state_path.exists() else {}
        results: list[NotebookResult] = []
        upstream = ""
        for nb in nbs_all:
            fp = _fingerprint(nb, per_nb[nb.stem], inputs, upstream)
            upstream = fp
            if nb not in chosen:
                continue
            result = _run_one(nb, out, per_nb[nb.stem], prof.kernel, fp, state, force, verbose)
            results.append(result)
            write_text_atomic(state_path, json.dumps(state, indent=1))
            _merge_metrics(out, state)
            if result.status == "failed":
                raise RunError(result)
        log.info("run finished: " + ", ".join(f"{r.name} {r.status} ({r.seconds:.0f}s)" for r in results))
        return results
    finally:
        log.removeHandler(handler)
        handler.close()
        log.setLevel(level)


class RunError(RuntimeError):
    """A notebook failed; names it, its cell and the error."""

    def __init__(self, result: NotebookResult):
        self.result = result
        super().__init__(f"notebook {result.name} failed: {result.error}\n"
                         f"  executed copy up to the failure: {result.output}")


# a notebook's parameters that say where it reads and writes: left out of its one line
_FOLDER_PARAMETERS = ("data_dir", "store_dir", "out_dir", "pack", "train_dirs")


def _settings(params: dict) -> str:
    return " ".join(f"{k}={json.dumps(v, default=str, separators=(',', ':'))}" for k, v in params.items()
                    if k not in _FOLDER_PARAMETERS)


def _headline(out: Path, name: str, n: int = 3) -> str:
    """The first ``n`` single values a notebook recorded (``metrics/<name>.json``)."""
    try:
        m = json.loads((out / "metrics" / f"{name}.json").read_text())
    except (OSError, ValueError):
        return ""
    items = [(k, v) for k, v in m.items() if isinstance(v, (int, float, str)) and not isinstance(v, bool)
             and len(str(v)) <= 60][:n]
    return ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in items)


class _EpochLines(io.TextIOBase):
    """Where papermill writes the kernel's stdout as it comes: the training epoch lines
    (:data:`.progress.EPOCH_LINE`) go to the run's log, the rest stays in the report."""

    def __init__(self, name: str):
        self.name, self.buf = name, ""

    def write(self, text: str) -> int:
        self.buf += text
        *lines, self.buf = self.buf.replace("\r", "\n").split("\n")
        for line in lines:
            if EPOCH_LINE.match(line):
                log.info(f"{self.name}: {line.strip()}")
        return len(text)


def _run_one(nb: Path, out: Path, params: dict, kernel: str, fp: str, state: dict, force: bool,
             verbose: bool) -> NotebookResult:
    import papermill as pm

    target = out / nb.name
    prev = state.get(nb.stem, {})
    gone = [f for f in prev.get("outputs", []) if not (out / f).exists()]
    if not force and prev.get("fingerprint") == fp and prev.get("status") == "ok" and target.exists():
        if not gone:
            log.info(f"{nb.stem}: unchanged since its last run, skipped (--force to re-run)")
            return NotebookResult(nb.stem, "skipped", 0.0, target)
        log.info(f"{nb.stem}: unchanged, but {len(gone)} of the files it wrote are gone (e.g. {gone[0]}): running it")
    before = _written(out)
    if verbose:
        log.info(f"{nb.stem}: running with {json.dumps(params, default=str)}")
    t0 = time.perf_counter()
    attempt = _Attempt(out, nb)
    # quiet: the kernel's start-up log (e.g. "Kernel is running over TCP without encryption") only in verbose
    quiet = {} if verbose else {"extra_arguments": ["--IPKernelApp.log_level=ERROR"]}
    try:
        pm.execute_notebook(str(nb), str(attempt.report), parameters=params, kernel_name=kernel,
                            progress_bar=verbose, log_output=verbose, stdout_file=_EpochLines(nb.stem),
                            cwd=str(nb.parent), **quiet)
    except pm.PapermillExecutionError as e:
        dt = time.perf_counter() - t0
        src = (e.source or "").strip().splitlines()
        err = (f"cell {e.cell_index} (In [{e.exec_count}]: {src[0][:80] if src else ''}): "
               f"{e.ename}: {e.evalue}")
        log.info(f"{nb.stem}: FAILED after {dt:.0f}s at {err}")
        state[nb.stem] = {"fingerprint": fp, "status": "failed", "error": err}
        kept = attempt.failed()
        log.info(f"{nb.stem}: the failed run's report, figures and metrics are in {kept.parent}; "
                 f"the last good run's stay in place")
        return NotebookResult(nb.stem, "failed", dt, kept, err)
    except BaseException:
        attempt.failed()
        raise
    attempt.succeeded(target)
    dt = time.perf_counter() - t0
    headline = _headline(out, nb.stem)
    log.info(f"{nb.stem}: ran in {dt:.0f}s · {_settings(params) or 'defaults'}"
             f"{' · ' + headline if headline else ''} · {target}")
    after = _written(out)
    state[nb.stem] = {"fingerprint": fp, "status": "ok", "seconds": round(dt, 2),
                      "outputs": sorted(f for f, stamp in after.items() if before.get(f) != stamp)}
    return NotebookResult(nb.stem, "ran", dt, target)


def _written(out: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime) of every file under the run folder but the runner's own (reports, logs,
    state, attempts): what a notebook wrote is what changed across its run."""
    own = {".running", "failed", "run.log", "runner_state.json", "metrics.json"}
    found = {}
    for p in out.rglob("*"):
        rel = p.relative_to(out)
        if rel.parts[0] in own or (len(rel.parts) == 1 and p.suffix == ".ipynb") or not p.is_file():
            continue
        st = p.stat()
        found[rel.as_posix()] = (st.st_size, st.st_mtime_ns)
    return found


class _Attempt:
    """One run of a notebook, kept apart from its last good run until it succeeds.

    The executed report is written to ``<out>/.running/`` and moved into place on success.
    What a notebook writes straight into the run folder — its figures (``figures/<NN>_*.png``,
    named with its number) and its metrics (``metrics/<stem>.json``) — is saved (hard links)
    before it starts; after a failure the failed run's versions move to
    ``<out>/failed/<stem>/`` with its report, and the last good run's are put back.
    """

    def __init__(self, out: Path, nb: Path):
        self.out, self.nb = out, nb
        self.report = out / ".running" / nb.name
        self.report.parent.mkdir(parents=True, exist_ok=True)
        self.report.unlink(missing_ok=True)
        self.saved = out / ".running" / f"{nb.stem}.last_good"
        shutil.rmtree(self.saved, ignore_errors=True)
        self.before = {}
        for p in self._outputs():
            rel = p.relative_to(out)
            (self.saved / rel).parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(p, self.saved / rel)
            except OSError:  # a file system without hard links
                shutil.copy2(p, self.saved / rel)
            self.before[rel] = p.stat().st_mtime_ns

    def _outputs(self) -> list[Path]:
        number = self.nb.stem.split("_")[0]
        return [*sorted((self.out / "figures").glob(f"{number}_*.png")),
                *[p for p in [self.out / "metrics" / f"{self.nb.stem}.json"] if p.exists()]]

    def succeeded(self, target: Path) -> None:
        self.report.replace(target)
        shutil.rmtree(self.saved, ignore_errors=True)

    def failed(self) -> Path:
        """Move the failed run's outputs apart, restore the last good ones; the report's path."""
        kept = self.out / "failed" / self.nb.stem
        shutil.rmtree(kept, ignore_errors=True)
        kept.mkdir(parents=True)
        for p in self._outputs():
            rel = p.relative_to(self.out)
            if self.before.get(rel) != p.stat().st_mtime_ns:  # written (or rewritten) by this run
                (kept / rel).parent.mkdir(parents=True, exist_ok=True)
                p.replace(kept / rel)
        for rel in self.before:
            if not (self.out / rel).exists():
                (self.saved / rel).replace(self.out / rel)
        shutil.rmtree(self.saved, ignore_errors=True)
        report = kept / self.nb.name
        if self.report.exists():
            self.report.replace(report)
        return report


def _merge_metrics(out: Path, state: dict | None = None) -> None:
    """The run's ``metrics.json``: every notebook's recorded metrics; a notebook whose last run
    failed is flagged, its metrics kept apart as those of its last good run."""

    merged = read_metrics(out)
    for name, s in (state or {}).items():
        if s.get("status") == "failed":
            merged[name] = {"status": "failed", "error": s.get("error", ""), "last_good": merged.get(name)}
    write_text_atomic(out / "metrics.json", json.dumps(merged, indent=1, sort_keys=True))
