"""A full-size dress rehearsal: a Kaggle-size competition through every step of the suite.

``python -m benchmarks scale [--scale F ...] [--steps a,b] [--force]``: for each scale (default
0.1 and 1.0 of Kaggle's 49.7M training drawings; the 0.1 run is the baseline the ratios are
taken against) it makes the competition (:func:`doodle_utils.data.fullsize.make_kaggle_size`,
varying the real sample's raw drawings) and runs, each as the user would from a shell:

* ``generate``: ``doodle synth --kaggle-size``; ``pack`` and ``pack_timed``: ``doodle pack``
  (simplified files; the raw fraction, timed); ``verify``: ``doodle verify --full``;
* ``loader_warm``/``loader_cold``: random batches of the GPU profile's size (512) from the
  training store, gathered, and rendered at 64 px by the training loader (2 workers), with the
  store's pages in the page cache, and dropped from it first (``posix_fadvise(DONTNEED)`` on
  every file, which needs no privileges);
* ``nb01`` ... ``nb05``: ``doodle run`` of each notebook on a profile made from
  ``params/kaggle.yaml`` (its split fractions: validation 0.2%, blend 0.5%) with a tiny model
  (timm's ``test_resnet`` at 32 px; the point model on 64 points and a 16² grid, ~4,700
  drawings/s on 2 cores where 128 points on 32² manage ~1,100; 4 batches an epoch), so that every snapshot's
  validation, blend and test predictions are full size while training costs nothing: 10
  snapshots from each of notebooks 03 and 06 for notebook 04;
* ``kaggle``: the same notebooks as Kaggle kernels, ``doodle kaggle-bundle`` of
  ``params/kaggle.yaml`` (its ``/kaggle`` paths; the tiny models, a simplified store) then
  ``doodle kaggle-emulate`` on this scale's competition: each kernel in Kaggle's mounts without
  network, the first packing the store into its working folder, the others attaching the
  kernels before them.

Memory: every step runs as its own process tree, started from this process; its peaks are
taken over samples of ``/proc`` (5 a second for a step's first minute, then one: reading
``smaps_rollup`` of processes mapping ~9 GB 5 times a second took ~0.4 of a core) of the tree's
proportional set size (``Pss``: a page a forked loader worker shares with its parent counts
once) and its anonymous part (what cannot be dropped; the store's file pages count in the
total), beside the sum of each process's resident set size. A parent's size never leaks in,
unlike a child's ``ru_maxrss``, which keeps its parent's size at ``fork``. Disk: the sizes of
the competition, the stores and the run outputs after each step. Results are kept per scale in
``benchmarks/_work/scale_<F>/results.json``; steps already measured are not run again
(``--force`` re-runs them), so a long run can be resumed.
"""
from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / "_work"
SAMPLE = ROOT.parent / "shared" / "quickdraw_sample" / "raw"
DOODLE = [sys.executable, "-m", "doodle_utils"]
STEPS = ("generate", "pack", "pack_timed", "verify", "loader_warm", "loader_cold",
         "nb01", "nb02", "nb03", "nb06", "nb04", "nb05", "kaggle")
SAMPLE_HZ = 5  # memory samples a second for a step's first minute, then SLOW_HZ
SLOW_HZ = 1  # reading smaps_rollup of processes mapping ~9 GB 5x a second took ~0.4 core
TRAIN = {"arch": "test_resnet", "size": 32, "bs": 512, "epoch_size": 2048, "schedule": "sgdr", "cycles": 10,
         "cycle_len": 1, "precision": "fp32", "channels_last": False, "num_workers": 2, "pretrained_path": ""}

LOADER = """
import json, os, subprocess, sys, time
import numpy as np
from doodle_utils.data.store import Store
from doodle_utils.render import RenderSpec
from doodle_utils.training.loaders import BatchSpec, DoodleDL, Source

store, cold, bs, seconds = sys.argv[1], sys.argv[2] == "cold", 512, 20.0

def drop_cache():
    for root, _, names in os.walk(store):
        for n in names:
            fd = os.open(os.path.join(root, n), os.O_RDONLY)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            os.close(fd)

def resident():  # share of the store's bytes in the page cache (util-linux fincore)
    out = subprocess.run(["fincore", "-b", "-n", "-r", "-o", "RES,SIZE", *files], capture_output=True, text=True).stdout
    res = [tuple(map(int, line.split())) for line in out.splitlines() if line.strip()]
    return sum(r for r, _ in res) / max(1, sum(s for _, s in res))

if __name__ == "__main__":
    files = [os.path.join(r, n) for r, _, ns in os.walk(store) for n in ns]
    if cold:
        drop_cache()
    else:  # warm: every page read once first
        for f in files:
            with open(f, "rb") as fh:
                while fh.read(1 << 24):
                    pass
    cached = resident()
    st = Store(store, verify="none")
    rng = np.random.default_rng(1)
    k, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        st.drawings(np.sort(rng.integers(0, len(st), bs)))
        k += 1
    gather = k * bs / (time.perf_counter() - t0)
    if cold:
        drop_cache()
    src = Source(store, split="train")
    dl = DoodleDL(src, BatchSpec(render=RenderSpec(size=64), epoch_size=bs * 400), bs=bs, num_workers=2)
    k, t0 = 0, time.perf_counter()
    for _ in dl:
        k += 1
        if time.perf_counter() - t0 > seconds:
            break
    print(json.dumps({"rows": len(st), "cached_at_start": cached, "gather_rows_s": gather,
                      "loader_images_s": k * bs / (time.perf_counter() - t0)}))
"""


def _tree_memory(proc: psutil.Process) -> dict[str, int]:
    """Bytes resident in ``proc`` and its descendants: ``rss`` and ``anon`` (sums of each
    process's VmRSS and RssAnon: pages shared between a parent and its forked workers count
    once per process) and ``pss``/``pss_anon`` (proportional set sizes from smaps_rollup: a
    page shared by n processes counts 1/n in each, so the sum is the tree's real footprint)."""
    out = dict.fromkeys(("rss", "anon", "pss", "pss_anon"), 0)
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return out
    fields = {"VmRSS:": "rss", "RssAnon:": "anon", "Pss:": "pss", "Pss_Anon:": "pss_anon"}
    for p in procs:
        for name in ("status", "smaps_rollup"):
            try:
                with open(f"/proc/{p.pid}/{name}") as f:
                    for line in f:
                        key = fields.get(line.split(":", 1)[0] + ":")
                        if key:
                            out[key] += int(line.split()[1]) * 1024
            except OSError:
                pass
    return out


def measure(cmd: list[str], log: Path) -> dict:
    """Run ``cmd`` (its output to ``log``); wall time, exit code and the tree's peak memory
    (:func:`_tree_memory`, each peak taken over the samples on its own; 5 samples a second for
    the first minute, then one, so that the sampler's own CPU stays small on long steps)."""
    peak = dict.fromkeys(("rss", "anon", "pss", "pss_anon"), 0)
    t0 = time.perf_counter()
    with open(log, "w") as out:
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        proc = psutil.Process(p.pid)
        while p.poll() is None:
            for k, v in _tree_memory(proc).items():
                peak[k] = max(peak[k], v)
            time.sleep(1 / (SAMPLE_HZ if time.perf_counter() - t0 < 60 else SLOW_HZ))
    return {"seconds": time.perf_counter() - t0, "rc": p.returncode,
            **{f"peak_{k}_mb": v / 2**20 for k, v in peak.items()}}


def _bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else 0


def _tiny(prof: dict) -> dict:
    """A profile's pack on 2 workers to a simplified store, and its training notebooks on the
    tiny models (:data:`TRAIN`)."""
    prof["data"]["pack"] = {**prof["data"]["pack"], "workers": 2, "kind": "simplified"}
    for nb in ("03_train", "06_point_cnn"):
        prof["notebooks"][nb] = {**prof["notebooks"][nb], **TRAIN}
    prof["notebooks"]["06_point_cnn"].update(points=64, grid=16)  # the point model's own cost 4x below 128/32's
    del prof["notebooks"]["06_point_cnn"]["size"]  # the point model draws no image
    return prof


def _profile(work: Path) -> Path:
    """``params/kaggle.yaml`` pointed at this scale's folders, with the tiny model."""
    prof = _tiny(yaml.safe_load((ROOT / "params" / "kaggle.yaml").read_text()))
    prof.pop("kaggle", None)
    prof["run_name"] = "scale"
    prof["output_root"] = str(work / "out")
    prof["params"].update(data_dir=str(work / "data"), store_dir=str(work / "store"))
    path = work / "profile.yaml"
    path.write_text(yaml.safe_dump(prof, sort_keys=False))
    return path


def _kaggle_profile(work: Path) -> Path:
    """``params/kaggle.yaml`` with its Kaggle paths (``/kaggle/input``, ``/kaggle/working``) and
    the tiny models, for the kernel chain."""
    path = work / "kaggle_profile.yaml"
    path.write_text(yaml.safe_dump(_tiny(yaml.safe_load((ROOT / "params" / "kaggle.yaml").read_text())),
                                   sort_keys=False))
    return path


def _commands(work: Path, scale: float) -> dict[str, list[str]]:
    prof = yaml.safe_load(_profile(work).read_text())
    pack = prof["data"]["pack"]
    split = ["--valid-frac", str(pack["valid_frac"]), "--blend-frac", str(pack["blend_frac"]), "--seed",
             str(pack["seed"]), "--workers", "2"]
    run = [*DOODLE, "run", str(work / "profile.yaml"), "--force", "--only"]  # --force: a changed package re-runs
    bundle, sandbox = work / "kaggle_bundle", work / "kaggle_sandbox"
    return {
        "generate": [*DOODLE, "synth", str(work / "data"), "--kaggle-size", "--scale", str(scale), "--sample",
                     str(SAMPLE), "--workers", "2"],
        "pack": [*DOODLE, "pack", str(work / "data"), str(work / "store"), "--kind", "simplified", *split],
        "pack_timed": [*DOODLE, "pack", str(work / "data"), str(work / "store_timed"), "--kind", "timed", *split],
        "verify": [*DOODLE, "verify", str(work / "store" / "train"), "--full"],
        "loader_warm": [sys.executable, "-c", LOADER, str(work / "store" / "train"), "warm"],
        "loader_cold": [sys.executable, "-c", LOADER, str(work / "store" / "train"), "cold"],
        **{f"nb{n}": [*run, n] for n in ("01", "02", "03", "06", "04", "05")},
        # the kernel chain as Kaggle runs it: a fresh store packed inside the first kernel, the
        # others attaching the kernels before them (doodle kaggle-emulate: Kaggle's mounts, no network)
        "kaggle": ["bash", "-c", f"rm -rf {shlex.quote(str(bundle))} {shlex.quote(str(sandbox))} && "
                   f"{shlex.join([*DOODLE, 'kaggle-bundle', str(bundle), '--profile', str(_kaggle_profile(work))])} && "
                   f"{shlex.join([*DOODLE, 'kaggle-emulate', str(bundle), str(work / 'data'), str(sandbox)])}"],
    }


def _rows(step: str, summary: dict, r: dict) -> float | None:
    """What a step processes, for its rows/s."""
    if step.startswith("loader"):
        return None
    if step in ("nb03", "nb06", "nb04") and summary:  # every snapshot predicts validation, blend and test
        split = yaml.safe_load((ROOT / "params" / "kaggle.yaml").read_text())["data"]["pack"]
        per = round(summary["train_rows"] * (split["valid_frac"] + split["blend_frac"])) + summary["test_rows"]
        return per * TRAIN["cycles"] * (r.get("runs", 2) if step == "nb04" else 1)  # 04 reads every run's snapshots
    if step == "nb05":
        return summary.get("test_rows")
    if step == "pack_timed":
        return summary.get("raw_rows")
    return summary.get("train_rows")


def _summary(log_tail: str) -> dict:
    """The competition's summary, the JSON object `doodle synth --kaggle-size` prints."""
    start, end = log_tail.rfind("\n{\n"), log_tail.rfind("\n}")
    return json.loads(log_tail[start:end + 2]) if 0 <= start < end else {}


def run_scale(scale: float, steps: list[str], force: bool = False) -> dict:
    """Run (or resume) the rehearsal at ``scale``; returns its results by step."""
    work = WORK / f"scale_{scale:g}"
    work.mkdir(parents=True, exist_ok=True)
    res_path = work / "results.json"
    res = json.loads(res_path.read_text()) if res_path.exists() else {}
    cmds = _commands(work, scale)
    if not res.get("summary") and (work / "generate.log").exists():
        res["summary"] = _summary((work / "generate.log").read_text()[-3000:])
    for step in steps:
        if step in res and res[step].get("rc") == 0 and not force:
            continue
        print(f"[scale {scale:g}] {step} ...", flush=True)
        r = measure(cmds[step], work / f"{step}.log")
        tail = (work / f"{step}.log").read_text()[-3000:]
        if step == "generate" and r["rc"] == 0:
            res["summary"] = _summary(tail)
        if step.startswith("loader") and r["rc"] == 0:
            r.update(json.loads(tail.strip().splitlines()[-1]))
        if step == "nb04":  # how many training runs it ensembled (10 snapshots each)
            r["runs"] = sum(p.is_dir() for p in (work / "out" / "scale" / "train").glob("*"))
        r["disk_gb"] = {name: _bytes(work / name) / 1e9
                        for name in ("data", "store", "store_timed", "out", "kaggle_sandbox")}
        r["when"] = time.strftime("%Y-%m-%d %H:%M")
        res[step] = r
        res_path.write_text(json.dumps(res, indent=1))
        status = "ok" if r["rc"] == 0 else f"FAILED rc={r['rc']} (log: {work / (step + '.log')})"
        print(f"[scale {scale:g}] {step}: {r['seconds']:.0f}s, peak PSS {r['peak_pss_mb']:,.0f} MB "
              f"(anon {r['peak_pss_anon_mb']:,.0f} MB) {status}", flush=True)
        if r["rc"] != 0:
            print(tail[-1500:], flush=True)
            break
    return res


def table(results: dict[float, dict]) -> str:
    """Markdown: per step and scale, time, rows/s, peak PSS (anon part), the sum of RSS, disk
    after it; the time and peak-PSS-anon ratios to the smallest scale."""
    scales = sorted(results)
    base = scales[0]
    lines = ["| step | scale | rows | time (s) | rows/s | peak PSS MB (anon) | peak ΣRSS MB | disk GB after "
             "| time × | PSS anon × |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for step in STEPS:
        for s in scales:
            r = results[s].get(step)
            if not r:
                continue
            rows = _rows(step, results[s].get("summary", {}), r)
            if "gather_rows_s" in r:
                rate = (f"gather {r['gather_rows_s']:,.0f}; loader {r['loader_images_s']:,.0f} img/s"
                        + (f"; {r['cached_at_start']:.0%} cached" if "cached_at_start" in r else ""))
            else:
                rate = f"{rows / r['seconds']:,.0f}" if rows else ""
            b = results[base].get(step)
            ratio_t = f"{r['seconds'] / b['seconds']:.1f}" if b and s != base else ""
            pss = (f"{r['peak_pss_mb']:,.0f} ({r['peak_pss_anon_mb']:,.0f})" if "peak_pss_mb" in r else "—")
            ratio_m = (f"{r['peak_pss_anon_mb'] / max(b['peak_pss_anon_mb'], 1):.2f}"
                       if b and s != base and "peak_pss_mb" in r and "peak_pss_mb" in b else "")
            fail = "" if r["rc"] == 0 else " **failed**"
            lines.append(f"| {step}{fail} | {s:g} | {f'{rows:,}' if rows else ''} | {r['seconds']:,.0f} | {rate} | "
                         f"{pss} | {r['peak_rss_mb']:,.0f} | {sum(r['disk_gb'].values()):.1f} | {ratio_t} | {ratio_m} |")
    return "\n".join(lines)


def run(argv: list[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m benchmarks scale")
    ap.add_argument("--scale", type=float, action="append", help="fraction of Kaggle's size (repeatable); "
                    "default: 0.1 and 1.0")
    ap.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated, of {','.join(STEPS)}")
    ap.add_argument("--force", action="store_true", help="re-run steps already measured")
    a = ap.parse_args(argv or [])
    steps = a.steps.split(",")
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        sys.exit(f"error: unknown step(s) {unknown}; choose from {','.join(STEPS)}")
    print(f"machine: {platform.node()}, {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB")
    results = {s: run_scale(s, steps, a.force) for s in sorted(a.scale or [0.1, 1.0])}
    print(table(results))
