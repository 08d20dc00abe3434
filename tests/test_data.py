"""Kaggle CSV / Google ndjson reading and writing, strict and lenient, on real and corrupted files."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from doodle_utils import data


def _json_rows(path):
    return [json.loads(line) for line in open(path)]


def test_read_real_raw_and_simplified(sample_dir):
    path = sample_dir / "raw" / "ant.ndjson"
    rows = _json_rows(path)
    meta, d, report = data.read_file(path)
    assert report.total == 0 and len(meta) == len(rows) == len(d)
    assert d.raw and d.xy.dtype == np.float64
    for i in (0, len(rows) - 1):
        strokes = d.strokes(i)
        assert len(strokes) == len(rows[i]["drawing"])
        for got, want in zip(strokes, rows[i]["drawing"]):
            np.testing.assert_allclose(got[:, 0], want[0], rtol=1e-6)
            np.testing.assert_allclose(got[:, 1], want[1], rtol=1e-6)
            np.testing.assert_array_equal(got[:, 2], want[2])
    assert meta.key_id.tolist() == [int(r["key_id"]) for r in rows]
    assert meta.recognized.tolist() == [r["recognized"] for r in rows]

    meta, d, _ = data.read_file(sample_dir / "simplified" / "apple.ndjson")
    want = _json_rows(sample_dir / "simplified" / "apple.ndjson")
    assert not d.raw and d.xy.dtype == np.uint8
    assert [[s[:, 0].tolist(), s[:, 1].tolist()] for s in d.strokes(3)] == want[3]["drawing"]


def test_every_real_file_reads_strictly(sample_dir):
    total = 0
    for path in sorted((sample_dir / "raw").glob("*.ndjson")):
        meta, d, report = data.read_file(path)
        assert report.total == 0 and len(meta) == len(d) > 0
        total += len(meta)
    assert total == sum(1 for p in (sample_dir / "raw").glob("*.ndjson") for _ in open(p))


def test_csv_round_trip_kaggle_layout(sample_dir, tmp_path):
    meta, d, _ = data.read_file(sample_dir / "simplified" / "apple.ndjson")
    out = tmp_path / "apple.csv"
    data.write_csv(out, meta, d)
    assert out.read_text().splitlines()[0] == ",".join(data.TRAIN_COLUMNS)
    # pandas + json (the naive Kaggle path) agrees with our reader
    naive = pd.read_csv(out)
    assert [json.loads(s) for s in naive.drawing] == [r["drawing"] for r in _json_rows(sample_dir / "simplified" / "apple.ndjson")]
    meta2, d2, _ = data.read_file(out)
    np.testing.assert_array_equal(d2.xy, d.xy)
    np.testing.assert_array_equal(d2.stroke_offsets, d.stroke_offsets)
    assert meta2.key_id.tolist() == meta.key_id.tolist()
    test_csv = tmp_path / "test_simplified.csv"
    data.write_csv(test_csv, meta, d, test=True)
    assert test_csv.read_text().splitlines()[0] == "key_id,countrycode,drawing"
    m3, d3, _ = data.read_file(test_csv)
    assert "word" not in m3 and len(m3) == len(meta)


def test_raw_ndjson_round_trip_is_exact(sample_dir, tmp_path):
    meta, d, _ = data.read_file(sample_dir / "raw" / "bear.ndjson")
    data.write_ndjson(tmp_path / "bear.ndjson", meta, d)
    meta2, d2, _ = data.read_file(tmp_path / "bear.ndjson")
    np.testing.assert_array_equal(d2.xy, d.xy)
    np.testing.assert_array_equal(d2.t, d.t)
    pd.testing.assert_frame_equal(meta2, meta)


def test_small_chunks_give_the_same_rows(sample_dir, tmp_path):
    meta, d, _ = data.read_file(sample_dir / "simplified" / "bear.ndjson")
    data.write_csv(tmp_path / "bear.csv", meta, d)
    chunks = list(data.iter_csv(tmp_path / "bear.csv", block_size=1024))
    assert len(chunks) > 3
    joined = data.Drawings.concat([c.drawings for c in chunks])
    np.testing.assert_array_equal(joined.xy, d.xy)
    assert np.concatenate([c.lines for c in chunks]).tolist() == list(range(2, len(meta) + 2))


# ----------------------------------------------------------------- corrupted copies, one per reason

def _corrupt(row: dict, how: str) -> dict | str:
    r = json.loads(json.dumps(row))
    dr = r["drawing"]
    if how == "bad_json":
        return json.dumps(r).replace('"drawing": [[[', '"drawing": [[[[', 1)
    if how == "unequal_lengths":
        dr[0][1] = dr[0][1][:-1]
    elif how == "empty_drawing":
        r["drawing"] = []
    elif how == "empty_stroke":
        dr[0] = [[], []] if len(dr[0]) == 2 else [[], [], []]
    elif how == "non_finite":
        dr[0][0][0] = math.nan
    elif how == "out_of_range":
        dr[0][0][0] = 300 if len(dr[0]) == 2 else 1e9
    elif how == "non_integer":
        dr[0][0][0] = 1.5
    elif how == "bad_stroke_dims":
        dr[0] = dr[0][:1]
    elif how == "unknown_word":
        r["word"] = "not-a-class"
    elif how == "bad_key_id":
        r["key_id"] = "12ab"
    elif how == "bad_recognized":
        r["recognized"] = "maybe"
    elif how == "bad_timestamp":
        r["timestamp"] = "yesterday"
    return r


SIMPLIFIED_REASONS = ["bad_json", "unequal_lengths", "empty_drawing", "empty_stroke", "non_finite",
                      "out_of_range", "non_integer", "bad_stroke_dims", "unknown_word", "bad_key_id",
                      "bad_recognized", "bad_timestamp", "duplicate_key_id"]


def _write_corrupted_ndjson(src, dst, reasons, start=2):
    rows = _json_rows(src)
    bad_at = {}
    lines = []
    for i, row in enumerate(rows):
        k = i - start
        if 0 <= k < len(reasons):
            reason = reasons[k]
            if reason == "duplicate_key_id":
                row = dict(row, key_id=rows[0]["key_id"])
                out = json.dumps(row)
            else:
                c = _corrupt(row, reason)
                out = c if isinstance(c, str) else json.dumps(c)
            bad_at[reason] = (i + 1, row["key_id"])
            lines.append(out)
        else:
            lines.append(json.dumps(row))
    dst.write_text("\n".join(lines) + "\n")
    return rows, bad_at


@pytest.mark.parametrize("reason", SIMPLIFIED_REASONS)
def test_strict_error_names_file_line_and_key(sample_dir, tmp_path, reason):
    dst = tmp_path / "apple.ndjson"
    _, bad_at = _write_corrupted_ndjson(sample_dir / "simplified" / "apple.ndjson", dst, [reason], start=4)
    with pytest.raises(data.DataError) as e:
        data.read_file(dst)
    line, key = bad_at[reason]
    assert e.value.reason == reason
    assert e.value.line == line
    msg = str(e.value)
    assert str(dst) in msg and f"line {line}" in msg and reason in msg
    if reason not in ("bad_json", "bad_key_id"):
        assert str(key) in msg


def test_lenient_counts_every_reason_and_keeps_the_rest(sample_dir, tmp_path):
    dst = tmp_path / "apple.ndjson"
    rows, bad_at = _write_corrupted_ndjson(sample_dir / "simplified" / "apple.ndjson", dst, SIMPLIFIED_REASONS)
    meta, d, report = data.read_file(dst, lenient=True)
    assert dict(report.counts) == {r: 1 for r in SIMPLIFIED_REASONS}
    assert len(meta) == len(d) == len(rows) - len(SIMPLIFIED_REASONS)
    good = [r for i, r in enumerate(rows) if not (2 <= i < 2 + len(SIMPLIFIED_REASONS))]
    assert meta.key_id.tolist() == [int(r["key_id"]) for r in good]
    assert [[[s[:, 0].tolist(), s[:, 1].tolist()] for s in d.strokes(i)] for i in range(len(d))] == \
        [r["drawing"] for r in good]
    assert "skipped 13 rows" in str(report)


RAW_REASONS = ["unequal_lengths", "empty_stroke", "non_finite", "out_of_range", "bad_stroke_dims"]


def test_raw_lenient_and_strict(sample_dir, tmp_path):
    dst = tmp_path / "ant.ndjson"
    rows, bad_at = _write_corrupted_ndjson(sample_dir / "raw" / "ant.ndjson", dst, RAW_REASONS)
    meta, d, report = data.read_file(dst, lenient=True)
    assert dict(report.counts) == {r: 1 for r in RAW_REASONS}
    assert len(d) == len(rows) - len(RAW_REASONS) and d.raw
    with pytest.raises(data.DataError, match="unequal_lengths"):
        data.read_file(dst)


def _to_csv_lines(sample_dir, tmp_path, name="apple"):
    meta, d, _ = data.read_file(sample_dir / "simplified" / f"{name}.ndjson")
    path = tmp_path / f"{name}.csv"
    data.write_csv(path, meta, d)
    return path, path.read_text().splitlines(), meta


def test_csv_wrong_field_count_and_bad_drawing(sample_dir, tmp_path):
    path, lines, meta = _to_csv_lines(sample_dir, tmp_path)
    lines[3] = "US,oops"  # 2 fields instead of 6 (line 4)
    lines[6] = lines[6].replace('"[[[', '"[[[999,', 1)  # out of range and unequal (line 7)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(data.DataError) as e:
        data.read_file(path)
    assert e.value.line == 4 and e.value.reason == "bad_row"
    m, d, report = data.read_file(path, lenient=True)
    assert report.total == 2 and len(m) == len(meta) - 2
    assert int(meta.key_id[5]) not in m.key_id.tolist()
    # line numbers after a skipped row stay true
    chunks = list(data.iter_csv(path, lenient=True))
    assert 4 not in np.concatenate([c.lines for c in chunks]) and 7 not in np.concatenate([c.lines for c in chunks])


def test_csv_header_and_word_checks(sample_dir, tmp_path):
    path, lines, _ = _to_csv_lines(sample_dir, tmp_path)
    bad_header = tmp_path / "apple2.csv"
    bad_header.write_text("countrycode,key_id,word\nUS,1,apple\n")
    with pytest.raises(data.DataError, match="missing column"):
        data.read_file(bad_header)
    with pytest.raises(data.DataError, match="unknown_word"):
        data.read_file(path, words=["banana"])
    renamed = tmp_path / "banana.csv"
    renamed.write_text(path.read_text())
    with pytest.raises(data.DataError, match="the file is for 'banana'"):
        data.read_file(renamed)


def test_parse_drawing_strings_edge_cases():
    good = ["[[[0,255],[10,20]]]", " [ [ [1] , [2] ] , [[3,4],[5,6]] ] ", "[[[1e2],[2.0E1]]]"]
    d, status = data.parse_drawing_strings(good)
    assert status.tolist() == [0, 0, 0]
    assert d.xy.tolist() == [[0, 10], [255, 20], [1, 2], [3, 5], [4, 6], [100, 20]]
    assert d.stroke_counts().tolist() == [1, 2, 1]
    bad = ["[[[1,2],[3]]]", "[]", "[[[],[]]]", "[[[1],[2],[3]]]", "[[[256],[1]]]", "[[[-1],[1]]]",
           "[[[1.5],[1]]]", "[[[1],[2]]] x", "[[[1],[2]]", "[[[NaN],[2]]]", "", "[[[1,],[2,3]]]"]
    d, status = data.parse_drawing_strings(bad)
    from doodle_utils.data._parse import PARSE_REASONS
    assert [PARSE_REASONS.get(int(s)) for s in status] == [
        "unequal_lengths", "empty_drawing", "empty_stroke", "bad_stroke_dims", "out_of_range",
        "out_of_range", "non_integer", "bad_json", "bad_json", "non_finite", "bad_json", "bad_json"]
    assert len(d) == 0 and len(d.xy) == 0


def test_take_and_concat_preserve_drawings(sample_dir):
    _, d, _ = data.read_file(sample_dir / "raw" / "cat.ndjson")
    idx = np.array([5, 0, 3])
    sub = d.take(idx)
    for j, i in enumerate(idx):
        for a, b in zip(sub.strokes(j), d.strokes(i)):
            np.testing.assert_array_equal(a, b)
    both = data.Drawings.concat([sub, d.take(np.array([1]))])
    assert len(both) == 4
    np.testing.assert_array_equal(both.strokes(3)[0], d.strokes(1)[0])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=-60000, max_value=60000, allow_nan=False), min_size=1, max_size=30),
       st.sampled_from(["repr", "%.17g", "%.3f", "%.25f", "%.1e"]))
def test_raw_numbers_parse_exactly_like_python(values, fmt):
    """Every raw coordinate reads as Python's correctly rounded float, however it is written
    (long decimals go through the exact fix-up, over 32 characters through the fallback)."""
    text = [repr(v) if fmt == "repr" else fmt % v for v in values]
    drawing = "[[[" + ",".join(text) + "],[" + ",".join(text) + "],[" + ",".join("0" for _ in text) + "]]]"
    d, status = data.parse_drawing_strings([drawing], dims=3)
    assert status.tolist() == [0]
    assert d.xy[:, 0].tolist() == [float(t) for t in text]


def test_numbers_longer_than_the_fixed_width_fall_back_exactly():
    long = "1234.5678901234567890123456789012345678901"  # 42 characters
    mid = "0.30000000000000004441"  # 22 characters, 20 significant digits
    d, status = data.parse_drawing_strings([f"[[[{long},{mid},3],[1,2,3],[0,1,2]]]"], dims=3)
    assert status.tolist() == [0]
    assert d.xy[:, 0].tolist() == [float(long), float(mid), 3.0]
