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

import csv
import io
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

from .._files import atomic_path
from . import _parse

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

    @classmethod
    def from_google(cls, drawings: Sequence[object]) -> "Drawings":
        """Pack drawings given in Google's own form: each a list of strokes ``[xs, ys]`` (Kaggle's
        simplified files) or ``[xs, ys, ts]`` (raw, with milliseconds), or an ndjson row (a dict
        with a ``drawing`` key) holding one. Coordinates that are integers in 0..255 without
        times stay uint8 (simplified); anything else is kept as float64 (raw, aligned and scaled
        later). ValueError names the drawing and stroke that is malformed."""
        packed, widths, simple = [], set(), True
        for i, d in enumerate(drawings):
            where = f"drawing {i}"
            if isinstance(d, dict) and "drawing" not in d:
                raise ValueError(f"{where}: a row without a 'drawing' key (keys: {', '.join(map(str, d))})")
            strokes = d.get("drawing") if isinstance(d, dict) else d
            if not isinstance(strokes, (list, tuple)) or not strokes:
                raise ValueError(f"{where}: expected a non-empty list of strokes [xs, ys] or [xs, ys, ts], "
                                 f"got {type(strokes).__name__}")
            arrays = []
            for j, st in enumerate(strokes):
                try:
                    a = np.asarray(st, np.float64)
                except (TypeError, ValueError):
                    a = None
                if a is None or a.ndim != 2 or a.shape[0] not in (2, 3) or a.shape[1] == 0 or not np.isfinite(a).all():
                    raise ValueError(f"{where}, stroke {j}: expected [xs, ys] or [xs, ys, ts] of equal, "
                                     f"non-zero length with finite numbers")
                widths.add(a.shape[0])
                simple &= a.shape[0] == 2 and bool((a == np.round(a)).all() and a.min() >= 0 and a.max() <= 255)
                arrays.append(a.T)
            packed.append(arrays)
        if len(widths) > 1:
            raise ValueError("strokes mix [xs, ys] and [xs, ys, ts]: give times for every stroke or none")
        return cls.from_strokes(packed, np.uint8 if simple else np.float64)

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
    arr = arr.cast(pa.large_string()) if arr.type in (pa.string(), pa.binary()) else arr
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


MAX_ROW_BYTES = 16 << 20  # longer rows are a per-row error; the real sample's longest raw row is 37 KB
_EDGE_BYTES = 1 << 16  # kept from each end of an overlong row, to name its key_id
_BOM = b"\xef\xbb\xbf"


@dataclass
class _LongLine:
    """A line longer than the reader's limit, streamed past: its size and its two ends."""

    nbytes: int
    head: bytes
    tail: bytes


def _csv_line_blocks(f, block_size: int, max_row_bytes: int) -> Iterator[bytes | _LongLine]:
    """Blocks of whole lines (about ``block_size`` bytes each) of an open binary file.

    A line that grows past ``max_row_bytes`` before its end is streamed past, not held: only
    its size and ends come back, as a :class:`_LongLine`. The last line need not end in a
    newline.
    """
    buf = bytearray()
    while True:
        piece = f.read(block_size)
        if piece:
            buf += piece
        elif not buf:
            return
        elif buf[-1] != 10:
            buf += b"\n"
        cut = buf.rfind(b"\n") + 1
        if cut:
            block = bytes(buf[:cut])
            del buf[:cut]
            yield block
        elif len(buf) > max_row_bytes:
            yield _rest_of_long_line(f, bytes(buf))
            buf = bytearray()


def _rest_of_long_line(f, start: bytes) -> _LongLine:
    """Stream past the rest of a line that began with ``start`` (which holds no newline),
    keeping only its size and its two ends; the file is left just after the line."""
    nbytes, head, tail = len(start), start[:_EDGE_BYTES], start[-_EDGE_BYTES:]
    while more := f.readline(1 << 20):
        rest = more.removesuffix(b"\n")
        nbytes += len(rest)
        tail = (tail + rest)[-_EDGE_BYTES:]
        if len(rest) < len(more):
            break
    return _LongLine(nbytes, head, tail)


def _too_long(nbytes: int, max_row_bytes: int) -> str:
    return f"{nbytes:,} bytes; rows up to {max_row_bytes:,} bytes are read"


def _edge_key_id(head: bytes, tail: bytes, header: list[str]) -> str | None:
    """The key_id of a CSV row known only by its ends: the fields before the (quoted) drawing
    come from its head, those after it from its tail. None when it cannot be found."""
    if "key_id" not in header or "drawing" not in header:
        return None
    k, d = header.index("key_id"), header.index("drawing")
    if k < d:
        fields = head.split(b'"', 1)[0].split(b",")
        value = fields[k] if len(fields) > k else b""
    else:
        fields = tail.rsplit(b'"', 1)[-1].split(b",")
        value = fields[k - d] if len(fields) > k - d else b""
    value = value.strip()
    return value.decode("ascii") if value.isdigit() and len(value) <= _INT64_DIGITS else None


_LINE_PROBLEMS = {
    _parse.LINE_ODD_QUOTES: ("bad_row", "a quoted value runs past the end of its line (an unbalanced quote)"),
    _parse.LINE_INNER_CR: ("bad_row", "a carriage return inside the row"),
}
# lines flagged here besides :func:`._parse.csv_lines`' flags
_LINE_TOO_LONG, _LINE_MISCOUNTED = -1, -2


def _utf8_column(col: pa.Array, name: str, errors: dict[int, tuple[str, str]]) -> pa.Array:
    """A binary column as strings; a value that is not UTF-8 becomes "" and a row error."""
    try:
        return col.cast(pa.large_string())
    except pa.ArrowInvalid:
        out = []
        for r, v in enumerate(col.to_pylist()):
            try:
                out.append(v.decode("utf-8"))
            except UnicodeDecodeError as e:
                errors.setdefault(r, ("bad_utf8", f"{name} is not valid UTF-8 (byte {e.start}: {v[e.start:e.start + 1]!r})"))
                out.append("")
        return pa.array(out, pa.large_string())


def iter_csv(path: str | os.PathLike, *, raw: bool = False, lenient: bool = False,
             report: SkipReport | None = None, words: Iterable[str] | None = None,
             check_word_matches_file: bool | None = None,
             block_size: int = 4 << 20, max_row_bytes: int = MAX_ROW_BYTES) -> Iterator[Chunk]:
    """Stream a Kaggle CSV (train per-class file or test file) in chunks.

    The file is cut into blocks of whole lines here, and pyarrow parses each block: every row
    is one physical line, so line numbers stay true after blank lines, and a broken line (an
    unbalanced quote, a stray carriage return, a row over ``max_row_bytes``, a value that is
    not UTF-8) is one row's error, not the file's. A UTF-8 byte-order mark is skipped; an
    empty file has no rows.

    Args:
        path: the CSV file.
        raw: strokes carry times (Kaggle's ``*_raw`` files); default simplified.
        lenient: skip malformed rows (counted in ``report``) instead of raising DataError.
        report: where skips are counted; a new one is made if None.
        words: known class names; a row with another word is malformed.
        check_word_matches_file: rows must have ``word == file stem`` (default: when the file
            has a ``word`` column and the file is not a test file).
        block_size: bytes per block; bounds memory.
        max_row_bytes: longer rows are malformed (``row_too_long``), streamed past unread.
    """
    path = Path(path)
    report = report if report is not None else SkipReport()
    with open(path, "rb") as f:
        header_line = f.readline()
        if header_line.startswith(_BOM):
            header_line = header_line[len(_BOM):]
        if not header_line.strip():
            return  # an empty file, like an empty ndjson file: no rows
        header = header_line.decode("utf-8", "replace").strip().split(",")
        required = TRAIN_COLUMNS if "word" in header else TEST_COLUMNS
        missing = [c for c in required if c not in header]
        if missing:
            raise DataError(path, 1, None, "bad_header", f"missing column(s) {missing}; header is {header}")
        if check_word_matches_file is None:
            check_word_matches_file = "word" in header
        checker = _RowChecker(path, lenient, report, set(words) if words is not None else None,
                              path.stem if check_word_matches_file else None)
        header_line = header_line.rstrip(b"\r\n") + b"\n"
        next_line = 2  # line 1 is the header
        for block in _csv_line_blocks(f, block_size, max_row_bytes):
            if isinstance(block, _LongLine):
                checker.fail(next_line, _edge_key_id(block.head, block.tail, header), "row_too_long",
                             _too_long(block.nbytes, max_row_bytes))
                next_line += 1
                continue
            chunk = _csv_block(block, next_line, header_line, header, raw, checker, max_row_bytes)
            next_line += block.count(b"\n")
            if chunk is not None:
                yield chunk


def _csv_block(block: bytes, first_line: int, header_line: bytes, header: list[str], raw: bool,
               checker: _RowChecker, max_row_bytes: int) -> Chunk | None:
    """Parse one block of whole lines; rows it rejects are raised or recorded by ``checker``."""
    path, lenient = checker.path, checker.lenient
    buf = np.frombuffer(block, np.uint8)
    n_lines = block.count(b"\n")
    ends, flags = np.empty(n_lines, np.int64), np.empty(n_lines, np.int8)
    _parse.csv_lines(buf, ends, flags)
    starts = np.concatenate([[0], ends[:-1]])
    flags[(ends - starts - 1 > max_row_bytes) & (flags != _parse.LINE_BLANK)] = _LINE_TOO_LONG
    lines = first_line + np.arange(n_lines)
    miscounted = _non_utf8_rows_miscounted(block, starts, ends, flags, len(header))
    # rows broken as lines, in line order; strict mode stops at the first of them
    broken = np.flatnonzero((flags != _parse.LINE_OK) & (flags != _parse.LINE_BLANK))
    line_errors = []
    for i in broken:
        text = block[starts[i]:ends[i]]
        if flags[i] == _LINE_MISCOUNTED:
            reason, detail = "bad_row", f"{miscounted[int(i)]} fields, expected {len(header)} (and not UTF-8)"
        elif flags[i] == _LINE_TOO_LONG:
            reason, detail = "row_too_long", _too_long(len(text) - 1, max_row_bytes)
        else:
            reason, detail = _LINE_PROBLEMS[int(flags[i])]
        line_errors.append(DataError(path, int(lines[i]), _edge_key_id(text, text, header), reason, detail))
    use = flags == _parse.LINE_OK
    if line_errors and not lenient:
        use[broken[0]:] = False  # rows before the first broken line may hold an earlier error
    rows_lines = lines[use]
    invalid: list[int] = []
    pending: list[DataError] = []

    def on_invalid(row) -> str:
        # exceptions raised here are swallowed by pyarrow: stash ours and let it stop
        line = int(rows_lines[row.number - 2]) if row.number is not None else None
        err = DataError(path, line, None, "bad_row", f"{row.actual_columns} fields, expected {row.expected_columns}")
        if not lenient:
            pending.append(err)
            return "error"
        invalid.append(row.number - 2)
        checker.report.add(err)
        return "skip"

    chunk = None
    if use.any():
        text = block if use.all() else b"".join(block[s:e] for s, e in zip(starts[use], ends[use]))
        data_bytes = header_line + text
        try:
            table = pacsv.read_csv(
                pa.py_buffer(data_bytes),
                read_options=pacsv.ReadOptions(use_threads=False, block_size=len(data_bytes) + 1),
                parse_options=pacsv.ParseOptions(newlines_in_values=False, invalid_row_handler=on_invalid),
                convert_options=pacsv.ConvertOptions(column_types={c: pa.large_binary() for c in header},
                                                     strings_can_be_null=False))
        except pa.ArrowInvalid as e:
            raise (pending[0] if pending else DataError(path, first_line, None, "bad_csv", str(e))) from None
        keep = np.ones(len(rows_lines), bool)
        keep[invalid] = False
        if table.num_rows != keep.sum():  # cannot happen when each row is one line: say so if it does
            raise DataError(path, first_line, None, "bad_csv", f"{table.num_rows} rows parsed from "
                            f"{int(keep.sum())} lines")
        if table.num_rows:
            chunk = _csv_rows(table.combine_chunks(), rows_lines[keep], raw, checker)
    for err in line_errors:
        checker.fail(err.line, err.key_id, err.reason, err.detail)
    return chunk


def _non_utf8_rows_miscounted(block: bytes, starts: np.ndarray, ends: np.ndarray, flags: np.ndarray,
                              n_fields: int) -> dict[int, int]:
    """Lines that are not UTF-8 and have the wrong number of fields, flagged ``_LINE_MISCOUNTED``.

    pyarrow's handler of a row with the wrong field count decodes its text as UTF-8 and stops
    the parse when that fails; such lines never reach it. A line with the right count goes to
    pyarrow, and its bad value becomes ``bad_utf8``. Returns {line index: fields}.
    """
    try:
        block.decode("utf-8")
        return {}  # the common case, one fast pass
    except UnicodeDecodeError:
        pass
    out = {}
    for i in np.flatnonzero(flags == _parse.LINE_OK):
        line = block[starts[i]:ends[i]]
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            fields = len(next(csv.reader([line.decode("utf-8", "surrogateescape").rstrip("\r\n")]), []))
            if fields != n_fields:
                out[int(i)] = fields
                flags[i] = _LINE_MISCOUNTED
    return out


def _csv_rows(table: pa.Table, lines: np.ndarray, raw: bool, checker: _RowChecker) -> Chunk:
    """Validate and convert the rows pyarrow parsed (one line each)."""
    n = table.num_rows
    errors: dict[int, tuple[str, str]] = {}
    cols = {name: (table.column(name).chunk(0) if name == "drawing"
                   else _utf8_column(table.column(name).chunk(0), name, errors))
            for name in table.schema.names}
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
    data_, offsets = _string_buffers(cols["drawing"])
    drawings, status = parse_drawing_column(data_, offsets, _dims_for(raw))
    good = checker.check(meta, status, lines, cols["key_id"], errors, word_ok)
    return _keep(meta, drawings, status, good, lines, ts_us)


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
                check_word_matches_file: bool = True, chunk_rows: int = 8192,
                max_row_bytes: int = MAX_ROW_BYTES) -> Iterator[Chunk]:
    """Stream a Google ndjson file (simplified, or raw with per-point times) in chunks.

    Args:
        path: the ndjson file, one drawing object a line.
        raw: whether strokes carry times; None decides it from the first row whose drawing
            can be read (rows before it are reported as whatever is wrong with them).
        lenient, report, words: as in :func:`iter_csv`.
        check_word_matches_file: rows must have ``word == file stem`` (Google's per-class files).
        chunk_rows: rows per yielded chunk; bounds memory.
        max_row_bytes: longer lines are malformed (``row_too_long``), streamed past unread.
    """
    path = Path(path)
    report = report if report is not None else SkipReport()
    checker = _RowChecker(path, lenient, report, set(words) if words is not None else None,
                          path.stem if check_word_matches_file else None)
    with open(path, "rb") as f:
        buf: list[tuple[int, bytes]] = []
        for lineno, line in _ndjson_lines(f, max_row_bytes):
            if isinstance(line, _LongLine):
                checker.fail(lineno, _line_key_id(line.head) or _line_key_id(line.tail), "row_too_long",
                             _too_long(line.nbytes, max_row_bytes))
                continue
            if raw is None:
                raw = _detect_raw(line)
            buf.append((lineno, line))
            if len(buf) >= chunk_rows:
                yield _ndjson_chunk(buf, bool(raw), checker)
                buf = []
        if buf:
            yield _ndjson_chunk(buf, bool(raw), checker)


def _ndjson_lines(f, max_row_bytes: int) -> Iterator[tuple[int, bytes | _LongLine]]:
    """(line number, bytes) of each non-blank line; a line over ``max_row_bytes`` is streamed
    past and comes back as a :class:`_LongLine`. A UTF-8 byte-order mark is dropped."""
    lineno = 0
    while line := f.readline(max_row_bytes + 1):
        lineno += 1
        if lineno == 1 and line.startswith(_BOM):
            line = line[len(_BOM):]
        if len(line) > max_row_bytes and not line.endswith(b"\n"):
            yield lineno, _rest_of_long_line(f, line)
        elif line.strip():
            yield lineno, line


_DRAWING_KEY = re.compile(rb'"drawing"\s*:\s*\[')
_KEY_ID = re.compile(rb'"key_id"\s*:\s*"?(\d{1,18})\b')


def _drawing_span(line: bytes) -> tuple[int, int] | None:
    """Byte span of the ``drawing`` value in an ndjson line, or None if not found."""
    m = _DRAWING_KEY.search(line)
    if m is None:
        return None
    start = m.end() - 1
    end = _parse.bracket_span(np.frombuffer(line, np.uint8), start)
    return (start, end) if end > 0 else None


def _strokes_have_times(strokes: object) -> bool | None:
    """Whether a parsed ``drawing`` value's first stroke has three lists; None if it has none."""
    try:
        first = strokes[0]
        return len(first) == 3 if isinstance(first, list) and len(first) in (2, 3) else None
    except (TypeError, IndexError, KeyError):
        return None


def _line_key_id(line: bytes) -> str | None:
    """The key_id of an ndjson line that does not parse, when it can be seen in it."""
    m = _KEY_ID.search(line)
    return m.group(1).decode() if m else None


def _detect_raw(line: bytes) -> bool | None:
    """Raw or simplified from one ndjson line; None when its drawing cannot be read."""
    span = _drawing_span(line)
    if span is None:
        return None
    try:
        return _strokes_have_times(json.loads(line[span[0]:span[1]]))
    except ValueError:
        return None


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
        except UnicodeDecodeError as e:
            errors[r] = ("bad_utf8", f"the line is not valid UTF-8 (byte {e.start}: {head[e.start:e.start + 1]!r})")
            key_raw[r] = _line_key_id(line)
            continue
        except ValueError as e:
            errors[r] = ("bad_json", f"line is not a JSON object ({e})")
            key_raw[r] = _line_key_id(line)
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
    by the first stroke of its first readable row within its first MiB (three lists: raw).
    None when there is no such row (the reader then reports the rows themselves).
    """
    path = Path(path)
    if path.parent.name in RAW_FOLDERS or path.name in RAW_FILES:
        return True
    if path.parent.name in SIMPLIFIED_FOLDERS or path.name in SIMPLIFIED_FILES:
        return False
    with open(path, "rb") as f:
        head = f.read(1 << 20)
    if path.suffix != ".csv":
        lines = head.split(b"\n")[:-1] if len(head) == 1 << 20 else head.split(b"\n")
        return next((r for r in map(_detect_raw, lines) if r is not None), None)
    rows = csv.reader(io.StringIO(head.removeprefix(_BOM).decode("utf-8", "replace")))
    header = next(rows, None)
    if not header or "drawing" not in header:
        return None
    col = header.index("drawing")
    for row in rows:
        if len(row) == len(header):
            try:
                found = _strokes_have_times(json.loads(row[col]))
            except ValueError:
                found = None
            if found is not None:
                return found
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
