"""Packed store: Quick, Draw! drawings converted once into memory-mapped arrays.

Layout of a store folder (all arrays ``.npy``, opened with ``mmap_mode="r"``)::

    manifest.json    version, kind, counts, vocabularies, sources, per-array bytes + sha256
    xy.npy           (P, 2) uint8 coordinates (kinds "simplified", "timed") or float32 ("raw")
    t.npy            (P,) int32 ms since the drawing's first point (kinds "timed" and "raw")
    stroke_len.npy   (S,) uint16 points per stroke
    point_off.npy    (D+1,) int64: drawing d's points are xy[point_off[d]:point_off[d+1]]
    stroke_off.npy   (D+1,) int64: drawing d's strokes are stroke_len[stroke_off[d]:stroke_off[d+1]]
    key_id.npy, word.npy (int16 index into manifest "words", -1 unlabelled),
    country.npy (uint16 index into "countries"), recognized.npy (int8, -1 unknown),
    timestamp.npy (int64 microseconds since 1970, INT64_MIN unknown), valid.npy (bool split)

Drawing ``i`` and any batch of indices are read in O(1) per drawing from the offsets.

Kinds: ``simplified`` (Google's simplified points; from simplified files, or raw ones simplified
on the way), ``raw`` (the raw points with their times, float32: several times larger), and
``timed`` (from raw files: Google's simplified points, each with its time taken from the raw
stroke at the same place, :func:`doodle_utils.data.simplify.simplify_packed_timed` — real timings for
``time3`` and the point model at about the simplified store's size).

Packing (:func:`pack`) streams every source file in bounded chunks in parallel worker
processes, each writing a part folder that is finished by an atomic ``done.json``; a re-run
skips finished parts whose source is unchanged (resumable per file). The merge then copies
parts into the final arrays chunk by chunk, checks key_ids for duplicates across files with
hash buckets (memory bounded by the bucket, not the input), draws a stratified validation
split, hashes every array and writes ``manifest.json`` last. A store without a manifest, or
whose files disagree with it in size, shape or checksum, fails to open with a clear error.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from functools import lru_cache
from multiprocessing import get_context
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from .. import options
from .._files import folder_lock, save_npy_atomic, sha256_file, write_text_atomic
from ..paths import store_path
from . import _parse
from .drawings import Chunk, DataError, Drawings, SkipReport, has_times, iter_file
from .simplify import simplify_packed, simplify_packed_timed

STORE_VERSION = 2  # 2: the manifest's own checksum and per-chunk checksums of every array
PART_FORMAT = 3  # the layout of a part folder; parts of another format are packed again
KINDS = ("simplified", "timed", "raw")
TIMED_KINDS = ("timed", "raw")  # kinds whose points carry times (t.npy)
MISSING_TS = np.iinfo(np.int64).min
MERGE_ROWS = 1 << 18  # drawings per merge chunk
QUICK_CHECKSUM_BYTES = 64 << 20  # on open, files up to this size are checksummed by default
CHUNK_BYTES = 16 << 20  # larger files: a checksum per chunk, and quick opens check sampled chunks

# a part folder holds xy.bin, t.bin (raw), stroke_len.bin (uint16) and rows.bin, one record a drawing
ROW_DTYPE = np.dtype([("npoints", np.int64), ("nstrokes", np.int64), ("key_id", np.int64),
                      ("timestamp", np.int64), ("word", np.int32), ("country", np.int32),
                      ("recognized", np.int8), ("line", np.int64)])
STROKE_POINTS_MAX = int(np.iinfo(np.uint16).max)  # stroke_len is uint16


class StoreError(RuntimeError):
    """A store that is missing, incomplete, truncated or corrupted."""


# --------------------------------------------------------------------------- packing: parts

@dataclass(frozen=True)
class _Job:
    src: str
    part_dir: str
    kind: str
    raw_src: bool | None
    lenient: bool
    words: tuple[str, ...] | None
    test: bool

    def options(self) -> dict:
        """Everything that shapes a part's bytes: a part is reused only when all of it matches."""
        return {"format": PART_FORMAT, "kind": self.kind, "raw_src": self.raw_src, "lenient": self.lenient,
                "words": list(self.words) if self.words else None, "test": self.test}


def _source_id(src: Path) -> dict:
    st = src.stat()
    return {"source": str(src.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _part_done(part_dir: Path, src: Path, options: dict) -> tuple[dict | None, str]:
    """(a finished part of this unchanged source packed with these options, or None; why not)."""
    done = part_dir / "done.json"
    if not done.exists():
        return None, ""
    try:
        info = json.loads(done.read_text())
    except ValueError:
        return None, "its done.json is unreadable"
    if any(info.get(k) != v for k, v in _source_id(src).items()):
        return None, "the source file changed"
    have = info.get("options") or {}
    diff = sorted(k for k in options if have.get(k) != options[k])
    if diff:
        return None, "packed with other options (" + ", ".join(f"{k} {have.get(k)!r}, now {options[k]!r}"
                                                               for k in diff if k != "words") + \
            (", another word list" if "words" in diff else "") + ")"
    return info, ""


def _pack_part(job: _Job) -> dict:
    """Convert one source file into a part folder; returns its done.json content."""
    src, part_dir = Path(job.src), Path(job.part_dir)
    if part_dir.exists():
        shutil.rmtree(part_dir)
    part_dir.mkdir(parents=True)
    report = SkipReport()
    vocab: dict[str, dict[str, int]] = {"word": {}, "country": {}}
    files = {k: open(part_dir / f"{k}.bin", "wb") for k in ("xy", "t", "stroke_len", "rows")}
    rows = points = strokes = 0
    t_range = [0, 0]  # smallest and largest time (kinds with times)
    t0 = time.perf_counter()
    reader_kw = dict(raw=job.raw_src, lenient=job.lenient, report=report, words=job.words)
    if job.test and src.suffix == ".csv":
        reader_kw["check_word_matches_file"] = False
    try:
        for chunk in iter_file(src, **reader_kw):
            d = as_kind(chunk.drawings, job.kind)
            d, m, lines, ts = _drop_long_strokes(src, chunk, d, job.lenient, report)
            lens = np.diff(d.stroke_offsets)
            rec = np.empty(len(m), ROW_DTYPE)
            rec["npoints"] = d.point_counts()
            rec["nstrokes"] = d.stroke_counts()
            rec["key_id"] = m["key_id"].to_numpy(np.int64)
            rec["timestamp"] = ts if ts is not None else MISSING_TS
            rec["line"] = lines
            rec["word"] = _codes(m["word"], vocab["word"]) if "word" in m else -1
            rec["country"] = _codes(m["countrycode"].fillna(""), vocab["country"])
            rec["recognized"] = m["recognized"].to_numpy().astype(np.int8) if "recognized" in m else -1
            files["rows"].write(rec.tobytes())
            files["stroke_len"].write(lens.astype(np.uint16).tobytes())
            files["xy"].write(np.ascontiguousarray(d.xy, _xy_dtype(job.kind)).tobytes())
            if job.kind in TIMED_KINDS:
                files["t"].write(np.ascontiguousarray(d.t, np.int32).tobytes())
                if len(d.t):
                    t_range = [min(t_range[0], int(d.t.min())), max(t_range[1], int(d.t.max()))]
            rows += len(m)
            points += len(d.xy)
            strokes += len(lens)
    finally:
        for f in files.values():
            f.close()
    info = {**_source_id(src), "options": job.options(), "rows": rows, "points": points, "strokes": strokes,
            "t_range": t_range, "skipped": dict(report.counts), "skip_examples": report.examples,
            "words": list(vocab["word"]), "countries": list(vocab["country"]),
            "seconds": round(time.perf_counter() - t0, 3)}
    write_text_atomic(part_dir / "done.json", json.dumps(info))
    return info


def _drop_long_strokes(src: Path, chunk: Chunk, d: Drawings, lenient: bool, report: SkipReport
                       ) -> tuple[Drawings, pd.DataFrame, np.ndarray, np.ndarray | None]:
    """Rows with a stroke longer than a store holds (``stroke_len`` is uint16) as per-row errors.

    Checked on the drawings as stored (after simplification), so a long raw stroke that
    simplifies to fewer points is kept. Returns the drawings, metadata, lines and timestamps
    of the rows kept.
    """
    m, lines, ts = chunk.meta, chunk.lines, chunk.timestamp_us
    lens = np.diff(d.stroke_offsets)
    if not len(lens) or lens.max() <= STROKE_POINTS_MAX:
        return d, m, lines, ts
    over = np.flatnonzero(lens > STROKE_POINTS_MAX)
    owner = np.searchsorted(d.drawing_offsets, over, side="right") - 1
    longest = np.zeros(len(d), np.int64)
    np.maximum.at(longest, owner, lens[over])
    bad = longest > 0
    for r in np.flatnonzero(bad):
        err = DataError(src, int(lines[r]), int(m["key_id"].iloc[r]), "stroke_too_long",
                             f"a stroke of {int(longest[r]):,} points; a store holds up to {STROKE_POINTS_MAX:,}")
        if not lenient:
            raise err
        report.add(err)
    keep = ~bad
    return (d.take(keep), m[keep].reset_index(drop=True), lines[keep],
            ts[keep] if ts is not None else None)


def _t_dtype(ranges: list[list[int]]) -> type:
    """uint16 when every time fits (a drawing shorter than 65.5 s: Quick, Draw! gave 20 s; the
    real sample's longest is 42 s), else int32 — a third less store, nothing lost."""
    lo = min((r[0] for r in ranges), default=0)
    hi = max((r[1] for r in ranges), default=0)
    return np.uint16 if lo >= 0 and hi <= np.iinfo(np.uint16).max else np.int32


def as_kind(d: Drawings, kind: str, times_needed: bool = True) -> Drawings:
    """``d`` in the form a store of ``kind`` holds: simplified by Google's pipeline
    (:mod:`.simplify`) for "simplified" (raw drawings, and any not already integers in 0..255)
    and "timed" (keeping each point's time); "raw" as drawn. Packing does this to every chunk
    and a prediction to the user's drawings, so a model always sees its training data's form.
    ValueError when ``d`` lacks the times ``kind`` holds, unless ``times_needed`` is False (a
    model that reads none: then the points are simplified without them)."""
    if kind not in KINDS:
        raise ValueError(f"store kind must be one of {KINDS}, got {kind!r}")
    if kind in TIMED_KINDS and d.t is None:
        if times_needed:
            raise ValueError(f"this model reads each point's time (it was trained on a {kind!r} store): "
                             f"give strokes as [xs, ys, ts]")
        kind = "simplified"
    if kind == "simplified" and (d.raw or d.xy.dtype != np.uint8):
        xy, so, do = simplify_packed(d.xy, d.stroke_offsets, d.drawing_offsets)
        return Drawings(xy, None, so, do)
    if kind == "timed" and not d.in_frame:  # in the frame, as the store reads them back
        return Drawings(*simplify_packed_timed(d.xy, d.t, d.stroke_offsets, d.drawing_offsets), in_frame=True)
    return d


def _xy_dtype(kind: str) -> type:
    return np.float32 if kind == "raw" else np.uint8


def _codes(values: pd.Series, vocab: dict[str, int]) -> np.ndarray:
    codes, uniques = pd.factorize(values, sort=False)
    local = np.array([vocab.setdefault(u, len(vocab)) for u in uniques], np.int32)
    return local[codes] if len(local) else np.zeros(len(values), np.int32)


# --------------------------------------------------------------------------- packing: merge

@lru_cache(maxsize=2)
def _part_rows(part_dir: Path) -> np.ndarray:
    return _part_array(part_dir, "rows", ROW_DTYPE)


def _part_array(part_dir: Path, name: str, dtype=None, width: int = 1) -> np.ndarray:
    """A part's array: ``xy``, ``t``, ``stroke_len``, or a field of ``rows.bin`` by name."""
    if name in ROW_DTYPE.names:
        return _part_rows(part_dir)[name]
    path = part_dir / f"{name}.bin"
    if path.stat().st_size == 0:
        return np.zeros((0, width) if width > 1 else 0, dtype)
    arr = np.memmap(path, dtype=dtype, mode="r")
    return arr.reshape(-1, width) if width > 1 else arr


def _find_duplicates(parts: list[tuple[Path, dict]], bucket_rows: int = 2 << 20) -> dict[int, list[tuple[int, int]]]:
    """Key_ids present more than once across parts, with (part, row) of every occurrence.

    Key_ids are split into hash buckets so that one bucket, not the whole input, is held in
    memory; each bucket is one pass over the key_id files.
    """
    total = sum(info["rows"] for _, info in parts)
    n_buckets = max(1, -(-total // bucket_rows))
    dups: dict[int, list[tuple[int, int]]] = {}
    for b in range(n_buckets):
        keys, where_p, where_r = [], [], []
        for pi, (pdir, info) in enumerate(parts):
            k = _part_array(pdir, "key_id", np.int64)
            sel = np.flatnonzero(k % n_buckets == b) if n_buckets > 1 else np.arange(len(k))
            keys.append(np.asarray(k[sel]))
            where_p.append(np.full(len(sel), pi, np.int64))
            where_r.append(sel)
        keys_a = np.concatenate(keys) if keys else np.zeros(0, np.int64)
        order = np.argsort(keys_a, kind="stable")
        ks = keys_a[order]
        rep = np.flatnonzero(ks[1:] == ks[:-1])
        if len(rep):
            wp, wr = np.concatenate(where_p)[order], np.concatenate(where_r)[order]
            for i in np.unique(np.concatenate([rep, rep + 1])):
                dups.setdefault(int(ks[i]), []).append((int(wp[i]), int(wr[i])))
    return dups


def _stratified_valid(counts: np.ndarray, frac: float, min_per_class: int, rng: np.random.Generator
                      ) -> list[np.ndarray]:
    """Per class, the sorted ranks (order of appearance) that go to validation."""
    out = []
    for n in counts:
        v = int(round(frac * n))
        v = max(v, min(min_per_class, n - 1)) if n > 1 else 0
        out.append(np.sort(rng.choice(n, size=v, replace=False)) if v else np.zeros(0, np.int64))
    return out


def _stratified_blend(counts: np.ndarray, valid_ranks: list[np.ndarray], frac: float, seed: int) -> list[np.ndarray]:
    """Per class, the sorted ranks that go to the blend split: ``frac`` of the class (at least
    one while ``frac`` > 0), drawn from the ranks validation left, always leaving one for
    training; its own random stream, so adding a blend split leaves the validation split as
    it was."""
    rng = np.random.default_rng([seed, 1])
    out = []
    for n, valid in zip(counts, valid_ranks):
        rest = np.setdiff1d(np.arange(n), valid)
        b = min(max(int(round(frac * n)), 1 if frac > 0 else 0), len(rest) - 1) if len(rest) else 0
        out.append(np.sort(rng.choice(rest, size=b, replace=False)) if b > 0 else np.zeros(0, np.int64))
    return out


class _NpyWriter:
    """Appends rows to a ``.npy`` file of known final shape, hashing the bytes as they go.

    Plain sequential writes, not a writable memory map: dirty mapped pages would count in
    the packer's resident memory and grow with the store.
    """

    def __init__(self, path: Path, dtype, shape: tuple[int, ...]):
        self.path, self.dtype, self.shape = path, np.dtype(dtype), shape
        self.f = open(path, "wb")
        self.hash = hashlib.sha256()
        self.chunks: list[str] = []
        self.chunk, self.chunk_fill = hashlib.sha256(), 0
        np.lib.format.write_array_header_1_0(self, {"descr": np.lib.format.dtype_to_descr(self.dtype),
                                                    "fortran_order": False, "shape": shape})
        self.rows = 0

    def write(self, data) -> None:  # file-like, for the header
        if isinstance(data, np.ndarray):
            data = np.ascontiguousarray(data, self.dtype)
            self.rows += len(data)
            data = data.tobytes()
        self.f.write(data)
        self.hash.update(data)
        view = memoryview(data)
        while len(view):
            take = min(len(view), CHUNK_BYTES - self.chunk_fill)
            self.chunk.update(view[:take])
            self.chunk_fill += take
            view = view[take:]
            if self.chunk_fill == CHUNK_BYTES:
                self.chunks.append(self.chunk.hexdigest())
                self.chunk, self.chunk_fill = hashlib.sha256(), 0

    def close(self) -> dict:
        self.f.close()
        if self.rows != self.shape[0]:
            raise RuntimeError(f"{self.path}: wrote {self.rows} rows, expected {self.shape[0]}")
        if self.chunk_fill:
            self.chunks.append(self.chunk.hexdigest())
        return {"bytes": self.path.stat().st_size, "sha256": self.hash.hexdigest(), "chunks": self.chunks}


def _merge(parts: list[tuple[Path, dict]], store: Path, kind: str, words: Sequence[str] | None,
           lenient: bool, valid_frac: float, valid_min: int, seed: int, labelled: bool,
           blend_frac: float = 0.0) -> dict:
    # vocabularies: the given class list, else the union of the parts' words, sorted
    vocab_words = list(words) if words is not None else sorted({w for _, i in parts for w in i["words"]})
    vocab_countries = sorted({c for _, i in parts for c in i["countries"]})
    wmap = {w: i for i, w in enumerate(vocab_words)}
    cmap = {c: i for i, c in enumerate(vocab_countries)}

    dups = _find_duplicates(parts)
    drop: dict[int, set[int]] = {}
    dup_report = SkipReport()
    for key, occ in sorted(dups.items()):
        first, *rest = sorted(occ)
        for pi, ri in rest:
            line = int(_part_array(parts[pi][0], "line")[ri])
            first_line = int(_part_array(parts[first[0]][0], "line")[first[1]])
            err = DataError(parts[pi][1]["source"], line, key, "duplicate_key_id",
                                 f"also in {parts[first[0]][1]['source']}, line {first_line}")
            if not lenient:
                raise err
            dup_report.add(err)
            drop.setdefault(pi, set()).add(ri)

    # per-part keep masks and totals
    keeps, D, S, P = [], 0, 0, 0
    for pi, (pdir, info) in enumerate(parts):
        keep = np.ones(info["rows"], bool)
        if pi in drop:
            keep[list(drop[pi])] = False
        npts = _part_array(pdir, "npoints", np.int64)
        nstr = _part_array(pdir, "nstrokes", np.int64)
        keeps.append(keep)
        D += int(keep.sum())
        S += int(nstr[keep].sum())
        P += int(npts[keep].sum())

    # class counts for the split (labelled stores only)
    rng = np.random.default_rng(seed)
    class_counts = np.zeros(len(vocab_words), np.int64)
    if labelled:
        for (pdir, info), keep in zip(parts, keeps):
            local = np.array([wmap[w] for w in info["words"]], np.int64)
            w = _part_array(pdir, "word", np.int32)[keep]
            if len(local):
                class_counts += np.bincount(local[w], minlength=len(vocab_words))
    valid_ranks = _stratified_valid(class_counts, valid_frac, valid_min, rng) if labelled else None
    blend_ranks = _stratified_blend(class_counts, valid_ranks, blend_frac, seed) if labelled else None
    seen = np.zeros(len(vocab_words), np.int64)

    xy_dtype = _xy_dtype(kind)
    out = {
        "xy": _NpyWriter(store / "xy.npy", xy_dtype, (P, 2)),
        "stroke_len": _NpyWriter(store / "stroke_len.npy", np.uint16, (S,)),
        "point_off": _NpyWriter(store / "point_off.npy", np.int64, (D + 1,)),
        "stroke_off": _NpyWriter(store / "stroke_off.npy", np.int64, (D + 1,)),
        "key_id": _NpyWriter(store / "key_id.npy", np.int64, (D,)),
        "word": _NpyWriter(store / "word.npy", np.int16, (D,)),
        "country": _NpyWriter(store / "country.npy", np.uint16, (D,)),
        "recognized": _NpyWriter(store / "recognized.npy", np.int8, (D,)),
        "timestamp": _NpyWriter(store / "timestamp.npy", np.int64, (D,)),
        "valid": _NpyWriter(store / "valid.npy", np.bool_, (D,)),
        "blend": _NpyWriter(store / "blend.npy", np.bool_, (D,)),
    }
    if kind in TIMED_KINDS:
        t_dtype = _t_dtype([info["t_range"] for _, info in parts])
        out["t"] = _NpyWriter(store / "t.npy", t_dtype, (P,))
    out["point_off"].write(np.zeros(1, np.int64))
    out["stroke_off"].write(np.zeros(1, np.int64))
    d0 = s0 = p0 = 0
    for (pdir, info), keep in zip(parts, keeps):
        n = info["rows"]
        npts = _part_array(pdir, "npoints", np.int64)
        nstr = _part_array(pdir, "nstrokes", np.int64)
        pt_end = np.cumsum(npts)
        st_end = np.cumsum(nstr)
        xy = _part_array(pdir, "xy", xy_dtype, width=2)
        t = _part_array(pdir, "t", np.int32) if kind in TIMED_KINDS else None
        slen = _part_array(pdir, "stroke_len", np.uint16)
        wl = np.array([wmap.get(w, -1) for w in info["words"]], np.int16)
        cl = np.array([cmap[c] for c in info["countries"]], np.uint16)
        if words is not None and labelled and (wl < 0).any():
            bad = [w for w in info["words"] if w not in wmap]
            raise DataError(info["source"], None, None, "unknown_word", f"words {bad} not in the class list")
        for a in range(0, n, MERGE_ROWS):
            b = min(n, a + MERGE_ROWS)
            k = keep[a:b]
            m = int(k.sum())
            sel = np.flatnonzero(k) + a
            # points and strokes of the kept rows, copied as contiguous runs
            ps = np.where(sel > 0, pt_end[sel - 1], 0)
            pc = npts[sel]
            ss = np.where(sel > 0, st_end[sel - 1], 0)
            sc = nstr[sel]
            np_, ns_ = int(pc.sum()), int(sc.sum())
            buf = np.empty((np_, 2), xy_dtype)
            _parse.gather_points(np.asarray(xy), ps, pc, buf)
            out["xy"].write(buf)
            if t is not None:
                buf = np.empty(np_, np.int32)
                _parse.gather_points(np.asarray(t), ps, pc, buf)
                out["t"].write(buf.astype(t_dtype, copy=False))
            buf = np.empty(ns_, np.uint16)
            _parse.gather_points(np.asarray(slen), ss, sc, buf)
            out["stroke_len"].write(buf)
            out["point_off"].write(p0 + np.cumsum(pc))
            out["stroke_off"].write(s0 + np.cumsum(sc))
            out["key_id"].write(_part_array(pdir, "key_id", np.int64)[sel])
            w = _part_array(pdir, "word", np.int32)[sel]
            gw = wl[w] if len(wl) else np.full(m, -1, np.int16)
            out["word"].write(gw)
            c = _part_array(pdir, "country", np.int32)[sel]
            out["country"].write(cl[c] if len(cl) else np.zeros(m, np.uint16))
            out["recognized"].write(_part_array(pdir, "recognized", np.int8)[sel])
            out["timestamp"].write(_part_array(pdir, "timestamp", np.int64)[sel])
            vmask, bmask = np.zeros(m, bool), np.zeros(m, bool)
            if labelled:
                for cls in np.unique(gw):
                    rows = np.flatnonzero(gw == cls)
                    ranks = seen[cls] + np.arange(len(rows))
                    vmask[rows] = np.isin(ranks, valid_ranks[cls])
                    bmask[rows] = np.isin(ranks, blend_ranks[cls])
                    seen[cls] += len(rows)
            out["valid"].write(vmask)
            out["blend"].write(bmask)
            d0, s0, p0 = d0 + m, s0 + ns_, p0 + np_
    arrays = {name: w.close() for name, w in sorted(out.items())}
    skipped: dict[str, int] = {}
    for _, info in parts:
        for r, n in info["skipped"].items():
            skipped[r] = skipped.get(r, 0) + n
    for r, n in dup_report.counts.items():
        skipped[r] = skipped.get(r, 0) + n
    return {
        "version": STORE_VERSION, "kind": kind, "drawings": D, "strokes": S, "points": P,
        "labelled": labelled, "words": vocab_words, "countries": vocab_countries,
        "class_counts": class_counts.tolist() if labelled else None,
        "valid": {"frac": valid_frac, "min_per_class": valid_min, "seed": seed,
                  "count": int(sum(len(v) for v in valid_ranks)) if labelled else 0},
        "blend": {"frac": blend_frac, "seed": seed,
                  "count": int(sum(len(b) for b in blend_ranks)) if labelled else 0},
        "skipped": skipped,
        "sources": [{k: info[k] for k in ("source", "size", "mtime_ns", "rows", "skipped", "seconds")}
                    for _, info in parts],
        "arrays": arrays,
    }


def find_sources(src: Path, raw: bool = False) -> tuple[list[Path], Path | None]:
    """Per-class training files and the test file (if any) of a source folder.

    Kaggle's layout: ``train_simplified/*.csv`` and ``test_simplified.csv``, or with ``raw``
    ``train_raw/*`` and ``test_raw.csv`` (either kind falls back to the other's files when its
    own are missing; :func:`pack` then checks that the files suit the store's kind).
    Otherwise every ``*.csv`` / ``*.ndjson`` directly in ``src``.
    """
    src = Path(src)
    if not src.is_dir():
        raise FileNotFoundError(f"{src}: not a folder")
    subs = ("train_raw", "train_simplified") if raw else ("train_simplified", "train_raw")
    for sub in subs:
        if (src / sub).is_dir():
            train = sorted([*(src / sub).glob("*.csv"), *(src / sub).glob("*.ndjson")])
            break
    else:
        train = sorted(p for p in [*src.glob("*.csv"), *src.glob("*.ndjson")]
                       if not p.name.startswith(("test_", "sample_submission")))
    tests = ("test_raw.csv", "test_simplified.csv") if raw else ("test_simplified.csv", "test_raw.csv")
    test = next((src / t for t in tests if (src / t).exists()), None)
    if not train and test is None:
        raise FileNotFoundError(f"{src}: no .csv or .ndjson drawing files found")
    return train, test


def pack(sources: Sequence[Path], store_dir: str | os.PathLike, *, kind: str = "simplified",
         raw_src: bool | None = None, workers: int | None = None, valid_frac: float = 0.02,
         valid_min: int = 1, blend_frac: float = 0.0, seed: int = 0, lenient: bool = False,
         words: Sequence[str] | None = None,
         test: bool = False, keep_parts: bool = False,
         progress: Callable[[str], None] | None = print) -> dict:
    """Pack source files into a store folder; returns the manifest.

    Args:
        sources: per-class CSV/ndjson files (or a single test file with ``test=True``).
        store_dir: output folder; its ``.parts`` subfolder makes the conversion resumable.
        kind: "simplified" (uint8 coordinates; raw sources are simplified on the way),
            "timed" (simplified uint8 coordinates with each point's int32 time; needs raw
            sources) or "raw" (float32 coordinates and int32 times; needs raw sources).
        raw_src: whether sources carry times; None: Kaggle's folder or file name says
            (``train_raw/``, ``test_raw.csv``), else the file's first row
            (:func:`doodle_utils.data.has_times`).
        workers: parallel processes (default: CPU count).
        valid_frac, valid_min, seed: the stratified validation split (per class): model
            selection, early stopping, the snapshots' scores.
        blend_frac: a second stratified split, disjoint from validation and from training,
            where ensemble weights and a stacker are chosen (0: none); its own random stream,
            so the validation split does not change with it.
        lenient: skip malformed rows and duplicate key_ids, counted in the manifest.
        words: the class list (rows with other words are malformed); default: words found.
        test: sources are unlabelled test files.
        keep_parts: keep the intermediate part folders after a successful merge.
        progress: called with one line per finished file (None: silent).
    """
    check_pack_options(kind=kind, workers=workers, valid_frac=valid_frac, valid_min=valid_min, seed=seed,
                       lenient=lenient, blend_frac=blend_frac)
    store = Path(store_dir)
    store.mkdir(parents=True, exist_ok=True)
    with folder_lock(store, "packing"):  # one writer per store
        (store / "manifest.json").unlink(missing_ok=True)  # the store is invalid until the merge ends
        parts_root = store / ".parts"
        sources = [Path(s) for s in sources]
        names = [s.name for s in sources]
        if len(set(names)) != len(names):
            raise options.OptionError("source file names must be unique")
        jobs, parts_info = [], {}
        for s in sources:
            pdir = parts_root / s.name
            rs = raw_src if raw_src is not None else has_times(s)
            if kind in TIMED_KINDS and rs is False:
                raise options.OptionError(f"{s}: kind {kind!r} needs raw sources with timings (Kaggle's train_raw/, "
                                 "test_raw.csv, or Google's raw ndjson); this file has none")
            if rs is None and s.suffix == ".csv":
                rs = False  # no readable first row: read as simplified, which reports the rows
            job = _Job(str(s), str(pdir), kind, rs, lenient, tuple(words) if words else None, test)
            done, why = _part_done(pdir, s, job.options())
            if done is not None:
                parts_info[s.name] = done
                if progress:
                    progress(f"  {s.name}: already packed ({done['rows']} drawings), skipped")
                continue
            if why and progress:
                progress(f"  {s.name}: a part from an earlier run is not reused: {why}; packing it again")
            jobs.append(job)
        workers = max(1, min(workers or os.cpu_count() or 1, len(jobs) or 1))
        t0 = time.perf_counter()
        if workers == 1:
            results = ((j, _pack_part(j)) for j in jobs)
            for j, info in results:
                parts_info[Path(j.src).name] = info
                _report_part(progress, info, len(parts_info), len(sources))
        else:
            with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_die_with_parent,
                                     initargs=(os.getpid(),)) as ex:
                futs = {ex.submit(_pack_part, j): j for j in jobs}
                for fut in as_completed(futs):
                    info = fut.result()
                    parts_info[Path(futs[fut].src).name] = info
                    _report_part(progress, info, len(parts_info), len(sources))
        convert_s = time.perf_counter() - t0
        parts = [(parts_root / s.name, parts_info[s.name]) for s in sources]
        try:
            manifest = _merge(parts, store, kind, words, lenient, valid_frac, valid_min, seed, labelled=not test,
                              blend_frac=blend_frac)
        finally:
            _part_rows.cache_clear()  # part files may be rewritten by the next pack
        manifest["pack_seconds"] = {"convert": round(convert_s, 3), "total": round(time.perf_counter() - t0, 3)}
        manifest["checksum"] = manifest_checksum(manifest)
        write_text_atomic(store / "manifest.json", json.dumps(manifest, indent=1))
        if not keep_parts:
            shutil.rmtree(parts_root, ignore_errors=True)
        if progress:
            skipped = sum(manifest["skipped"].values())
            progress(f"  store {store}: {manifest['drawings']} drawings, {len(manifest['words'])} classes"
                     + (f", skipped {skipped} rows {manifest['skipped']}" if skipped else ""))
        return manifest


def _die_with_parent(parent: int) -> None:
    """In a pack worker: end when the packing process ``parent`` ends, even when it is killed
    (Linux: the kernel sends SIGTERM; a parent already gone by now is caught by its pid)."""
    import ctypes
    import signal
    import sys

    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)


def _report_part(progress, info: dict, k: int, n: int) -> None:
    if progress:
        skipped = sum(info["skipped"].values())
        progress(f"  [{k}/{n}] {Path(info['source']).name}: {info['rows']} drawings in {info['seconds']}s"
                 + (f", skipped {skipped} {info['skipped']}" if skipped else ""))


_PACK_RULES = {  # packing options: how each is checked
    "kind": lambda v: options.choice("kind", v, KINDS),
    "workers": lambda v: v is None or options.integer("workers", v, lo=1),
    "valid_frac": lambda v: options.number("valid_frac", v, 0, 1, open_lo=True, open_hi=True),
    "valid_min": lambda v: options.integer("valid_min", v, lo=0),
    "blend_frac": lambda v: options.number("blend_frac", v, 0, 1, open_hi=True),
    "seed": lambda v: options.integer("seed", v, lo=0),
    "lenient": lambda v: options.flag("lenient", v),
}
PACK_OPTIONS = tuple(_PACK_RULES)


def check_pack_options(**values: object) -> None:
    """Raise :class:`~doodle_utils.options.OptionError` for a packing option of the wrong type
    or range, or an unknown one (the CLI, profiles' ``data.pack`` and :func:`pack` all check
    here, before anything is written)."""
    options.check(_PACK_RULES, values, "packing")
    valid, blend = values.get("valid_frac"), values.get("blend_frac")
    if isinstance(valid, (int, float)) and isinstance(blend, (int, float)) and valid + blend >= 1:
        raise options.OptionError(f"packing: valid_frac {valid} + blend_frac {blend} leave no drawing to train on")


def pack_competition(src_dir: str | os.PathLike, out_dir: str | os.PathLike, **kwargs) -> dict[str, dict]:
    """Pack a competition folder: training files into ``out/train``, the test file into ``out/test``
    (from Kaggle's raw files for the kinds with times)."""
    check_pack_options(**{k: v for k, v in kwargs.items() if k in PACK_OPTIONS})
    train, test = find_sources(Path(src_dir), raw=kwargs.get("kind", "simplified") in TIMED_KINDS)
    out = Path(out_dir)
    result = {}
    for name, sources in (("train", train), ("test", [test] if test is not None else [])):
        if not sources and (out / name / "manifest.json").exists():
            # a store left by an earlier pack of another source would pass for this one's
            with folder_lock(out / name, "removing a stale store"):
                shutil.rmtree(out / name / ".parts", ignore_errors=True)
                (out / name / "manifest.json").unlink()
            progress = kwargs.get("progress", print)
            if progress:
                progress(f"  {out / name}: {src_dir} has no {name} file; the {name} store packed earlier "
                         "from another source is no longer valid (its manifest removed)")
    if train:
        result["train"] = pack(train, store_path(out, "train"), **kwargs)
    if test is not None:
        kw = {k: v for k, v in kwargs.items() if k not in ("valid_frac", "valid_min", "blend_frac", "words")}
        result["test"] = pack([test], store_path(out, "test"), test=True, **kw)
    return result


def content_digest(manifest: dict) -> str:
    """SHA-256 of what a store holds (its kind and every array's checksum: the drawings, their
    labels and both held-out splits), not of when or how fast it was packed: a repack of the
    same files with the same settings keeps it, another split changes it."""
    body = {"kind": manifest["kind"], "arrays": {k: v["sha256"] for k, v in sorted(manifest["arrays"].items())}}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def write_label_column(path: str | os.PathLike, labels: np.ndarray, store: "Store", about: dict) -> Path:
    """Write a label per drawing of ``store`` (an index into its words) to ``path`` and, beside
    it, ``.json`` naming the store by its content and ``about`` (how the labels were made), both
    atomically. Training reads it with :func:`read_label_column`; the store is not touched."""
    labels = np.asarray(labels)
    if not _one_label_per_drawing(labels, store):
        raise ValueError(f"a label column for {store.path} holds one class index per drawing ({len(store)})")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_npy_atomic(path, labels.astype(np.int32))
    write_text_atomic(path.with_suffix(".json"), json.dumps(
        {"store": str(store.path), "store_content": content_digest(store.manifest), "drawings": len(store),
         **about}, indent=1))
    return path


def read_label_column(path: str | os.PathLike, store: "Store") -> np.ndarray:
    """The labels :func:`write_label_column` wrote for ``store``; an error names the file when it
    is missing, damaged or made for other drawings (the store packed again since)."""
    path = Path(path)
    about_path = path.with_suffix(".json")
    if not path.is_file() or not about_path.is_file():
        raise FileNotFoundError(f"{path}: no label column there (with its .json); make one with `doodle relabel RUN`")
    try:
        about = json.loads(about_path.read_text())
        labels = np.load(path)
    except (OSError, ValueError) as e:
        raise StoreError(f"{path}: unreadable label column ({e})") from None
    if about.get("store_content") != content_digest(store.manifest):
        raise StoreError(f"{path}: made for other drawings than {store.path} holds now (packed again since?); "
                         "run `doodle relabel` again")
    if not _one_label_per_drawing(labels, store):
        raise StoreError(f"{path}: not one class index per drawing of {store.path}")
    return labels.astype(np.int64)


def index_dtype(n: int) -> type:
    """The narrowest signed integer type holding -1..n: positions, class and country indices
    kept for every drawing of a store take 2 or 4 bytes each, not 8."""
    return next(t for t in (np.int16, np.int32, np.int64) if n <= np.iinfo(t).max)


def _one_label_per_drawing(labels: np.ndarray, store: "Store") -> bool:
    """One class index (into the store's words; -1 none) per drawing of ``store``."""
    return labels.shape == (len(store),) and labels.min(initial=0) >= -1 and labels.max(initial=0) < len(store.words)


def manifest_checksum(manifest: dict) -> str:
    """SHA-256 of a manifest's content (sorted keys), its own ``checksum`` left out."""
    body = {k: v for k, v in manifest.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _chunk_sha256(path: Path, i: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        f.seek(i * CHUNK_BYTES)
        h.update(f.read(CHUNK_BYTES))
    return h.hexdigest()


_VERIFIED: set[tuple[str, int]] = set()  # stores verified by this process: (path, manifest mtime)


def open_verified(path: str | os.PathLike) -> "Store":
    """A store checked once per process ("quick") and opened unchecked after that: what the
    loaders and predictions read through, so a damaged store is refused before training."""
    p = Path(path).resolve()
    key = (str(p), (p / "manifest.json").stat().st_mtime_ns if (p / "manifest.json").exists() else 0)
    st = Store(p, verify="none" if key in _VERIFIED else "quick")
    _VERIFIED.add(key)
    return st


def current_manifest(store_dir: str | os.PathLike, sources: Sequence[Path], kind: str | None = None,
                     valid_frac: float | None = None, seed: int | None = None,
                     check_mtime: bool = True, blend_frac: float | None = None) -> dict | None:
    """The store's manifest if it opens cleanly and was packed from exactly these unchanged
    ``sources`` (path, size and, with ``check_mtime``, modification time) with these options
    (those given); else None."""
    try:
        m = open_verified(store_dir).manifest
    except (StoreError, OSError):
        return None
    keys = ("source", "size", "mtime_ns") if check_mtime else ("source", "size")
    want = [{k: v for k, v in _source_id(Path(s)).items() if k in keys} for s in sources]
    have = [{k: s[k] for k in keys} for s in m["sources"]]
    same = (kind is None or m["kind"] == kind) and (valid_frac is None or not m["labelled"]
                                                    or m["valid"]["frac"] == valid_frac) \
        and (seed is None or not m["labelled"] or m["valid"]["seed"] == seed) \
        and (blend_frac is None or not m["labelled"] or m.get("blend", {}).get("frac", 0.0) == blend_frac)
    return m if want == have and same else None


# --------------------------------------------------------------------------- reading

class Store:
    """A packed store opened read-only with memory maps.

    Args:
        path: the store folder.
        verify: "quick" (default): the manifest's own checksum, sizes and shapes of every
            array, the structure (offsets that never decrease and end at the arrays' lengths,
            strokes of at least one point adding up to each drawing's points, class and
            country indices inside the vocabularies), checksums of arrays up to 64 MiB and of
            sampled 16 MiB chunks of the larger ones; "full": that and every checksum;
            "none": sizes and shapes only (for a store already checked in this process).

    Raises:
        StoreError: naming the file and what is wrong.
    """

    def __init__(self, path: str | os.PathLike, verify: str = "quick"):
        self.path = Path(path)
        mpath = self.path / "manifest.json"
        if not mpath.exists():
            hint = " (packing did not finish; run `doodle pack` again to resume)" if (self.path / ".parts").exists() else ""
            raise StoreError(f"{self.path}: no manifest.json, not a packed store{hint}")
        try:
            self.manifest = json.loads(mpath.read_text())
        except ValueError as e:
            raise StoreError(f"{mpath}: unreadable manifest ({e})") from e
        if not isinstance(self.manifest, dict) or self.manifest.get("version") != STORE_VERSION:
            version = self.manifest.get("version") if isinstance(self.manifest, dict) else None
            raise StoreError(f"{mpath}: store version {version}, this code reads {STORE_VERSION} "
                             "(pack it again; `doodle run` does so by itself)")
        if verify not in ("none", "quick", "full"):
            raise ValueError(f"verify must be 'none', 'quick' or 'full', got {verify!r}")
        if verify != "none" and self.manifest.get("checksum") != manifest_checksum(self.manifest):
            raise StoreError(f"{mpath}: manifest checksum mismatch (edited or corrupted)")
        self.kind: str = self.manifest["kind"]
        self.words: list[str] = self.manifest["words"]
        self.countries: list[str] = self.manifest["countries"]
        self._arrays: dict[str, np.ndarray] = {}
        for name, want in self.manifest["arrays"].items():
            p = self.path / f"{name}.npy"
            if not p.exists():
                raise StoreError(f"{p}: missing array file")
            size = p.stat().st_size
            if size != want["bytes"]:
                raise StoreError(f"{p}: {size} bytes, manifest says {want['bytes']} (truncated or overwritten)")
            if verify == "full" or (verify == "quick" and size <= QUICK_CHECKSUM_BYTES):
                if sha256_file(p) != want["sha256"]:
                    raise StoreError(f"{p}: checksum mismatch (corrupted)")
            elif verify == "quick":
                # sampled chunks of a large file: the first, the last and one at random
                chunks = want.get("chunks") or []
                pick = {0, len(chunks) - 1, int.from_bytes(os.urandom(4), "little") % len(chunks)} if chunks else ()
                for i in sorted(pick):
                    if _chunk_sha256(p, i) != chunks[i]:
                        raise StoreError(f"{p}: checksum mismatch in bytes {i * CHUNK_BYTES}.."
                                         f"{(i + 1) * CHUNK_BYTES} (corrupted)")
            try:
                self._arrays[name] = np.load(p, mmap_mode="r")
            except ValueError as e:
                raise StoreError(f"{p}: unreadable array ({e})") from e
        self._check_shapes()
        if verify != "none":
            self._check_structure()

    def _check_shapes(self) -> None:
        m, a = self.manifest, self._arrays
        D, S, P = m["drawings"], m["strokes"], m["points"]
        expect = {"xy": (P, 2), "stroke_len": (S,), "point_off": (D + 1,), "stroke_off": (D + 1,),
                  "key_id": (D,), "word": (D,), "country": (D,), "recognized": (D,),
                  "timestamp": (D,), "valid": (D,)}
        if self.kind not in KINDS:
            raise StoreError(f"{self.path}: unknown store kind {self.kind!r} (this code reads {KINDS})")
        if self.kind in TIMED_KINDS:
            expect["t"] = (P,)
        if "blend" in a:  # stores packed before the blend split have none
            expect["blend"] = (D,)
        for name, shape in expect.items():
            if name not in a:
                raise StoreError(f"{self.path}: array {name!r} missing from the manifest")
            if a[name].shape != shape:
                raise StoreError(f"{self.path / name}.npy: shape {a[name].shape}, expected {shape}")
        po, so = a["point_off"], a["stroke_off"]
        if po[0] != 0 or po[-1] != P or so[0] != 0 or so[-1] != S:
            raise StoreError(f"{self.path}: offsets do not span the point/stroke arrays (corrupted)")

    def _check_structure(self) -> None:
        """Offsets, stroke lengths and vocabulary indices consistent (see ``verify``)."""
        m, a = self.manifest, self._arrays
        words = m.get("words")
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words) or len(set(words)) != len(words):
            raise StoreError(f"{self.path}/manifest.json: 'words' must be a list of distinct class names")
        bad = _parse.first_bad_drawing(a["point_off"].view(np.ndarray), a["stroke_off"].view(np.ndarray),
                                       a["stroke_len"].view(np.ndarray))
        if bad >= 0:
            raise StoreError(f"{self.path}: drawing {bad} (key_id {int(a['key_id'][bad])}): its offsets or "
                             "stroke lengths are inconsistent (corrupted point_off, stroke_off or stroke_len)")
        word = np.asarray(a["word"])
        lo, hi = (int(word.min()), int(word.max())) if len(word) else (0, -1)
        labelled = m.get("labelled", True)
        if len(word) and ((labelled and (lo < 0 or hi >= len(words))) or (not labelled and (lo, hi) != (-1, -1))):
            i = int(np.flatnonzero((word < 0) | (word >= len(words)) if labelled else word != -1)[0])
            raise StoreError(f"{self.path}/word.npy: drawing {i} has class index {int(word[i])}, outside the "
                             f"{len(words)} classes of the manifest" if labelled else
                             f"{self.path}/word.npy: drawing {i} of an unlabelled store has a class")
        if "blend" in a and (np.asarray(a["blend"]) & np.asarray(a["valid"])).any():
            i = int(np.argmax(np.asarray(a["blend"]) & np.asarray(a["valid"])))
            raise StoreError(f"{self.path}: drawing {i} is in both the validation and the blend split (corrupted)")
        country = np.asarray(a["country"])
        if len(country) and int(country.max()) >= max(len(self.countries), 1):
            i = int(np.argmax(country >= max(len(self.countries), 1)))
            raise StoreError(f"{self.path}/country.npy: drawing {i} has country index {int(country[i])}, "
                             f"outside the {len(self.countries)} countries of the manifest")

    def __len__(self) -> int:
        return int(self.manifest["drawings"])

    def __getattr__(self, name: str) -> np.ndarray:
        arrays = self.__dict__.get("_arrays", {})
        if name in arrays:
            return arrays[name]
        raise AttributeError(name)

    @property
    def raw(self) -> bool:
        """Raw float coordinates (kind "raw")."""
        return self.kind == "raw"

    @property
    def timed(self) -> bool:
        """Points carry times (kinds "timed" and "raw")."""
        return self.kind in TIMED_KINDS

    def _where(self, pick: Callable[[slice], np.ndarray]) -> np.ndarray:
        """The drawings where ``pick(rows)`` is true, in :func:`index_dtype` (int32 for
        Kaggle's 49.7M: an int64 per drawing is 400 MB), found a chunk of rows at a time."""
        n, step = len(self), MERGE_ROWS * 16
        dtype = index_dtype(n)
        parts = [(np.flatnonzero(pick(slice(s, s + step))) + s).astype(dtype) for s in range(0, n, step)]
        return np.concatenate(parts) if parts else np.zeros(0, dtype)

    @property
    def train_idx(self) -> np.ndarray:
        """The drawings neither split holds out."""
        valid, blend = self._arrays["valid"], self._arrays.get("blend")
        if blend is None:
            return self._where(lambda r: ~np.asarray(valid[r]))
        return self._where(lambda r: ~(np.asarray(valid[r]) | np.asarray(blend[r])))

    @property
    def valid_idx(self) -> np.ndarray:
        """The validation split: model selection, early stopping, the snapshots' scores."""
        return self._where(lambda r: np.asarray(self._arrays["valid"][r]))

    @property
    def blend_idx(self) -> np.ndarray:
        """The blend split: ensemble weights and the stacker (empty when packed without one)."""
        if "blend" not in self._arrays:
            return np.zeros(0, index_dtype(len(self)))
        return self._where(lambda r: np.asarray(self._arrays["blend"][r]))

    def drawings(self, idx: Iterable[int] | np.ndarray | slice) -> Drawings:
        """The drawings at ``idx`` as one packed batch (O(1) per drawing)."""
        if isinstance(idx, slice):
            idx = np.arange(len(self))[idx]
        idx = np.asarray(idx, np.int64)
        if len(idx) and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"drawing index out of range 0..{len(self) - 1}")
        a = self._arrays
        po, so = a["point_off"], a["stroke_off"]
        ps, pc = po[idx], po[idx + 1] - po[idx]
        ss, sc = so[idx], so[idx + 1] - so[idx]
        lens = np.empty(int(sc.sum()), np.uint16)
        _parse.gather_points(a["stroke_len"].view(np.ndarray), ss, sc, lens)
        stroke_offsets = np.zeros(len(lens) + 1, np.int64)
        np.cumsum(lens, out=stroke_offsets[1:])
        drawing_offsets = np.zeros(len(idx) + 1, np.int64)
        np.cumsum(sc, out=drawing_offsets[1:])
        xy = np.empty((int(pc.sum()), 2), a["xy"].dtype)
        _parse.gather_points(a["xy"].view(np.ndarray), ps, pc, xy)
        t = None
        if "t" in a:
            t = np.empty(len(xy), a["t"].dtype)
            _parse.gather_points(a["t"].view(np.ndarray), ps, pc, t)
            t = t.astype(np.int32, copy=False)
        return Drawings(xy, t, stroke_offsets, drawing_offsets, in_frame=not self.raw)

    def drawing(self, i: int) -> list[np.ndarray]:
        """Drawing ``i`` as a list of stroke arrays."""
        return self.drawings([i]).strokes(0)

    def stroke_counts(self, idx: np.ndarray | None = None) -> np.ndarray:
        """Strokes of each drawing (at ``idx``; all without), int64."""
        so = np.asarray(self._arrays["stroke_off"])
        return np.diff(so) if idx is None else so[np.asarray(idx) + 1] - so[np.asarray(idx)]

    def point_counts(self, idx: np.ndarray | None = None) -> np.ndarray:
        """Points of each drawing (at ``idx``; all without), int64."""
        po = np.asarray(self._arrays["point_off"])
        return np.diff(po) if idx is None else po[np.asarray(idx) + 1] - po[np.asarray(idx)]

    def durations_ms(self, idx: np.ndarray | None = None) -> np.ndarray:
        """Milliseconds from each drawing's first to its last point (the last point's ``t``;
        times run in drawing order), float64, NaN for a drawing without points; a store with
        times only (kinds "timed" and "raw"). Reads one ``t`` a drawing."""
        if not self.timed:
            raise ValueError(f"{self.path}: a {self.kind!r} store holds no times")
        po = np.asarray(self._arrays["point_off"])
        idx = np.arange(len(self)) if idx is None else np.asarray(idx, np.int64)
        end = po[idx + 1]
        ok = end > po[idx]
        out = np.full(len(idx), np.nan)
        out[ok] = np.asarray(self._arrays["t"][end[ok] - 1], np.float64)
        return out

    def labels(self, idx: np.ndarray | None = None) -> np.ndarray:
        """Class indices (into ``words``), -1 where unlabelled."""
        w = self._arrays["word"]
        return np.asarray(w if idx is None else w[np.asarray(idx)])

    def meta(self, idx: np.ndarray | None = None) -> pd.DataFrame:
        """Metadata rows as a DataFrame (key_id, word, countrycode, recognized, timestamp)."""
        a = self._arrays
        sel = slice(None) if idx is None else np.asarray(idx, np.int64)
        word = np.asarray(a["word"][sel])
        words = np.array(self.words + [None], dtype=object)
        rec = np.asarray(a["recognized"][sel])
        ts = np.asarray(a["timestamp"][sel])
        return pd.DataFrame({
            "key_id": np.asarray(a["key_id"][sel]),
            "word": words[word],
            "countrycode": np.array(self.countries, dtype=object)[np.asarray(a["country"][sel])]
            if self.countries else "",
            "recognized": pd.array(np.where(rec < 0, None, rec == 1), dtype="boolean"),
            "timestamp": pd.to_datetime(np.where(ts == MISSING_TS, np.iinfo(np.int64).min, ts * 1000),
                                        utc=True),
        })
