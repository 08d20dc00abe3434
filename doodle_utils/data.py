"""Quick, Draw! file formats, read in streaming chunks into packed arrays, and written back.

Formats:

* Kaggle CSV: ``train_simplified/<word>.csv`` with columns
  ``countrycode,drawing,key_id,recognized,timestamp,word`` and ``test_simplified.csv`` with
  ``key_id,countrycode,drawing``; ``drawing`` is a JSON string (Kaggle's ``*_raw`` CSVs,
  whose strokes carry a third list of times, read the same way).
* Google ndjson: one JSON object a line with ``word, countrycode, timestamp, recognized,
  key_id, drawing``; simplified strokes are ``[[x...], [y...]]`` (ints 0..255), raw strokes
  ``[[x...], [y...], [t...]]`` (float pixels, int milliseconds).

Drawings travel as :class:`Drawings`, a CSR-packed batch (all points back to back, stroke and
drawing offsets), with their metadata in a :class:`pandas.DataFrame` beside them.

Reading is strict by default: a malformed row raises :class:`DataError` naming the file, line
and key_id. With ``lenient=True`` such rows are skipped and counted per reason in a
:class:`SkipReport`, which the caller prints or stores; nothing is dropped silently.
"""
from __future__ import annotations

import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from . import _parse
from ._files import atomic_path

TRAIN_COLUMNS = ["countrycode", "drawing", "key_id", "recognized", "timestamp", "word"]
TEST_COLUMNS = ["key_id", "countrycode", "drawing"]
NDJSON_FIELDS = ["word", "countrycode", "timestamp", "recognized", "key_id", "drawing"]
META_COLUMNS = ["key_id", "word", "countrycode", "recognized", "timestamp"]

# Reasons a row can be rejected, besides the drawing parser's (see ``_parse.PARSE_REASONS``).
ROW_REASONS = ("bad_row", "bad_key_id", "duplicate_key_id", "bad_recognized", "bad_timestamp",
               "unknown_word")

_INT64_DIGITS = 18  # key_ids are non-negative and below 10**18


class DataError(ValueError):
    """A malformed input row, with where it is and what is wrong."""

    def __init__(self, path: str | os.PathLike, line: int | None, key_id: object, reason: str,
                 detail: str = ""):
        self.path, self.line, self.key_id, self.reason, self.detail = Path(path), line, key_id, reason, detail
        where = f"{path}" + (f", line {line}" if line is not None else "")
        kid = f" (key_id {key_id})" if key_id not in (None, "") else ""
        super().__init__(f"{where}{kid}: {reason}" + (f": {detail}" if detail else ""))

    def __reduce__(self):  # picklable, so errors cross process pools intact
        return type(self), (self.path, self.line, self.key_id, self.reason, self.detail)


@dataclass
class SkipReport:
    """Rows skipped by lenient reading: a count per reason and the first few examples."""

    counts: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    max_examples: int = 10

    def add(self, err: DataError) -> None:
        self.counts[err.reason] += 1
        if len(self.examples) < self.max_examples:
            self.examples.append(str(err))

    def merge(self, other: "SkipReport") -> None:
        self.counts.update(other.counts)
        room = self.max_examples - len(self.examples)
        self.examples.extend(other.examples[:max(room, 0)])

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def __str__(self) -> str:
        if not self.total:
            return "no rows skipped"
        parts = ", ".join(f"{r}: {n}" for r, n in sorted(self.counts.items()))
        return f"skipped {self.total} rows ({parts})"


@dataclass
class Drawings:
    """A batch of drawings, CSR-packed.

    Attributes:
        xy: (P, 2) coordinates of all points; uint8 for simplified data, float64 for raw as
            read (a raw store keeps float32).
        t: (P,) milliseconds since the drawing's first point (raw data), else None.
        stroke_offsets: (S+1,) int64; stroke s holds points ``stroke_offsets[s]:stroke_offsets[s+1]``.
        drawing_offsets: (D+1,) int64; drawing d holds strokes ``drawing_offsets[d]:drawing_offsets[d+1]``.
        in_frame: the points are already in the 0..255 frame although they carry times (a timed
            store's simplified points, or a batch augmented there); raw screen points
            (False, with times) are aligned and scaled by the renderers.
    """

    xy: np.ndarray
    t: np.ndarray | None
    stroke_offsets: np.ndarray
    drawing_offsets: np.ndarray
    in_frame: bool = False

    def __len__(self) -> int:
        return len(self.drawing_offsets) - 1

    @property
    def raw(self) -> bool:
        return self.t is not None

    def strokes(self, i: int) -> list[np.ndarray]:
        """Drawing ``i`` as a list of (n, 2) arrays, or (n, 3) [x, y, t] for raw data."""
        s0, s1 = self.drawing_offsets[i], self.drawing_offsets[i + 1]
        out = []
        for s in range(s0, s1):
            a, b = self.stroke_offsets[s], self.stroke_offsets[s + 1]
            if self.t is None:
                out.append(self.xy[a:b])
            else:
                out.append(np.column_stack([self.xy[a:b].astype(np.float64), self.t[a:b]]))
        return out

    def point_counts(self) -> np.ndarray:
        """Points per drawing."""
        return np.diff(self.stroke_offsets[self.drawing_offsets])

    def stroke_counts(self) -> np.ndarray:
        """Strokes per drawing."""
        return np.diff(self.drawing_offsets)

    @classmethod
    def from_strokes(cls, drawings: Sequence[Sequence[np.ndarray]], dtype=np.uint8) -> "Drawings":
        """Pack drawings given as lists of (n, 2) or (n, 3) arrays (3rd column = t)."""
        lens = [len(s) for d in drawings for s in d]
        ns = [len(d) for d in drawings]
        stroke_offsets = np.zeros(len(lens) + 1, np.int64)
        np.cumsum(lens, out=stroke_offsets[1:])
        drawing_offsets = np.zeros(len(ns) + 1, np.int64)
        np.cumsum(ns, out=drawing_offsets[1:])
        flat = [np.asarray(s) for d in drawings for s in d]
        width = flat[0].shape[1] if flat else 2
        pts = np.concatenate(flat) if flat else np.zeros((0, width))
        t = pts[:, 2].astype(np.int32) if width == 3 else None
        return cls(pts[:, :2].astype(dtype), t, stroke_offsets, drawing_offsets)

    def take(self, idx: np.ndarray) -> "Drawings":
        """The drawings at ``idx`` (integer indices or a boolean mask), in that order."""
        idx = np.asarray(idx)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        idx = idx.astype(np.int64)
        s_start = self.drawing_offsets[idx]
        s_count = self.drawing_offsets[idx + 1] - s_start
        drawing_offsets = np.zeros(len(idx) + 1, np.int64)
        np.cumsum(s_count, out=drawing_offsets[1:])
        # stroke lengths of the chosen drawings, then their points
        lens = np.diff(self.stroke_offsets)
        sel_lens = np.empty(int(drawing_offsets[-1]), np.int64)
        _parse.gather_points(lens, s_start, s_count, sel_lens)
        stroke_offsets = np.zeros(len(sel_lens) + 1, np.int64)
        np.cumsum(sel_lens, out=stroke_offsets[1:])
        p_start = self.stroke_offsets[s_start]
        p_count = self.stroke_offsets[s_start + s_count] - p_start
        xy = np.empty((int(stroke_offsets[-1]), 2), self.xy.dtype)
        _parse.gather_points(self.xy, p_start, p_count, xy)
        t = None
        if self.t is not None:
            t = np.empty(len(xy), self.t.dtype)
            _parse.gather_points(self.t, p_start, p_count, t)
        return Drawings(xy, t, stroke_offsets, drawing_offsets, self.in_frame)

    @staticmethod
    def concat(parts: Sequence["Drawings"]) -> "Drawings":
        """Concatenate batches (all simplified or all raw)."""
        if not parts:
            return Drawings(np.zeros((0, 2), np.uint8), None, np.zeros(1, np.int64), np.zeros(1, np.int64))
        xy = np.concatenate([p.xy for p in parts])
        t = None if parts[0].t is None else np.concatenate([p.t for p in parts])
        so = [np.zeros(1, np.int64)]
        do = [np.zeros(1, np.int64)]
        pbase = sbase = 0
        for p in parts:
            so.append(p.stroke_offsets[1:] + pbase)
            do.append(p.drawing_offsets[1:] + sbase)
            pbase += int(p.stroke_offsets[-1])
            sbase += int(p.drawing_offsets[-1])
        return Drawings(xy, t, np.concatenate(so), np.concatenate(do), all(p.in_frame for p in parts))

    def to_json(self) -> list[str]:
        """Each drawing as the JSON string Kaggle's CSV and Google's ndjson use."""
        out = []
        raw = self.t is not None
        for i in range(len(self)):
            strokes = []
            for s in range(self.drawing_offsets[i], self.drawing_offsets[i + 1]):
                a, b = self.stroke_offsets[s], self.stroke_offsets[s + 1]
                lists = [_num_list(self.xy[a:b, 0]), _num_list(self.xy[a:b, 1])]
                if raw:
                    lists.append(_num_list(self.t[a:b]))
                strokes.append("[" + ",".join(lists) + "]")
            out.append("[" + ",".join(strokes) + "]")
        return out


def _num_list(a: np.ndarray) -> str:
    if a.dtype.kind == "f" and np.array_equal(a, np.floor(a)):
        a = a.astype(np.int64)  # whole numbers (most raw drawings) print as ints, like Google's
    if a.dtype.kind == "f":
        # other values with the shortest digits that read back to the same value in the
        # array's own precision
        return "[" + ",".join(np.format_float_positional(v, unique=True, trim="-") for v in a) + "]"
    return "[" + ",".join(map(str, a.tolist())) + "]"


@dataclass
class Chunk:
    """A block of consecutive rows of one file: metadata, drawings and source line numbers."""

    meta: pd.DataFrame
    drawings: Drawings
    lines: np.ndarray
    timestamp_us: np.ndarray | None = None  # parsed ``timestamp``, int64 microseconds since 1970

    def __len__(self) -> int:
        return len(self.meta)


# --------------------------------------------------------------------------- parsing core

def parse_drawing_column(data: np.ndarray, offsets: np.ndarray, dims: int
                         ) -> tuple[Drawings, np.ndarray]:
    """Parse a column of drawing JSON strings given as bytes + offsets.

    Returns the good rows' drawings (bad rows left out) and a status code per row
    (0 = good, else a key of ``_parse.PARSE_REASONS``).
    """
    offsets = offsets.astype(np.int64, copy=False)
    n_rows = len(offsets) - 1
    nbytes = int(offsets[-1] - offsets[0]) if n_rows else 0
    cap = nbytes // 2 + 1
    xy = np.empty((cap, 2), np.float64)
    ts = np.empty(cap if dims == _parse.DIMS_RAW else 1, np.float64)
    stroke_len = np.empty(nbytes // 4 + 1, np.int64)
    row_strokes = np.empty(n_rows, np.int64)
    status = np.empty(n_rows, np.int8)
    slow = np.empty((cap, 4), np.int64)
    p, s, ns = _parse.parse_drawings(data, offsets, dims, xy, ts, stroke_len, row_strokes, status, slow)
    if ns:
        _exact_values(data, slow[:ns], xy, ts)
    stroke_offsets = np.zeros(s + 1, np.int64)
    np.cumsum(stroke_len[:s], out=stroke_offsets[1:])
    good = row_strokes[status == 0]
    drawing_offsets = np.zeros(len(good) + 1, np.int64)
    np.cumsum(good, out=drawing_offsets[1:])
    raw = dims == _parse.DIMS_RAW
    t = ts[:p].astype(np.int32) if raw else None
    # raw coordinates stay float64: Google's simplification breaks exact ties that float32 moves
    return Drawings(xy[:p].copy() if raw else xy[:p].astype(np.uint8), t, stroke_offsets, drawing_offsets), status


def _exact_values(data: np.ndarray, slow: np.ndarray, xy: np.ndarray, ts: np.ndarray) -> None:
    """Re-read the numbers the kernel could not round exactly, with numpy's correctly rounded
    string -> float64 conversion over all of them at once."""
    text = np.zeros((len(slow), _parse.SLOW_WIDTH), np.uint8)
    too_long = _parse.copy_numbers(data, slow, len(slow), text)
    values = text.view(f"S{_parse.SLOW_WIDTH}").ravel().astype(np.float64)
    if too_long:
        for k in np.flatnonzero(slow[:, 3] - slow[:, 2] > _parse.SLOW_WIDTH):
            values[k] = float(data[slow[k, 2]:slow[k, 3]].tobytes())
    q, col = slow[:, 0], slow[:, 1]
    xy_rows = col < 2
    xy[q[xy_rows], col[xy_rows]] = values[xy_rows]
    ts[q[~xy_rows]] = values[~xy_rows]


def parse_drawing_strings(strings: Sequence[str] | Sequence[bytes], dims: int = _parse.DIMS_SIMPLIFIED
                          ) -> tuple[Drawings, np.ndarray]:
    """Parse a sequence of drawing JSON strings (convenience wrapper of :func:`parse_drawing_column`)."""
    enc = [s.encode() if isinstance(s, str) else bytes(s) for s in strings]
    offsets = np.zeros(len(enc) + 1, np.int64)
    np.cumsum([len(b) for b in enc], out=offsets[1:])
    data = np.frombuffer(b"".join(enc), np.uint8) if enc else np.zeros(0, np.uint8)
    return parse_drawing_column(data, offsets, dims)


def _string_buffers(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Bytes and int64 offsets of a pyarrow string array, without copying the bytes."""
    arr = arr.cast(pa.large_string()) if arr.type == pa.string() else arr
    _, off_buf, data_buf = arr.buffers()
    offsets = np.frombuffer(off_buf, np.int64, count=len(arr) + 1, offset=arr.offset * 8)
    data = np.frombuffer(data_buf, np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    return data, offsets


# --------------------------------------------------------------------------- validation

class _RowChecker:
    """Applies the per-row rules shared by the CSV and ndjson readers."""

    def __init__(self, path: Path, lenient: bool, report: SkipReport, words: set[str] | None,
                 expected_word: str | None):
        self.path, self.lenient, self.report = path, lenient, report
        self.words, self.expected_word = words, expected_word
        self.seen: set[int] = set()

    def fail(self, line: int | None, key_id: object, reason: str, detail: str = "") -> None:
        err = DataError(self.path, line, key_id, reason, detail)
        if not self.lenient:
            raise err
        self.report.add(err)

    def check(self, meta: pd.DataFrame, status: np.ndarray, lines: np.ndarray,
              key_raw: Sequence[object], errors: dict[int, tuple[str, str]],
              word_ok: np.ndarray | None = None) -> np.ndarray:
        """Return a boolean mask of good rows; raise (strict) or record (lenient) the rest.

        ``status`` holds drawing-parser codes; ``errors`` maps a row to an earlier
        (reason, detail) found by the caller (bad key_id, bad recognized, ...); ``word_ok``
        is the caller's word check, computed here when None.
        """
        n = len(meta)
        bad: dict[int, tuple[str, str]] = dict(errors)
        for r in np.flatnonzero(status):
            bad.setdefault(int(r), (_parse.PARSE_REASONS[int(status[r])], "in the drawing"))
        if "word" in meta and (self.words is not None or self.expected_word is not None):
            words = meta["word"].to_numpy()
            if word_ok is None:
                word_ok = np.ones(n, bool)
                if self.expected_word is not None:
                    word_ok &= words == self.expected_word
                if self.words is not None:
                    word_ok &= np.fromiter((w in self.words for w in words), bool, n)
            for r in np.flatnonzero(~word_ok):
                want = f"the file is for {self.expected_word!r}" if self.expected_word else "not a known class"
                bad.setdefault(int(r), ("unknown_word", f"word {words[r]!r}: {want}"))
        keys = meta["key_id"].to_numpy()
        rows = np.ones(n, bool)
        rows[list(bad)] = False
        klist = keys[rows].tolist()
        kset = set(klist)
        if len(kset) == len(klist) and self.seen.isdisjoint(kset):
            self.seen |= kset  # the common case: no duplicate, checked with set operations
        else:
            for r in np.flatnonzero(rows):
                k = int(keys[r])
                if k in self.seen:
                    bad[int(r)] = ("duplicate_key_id", "already seen earlier in this file")
                else:
                    self.seen.add(k)
        good = np.ones(n, bool)
        for r in sorted(bad):
            good[r] = False
            kr = key_raw[r]
            kr = kr.as_py() if isinstance(kr, pa.Scalar) else kr
            self.fail(int(lines[r]) if lines[r] >= 0 else None, kr, *bad[r])
        return good


def _parse_key_ids(keys: Sequence[str]) -> tuple[np.ndarray, dict[int, tuple[str, str]]]:
    out = np.zeros(len(keys), np.int64)
    errors = {}
    for r, k in enumerate(keys):
        s = str(k).strip()
        if s.isdigit() and len(s) <= _INT64_DIGITS:
            out[r] = int(s)
        else:
            errors[r] = ("bad_key_id", f"key_id {k!r} is not a non-negative integer")
    return out, errors


_TRUE = {"True", "true", "TRUE", "1"}
_FALSE = {"False", "false", "FALSE", "0"}


def _parse_recognized(values: Sequence[object], errors: dict[int, tuple[str, str]]) -> np.ndarray:
    out = np.zeros(len(values), bool)
    for r, v in enumerate(values):
        if v is True or v is False:
            out[r] = v
        elif str(v) in _TRUE:
            out[r] = True
        elif str(v) not in _FALSE:
            errors.setdefault(r, ("bad_recognized", f"recognized {v!r} is not true/false"))
    return out


def parse_timestamps(values: Sequence[object]) -> np.ndarray:
    """Google's timestamps ("2017-03-27 00:14:57.31033 UTC") as int64 microseconds since 1970.

    Unparseable or missing values give ``np.iinfo(np.int64).min`` (NaT).
    """
    s = pd.Series(values, dtype=object).astype(str).str.removesuffix(" UTC")
    ts = pd.to_datetime(s, errors="coerce", format="ISO8601")
    return ts.to_numpy(dtype="datetime64[us]").astype(np.int64)


def _check_timestamps(values: Sequence[object], errors: dict[int, tuple[str, str]]) -> np.ndarray:
    """Parse timestamps, record the unparseable ones in ``errors``, return the parsed values."""
    ts = parse_timestamps(values)
    for r in np.flatnonzero(ts == np.iinfo(np.int64).min):
        errors.setdefault(int(r), ("bad_timestamp", f"timestamp {values[r]!r} is not a date-time"))
    return ts


# --------------------------------------------------------------------------- readers

def _dims_for(raw: bool) -> int:
    return _parse.DIMS_RAW if raw else _parse.DIMS_SIMPLIFIED


def iter_csv(path: str | os.PathLike, *, raw: bool = False, lenient: bool = False,
             report: SkipReport | None = None, words: Iterable[str] | None = None,
             check_word_matches_file: bool | None = None,
             block_size: int = 4 << 20) -> Iterator[Chunk]:
    """Stream a Kaggle CSV (train per-class file or test file) in chunks.

    Args:
        path: the CSV file.
        raw: strokes carry times (Kaggle's ``*_raw`` files); default simplified.
        lenient: skip malformed rows (counted in ``report``) instead of raising DataError.
        report: where skips are counted; a new one is made if None.
        words: known class names; a row with another word is malformed.
        check_word_matches_file: rows must have ``word == file stem`` (default: when the file
            has a ``word`` column and the file is not a test file).
        block_size: bytes per pyarrow block; bounds memory.
    """
    path = Path(path)
    report = report if report is not None else SkipReport()
    with open(path, "rb") as f:
        header = f.readline().decode("utf-8", "replace").strip().split(",")
    required = TRAIN_COLUMNS if "word" in header else TEST_COLUMNS
    missing = [c for c in required if c not in header]
    if missing:
        raise DataError(path, 1, None, "bad_header", f"missing column(s) {missing}; header is {header}")
    if check_word_matches_file is None:
        check_word_matches_file = "word" in header
    checker = _RowChecker(path, lenient, report, set(words) if words is not None else None,
                          path.stem if check_word_matches_file else None)
    skipped_lines: list[int] = []
    pending: list[DataError] = []

    def on_invalid(row) -> str:
        # exceptions raised here are swallowed by pyarrow: stash ours and let it stop
        line = row.number
        err = DataError(path, line, None, "bad_row", f"{row.actual_columns} fields, expected {row.expected_columns}")
        if not lenient:
            pending.append(err)
            return "error"
        if line is not None:
            skipped_lines.append(line)
        report.add(err)
        return "skip"

    try:
        reader = pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(block_size=block_size, use_threads=False),
            parse_options=pacsv.ParseOptions(newlines_in_values=False, invalid_row_handler=on_invalid),
            convert_options=pacsv.ConvertOptions(column_types={c: pa.large_string() for c in header},
                                                 strings_can_be_null=False),
        )
        batches = iter(reader)
    except pa.ArrowInvalid as e:
        raise (pending[0] if pending else DataError(path, None, None, "bad_csv", str(e))) from None
    next_line = 2  # line 1 is the header
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            break
        except pa.ArrowInvalid as e:
            raise (pending[0] if pending else DataError(path, None, None, "bad_csv", str(e))) from None
        n = batch.num_rows
        if n == 0:
            continue
        lines = _line_numbers(next_line, n, skipped_lines)
        next_line = int(lines[-1]) + 1
        cols = {name: batch.column(name) for name in batch.schema.names}
        errors: dict[int, tuple[str, str]] = {}
        key_id = _arrow_key_ids(cols["key_id"], errors)
        meta = {"key_id": key_id,
                "countrycode": cols["countrycode"].to_numpy(zero_copy_only=False).astype(object)}
        ts_us = None
        word_ok = None
        if "word" in cols:
            word = cols["word"]
            meta["word"] = word.to_numpy(zero_copy_only=False).astype(object)
            meta["recognized"] = _arrow_recognized(cols["recognized"], errors)
            meta["timestamp"] = cols["timestamp"].to_numpy(zero_copy_only=False).astype(object)
            ts_us = _arrow_timestamps(cols["timestamp"], errors)
            ok = pa.array(np.ones(n, bool))
            if checker.expected_word is not None:
                ok = pc.and_(ok, pc.equal(word, checker.expected_word))
            if checker.words is not None:
                ok = pc.and_(ok, pc.is_in(word, value_set=pa.array(sorted(checker.words), pa.large_string())))
            word_ok = ok.to_numpy(zero_copy_only=False)
        meta = pd.DataFrame(meta)
        data, offsets = _string_buffers(cols["drawing"])
        drawings, status = parse_drawing_column(data, offsets, _dims_for(raw))
        good = checker.check(meta, status, lines, cols["key_id"], errors, word_ok)
        yield _keep(meta, drawings, status, good, lines, ts_us)


def _arrow_key_ids(col: pa.Array, errors: dict[int, tuple[str, str]]) -> np.ndarray:
    ok = pc.and_(pc.utf8_is_digit(col), pc.less_equal(pc.utf8_length(col), _INT64_DIGITS))
    okn = ok.to_numpy(zero_copy_only=False)
    for r in np.flatnonzero(~okn):
        errors.setdefault(int(r), ("bad_key_id", f"key_id {col[r].as_py()!r} is not a non-negative integer"))
    return pc.cast(pc.if_else(ok, col, "0"), pa.int64()).to_numpy()


def _arrow_recognized(col: pa.Array, errors: dict[int, tuple[str, str]]) -> np.ndarray:
    t = pc.is_in(col, value_set=pa.array(sorted(_TRUE), pa.large_string())).to_numpy(zero_copy_only=False)
    f = pc.is_in(col, value_set=pa.array(sorted(_FALSE), pa.large_string())).to_numpy(zero_copy_only=False)
    for r in np.flatnonzero(~(t | f)):
        errors.setdefault(int(r), ("bad_recognized", f"recognized {col[r].as_py()!r} is not true/false"))
    return t


def _arrow_timestamps(col: pa.Array, errors: dict[int, tuple[str, str]]) -> np.ndarray:
    try:
        stripped = pc.replace_substring_regex(col, pattern=" UTC$", replacement="")
        return pc.cast(stripped, pa.timestamp("us")).to_numpy(zero_copy_only=False).astype(np.int64)
    except pa.ArrowInvalid:  # some value is bad: find which, the slow way
        return _check_timestamps(col.to_pylist(), errors)


def _line_numbers(start: int, n: int, skipped: list[int]) -> np.ndarray:
    """Line numbers of the next ``n`` kept rows from ``start``, stepping over skipped lines."""
    skip = {s for s in skipped if s >= start}
    if not skip:
        return np.arange(start, start + n, dtype=np.int64)
    out = np.empty(n, np.int64)
    line = start
    for i in range(n):
        while line in skip:
            line += 1
        out[i] = line
        line += 1
    return out


def _keep(meta: pd.DataFrame, drawings: Drawings, status: np.ndarray, good: np.ndarray,
          lines: np.ndarray, timestamp_us: np.ndarray | None = None) -> Chunk:
    """Drop rejected rows; ``drawings`` already lacks the rows the parser rejected."""
    if not good.all():
        drawings = drawings.take(good[status == 0])
        meta = meta[good].reset_index(drop=True)
        lines = lines[good]
        timestamp_us = timestamp_us[good] if timestamp_us is not None else None
    return Chunk(meta[[c for c in META_COLUMNS if c in meta]], drawings, lines, timestamp_us)


def iter_ndjson(path: str | os.PathLike, *, raw: bool | None = None, lenient: bool = False,
                report: SkipReport | None = None, words: Iterable[str] | None = None,
                check_word_matches_file: bool = True, chunk_rows: int = 8192) -> Iterator[Chunk]:
    """Stream a Google ndjson file (simplified, or raw with per-point times) in chunks.

    Args:
        path: the ndjson file, one drawing object a line.
        raw: whether strokes carry times; None detects it from the first row.
        lenient, report, words: as in :func:`iter_csv`.
        check_word_matches_file: rows must have ``word == file stem`` (Google's per-class files).
        chunk_rows: rows per yielded chunk; bounds memory.
    """
    path = Path(path)
    report = report if report is not None else SkipReport()
    checker = _RowChecker(path, lenient, report, set(words) if words is not None else None,
                          path.stem if check_word_matches_file else None)
    with open(path, "rb") as f:
        buf: list[tuple[int, bytes]] = []
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            if raw is None:
                raw = _detect_raw(line)
            buf.append((lineno, line))
            if len(buf) >= chunk_rows:
                yield _ndjson_chunk(buf, raw, checker)
                buf = []
        if buf:
            yield _ndjson_chunk(buf, bool(raw), checker)


_DRAWING_KEY = re.compile(rb'"drawing"\s*:\s*\[')


def _drawing_span(line: bytes) -> tuple[int, int] | None:
    """Byte span of the ``drawing`` value in an ndjson line, or None if not found."""
    m = _DRAWING_KEY.search(line)
    if m is None:
        return None
    start = m.end() - 1
    end = _parse.bracket_span(np.frombuffer(line, np.uint8), start)
    return (start, end) if end > 0 else None


def _detect_raw(line: bytes) -> bool:
    try:
        strokes = json.loads(line)["drawing"]
        return len(strokes[0]) == 3
    except Exception:
        return False  # the row itself will be reported when parsed


def _ndjson_chunk(rows: list[tuple[int, bytes]], raw: bool, checker: _RowChecker) -> Chunk:
    n = len(rows)
    lines = np.array([ln for ln, _ in rows], np.int64)
    errors: dict[int, tuple[str, str]] = {}
    key_raw: list[object] = [None] * n
    cols: dict[str, list] = {k: [None] * n for k in ("word", "countrycode", "timestamp", "recognized")}
    drawing_strs: list[bytes] = [b""] * n
    for r, (_, line) in enumerate(rows):
        # the drawing's bytes go straight to the compiled parser; json reads the rest
        span = _drawing_span(line)
        head = line if span is None else line[:span[0]] + b"0" + line[span[1]:]
        try:
            obj = json.loads(head)
            if not isinstance(obj, dict):
                raise ValueError("not a JSON object")
        except ValueError as e:
            errors[r] = ("bad_json", f"line is not a JSON object ({e})")
            continue
        missing = [k for k in NDJSON_FIELDS if k not in obj]
        key_raw[r] = obj.get("key_id")
        if missing:
            errors[r] = ("bad_row", f"missing field(s) {missing}")
            continue
        for k in cols:
            cols[k][r] = obj[k]
        if span is None:  # the value is there but not bracketed like a drawing
            errors[r] = ("bad_json", f"drawing is not a list of strokes: {str(obj['drawing'])[:40]!r}")
            continue
        drawing_strs[r] = line[span[0]:span[1]]
    key_id, kerr = _parse_key_ids([str(k) if k is not None else "" for k in key_raw])
    for r, e in kerr.items():
        errors.setdefault(r, e)
    recognized = _parse_recognized(cols["recognized"], errors)
    ts_us = _check_timestamps(cols["timestamp"], errors)
    meta = pd.DataFrame({"key_id": key_id, "word": cols["word"],
                         "countrycode": [c if c is not None else "" for c in cols["countrycode"]],
                         "recognized": recognized, "timestamp": cols["timestamp"]})
    # rows rejected above were given b"" and so fail the parser too; their own reason wins
    drawings, status = parse_drawing_strings(drawing_strs, _dims_for(raw))
    good = checker.check(meta, status, lines, key_raw, errors)
    return _keep(meta, drawings, status, good, lines, ts_us)


# Kaggle's file set names what a file holds by its folder (train_raw/, train_simplified/) or
# its own name (test_raw.csv, test_simplified.csv); never by a class name (e.g. "strawberry").
RAW_FOLDERS, SIMPLIFIED_FOLDERS = ("train_raw",), ("train_simplified",)
RAW_FILES, SIMPLIFIED_FILES = ("test_raw.csv",), ("test_simplified.csv",)


def has_times(path: str | os.PathLike) -> bool | None:
    """Whether a drawing file's strokes carry times (raw) — from Kaggle's names, else its content.

    Kaggle's layout decides first: a file in ``train_raw/`` or named ``test_raw.csv`` is raw, one
    in ``train_simplified/`` or named ``test_simplified.csv`` is not. Any other file is judged
    by its first row's first stroke (three lists: raw). None when the file has no readable row
    (the reader then reports the row itself).
    """
    path = Path(path)
    if path.parent.name in RAW_FOLDERS or path.name in RAW_FILES:
        return True
    if path.parent.name in SIMPLIFIED_FOLDERS or path.name in SIMPLIFIED_FILES:
        return False
    with open(path, "rb") as f:
        if path.suffix == ".csv":
            import csv
            import io

            head = f.read(1 << 20).decode("utf-8", "replace")
            rows = csv.reader(io.StringIO(head))
            header = next(rows, None)
            row = next(rows, None)
            if not header or not row or "drawing" not in header or len(row) != len(header):
                return None
            text = row[header.index("drawing")]
        else:
            line = next((ln for ln in f if ln.strip()), b"")
            try:
                text = json.dumps(json.loads(line)["drawing"])
            except Exception:
                return None
    try:
        return len(json.loads(text)[0]) == 3
    except Exception:
        return None


def iter_file(path: str | os.PathLike, **kwargs) -> Iterator[Chunk]:
    """Stream a ``.csv`` or ``.ndjson`` file, chosen by extension."""
    path = Path(path)
    if path.suffix == ".csv":
        return iter_csv(path, **kwargs)
    if path.suffix in (".ndjson", ".jsonl"):
        return iter_ndjson(path, **kwargs)
    raise ValueError(f"{path}: unknown format (expected .csv or .ndjson)")


def read_file(path: str | os.PathLike, **kwargs) -> tuple[pd.DataFrame, Drawings, SkipReport]:
    """Read a whole file into memory: (metadata, drawings, skip report)."""
    report = kwargs.pop("report", None) or SkipReport()
    chunks = list(iter_file(path, report=report, **kwargs))
    meta = pd.concat([c.meta for c in chunks], ignore_index=True) if chunks else pd.DataFrame(columns=META_COLUMNS)
    return meta, Drawings.concat([c.drawings for c in chunks]), report


# --------------------------------------------------------------------------- writers

def write_csv(path: str | os.PathLike, meta: pd.DataFrame, drawings: Drawings, *, test: bool = False) -> None:
    """Write Kaggle's CSV layout atomically (``test=True``: ``key_id,countrycode,drawing``)."""
    if len(meta) != len(drawings):
        raise ValueError(f"{path}: {len(meta)} metadata rows but {len(drawings)} drawings")
    df = meta.copy()
    df["drawing"] = drawings.to_json()
    cols = TEST_COLUMNS if test else TRAIN_COLUMNS
    with atomic_path(path) as tmp:
        df[cols].to_csv(tmp, index=False)


def write_ndjson(path: str | os.PathLike, meta: pd.DataFrame, drawings: Drawings) -> None:
    """Write Google's ndjson layout atomically (``key_id`` as a string, like Google's files)."""
    write_ndjson_chunks(path, [(meta, drawings)])


def write_ndjson_chunks(path: str | os.PathLike, chunks: Iterable[tuple[pd.DataFrame, Drawings]]) -> int:
    """Write (metadata, drawings) chunks as one ndjson file, atomically; returns the row count."""
    n = 0
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        for meta, drawings in chunks:
            if len(meta) != len(drawings):
                raise ValueError(f"{path}: {len(meta)} metadata rows but {len(drawings)} drawings")
            for row, d in zip(meta.itertuples(index=False), drawings.to_json()):
                head = json.dumps({"word": row.word, "countrycode": row.countrycode,
                                   "timestamp": row.timestamp, "recognized": bool(row.recognized),
                                   "key_id": str(row.key_id)}, separators=(",", ":"))
                f.write(head[:-1] + ',"drawing":' + d + "}\n")
            n += len(meta)
    return n
