"""Kaggle kernel bundles: one folder per notebook that ``kaggle kernels push -p`` accepts.

Each folder holds ``kernel-metadata.json`` and the notebook with (1) the Kaggle profile's
values written into its ``parameters`` cell as the new defaults, and (2)
``doodle_utils`` inlined as a base64 zip in a setup cell, so the kernel runs with internet
off and no other kernel attached. Inlining beats a utility-script kernel here: a utility
script is a single file, and this package is several modules.

:func:`validate_metadata` applies the checks the kaggle CLI's ``kernels push`` makes before
uploading (Kaggle/kaggle-api, ``KaggleApi.kernels_push``), plus this suite's own (internet
off, the competition attached).
"""
from __future__ import annotations

import ast
import base64
import hashlib
import io
import json
import re
import zipfile
from pathlib import Path
from typing import Sequence

import nbformat

from ._files import atomic_path, write_text_atomic
from .paths import CATEGORIES_FILE, REPO, project_root
from .pipeline import load_profile, notebook_list
from .versions import tested_versions

COMPETITION = "quickdraw-doodle-recognition"
PACKAGE = REPO / "doodle_utils"
LANGUAGES = ("python", "r", "rmarkdown")
KERNEL_TYPES = ("script", "notebook")
BOOL_FIELDS = ("is_private", "enable_gpu", "enable_tpu", "enable_internet")
REQUIRED = ("id", "title", "code_file", "language", "kernel_type")
# notebooks that read other notebooks' outputs: notebook prefix -> (its parameter, producers,
# the parameter's value from the producers' run folders as mounted). As kernels, a consumer
# lists its producers in ``kernel_sources`` (see :class:`Chain`).
CONSUMERS = {"04": ("train_dirs", ("03", "06"), lambda runs: runs),
             "05": ("ensemble_dir", ("04",), lambda runs: f"{runs[0]}/ensemble")}
KAGGLE_INPUT_ROOT = "/kaggle/input"
KAGGLE_WORKING = "/kaggle/working"
USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")  # checked before anything is written
OUTPUT_LIMIT_BYTES = 20 * 10 ** 9  # what a kernel may save as its output (Kaggle: 20 GB)
RUN_LIMIT_SECONDS = 12 * 3600  # how long Kaggle lets a CPU or GPU kernel run (12 hours)


class Chain:
    """Where each kernel of the chain reads and writes, from Kaggle's mounts: the one place
    that turns a profile's paths into kernel paths.

    Kaggle runs a kernel with ``/kaggle/working`` as its (saved) working folder and mounts the
    saved working folder of each kernel in its ``kernel_sources`` read-only at
    ``<input_root>/<slug>/`` (``/kaggle/input`` unless the profile's
    ``kaggle.kernel_input_root`` says otherwise). So a path ``/kaggle/working/X`` written by
    kernel K is ``<input_root>/<K's slug>/X`` in the kernels that attach K.

    Args:
        stems: the bundled notebooks' names, in run order.
        users: the stems of notebooks that open the packed store (they declare ``pack``, or
            stack with its drawings' metadata).
        store_dir, out_dir: the profile's store and run folders (paths inside a kernel).
        input_root: where attached kernels' outputs appear.
    """

    def __init__(self, stems: Sequence[str], users: Sequence[str], store_dir: str, out_dir: str,
                 input_root: str = KAGGLE_INPUT_ROOT):
        self.stems, self.input_root = list(stems), input_root.rstrip("/")
        self.store_dir, self.out_dir = store_dir, out_dir
        users = [s for s in self.stems if s in users]
        # the store is packed once, by the first notebook that opens it, when that kernel saves
        # it (it is under /kaggle/working); a store elsewhere (/kaggle/temp) is each kernel's own
        self.packer = users[0] if users and self.saved(store_dir) is not None else None
        self.users = users

    @staticmethod
    def saved(path: str) -> str | None:
        """``path`` relative to ``/kaggle/working`` ("" for the folder itself), or None when a
        kernel does not save it."""
        p, w = Path(path), Path(KAGGLE_WORKING)
        if p == w:
            return ""
        return p.relative_to(w).as_posix() if p.is_relative_to(w) else None

    def mounted(self, producer: str, path: str) -> str:
        """Where ``path``, saved by ``producer``'s kernel, appears in a kernel that attaches it."""
        rel = self.saved(path)
        if rel is None:
            raise ValueError(f"{path} is not under {KAGGLE_WORKING}: kernel {producer} does not save it")
        return f"{self.input_root}/{kernel_slug(Path(producer))}" + (f"/{rel}" if rel else "")

    def store_for(self, stem: str) -> tuple[str, list[str]]:
        """(store_dir, producers to attach) of notebook ``stem``."""
        if self.packer is None or stem == self.packer or stem not in self.users:
            return self.store_dir, []
        return self.mounted(self.packer, self.store_dir), [self.packer]

    def consumed(self, stem: str) -> tuple[str, list[str], object] | None:
        """(parameter, producers, value) for a notebook that reads other kernels' outputs."""
        consumer = CONSUMERS.get(stem[:2])
        if not consumer:
            return None
        param, prefixes, value = consumer
        producers = [s for s in self.stems if s[:2] in prefixes]
        if not producers:
            return None
        return param, producers, value([self.mounted(p, self.out_dir) for p in producers])


def slugify(text: str) -> str:
    """Kaggle's slug of a title: lower case, runs of other characters become one dash."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def package_zip() -> bytes:
    """The ``doodle_utils`` sources as a zip (no caches), deterministic for the same files."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for p in sorted([*PACKAGE.rglob("*.py"), CATEGORIES_FILE]):
            info = zipfile.ZipInfo(str(p.relative_to(PACKAGE.parent)), date_time=(2018, 9, 26, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, p.read_bytes())
    return buf.getvalue()


def setup_cells(blob: bytes, tested: dict[str, str] | None = None) -> list:
    """A markdown cell that says why, and the code cell that unpacks the package and compares
    the kernel's library versions with ``tested`` (default: the project's pins)."""

    tested = tested_versions(REPO) if tested is None else tested
    digest = hashlib.sha256(blob).hexdigest()[:12]
    code = (
        "# doodle_utils, inlined by `doodle kaggle-bundle` (kernels run without internet)\n"
        "import base64, io, os, sys, tempfile, zipfile\n"
        "# a new private folder each run: a folder someone else made in /tmp is never trusted\n"
        f"_dst = tempfile.mkdtemp(prefix='doodle_utils_{digest}_')\n"
        "zipfile.ZipFile(io.BytesIO(base64.b64decode(_PKG))).extractall(_dst)\n"
        "sys.path.insert(0, _dst)\n"
        "import doodle_utils; print('doodle_utils from', os.path.dirname(doodle_utils.__file__))\n"
        "from doodle_utils.versions import check_versions\n"
        f"check_versions({tested!r})  # warns where Kaggle's image differs in a way known to matter"
    )
    data = f"_PKG = '{base64.b64encode(blob).decode()}'"
    md = nbformat.v4.new_markdown_cell(
        "**Kernel set-up.** The suite's package `doodle_utils` travels inside this notebook "
        "(the next two cells), because Kaggle kernels run without internet. The second one also "
        "compares the libraries of Kaggle's image with the versions the suite is tested with and "
        "warns where a difference is known to matter.")
    return [md, nbformat.v4.new_code_cell(data, metadata={"tags": ["doodle-package"]}),
            nbformat.v4.new_code_cell(code, metadata={"tags": ["doodle-setup"]})]


def set_parameter_defaults(source: str, params: dict) -> str:
    """Rewrite the literal values of a ``parameters`` cell (types and comments kept).

    Baked-in defaults, not papermill's injected cell: papermill replaces an injected cell
    when the notebook is run again with ``-p``, and would drop the profile's values.
    """
    edits, declared = [], set()
    for node in ast.parse(source).body:
        if isinstance(node, ast.AnnAssign):
            target = node.target
        elif isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
        else:
            continue
        if not isinstance(target, ast.Name) or node.value is None:
            continue
        declared.add(target.id)
        if target.id in params:
            v = node.value
            edits.append((v.lineno, v.col_offset, v.end_lineno, v.end_col_offset, repr(params[target.id])))
    missing = set(params) - declared
    if missing:
        raise ValueError(f"parameters cell does not declare {sorted(missing)}")
    lines = source.splitlines(keepends=True)
    for l0, c0, l1, c1, text in sorted(edits, reverse=True):  # from the end: offsets stay valid
        head = "".join(lines[:l0 - 1]) + lines[l0 - 1][:c0]
        tail = lines[l1 - 1][c1:] + "".join(lines[l1:])
        lines = (head + text + tail).splitlines(keepends=True)
    return "".join(lines)


def _title(nb_path: Path) -> str:
    return f"doodle {nb_path.stem.replace('_', ' ')}"


def kernel_slug(nb_path: Path) -> str:
    """The slug of a notebook's kernel (from its title)."""
    return slugify(_title(nb_path))


def bundle_notebook(nb_path: Path, out_dir: Path, params: dict, *, user: str, enable_gpu: bool,
                    dataset_sources: Sequence[str] = (), blob: bytes | None = None,
                    kernel_sources: Sequence[str] = ()) -> Path:
    """Write one kernel folder for ``nb_path``; returns the folder."""
    nb = nbformat.read(nb_path, as_version=4)
    pcell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    pcell.source = set_parameter_defaults(pcell.source, params)
    cells = setup_cells(blob if blob is not None else package_zip())
    first_code = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
    nb.cells[first_code:first_code] = cells
    for c in nb.cells:
        if c.cell_type == "code":
            c.outputs, c.execution_count = [], None
    folder = out_dir / nb_path.stem
    folder.mkdir(parents=True, exist_ok=True)
    code_file = f"{nb_path.stem}.ipynb"
    write_text_atomic(folder / code_file, nbformat.writes(nb))
    title = _title(nb_path)
    meta = {
        "id": f"{user}/{slugify(title)}", "title": title, "code_file": code_file,
        "language": "python", "kernel_type": "notebook", "is_private": True,
        "enable_gpu": enable_gpu, "enable_tpu": False, "enable_internet": False,
        "dataset_sources": list(dataset_sources), "competition_sources": [COMPETITION],
        "kernel_sources": list(kernel_sources), "model_sources": [],
    }
    write_text_atomic(folder / "kernel-metadata.json", json.dumps(meta, indent=2))
    return folder


def kaggle_kernel(nb_path: Path) -> bool:
    """Whether a notebook becomes a Kaggle kernel: every one but those whose metadata says
    ``doodle: {kaggle: false}`` (notebook 07, whose pad needs a person at a browser)."""
    meta = json.loads(Path(nb_path).read_text()).get("metadata", {})
    return meta.get("doodle", {}).get("kaggle", True) is not False


def bundle(out_dir: str | Path, profile: str | Path | None = None, *,
           user: str | None = None, notebooks: Sequence[Path] | None = None,
           overrides: dict | None = None) -> list[Path]:
    """Write a kernel folder per notebook, with the profile's parameters; returns the folders.

    The profile's ``kaggle`` section gives ``user``, ``gpu_notebooks`` (name prefixes that
    get ``enable_gpu``), ``dataset_sources`` (e.g. a pretrained-weights dataset) and
    ``kernel_input_root``. Every kernel writes to its own ``/kaggle/working`` (``out_dir``);
    the store is packed once, by the first kernel that opens it, and the others attach that
    kernel and read the store where Kaggle mounts it; notebooks that read other notebooks'
    outputs (:data:`CONSUMERS`) attach those kernels and read them where they are mounted,
    unless the profile sets the parameter; the last kernel writes ``/kaggle/working/submission.csv``
    (:class:`Chain`). ``profile``: default the project's ``params/kaggle.yaml``.
    """
    import yaml

    profile = project_root() / "params" / "kaggle.yaml" if profile is None else profile
    nbs = [nb for nb in (list(notebooks) if notebooks is not None else notebook_list()) if kaggle_kernel(nb)]
    prof, per_nb = load_profile(profile, nbs, overrides, check=False)
    raw = yaml.safe_load(Path(profile).read_text()) or {}
    cfg, set_in_profile = raw.get("kaggle") or {}, raw.get("notebooks") or {}
    user = user or cfg.get("user") or "your-kaggle-username"
    if not USER_NAME.fullmatch(str(user)):
        raise ValueError(f"Kaggle user name {user!r}: only ASCII letters, digits, '-' and '_' "
                         "(it becomes the owner in each kernel's id, user/slug)")
    blob = package_zip()
    # load_profile gives a notebook ``pack`` and ``out_dir`` exactly when it declares them
    # the store's users: notebooks that pack it, and a stacker reading its drawings' metadata
    chain = Chain([nb.stem for nb in nbs], [s for s, p in per_nb.items() if "pack" in p or p.get("stack")],
                  str(prof.params.get("store_dir", f"{KAGGLE_WORKING}/store")), KAGGLE_WORKING,
                  cfg.get("kernel_input_root", KAGGLE_INPUT_ROOT))
    folders = []
    for nb in nbs:
        gpu = any(nb.stem.startswith(p) for p in cfg.get("gpu_notebooks", []))
        params = dict(per_nb[nb.stem])
        if "out_dir" in params:
            params["out_dir"] = KAGGLE_WORKING  # each kernel saves its own working folder
        producers: list[str] = []
        if "store_dir" in params:
            params["store_dir"], producers = chain.store_for(nb.stem)
        consumed = chain.consumed(nb.stem)
        if consumed:
            param, more, value = consumed
            producers += more
            if param not in (set_in_profile.get(nb.stem) or {}):
                params[param] = value
        sources = [f"{user}/{kernel_slug(Path(p))}" for p in dict.fromkeys(producers)]
        folders.append(bundle_notebook(nb, Path(out_dir), params, user=user, enable_gpu=gpu,
                                       dataset_sources=cfg.get("dataset_sources", []), blob=blob,
                                       kernel_sources=sources))
    for f in folders:
        problems = validate_metadata(f)
        if problems:
            raise ValueError(f"{f}: " + "; ".join(problems))
    return folders


def validate_metadata(folder: str | Path) -> list[str]:
    """Problems that would make ``kaggle kernels push -p FOLDER`` fail or misbehave (empty: ok)."""
    folder = Path(folder)
    path = folder / "kernel-metadata.json"
    if not path.is_file():
        return [f"{path}: metadata file not found"]
    try:
        meta = json.loads(path.read_text())
    except ValueError as e:
        return [f"{path}: not JSON ({e})"]
    out = [f"missing field {k!r}" for k in REQUIRED if not meta.get(k)]
    title = meta.get("title") or ""
    if title and len(title) < 5:
        out.append("title must be at least five characters")
    code = meta.get("code_file")
    if code and not (folder / code).is_file():
        out.append(f"source file not found: {code}")
    kid = meta.get("id") or ""
    owner, _, slug = kid.partition("/")
    if kid and (not owner or not slug):
        out.append("id must be '{username}/{kernel-slug}'")
    elif slug and len(slug) < 5:
        out.append("kernel slug must be at least five characters")
    elif slug and title and slug != slugify(title):
        out.append(f"title {title!r} does not resolve to the id's slug {slug!r}")
    if meta.get("language") not in LANGUAGES:
        out.append(f"language must be one of {LANGUAGES}")
    if meta.get("kernel_type") not in KERNEL_TYPES:
        out.append(f"kernel_type must be one of {KERNEL_TYPES}")
    for k in BOOL_FIELDS:
        if k in meta and meta[k] not in (True, False, "true", "false"):
            out.append(f"{k} must be true or false")
    for k in ("dataset_sources", "kernel_sources", "competition_sources", "model_sources"):
        v = meta.get(k, [])
        if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
            out.append(f"{k} must be a list of strings")
        elif k in ("dataset_sources", "kernel_sources") and any(s.count("/") != 1 for s in v):
            out.append(f"{k} entries must be 'owner/slug'")
    if meta.get("enable_internet") not in (False, "false"):
        out.append("enable_internet must be false (the competition's kernels run offline)")
    if COMPETITION not in meta.get("competition_sources", []):
        out.append(f"competition_sources must include {COMPETITION!r}")
    if code and code.endswith(".ipynb") and (folder / code).is_file():
        nb = nbformat.read(folder / code, as_version=4)
        if not any("doodle-setup" in c.metadata.get("tags", []) for c in nb.cells):
            out.append("the notebook lacks the doodle_utils set-up cell")
    return out


# --------------------------------------------------------------------------- submissions

class SubmissionError(ValueError):
    """A submission file Kaggle would reject or mis-score: names the file and first bad row."""


def label(word: str) -> str:
    """A class name as Kaggle's submission spells it (spaces -> underscores)."""
    return word.replace(" ", "_")


def write_submission(path: str | Path, key_ids: Sequence, ranked, words: Sequence[str],
                     sample: str | Path | None = None) -> Path:
    """Write ``key_id,word`` with up to three space-separated labels per drawing, atomically,
    after checking it (against ``sample_submission.csv`` when given).

    Args:
        key_ids: the test drawings' key_ids, in the order of ``ranked``'s rows.
        ranked: (N, k) class indices into ``words``, best first (k from 1 to 3).
    """
    import numpy as np
    import pandas as pd


    ranked = np.asarray(ranked)
    if ranked.ndim != 2 or not 1 <= ranked.shape[1] <= 3 or len(ranked) != len(key_ids):
        raise SubmissionError(f"{path}: need (N, 1..3) ranked classes for {len(key_ids)} key_ids, got {ranked.shape}")
    names = np.array([label(w) for w in words], dtype=object)
    text = [" ".join(r) for r in names[ranked]]
    df = pd.DataFrame({"key_id": [str(k) for k in key_ids], "word": text})
    path = Path(path)
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)
        check_submission(tmp, sample, words, shown_as=path)
    return path


def known_classes(sample: str | Path | None = None) -> tuple[list[str], str]:
    """The class names a submission's labels must come from, and where they were found.

    The competition's own classes when ``sample`` (``sample_submission.csv``) sits in a
    competition folder (``train_simplified/`` or ``train_raw/`` beside it: one file a class),
    else Google's 345 Quick, Draw! categories shipped with the package, which hold Kaggle's 340.
    """
    if sample is not None:
        for folder in ("train_simplified", "train_raw"):
            d = Path(sample).parent / folder
            names = sorted(p.stem for p in d.glob("*.csv")) if d.is_dir() else []
            if names:
                return names, str(d)
    names = [w for w in CATEGORIES_FILE.read_text().splitlines() if w.strip()]
    return names, f"Google's {len(names)} Quick, Draw! categories"


_NOT_A_SEPARATOR = re.compile(r"[^\S ]")  # whitespace other than the space Kaggle splits on


def sample_key_ids(sample: str | Path) -> list[str]:
    """The key_ids of ``sample_submission.csv``, in its order."""
    import csv

    with open(sample, newline="") as f:
        return [r[0].strip() for r in list(csv.reader(f))[1:] if r]


def check_submission(path: str | Path, sample: str | Path | None = None, words: Sequence[str] | None = None,
                     shown_as: str | Path | None = None) -> int:
    """Validate a submission; return its row count.

    Checks: UTF-8 text with the header ``key_id,word``; every row has an ASCII-digit key_id and
    1-3 labels separated by spaces (a tab or line break is no separator), no label twice;
    labels are known classes (spaces as underscores): ``words`` when given, else
    :func:`known_classes`; key_ids are unique and, with ``sample``, the same set as
    ``sample_submission.csv``'s.

    Raises:
        SubmissionError: naming the file, the first bad row (1-based line) and the problem.
    """
    import csv

    name = shown_as or path
    known = {label(w) for w in (words if words is not None else known_classes(sample)[0])}
    seen: dict[str, int] = {}
    raw = Path(path).read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise SubmissionError(f"{name}: line {line}: not UTF-8 text "
                              f"(byte {raw[e.start:e.start + 1]!r})") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        _check_rows(reader, name, known, seen)
    except csv.Error as e:
        raise SubmissionError(f"{name}: line {reader.line_num}: not a readable CSV line ({e})") from None
    if sample is not None:
        want = sample_key_ids(sample)
        if len(want) != len(seen):
            raise SubmissionError(f"{name}: {len(seen)} rows, {sample} has {len(want)}")
        missing = next((k for k in want if k not in seen), None)
        if missing is not None:
            want_set = set(want)
            extra = next(k for k in seen if k not in want_set)
            raise SubmissionError(f"{name}: line {seen[extra]}: key_id {extra} is not in {sample} "
                                  f"(which has {missing}, missing here)")
    return len(seen)


def _check_rows(reader, name: str | Path, known: set[str], seen: dict[str, int]) -> None:
    header = next(reader, None)
    if header != ["key_id", "word"]:
        raise SubmissionError(f"{name}: line 1: header must be 'key_id,word', got {header}")
    for row in reader:
        line = reader.line_num
        if len(row) != 2:
            raise SubmissionError(f"{name}: line {line}: {len(row)} fields, expected 2")
        key = row[0].strip()
        if not (key.isascii() and key.isdigit()):
            raise SubmissionError(f"{name}: line {line}: key_id {row[0]!r} is not a number")
        if key in seen:
            raise SubmissionError(f"{name}: line {line}: key_id {key} repeats line {seen[key]}")
        seen[key] = line
        if _NOT_A_SEPARATOR.search(row[1]):
            raise SubmissionError(f"{name}: line {line} (key_id {key}): labels are separated by spaces; "
                                  f"{row[1]!r} holds another kind of whitespace")
        text = row[1].split(" ")
        text = [t for t in text if t]
        if not 1 <= len(text) <= 3:
            raise SubmissionError(f"{name}: line {line} (key_id {key}): {len(text)} labels, expected 1 to 3")
        if len(set(text)) != len(text):
            raise SubmissionError(f"{name}: line {line} (key_id {key}): a label repeats in {row[1]!r}")
        if bad := [t for t in text if t not in known]:
            raise SubmissionError(f"{name}: line {line} (key_id {key}): unknown class {bad[0]!r}")
