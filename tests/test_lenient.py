"""Lenient means lenient (issue 14, item 4): whatever is wrong with one row is that row's error,
with its true line and key_id, in strict mode raised and in lenient mode counted — never the
whole file's. Built from Google's real drawings, broken on purpose."""
from __future__ import annotations

import json

import numpy as np
import pytest

from doodle_utils import data
from doodle_utils.data import store


def _simplified(sample_dir, name="apple"):
    return data.read_file(sample_dir / "simplified" / f"{name}.ndjson")[:2]


def _csv(sample_dir, tmp_path, name="apple"):
    meta, d = _simplified(sample_dir, name)
    path = tmp_path / f"{name}.csv"
    data.write_csv(path, meta, d)
    lines = path.read_bytes().split(b"\n")[:-1]
    return path, lines, meta


def _lines_of(chunks) -> list[int]:
    return np.concatenate([c.lines for c in chunks]).tolist()


def _strict_error(path, **kw) -> data.DataError:
    with pytest.raises(data.DataError) as e:
        data.read_file(path, **kw)
    return e.value


def test_ndjson_first_row_broken_keeps_the_rest_raw(sample_dir, tmp_path):
    """Raw or simplified is decided by the first row that can be read, not the first row."""
    src = sample_dir / "raw" / "apple.ndjson"
    lines = src.read_bytes().split(b"\n")[:-1]
    path = tmp_path / "apple.ndjson"
    path.write_bytes(b"\n".join([b'{"word": "apple", "drawing": [[[1, 2], [3, 4], [5]]', *lines]) + b"\n")
    meta, d, report = data.read_file(path, lenient=True)
    assert d.raw and len(meta) == len(lines) and report.counts == {"bad_json": 1}
    assert data.has_times(path) is True
    assert _strict_error(path).line == 1


def test_csv_first_row_broken_still_detects_raw(sample_dir, tmp_path):
    meta, d, _ = data.read_file(sample_dir / "raw" / "apple.ndjson")
    path = tmp_path / "apple.csv"
    data.write_csv(path, meta, d)
    rows = path.read_bytes().split(b"\n")
    rows.insert(1, b'US,"[[oops",1,True,2017-03-01 00:00:00.0 UTC,apple')
    path.write_bytes(b"\n".join(rows))
    assert data.has_times(path) is True
    m, d2, report = data.read_file(path, raw=True, lenient=True)
    assert len(m) == len(meta) and report.counts == {"bad_json": 1}


@pytest.mark.parametrize("fmt", ["csv", "ndjson"])
def test_invalid_utf8_is_one_rows_error(sample_dir, tmp_path, fmt):
    meta, d = _simplified(sample_dir)
    path = tmp_path / f"apple.{fmt}"
    (data.write_csv if fmt == "csv" else data.write_ndjson)(path, meta, d)
    lines = path.read_bytes().split(b"\n")
    target = 5 if fmt == "csv" else 4  # the same drawing (row 4): CSV has a header line
    cc = meta.countrycode[3].encode()
    lines[target - 1] = lines[target - 1].replace(cc, cc[:1] + b"\xff" + cc[1:], 1)
    path.write_bytes(b"\n".join(lines))
    err = _strict_error(path)
    assert (err.reason, err.line, str(err.key_id)) == ("bad_utf8", target, str(meta.key_id[3]))
    m, _, report = data.read_file(path, lenient=True)
    assert report.counts == {"bad_utf8": 1} and len(m) == len(meta) - 1
    assert int(meta.key_id[3]) not in set(m.key_id)


@pytest.mark.parametrize("fmt", ["csv", "ndjson"])
def test_oversized_row_is_one_rows_error_with_its_key_id(sample_dir, tmp_path, fmt):
    meta, d = _simplified(sample_dir)
    path = tmp_path / f"apple.{fmt}"
    (data.write_csv if fmt == "csv" else data.write_ndjson)(path, meta, d)
    sizes = [len(b) for b in path.read_bytes().split(b"\n")]
    big = int(np.argmax(sizes))
    limit = (sorted(sizes)[-1] + sorted(sizes)[-2]) // 2
    assert sizes[big] > limit > sorted(sizes)[-2], "the test needs exactly one row over the limit"
    row = big - 1 if fmt == "csv" else big  # index into meta
    for block_size in (64, 1 << 20):  # the row longer than a block, and inside one
        kw = dict(max_row_bytes=limit) if fmt == "ndjson" else dict(max_row_bytes=limit, block_size=block_size)
        err = _strict_error(path, **kw)
        assert (err.reason, err.line, str(err.key_id)) == ("row_too_long", big + 1, str(meta.key_id[row]))
        chunks = list(data.iter_file(path, lenient=True, report=(rep := data.SkipReport()), **kw))
        assert rep.counts == {"row_too_long": 1}
        assert sum(len(c) for c in chunks) == len(meta) - 1 and big + 1 not in _lines_of(chunks)


def test_a_valid_row_longer_than_a_block_is_read(sample_dir, tmp_path):
    """pyarrow's block size (4 MiB) used to abort a file holding a longer row; a valid 5 MB
    drawing is read whole, and so is every row longer than a (small) block."""
    path, lines, meta = _csv(sample_dir, tmp_path)
    stroke = [[100 + i % 155 for i in range(300)], [200 - i % 200 for i in range(300)]]
    huge = json.dumps([stroke] * 2000, separators=(",", ":")).encode()
    assert len(huge) > 4 << 20
    fields = lines[3].split(b",")
    lines[3] = fields[0] + b',"' + huge + b'",' + b",".join(lines[3].rsplit(b'"', 1)[1].split(b",")[1:])
    path.write_bytes(b"\n".join(lines) + b"\n")
    m, d, _ = data.read_file(path)
    assert m.key_id.tolist() == meta.key_id.tolist() and d.point_counts()[2] == 600_000
    for block_size in (512, 4096):
        assert pd_concat(data.iter_csv(path, block_size=block_size)).key_id.tolist() == meta.key_id.tolist()


def pd_concat(chunks):
    import pandas as pd

    return pd.concat([c.meta for c in chunks], ignore_index=True)


def test_line_numbers_after_blank_lines_and_quoted_newlines(sample_dir, tmp_path):
    path, lines, meta = _csv(sample_dir, tmp_path)
    header, rows = lines[0], lines[1:]
    broken = rows[5].replace(b'"[[', b'"\n[[', 1)  # a quoted newline inside row 6's drawing
    out = [header, rows[0], b"", b"\r", rows[1], rows[2], b"", rows[3], rows[4], broken, rows[6],
           b"US,oops", *rows[7:]]
    path.write_bytes(b"\n".join(out) + b"\n")
    chunks = list(data.iter_csv(path, lenient=True, report=(rep := data.SkipReport())))
    got = dict(zip(pd_concat(chunks).key_id.tolist(), _lines_of(chunks)))
    # true line numbers of the kept rows: the file's own lines, counted by hand
    want_line = {int(meta.key_id[0]): 2, int(meta.key_id[1]): 5, int(meta.key_id[3]): 8,
                 int(meta.key_id[6]): 12, int(meta.key_id[7]): 14}
    assert {k: got[k] for k in want_line} == want_line
    assert int(meta.key_id[5]) not in got
    assert rep.counts == {"bad_row": 3}  # the two halves of the broken row, and "US,oops"
    assert any("line 10" in e and "unbalanced quote" in e for e in rep.examples)
    err = _strict_error(path)
    assert (err.line, err.reason) == (10, "bad_row")


def test_bom_empty_and_header_only_files(sample_dir, tmp_path):
    path, lines, meta = _csv(sample_dir, tmp_path)
    bom = tmp_path / "bom" / "apple.csv"
    bom.parent.mkdir()
    bom.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert data.read_file(bom)[0].key_id.tolist() == meta.key_id.tolist()
    nd = tmp_path / "apple.ndjson"
    data.write_ndjson(nd, *_simplified(sample_dir))
    nd.write_bytes(b"\xef\xbb\xbf" + nd.read_bytes())
    assert len(data.read_file(nd)[0]) == len(meta)
    for content in (b"", lines[0] + b"\n"):
        empty = tmp_path / "e" / "apple.csv"
        empty.parent.mkdir(exist_ok=True)
        empty.write_bytes(content)
        m, d, rep = data.read_file(empty)
        assert len(m) == 0 and len(d) == 0 and rep.total == 0


def test_stroke_over_a_store_limit_is_one_rows_error(sample_dir, tmp_path):
    """A raw stroke of 70,000 points fits the reader but not a raw store's uint16 stroke lengths."""
    src = sample_dir / "raw" / "apple.ndjson"
    rows = [json.loads(line) for line in src.read_text().splitlines()]
    n = 70_000
    rows[2]["drawing"] = [[[i % 500 for i in range(n)], [5] * n, list(range(n))]]
    folder = tmp_path / "src"
    folder.mkdir()
    with open(folder / "apple.ndjson", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    kw = dict(kind="raw", workers=1, valid_frac=0.1, progress=None)
    with pytest.raises(data.DataError) as e:
        store.pack([folder / "apple.ndjson"], tmp_path / "strict", **kw)
    assert (e.value.reason, e.value.line, str(e.value.key_id)) == ("stroke_too_long", 3, str(rows[2]["key_id"]))
    man = store.pack([folder / "apple.ndjson"], tmp_path / "lenient", lenient=True, **kw)
    assert man["skipped"] == {"stroke_too_long": 1} and man["drawings"] == len(rows) - 1
    # simplified, the same stroke is a handful of points: nothing to skip
    man = store.pack([folder / "apple.ndjson"], tmp_path / "simple", **{**kw, "kind": "simplified"})
    assert man["drawings"] == len(rows)


def test_cross_file_duplicates_name_both_lines(sample_dir, tmp_path):
    meta, d = _simplified(sample_dir)
    folder = tmp_path / "src"
    folder.mkdir()
    data.write_csv(folder / "apple.csv", meta, d)
    other_meta, other_d = _simplified(sample_dir, "banana")
    other_meta.loc[7, "key_id"] = meta.key_id[3]
    data.write_csv(folder / "banana.csv", other_meta, other_d)
    with pytest.raises(data.DataError) as e:
        store.pack(sorted(folder.glob("*.csv")), tmp_path / "store", workers=1, progress=None)
    msg = str(e.value)
    assert e.value.reason == "duplicate_key_id" and e.value.line == 9 and "banana.csv" in msg
    assert "apple.csv, line 5" in msg


def test_a_line_neither_utf8_nor_of_the_right_width_is_one_rows_error(sample_dir, tmp_path):
    """Found by the fuzzer: pyarrow's invalid-row handler decodes the row as UTF-8, so such a
    line used to stop the whole file."""
    path, lines, meta = _csv(sample_dir, tmp_path)
    lines.insert(3, b"\x80\x80,a")
    path.write_bytes(b"\n".join(lines) + b"\n")
    m, _, report = data.read_file(path, lenient=True)
    assert len(m) == len(meta) and report.counts == {"bad_row": 1}
    err = _strict_error(path)
    assert (err.line, err.reason) == (4, "bad_row") and "2 fields, expected 6" in err.detail
