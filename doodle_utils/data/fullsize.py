"""A synthetic competition at Kaggle's size: 340 words, ~49.7M training drawings in uneven
class files, a balanced 112,199-drawing test set, in Kaggle's exact file set.

For rehearsing the suite at full size (``python -m benchmarks scale``; ``doodle synth --kaggle-size``),
not for learning: every drawing is one of a small pool of base drawings per word (the real
sample's raw drawings of that word, or synthetic ones), varied by a random affine transform
(scale per axis, rotation, shear), pen speed and sub-pixel jitter, so stroke and point counts,
coordinates and timings have realistic distributions and sizes while the content repeats.
Each varied raw drawing is simplified with Google's algorithm (:mod:`.simplify`), so
``train_simplified``/``test_simplified`` hold exactly the simplification of the raw rows; the
raw files are written for a stated fraction of each class (its first rows; Kaggle's full
``train_raw`` is ~10x the simplified files and rarely fits beside them).

Files (each written atomically, the CSVs streamed; Kaggle's spacing in the drawing column,
``[[[17, 18], [5, 6]], ...]``)::

    train_simplified/<word>.csv   countrycode,drawing,key_id,recognized,timestamp,word
    train_raw/<word>.csv          the first raw_fraction of the same rows, raw [[x], [y], [t]]
    test_simplified.csv, test_raw.csv, sample_submission.csv
    ../<name>_answers/test_labels.csv

Why hand-written formatting: the suite's :func:`.drawings.write_csv` builds a Python string per
drawing and goes through pandas, which is fine for the demo's thousands of rows and far too
slow for 49.7M; here a compiled kernel writes each line's bytes into a buffer (no Python object
per row): ~71,000 rows/s on 2 cores, Kaggle's size in ~12 minutes (benchmarks/RESULTS.md).
key_ids are a 4-round Feistel permutation of the row's global index, so they are distinct
without a 49.7M-entry set and carry no trace of the class.
"""
from __future__ import annotations

import math
import os
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import numba
import numpy as np
import pandas as pd

from .. import options
from .._files import atomic_path
from ..paths import CATEGORIES_FILE, answers_file
from .drawings import Drawings, read_file
from .simplify import simplify_packed
from .synth import CLASSES, COUNTRIES, KEY_ID_RANGE, TIMESTAMP_RANGE, draw, submission_words

KAGGLE_TRAIN_ROWS = 49_700_000  # Kaggle's training drawings (the competition's ~49.7M)
KAGGLE_TEST_ROWS = 112_199  # Kaggle's test set, class-balanced
KAGGLE_CLASSES = 340
CHUNK_ROWS = 40_000  # rows varied, simplified and formatted at a time (~150 MB of raw points)
SIZE_SIGMA = 0.25  # log-normal spread of the class sizes, clipped to 0.5-2.5x the mean
OUTLIERS = {7: 2.2, 101: 1.9, 222: 0.55}  # a few classes far from the rest, like Kaggle's
UNRECOGNIZED = 0.06  # share of unrecognized training rows (the first strokes of a drawing)
BASES_PER_WORD = 32  # synthetic base drawings per word when no real sample is given


def _words() -> list[str]:
    """340 words, Kaggle's class count: the first 340 of Google's 345 categories (which five
    Kaggle left out is not recorded in the package, and no step depends on the names)."""
    return [w for w in CATEGORIES_FILE.read_text().splitlines() if w.strip()][:KAGGLE_CLASSES]


def class_sizes(total: int, n_classes: int, seed: int = 0) -> np.ndarray:
    """Uneven class sizes summing to ``total``: log-normal (``SIZE_SIGMA``) with a few outliers."""
    rng = np.random.default_rng([seed, 7])
    w = np.clip(rng.lognormal(0.0, SIZE_SIGMA, n_classes), 0.5, 2.5)
    for c, f in OUTLIERS.items():
        if c < n_classes:
            w[c] = f * np.exp(SIZE_SIGMA ** 2 / 2)
    sizes = np.floor(w / w.sum() * total).astype(np.int64)
    sizes[np.argsort(-(w / w.sum() * total - sizes))[: total - sizes.sum()]] += 1
    return sizes


def test_sizes(total: int, n_classes: int) -> np.ndarray:
    """A balanced test set: ``total // n`` per class, one more for the first ``total % n``."""
    sizes = np.full(n_classes, total // n_classes, np.int64)
    sizes[: total % n_classes] += 1
    return sizes


# --------------------------------------------------------------------------- base drawings

def base_pool(word: str, index: int, sample_dir: Path | None, seed: int) -> tuple[Drawings, bool]:
    """The raw drawings a word's rows are varied from: the real sample's recognized drawings
    of the word (``sample_dir/<word>.ndjson``), else synthetic ones of the synthetic class
    ``index`` maps to, given a pose of the word's own so that words differ."""
    if sample_dir is not None:
        path = Path(sample_dir) / f"{word}.ndjson"
        if path.exists():
            meta, raw, _ = read_file(path, raw=True)
            keep = np.flatnonzero(meta["recognized"].to_numpy(bool))
            if len(keep):
                return raw.take(keep), True
    rng = np.random.default_rng([seed, 11, index])
    cls = CLASSES[index % len(CLASSES)]
    angle, aspect = rng.uniform(-0.5, 0.5), np.exp(rng.uniform(-0.3, 0.3))
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    rot = rot * np.array([aspect, 1 / aspect])[:, None]
    drawings = []
    for _ in range(BASES_PER_WORD):
        strokes = draw(cls, rng)
        for s in strokes:
            s[:, :2] = s[:, :2] @ rot.T
        lo = np.min(np.concatenate([s[:, :2] for s in strokes]), axis=0)
        drawings.append([np.c_[np.round(s[:, :2] - lo), s[:, 2]] for s in strokes])
    return Drawings.from_strokes(drawings, dtype=np.float64), False


# --------------------------------------------------------------------------- compiled kernels

@numba.njit(cache=True)
def _vary(bxy, bt, bso, bdo, picks, params, cut, seed):
    """Raw drawings ``picks`` of the base pool, each transformed by its ``params`` row
    (sx, sy, rotation, shear, time scale, jitter px); ``cut`` keeps only the first half of the
    strokes (an abandoned, unrecognized drawing). Coordinates are rounded to whole pixels and
    shifted to start at 0, times to whole ms (non-decreasing as in the base)."""
    np.random.seed(seed)
    n = len(picks)
    nstrokes = np.empty(n, np.int64)
    npoints = 0
    for i in range(n):
        b = picks[i]
        k = bdo[b + 1] - bdo[b]
        if cut[i]:
            k = max(1, k // 2)
        nstrokes[i] = k
        npoints += bso[bdo[b] + k] - bso[bdo[b]]
    do = np.zeros(n + 1, np.int64)
    for i in range(n):
        do[i + 1] = do[i] + nstrokes[i]
    so = np.zeros(do[n] + 1, np.int64)
    xy = np.empty((npoints, 2), np.float64)
    t = np.empty(npoints, np.int32)
    s_out = 0
    p_out = 0
    for i in range(n):
        b = picks[i]
        sx, sy, rot, shear, tscale, jit = params[i]
        c, s = math.cos(rot), math.sin(rot)
        s0 = bdo[b]
        p0, p1 = bso[s0], bso[s0 + nstrokes[i]]
        cx = 0.0
        cy = 0.0
        for p in range(p0, p1):
            cx += bxy[p, 0]
            cy += bxy[p, 1]
        cx /= max(1, p1 - p0)
        cy /= max(1, p1 - p0)
        start = p_out
        for p in range(p0, p1):
            x = (bxy[p, 0] - cx) * sx
            y = (bxy[p, 1] - cy) * sy
            x, y = c * x - s * y + shear * y, s * x + c * y
            xy[p_out, 0] = x + np.random.normal() * jit
            xy[p_out, 1] = y + np.random.normal() * jit
            t[p_out] = np.int32(np.floor((bt[p] - bt[p0]) * tscale + 0.5))
            p_out += 1
        mx = np.inf
        my = np.inf
        for p in range(start, p_out):
            mx = min(mx, xy[p, 0])
            my = min(my, xy[p, 1])
        for p in range(start, p_out):
            xy[p, 0] = np.floor(xy[p, 0] - mx + 0.5)
            xy[p, 1] = np.floor(xy[p, 1] - my + 0.5)
        for k in range(nstrokes[i]):
            so[s_out + 1] = so[s_out] + bso[s0 + k + 1] - bso[s0 + k]
            s_out += 1
    return xy, t, so, do


@numba.njit(cache=True)
def _put_int(buf, pos, v):
    """Write the decimal digits of ``v`` (an integer, possibly negative) at ``pos``."""
    if v < 0:
        buf[pos] = 45  # '-'
        pos += 1
        v = -v
    if v == 0:
        buf[pos] = 48
        return pos + 1
    digits = 0
    w = v
    while w > 0:
        digits += 1
        w //= 10
    for k in range(digits - 1, -1, -1):
        buf[pos + k] = 48 + v % 10
        v //= 10
    return pos + digits


@numba.njit(cache=True)
def _put_bytes(buf, pos, src):
    for k in range(len(src)):
        buf[pos + k] = src[k]
    return pos + len(src)


@numba.njit(cache=True)
def _put_sep(buf, pos):
    """Kaggle's list separator ``", "``."""
    buf[pos] = 44
    buf[pos + 1] = 32
    return pos + 2


@numba.njit(cache=True)
def _put_drawing(buf, pos, xy, t, so, do, i, timed):
    """``"[[[x, ...], [y, ...]], ...]"`` (with ``[t, ...]`` when ``timed``), quoted."""
    buf[pos] = 34  # '"'
    buf[pos + 1] = 91  # '['
    pos += 2
    for s in range(do[i], do[i + 1]):
        if s > do[i]:
            pos = _put_sep(buf, pos)
        buf[pos] = 91
        pos += 1
        for dim in range(3 if timed else 2):
            if dim:
                pos = _put_sep(buf, pos)
            buf[pos] = 91
            pos += 1
            for p in range(so[s], so[s + 1]):
                if p > so[s]:
                    pos = _put_sep(buf, pos)
                v = t[p] if dim == 2 else int(xy[p, dim])
                pos = _put_int(buf, pos, v)
            buf[pos] = 93
            pos += 1
        buf[pos] = 93
        pos += 1
    buf[pos] = 93
    buf[pos + 1] = 34
    return pos + 2


@numba.njit(cache=True)
def _put_timestamp(buf, pos, secs, frac):
    """``2017-03-27 00:14:57.31033 UTC`` for Unix seconds ``secs`` and fraction ``frac`` (5
    digits, trailing zeros dropped, ``0`` when all are)."""
    days = secs // 86400
    rem = secs - days * 86400
    # civil_from_days (H. Hinnant, http://howardhinnant.github.io/date_algorithms.html)
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    if m <= 2:
        y += 1
    for v, width, sep in ((y, 4, 45), (m, 2, 45), (d, 2, 32), (rem // 3600, 2, 58),
                          ((rem // 60) % 60, 2, 58), (rem % 60, 2, 46)):
        for k in range(width - 1, -1, -1):
            buf[pos + k] = 48 + v % 10
            v //= 10
        buf[pos + width] = sep
        pos += width + 1
    digits = 5
    while digits > 1 and frac % 10 == 0:
        frac //= 10
        digits -= 1
    for k in range(digits - 1, -1, -1):
        buf[pos + k] = 48 + frac % 10
        frac //= 10
    pos += digits
    for ch in (32, 85, 84, 67):  # " UTC"
        buf[pos] = ch
        pos += 1
    return pos


@numba.njit(cache=True)
def _test_lines(xy, t, so, do, timed, countries, country_idx, keys):
    """Kaggle's test CSV lines (``key_id,countrycode,drawing``)."""
    n = len(keys)
    buf = np.empty(xy.shape[0] * (3 if timed else 2) * 14 + (do[n] + n) * 8 + n * 40, np.uint8)
    pos = 0
    for i in range(n):
        pos = _put_int(buf, pos, keys[i])
        buf[pos] = 44
        pos = _put_bytes(buf, pos + 1, countries[country_idx[i]])
        buf[pos] = 44
        pos = _put_drawing(buf, pos + 1, xy, t, so, do, i, timed)
        buf[pos] = 10
        pos += 1
    return buf[:pos]


@numba.njit(cache=True)
def _train_lines(xy, t, so, do, timed, countries, country_idx, keys, recognized, secs, frac, word):
    """Kaggle's training CSV lines (``countrycode,drawing,key_id,recognized,timestamp,word``)."""
    n = len(keys)
    npts = xy.shape[0]
    size = npts * (3 if timed else 2) * 14 + (do[n] + n) * 8 + n * (90 + len(word))
    buf = np.empty(size, np.uint8)
    pos = 0
    for i in range(n):
        pos = _put_bytes(buf, pos, countries[country_idx[i]])
        buf[pos] = 44
        pos = _put_drawing(buf, pos + 1, xy, t, so, do, i, timed)
        buf[pos] = 44
        pos = _put_int(buf, pos + 1, keys[i])
        buf[pos] = 44
        pos += 1
        if recognized[i]:
            for ch in (84, 114, 117, 101):
                buf[pos] = ch
                pos += 1
        else:
            for ch in (70, 97, 108, 115, 101):
                buf[pos] = ch
                pos += 1
        buf[pos] = 44
        pos = _put_timestamp(buf, pos + 1, secs[i], frac[i])
        buf[pos] = 44
        pos = _put_bytes(buf, pos + 1, word)
        buf[pos] = 10
        pos += 1
    return buf[:pos]


_FEISTEL_KEYS = np.array([0x9E3779B1, 0x85EBCA77, 0xC2B2AE3D, 0x27D4EB2F], np.uint64)


@numba.njit(cache=True)
def _feistel(idx, half_bits, seed):
    """A bijection of ``[0, 4**half_bits)``: four Feistel rounds keyed by ``seed``."""
    mask = np.uint64((1 << half_bits) - 1)
    out = np.empty(len(idx), np.uint64)
    for i in range(len(idx)):
        v = np.uint64(idx[i])
        left = v >> np.uint64(half_bits)
        right = v & mask
        for r in range(4):
            f = (right * _FEISTEL_KEYS[r] + np.uint64(seed) * np.uint64(0x165667B1)) & np.uint64(0xFFFFFFFF)
            f = (f ^ (f >> np.uint64(15))) * np.uint64(0x2C1B3C6D) & np.uint64(0xFFFFFFFF)
            left, right = right, left ^ (f & mask)
        out[i] = (left << np.uint64(half_bits)) | right
    return out


def key_ids(index: np.ndarray, total: int, seed: int) -> np.ndarray:
    """Distinct 16-digit key_ids for global row indices ``index`` (< ``total``), in Google's range."""
    half = max(8, math.ceil(math.log2(max(total, 2)) / 2))
    stride = (KEY_ID_RANGE[1] - KEY_ID_RANGE[0]) >> (2 * half)
    perm = _feistel(np.asarray(index, np.int64), half, seed).astype(np.int64)
    low = _feistel(np.asarray(index, np.int64), half, seed + 1).astype(np.int64) % stride
    return KEY_ID_RANGE[0] + perm * stride + low


# --------------------------------------------------------------------------- writing

def _chunk_rows(pool: Drawings, n: int, rng: np.random.Generator, unrecognized: float) -> tuple[Drawings, np.ndarray]:
    """``n`` varied raw drawings of a pool and their recognized flags."""
    picks = rng.integers(0, len(pool), n)
    rec = rng.random(n) >= unrecognized
    params = np.c_[np.exp(rng.normal(0, 0.15, n)), np.exp(rng.normal(0, 0.15, n)), rng.normal(0, 0.15, n),
                   rng.normal(0, 0.08, n), np.exp(rng.normal(0, 0.2, n)), rng.uniform(0.3, 1.2, n)]
    xy, t, so, do = _vary(pool.xy.astype(np.float64), pool.t.astype(np.float64), pool.stroke_offsets,
                          pool.drawing_offsets, picks, params, ~rec, int(rng.integers(2**31)))
    return Drawings(xy, t, so, do), rec


_CODES = np.array(list(COUNTRIES))
_CODE_P = np.array(list(COUNTRIES.values()), float) / sum(COUNTRIES.values())


def _meta_arrays(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lo, hi = (np.datetime64(s, "s").astype(np.int64) for s in TIMESTAMP_RANGE)
    return (rng.choice(len(_CODES), size=n, p=_CODE_P), rng.integers(lo, hi, n), rng.integers(0, 100_000, n))


def _country_table() -> np.ndarray:
    return np.array([np.frombuffer(c.encode(), np.uint8) for c in _CODES])


def _write_class(job: dict) -> dict:
    """One word: its training file(s) streamed chunk by chunk, and its test rows returned."""
    out, word, c = Path(job["out"]), job["word"], job["index"]
    rng = np.random.default_rng([job["seed"], 1, c])
    pool, from_sample = base_pool(word, c, job["sample_dir"], job["seed"])
    n, n_raw, n_test, first = job["rows"], job["raw_rows"], job["test_rows"], job["first_index"]
    countries = _country_table()
    wbytes = np.frombuffer(word.encode(), np.uint8)
    header = b"countrycode,drawing,key_id,recognized,timestamp,word\n"
    counts = {"unrecognized": 0, "points": 0}
    simple_path, raw_path = out / "train_simplified" / f"{word}.csv", out / "train_raw" / f"{word}.csv"
    with ExitStack() as stack:
        fs = stack.enter_context(open(stack.enter_context(atomic_path(simple_path)), "wb"))
        fr = stack.enter_context(open(stack.enter_context(atomic_path(raw_path)), "wb")) if n_raw else None
        fs.write(header)
        if fr:
            fr.write(header)
        for a in range(0, n, CHUNK_ROWS):
            m = min(CHUNK_ROWS, n - a)
            raw, rec = _chunk_rows(pool, m, rng, job["unrecognized"])
            sxy, sso, sdo = simplify_packed(raw.xy, raw.stroke_offsets, raw.drawing_offsets)
            keys = key_ids(np.arange(first + a, first + a + m), job["total"], job["seed"])
            cidx, secs, frac = _meta_arrays(rng, m)
            fs.write(_train_lines(sxy, np.zeros(1, np.int32), sso, sdo, False, countries, cidx, keys, rec,
                                  secs, frac, wbytes).tobytes())
            counts["unrecognized"] += int((~rec).sum())
            counts["points"] += len(sxy)
            if fr and a < n_raw:
                k = min(m, n_raw - a)
                sub = raw.take(np.arange(k))
                fr.write(_train_lines(sub.xy, sub.t, sub.stroke_offsets, sub.drawing_offsets, True, countries,
                                      cidx[:k], keys[:k], rec[:k], secs[:k], frac[:k], wbytes).tobytes())
    raw, _ = _chunk_rows(pool, n_test, rng, 0.0)
    sxy, sso, sdo = simplify_packed(raw.xy, raw.stroke_offsets, raw.drawing_offsets)
    keys = key_ids(np.arange(first + n, first + n + n_test), job["total"], job["seed"])
    cidx, _, _ = _meta_arrays(rng, n_test)
    return {"word": word, "rows": n, "raw_rows": n_raw, "from_sample": from_sample, **counts, "test_keys": keys,
            "test_country": cidx, "test_simple": Drawings(sxy, None, sso, sdo), "test_raw": raw}


def check_options(**values: object) -> None:
    """Raise :class:`~doodle_utils.options.OptionError` for a bad option of :func:`make_kaggle_size`."""
    options.check({"scale": lambda v: options.number("scale", v, 1e-6, 10),
                   "raw_fraction": lambda v: options.number("raw_fraction", v, 0, 1),
                   "seed": lambda v: options.integer("seed", v, lo=0),
                   "workers": lambda v: options.integer("workers", v, lo=1)}, values, "kaggle-size competition")


def make_kaggle_size(out_dir: str | os.PathLike, scale: float = 1.0, raw_fraction: float = 0.02,
                     sample_dir: str | os.PathLike | None = None, seed: int = 0, workers: int | None = None,
                     progress=None) -> dict:
    """Write a competition of Kaggle's size times ``scale`` (see the module docstring).

    Args:
        out_dir: the competition folder (answers beside it, :func:`.paths.answers_file`).
        scale: fraction of Kaggle's 49.7M training and 112,199 test drawings.
        raw_fraction: share of each class's training rows also written to ``train_raw/``.
        sample_dir: Google's raw ndjson per word (the real sample) to vary; None: synthetic bases.
        seed: the same arguments write the same bytes, whatever ``workers``.
        workers: processes (default: all cores).
        progress: called with each finished word's summary.

    Returns:
        ``words``, ``train_rows``, ``raw_rows``, ``test_rows``, ``unrecognized``, ``points``,
        ``words_from_sample`` (words varied from the sample; the rest from synthetic drawings),
        ``bytes`` (file sizes by folder) and ``sizes`` (rows per word).

    Raises:
        OptionError: an option out of range. FileNotFoundError: ``sample_dir`` holds no ndjson.
    """
    check_options(scale=scale, raw_fraction=raw_fraction, seed=seed,
                  **({} if workers is None else {"workers": workers}))
    if sample_dir is not None and not any(Path(sample_dir).glob("*.ndjson")):
        raise FileNotFoundError(f"{sample_dir}: no Google ndjson files (<word>.ndjson) to vary")
    out = Path(out_dir)
    words = _words()
    sizes = class_sizes(max(len(words), round(KAGGLE_TRAIN_ROWS * scale)), len(words), seed)
    tests = test_sizes(max(len(words), round(KAGGLE_TEST_ROWS * scale)), len(words))
    firsts = np.r_[0, np.cumsum(sizes + tests)[:-1]]
    total = int((sizes + tests).sum())
    jobs = [{"out": str(out), "word": w, "index": c, "seed": seed, "rows": int(sizes[c]),
             "raw_rows": int(math.ceil(sizes[c] * raw_fraction)), "test_rows": int(tests[c]),
             "first_index": int(firsts[c]), "total": total, "unrecognized": UNRECOGNIZED,
             "sample_dir": str(sample_dir) if sample_dir else None} for c, w in enumerate(words)]
    for sub in ("train_simplified", "train_raw"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    done = []
    with ProcessPoolExecutor(workers or os.cpu_count()) as pool:
        for r in pool.map(_write_class, jobs):
            done.append(r)
            if progress:
                progress({k: r[k] for k in ("word", "rows", "raw_rows", "unrecognized", "from_sample")})
    order = np.random.default_rng([seed, 3]).permutation(int(tests.sum()))
    test_meta = pd.DataFrame({"key_id": np.concatenate([r["test_keys"] for r in done]),
                              "countrycode": _CODES[np.concatenate([r["test_country"] for r in done])],
                              "word": np.repeat(words, tests)}).iloc[order].reset_index(drop=True)
    for name, part in (("test_simplified.csv", "test_simple"), ("test_raw.csv", "test_raw")):
        d = Drawings.concat([r[part] for r in done]).take(order)
        with atomic_path(out / name) as tmp, open(tmp, "wb") as f:
            f.write(b"key_id,countrycode,drawing\n")
            f.write(_test_lines(d.xy, d.t if d.t is not None else np.zeros(1, np.int32), d.stroke_offsets,
                                d.drawing_offsets, d.t is not None, _country_table(),
                                np.concatenate([r["test_country"] for r in done])[order],
                                test_meta["key_id"].to_numpy(np.int64)).tobytes())
    with atomic_path(out / "sample_submission.csv") as tmp:
        pd.DataFrame({"key_id": test_meta["key_id"], "word": submission_words(words[:3])}).to_csv(tmp, index=False)
    answers = answers_file(out)
    with atomic_path(answers) as tmp:
        test_meta[["key_id", "word"]].to_csv(tmp, index=False)

    def folder_bytes(p: Path) -> int:
        return sum(f.stat().st_size for f in p.iterdir()) if p.is_dir() else p.stat().st_size

    return {"words": len(words), "train_rows": int(sizes.sum()), "raw_rows": sum(r["raw_rows"] for r in done),
            "test_rows": int(tests.sum()), "unrecognized": sum(r["unrecognized"] for r in done),
            "points": sum(r["points"] for r in done),
            "words_from_sample": sum(r["from_sample"] for r in done),
            "bytes": {name: folder_bytes(out / name) for name in
                      ("train_simplified", "train_raw", "test_simplified.csv", "test_raw.csv")},
            "sizes": dict(zip(words, sizes.tolist(), strict=True))}
