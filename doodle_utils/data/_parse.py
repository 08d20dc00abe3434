"""Compiled parser of Quick, Draw! ``drawing`` JSON strings straight into packed arrays.

Why hand-written: a JSON library (``json``, ``orjson``, pyarrow's JSON reader) first builds
Python or Arrow nested lists, one object per coordinate; that object traffic is what makes
the naive Kaggle path (``pd.read_csv`` + ``json.loads`` per row) slow. The ``drawing`` value
has a tiny fixed grammar -- a list of strokes, each a list of 2 (x, y) or 3 (x, y, t) equal
length number lists -- so one numba pass over the bytes of a whole column writes x, y and t
directly into flat arrays, validates every row on the way, and reports a reason code per row
instead of stopping at the first bad one. ``benchmarks/bench_pack.py`` measures the gain.

Numbers are parsed as decimal mantissa times a power of ten; integers (all of Kaggle's
simplified data, Google's timings) are exact, and fractional raw coordinates are within an
ulp or two of the correctly rounded value, far below the resolution of any renderer.
"""
from __future__ import annotations

import numba
import numpy as np

# Row status codes written by the parser. 0 means the row parsed and validated.
OK = 0
BAD_JSON = 1
EMPTY_DRAWING = 2
EMPTY_STROKE = 3
UNEQUAL_LENGTHS = 4
BAD_STROKE_DIMS = 5
NON_FINITE = 6
OUT_OF_RANGE = 7
NON_INTEGER = 8

PARSE_REASONS = {
    BAD_JSON: "bad_json",
    EMPTY_DRAWING: "empty_drawing",
    EMPTY_STROKE: "empty_stroke",
    UNEQUAL_LENGTHS: "unequal_lengths",
    BAD_STROKE_DIMS: "bad_stroke_dims",
    NON_FINITE: "non_finite",
    OUT_OF_RANGE: "out_of_range",
    NON_INTEGER: "non_integer",
}

# Dimension modes: how many lists a stroke must hold.
DIMS_SIMPLIFIED = 2
DIMS_RAW = 3

RAW_COORD_LIMIT = 65535.0  # raw x/y are screen pixels; anything beyond is corrupt
TIME_LIMIT = 2147483647.0  # raw t are int32 milliseconds since the first point

_POW10 = np.array([10.0**i for i in range(23)])


@numba.njit(cache=True, inline="always")
def _skip_ws(buf, i, end):
    while i < end and (buf[i] == 32 or buf[i] == 9 or buf[i] == 10 or buf[i] == 13):
        i += 1
    return i


@numba.njit(cache=True, inline="always")
def _parse_number(buf, i, end, pow10):
    """Parse a JSON number at ``buf[i]``.

    Returns (value, next_index, status, is_integer, exact). ``exact`` is False when the value
    may be off by an ulp (more than 15 digits, or an exponent beyond 10**22): the caller
    re-reads those with Python's correctly rounded ``float``.
    """
    neg = False
    if i < end and buf[i] == 45:  # '-'
        neg = True
        i += 1
    if i < end and (buf[i] == 78 or buf[i] == 73):  # 'N'aN / 'I'nfinity (Python's json emits them)
        while i < end and ((buf[i] >= 65 and buf[i] <= 90) or (buf[i] >= 97 and buf[i] <= 122)):
            i += 1
        return np.nan, i, NON_FINITE, False, True
    ival = 0
    ndig = 0
    while i < end and buf[i] >= 48 and buf[i] <= 57:
        if ndig < 18:
            ival = ival * 10 + (buf[i] - 48)
        ndig += 1
        i += 1
    if ndig == 0:
        return 0.0, i, BAD_JSON, False, True
    if ndig > 18:
        return 0.0, i, OUT_OF_RANGE, False, True
    if i >= end or (buf[i] != 46 and buf[i] != 101 and buf[i] != 69):
        v = float(ival)  # integers below 10**18 > 2**53 are exact up to 2**53, ample for pixels
        return (-v if neg else v), i, OK, True, ndig <= 15
    exp10 = 0
    if buf[i] == 46:  # '.'
        i += 1
        nfrac = 0
        while i < end and buf[i] >= 48 and buf[i] <= 57:
            if ndig < 18:
                ival = ival * 10 + (buf[i] - 48)
                exp10 -= 1
            ndig += 1
            nfrac += 1
            i += 1
        if nfrac == 0:
            return 0.0, i, BAD_JSON, False, True
    if i < end and (buf[i] == 101 or buf[i] == 69):  # 'e' / 'E'
        i += 1
        eneg = False
        if i < end and (buf[i] == 43 or buf[i] == 45):
            eneg = buf[i] == 45
            i += 1
        e = 0
        nexp = 0
        while i < end and buf[i] >= 48 and buf[i] <= 57:
            e = e * 10 + (buf[i] - 48)
            nexp += 1
            i += 1
            if e > 400:
                e = 400
        if nexp == 0:
            return 0.0, i, BAD_JSON, False, True
        exp10 += -e if eneg else e
    # Clinger's fast path: a mantissa below 2**53 and a power of ten up to 10**22 are both
    # exact doubles, so one multiplication or division is correctly rounded
    mant = float(ival)
    exact = ndig <= 15 and -22 <= exp10 <= 22
    if exp10 < 0:
        val = mant / pow10[-exp10] if -exp10 < pow10.shape[0] else mant * 10.0**exp10
    elif exp10 > 0:
        val = mant * pow10[exp10] if exp10 < pow10.shape[0] else mant * 10.0**exp10
    else:
        val = mant
    if neg:
        val = -val
    if not np.isfinite(val):
        return val, i, NON_FINITE, False, True
    return val, i, OK, val == np.floor(val), exact


@numba.njit(cache=True)
def parse_drawings(buf, offsets, dims, xy, ts, stroke_len, row_strokes, status, slow):
    """Parse rows ``buf[offsets[r]:offsets[r+1]]`` into flat x/y/t and stroke lengths.

    Args:
        buf: uint8 bytes of all rows.
        offsets: int64 (R+1,) row boundaries in ``buf``.
        dims: 2 (simplified: ints 0..255) or 3 (raw: x, y, t).
        xy: float64 (N, 2) output and ts float64 (N,) output (raw only), N at least the
            total number of points.
        stroke_len: int64 output, at least as long as the total number of strokes.
        row_strokes: int64 (R,) output, strokes per row (0 for bad rows).
        status: int8 (R,) output, OK or a reason code; bad rows write no points.
        slow: int64 (K, 4) output: (point, column, byte start, byte end) of numbers whose
            value may be off by an ulp, for the caller to re-read exactly.

    Returns:
        (number of points written, number of strokes written, number of slow numbers).
    """
    pow10 = _POW10
    n_rows = offsets.shape[0] - 1
    p = 0
    s = 0
    ns = 0
    for r in range(n_rows):
        i = offsets[r]
        end = offsets[r + 1]
        p0 = p
        s0 = s
        ns0 = ns
        err = OK
        i = _skip_ws(buf, i, end)
        if i >= end or buf[i] != 91:  # '['
            err = BAD_JSON
        else:
            i = _skip_ws(buf, i + 1, end)
            if i < end and buf[i] == 93:  # ']' : empty drawing
                err = EMPTY_DRAWING
                i += 1
            while err == OK:
                # one stroke: '[' list (',' list)* ']'
                if i >= end or buf[i] != 91:
                    err = BAD_JSON
                    break
                i = _skip_ws(buf, i + 1, end)
                nlists = 0
                npts = 0
                while err == OK:
                    if i >= end or buf[i] != 91:
                        err = BAD_JSON
                        break
                    i = _skip_ws(buf, i + 1, end)
                    count = 0
                    if i < end and buf[i] == 93:
                        i += 1
                    else:
                        while True:
                            i_num = i
                            val, i, st, is_int, exact = _parse_number(buf, i, end, pow10)
                            if st != OK:
                                err = st
                                break
                            if nlists >= dims:
                                # extra list: keep parsing for syntax, report dims below
                                pass
                            elif dims == DIMS_SIMPLIFIED:
                                if not is_int:
                                    err = NON_INTEGER
                                    break
                                if val < 0.0 or val > 255.0:
                                    err = OUT_OF_RANGE
                                    break
                            elif nlists < 2:
                                if abs(val) > RAW_COORD_LIMIT:
                                    err = OUT_OF_RANGE
                                    break
                            else:
                                if val < 0.0 or val > TIME_LIMIT:
                                    err = OUT_OF_RANGE
                                    break
                            q = p + count
                            if not exact and nlists < dims:
                                slow[ns, 0] = q
                                slow[ns, 1] = nlists
                                slow[ns, 2] = i_num
                                slow[ns, 3] = i
                                ns += 1
                            if nlists < 2:
                                xy[q, nlists] = val
                            elif nlists == 2 and dims == DIMS_RAW:
                                ts[q] = val
                            count += 1
                            i = _skip_ws(buf, i, end)
                            if i < end and buf[i] == 44:  # ','
                                i = _skip_ws(buf, i + 1, end)
                                continue
                            if i < end and buf[i] == 93:
                                i += 1
                                break
                            err = BAD_JSON
                            break
                    if err != OK:
                        break
                    if nlists == 0:
                        npts = count
                    elif count != npts:
                        err = UNEQUAL_LENGTHS
                    nlists += 1
                    i = _skip_ws(buf, i, end)
                    if i < end and buf[i] == 44:
                        i = _skip_ws(buf, i + 1, end)
                        continue
                    if i < end and buf[i] == 93:
                        i += 1
                        break
                    err = BAD_JSON
                if err != OK:
                    break
                if nlists != dims:
                    err = BAD_STROKE_DIMS
                    break
                if npts == 0:
                    err = EMPTY_STROKE
                    break
                stroke_len[s] = npts
                s += 1
                p += npts
                i = _skip_ws(buf, i, end)
                if i < end and buf[i] == 44:
                    i = _skip_ws(buf, i + 1, end)
                    continue
                if i < end and buf[i] == 93:
                    i += 1
                    break
                err = BAD_JSON
            if err == OK:
                i = _skip_ws(buf, i, end)
                if i != end:
                    err = BAD_JSON
        if err != OK:
            p = p0
            s = s0
            ns = ns0
            row_strokes[r] = 0
        else:
            row_strokes[r] = s - s0
        status[r] = err
    return p, s, ns


SLOW_WIDTH = 32  # bytes per number copied for numpy's exact string -> float conversion


@numba.njit(cache=True)
def copy_numbers(buf, slow, ns, out):
    """Copy the text of slow numbers into fixed-width rows of ``out`` (zero padded).

    Returns the count of numbers longer than the width (left for a Python fallback; their
    rows hold a placeholder "0").
    """
    too_long = 0
    width = out.shape[1]
    for k in range(ns):
        a = slow[k, 2]
        b = slow[k, 3]
        if b - a > width:
            too_long += 1
            out[k, 0] = 48  # '0'
            continue
        for j in range(b - a):
            out[k, j] = buf[a + j]
    return too_long


@numba.njit(cache=True)
def bracket_span(buf, start):
    """End (exclusive) of the bracketed value opening at ``buf[start] == '['``, or -1.

    Drawings hold only brackets, numbers, commas and whitespace, so depth counting finds
    the end; a quote or brace inside means the value is not a drawing (-1).
    """
    depth = 0
    for i in range(start, buf.shape[0]):
        c = buf[i]
        if c == 91:
            depth += 1
        elif c == 93:
            depth -= 1
            if depth == 0:
                return i + 1
        elif c == 34 or c == 123 or c == 125:
            return -1
    return -1


@numba.njit(cache=True)
def gather_points(src, point_start, point_count, out):
    """Copy ``src[point_start[k]:point_start[k]+point_count[k]]`` for every k, back to back."""
    q = 0
    for k in range(point_start.shape[0]):
        a = point_start[k]
        n = point_count[k]
        for j in range(n):
            out[q + j] = src[a + j]
        q += n
    return q


@numba.njit(cache=True)
def first_bad_drawing(point_off, stroke_off, stroke_len):
    """The first drawing whose offsets or stroke lengths are inconsistent, or -1.

    A drawing ``d`` is consistent when its stroke offsets do not decrease and stay inside
    ``stroke_len``, its point offsets do not decrease, each of its strokes has at least one
    point, and its strokes' lengths add up to its points. One pass, no allocation: a store's
    structure checked without reading a drawing out of bounds.
    """
    n_strokes = stroke_len.shape[0]
    for d in range(point_off.shape[0] - 1):
        a = stroke_off[d]
        b = stroke_off[d + 1]
        if a < 0 or b < a or b > n_strokes or point_off[d + 1] < point_off[d]:
            return d
        total = 0
        for s in range(a, b):
            n = stroke_len[s]
            if n == 0:
                return d
            total += n
        if total != point_off[d + 1] - point_off[d]:
            return d
    return -1



# flags of :func:`csv_lines`
LINE_OK, LINE_BLANK, LINE_ODD_QUOTES, LINE_INNER_CR = 0, 1, 2, 3


@numba.njit(cache=True)
def csv_lines(buf, ends, flags):
    """Find the complete lines (ending in ``\\n``) of CSV bytes and classify each.

    Writes the index just past each line's ``\\n`` to ``ends`` and a flag to ``flags``:
    ``LINE_OK``; ``LINE_BLANK`` (nothing but an optional ``\\r``); ``LINE_ODD_QUOTES`` (a
    quoted value runs past the line's end); ``LINE_INNER_CR`` (a carriage return inside the
    line, which CSV parsers take as a line end). One pass, so every row a parser sees is
    exactly one physical line and its line number is known. Returns the number of lines.
    """
    n = buf.shape[0]
    k = 0
    q = 0
    cr = False
    start = 0
    for i in range(n):
        c = buf[i]
        if c == 34:
            q ^= 1
        elif c == 13:
            if i + 1 < n and buf[i + 1] != 10:
                cr = True
        elif c == 10:
            length = i - start
            if length > 0 and buf[i - 1] == 13:
                length -= 1
            if length == 0:
                flags[k] = LINE_BLANK
            elif q:
                flags[k] = LINE_ODD_QUOTES
            elif cr:
                flags[k] = LINE_INNER_CR
            else:
                flags[k] = LINE_OK
            ends[k] = i + 1
            k += 1
            q = 0
            cr = False
            start = i + 1
    return k
