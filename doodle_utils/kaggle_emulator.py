"""Run a chain of Kaggle kernel bundles here, laid out as Kaggle runs them.

Each kernel folder that :func:`.kaggle.bundle` wrote runs, in the chain's order, seeing
``<root>/kaggle`` as a Kaggle kernel sees ``/kaggle``::

    <root>/kaggle/input/quickdraw-doodle-recognition   the competition, read-only
    <root>/kaggle/input/<source slug>                  each attached kernel's saved
                                                       /kaggle/working, read-only
    <root>/kaggle/working                              empty; the current directory; saved
                                                       afterwards as <root>/kernels/<slug>/working
    <root>/kaggle/temp                                 empty scratch space (TMPDIR)

The notebook that runs is the bundled one, unchanged but for one thing: the ``/kaggle/...``
paths among its parameter defaults get ``<root>`` as a prefix (what a mount namespace with a
``/kaggle`` of its own would do). Where the machine allows it (root, Linux
``unshare``), each kernel runs in its own network namespace with only loopback up (no
network, as with Kaggle's internet off) and mount namespace with its inputs bind-mounted
read-only; elsewhere the inputs are copied and the network is left as it is
(:attr:`KernelRun.isolated` says which). Kernels without ``enable_gpu`` see no CUDA device.
After each kernel its saved output is measured against Kaggle's limit; a kernel still running
at Kaggle's run-time limit (12 hours) is stopped with everything it started.

Why hand-written: Kaggle's own runtime (its docker image and kernel scheduler) is not
available outside Kaggle, and the kaggle CLI only uploads; this reproduces the parts a chain
of kernels depends on — mounts, working folder, read-only inputs, no network.
"""
from __future__ import annotations

import ast
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import nbformat

from .kaggle import COMPETITION, OUTPUT_LIMIT_BYTES, RUN_LIMIT_SECONDS, set_parameter_defaults, validate_metadata
from .pipeline import PLANNED

KAGGLE = "/kaggle"


class KernelFailed(RuntimeError):
    """A kernel of the chain failed; names it and where its executed copy is."""


@dataclass
class KernelRun:
    """What one emulated kernel did."""

    name: str            # the bundle folder, e.g. 03_train
    slug: str
    seconds: float
    working: Path        # its /kaggle/working, what Kaggle saves as the kernel's output
    output_bytes: int
    output_files: list[str] = field(default_factory=list)
    executed: Path | None = None  # the executed notebook
    isolated: bool = False        # ran without network, its inputs mounted read-only


def can_isolate() -> bool:
    """Whether kernels can run in their own network and mount namespaces here."""
    if not sys.platform.startswith("linux") or shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    try:
        r = subprocess.run(["unshare", "-n", "-m", "sh", "-c", "ip link set lo up && mount -t tmpfs none /mnt"],
                           capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


def rerooted(value, root: Path):
    """A parameter value with every ``/kaggle/...`` path moved under ``root``."""
    if isinstance(value, str) and (value == KAGGLE or value.startswith(KAGGLE + "/")):
        return str(root) + value
    if isinstance(value, list):
        return [rerooted(v, root) for v in value]
    if isinstance(value, dict):
        return {k: rerooted(v, root) for k, v in value.items()}
    return value


def parameter_defaults(source: str) -> dict:
    """The literal defaults of a ``parameters`` cell."""
    out = {}
    for node in ast.parse(source).body:
        target = node.target if isinstance(node, ast.AnnAssign) else (
            node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else None)
        if isinstance(target, ast.Name) and node.value is not None:
            out[target.id] = ast.literal_eval(node.value)
    return out


def _run_group(cmd: list[str], cwd: Path, env: dict, timeout: float) -> subprocess.CompletedProcess | None:
    """Run ``cmd`` in a process group of its own; ``None`` if it ran past ``timeout`` seconds,
    after killing the whole group (papermill's Jupyter kernel and the loader workers it started
    are not papermill's to stop when papermill itself is killed). Interrupted (Ctrl-C, which
    reaches only this process now that the group has its own session), it kills the group too."""
    p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except BaseException as e:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        if isinstance(e, subprocess.TimeoutExpired):
            return None
        raise
    return subprocess.CompletedProcess(cmd, p.returncode, out, err)


def _dir_size(folder: Path) -> tuple[int, list[str]]:
    files = [p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()]
    return sum(p.stat().st_size for p in files), sorted(str(p.relative_to(folder)) for p in files)


def run_chain(bundle_dir: str | Path, competition: str | Path, root: str | Path, *,
              order: Sequence[str] | None = None, isolate: bool | None = None,
              timeout: float = RUN_LIMIT_SECONDS, log=print) -> list[KernelRun]:
    """Run every kernel folder of ``bundle_dir`` in order, each in a Kaggle-like sandbox.

    Every kernel sees the same ``<root>/kaggle`` (as every Kaggle kernel sees ``/kaggle``),
    holding its own inputs, working and temp folders: bind mounts in its own mount namespace
    when isolated, else copies laid out before it runs and moved away after.

    Args:
        bundle_dir: what ``doodle kaggle-bundle`` wrote (one folder per kernel).
        competition: the competition folder (Kaggle's files only), mounted read-only at
            ``/kaggle/input/quickdraw-doodle-recognition``.
        root: where the sandboxes go (created; must not hold an earlier chain).
        order: the kernel folders' names in run order (default: the runner's order).
        isolate: own network and mount namespaces (default: where :func:`can_isolate`).
        timeout: seconds a kernel may run (default: Kaggle's 12 hours); one still running then
            is stopped, with its Jupyter kernel and loader workers.

    Raises:
        KernelFailed: a kernel failed, or saved more than Kaggle allows.
    """

    bundle_dir, competition, root = Path(bundle_dir), Path(competition).resolve(), Path(root).resolve()
    folders = {p.name: p for p in bundle_dir.iterdir() if (p / "kernel-metadata.json").is_file()}
    if order is None:
        rank = {n: i for i, n in enumerate(PLANNED)}
        order = sorted(folders, key=lambda n: (rank.get(n, len(rank)), n))
    isolate = can_isolate() if isolate is None else isolate
    if root.exists() and any(root.iterdir()):
        raise KernelFailed(f"{root}: not empty; use an empty root")
    view = root / "kaggle"  # what each kernel sees as /kaggle
    saved: dict[str, Path] = {}  # slug -> its saved working folder
    runs = []
    for name in order:
        folder = folders[name]
        problems = validate_metadata(folder)
        if problems:
            raise KernelFailed(f"{folder}: kaggle kernels push would reject it: {'; '.join(problems)}")
        meta = json.loads((folder / "kernel-metadata.json").read_text())
        slug = meta["id"].split("/", 1)[1]
        own = root / "kernels" / slug
        kdir, work, temp = own / "kernel", own / "working", own / "temp"
        for d in (kdir, work, temp):
            d.mkdir(parents=True)
        mounts = {view / "input" / COMPETITION: competition}
        for src in meta.get("kernel_sources", []):
            src_slug = src.split("/", 1)[1]
            if src_slug not in saved:
                raise KernelFailed(f"{name}: attaches {src}, which has not run before it in this chain")
            mounts[view / "input" / src_slug] = saved[src_slug]
        shutil.rmtree(view, ignore_errors=True)
        for d in (view / "input", view / "working", view / "temp"):
            d.mkdir(parents=True)
        for dst, src in mounts.items():
            if isolate:
                dst.mkdir()
            else:
                shutil.copytree(src, dst, symlinks=True)
        nb = nbformat.read(folder / meta["code_file"], as_version=4)
        pcell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
        before = parameter_defaults(pcell.source)
        moved = {k: rerooted(v, root) for k, v in before.items()}
        pcell.source = set_parameter_defaults(pcell.source, {k: v for k, v in moved.items() if v != before[k]})
        src_nb, out_nb = kdir / meta["code_file"], kdir / f"executed_{meta['code_file']}"
        nbformat.write(nb, src_nb)
        env = {**os.environ, "KAGGLE_KERNEL_RUN_TYPE": "Batch", "TMPDIR": str(view / "temp"),
               "PYTHONDONTWRITEBYTECODE": "1", "NUMBA_CACHE_DIR": str(root / "numba_cache")}
        if not meta.get("enable_gpu"):
            env["CUDA_VISIBLE_DEVICES"] = ""
        cmd = [sys.executable, "-m", "papermill", str(src_nb), str(out_nb), "--cwd", str(view / "working"),
               "--no-progress-bar", "--log-output"]
        if isolate:
            q = shlex.quote
            binds = [f"mount --bind {q(str(work))} {q(str(view / 'working'))}",
                     f"mount --bind {q(str(temp))} {q(str(view / 'temp'))}"]
            for dst, src in mounts.items():
                binds += [f"mount --bind {q(str(src))} {q(str(dst))}", f"mount -o remount,bind,ro {q(str(dst))}"]
            cmd = ["unshare", "-n", "-m", "sh", "-c", " && ".join(["ip link set lo up", *binds, "exec " + shlex.join(cmd)])]
        log(f"kernel {name} ({slug}): running{' isolated' if isolate else ''}")
        t0 = time.perf_counter()
        r = _run_group(cmd, view / "working", env, timeout)
        seconds = time.perf_counter() - t0
        if r is None:
            raise KernelFailed(f"kernel {name} was still running after {timeout:.0f}s, the limit it was given "
                               f"(Kaggle's: {RUN_LIMIT_SECONDS / 3600:.0f} hours), and was stopped "
                               f"(executed copy so far: {out_nb})")
        if not isolate:  # what the kernel wrote is its saved output
            shutil.rmtree(work)
            shutil.move(view / "working", work)
        if r.returncode != 0:
            tail = "\n".join((r.stderr or r.stdout).strip().splitlines()[-25:])
            raise KernelFailed(f"kernel {name} failed after {seconds:.0f}s (executed copy: {out_nb}):\n{tail}")
        size, files = _dir_size(work)
        run = KernelRun(name, slug, seconds, work, size, files, out_nb, isolate)
        log(f"kernel {name}: done in {seconds:.0f}s, saves {size / 1e6:.1f} MB in {len(files)} files")
        if size > OUTPUT_LIMIT_BYTES:
            raise KernelFailed(f"kernel {name} saves {size / 1e9:.1f} GB, over Kaggle's "
                               f"{OUTPUT_LIMIT_BYTES / 1e9:.0f} GB output limit")
        saved[slug] = work
        runs.append(run)
    shutil.rmtree(view, ignore_errors=True)
    return runs
