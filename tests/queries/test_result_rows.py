"""Reading a part's first rows back (queries.result_rows): the pure readers, without storage."""

from __future__ import annotations

import io
import json

import pytest

from queries.result_rows import MAX_CELL_CHARS, csv_first_rows, ndjson_first_rows, part_kind


@pytest.mark.parametrize(
    ("key", "kind"),
    [
        ("reports/acme/g_QueryExport_1__000000000000.csv.gz", ("csv", True)),
        ("reports/acme/g_QueryExport_1__000000000000.csv", ("csv", False)),
        ("reports/acme/g_QueryExport_1__000000000000.ndjson.gz", ("ndjson", True)),
        ("reports/acme/g_QueryExport_1__000000000000.PARQUET", ("parquet", False)),
        ("reports/acme/g.xlsx", ("xlsx", False)),
        ("reports/acme/noextension", ("unknown", False)),
    ],
)
def test_part_kind_is_read_from_the_name(key, kind):
    assert part_kind(key) == kind


def test_csv_rows_keep_quoted_newlines_and_stop_at_the_limit():
    text = 'Ani,Note\r\n1,"two\nlines"\r\n2,x\r\n3,y\r\n'
    shown = csv_first_rows(io.StringIO(text, newline=""), 2)
    assert shown.columns == ["Ani", "Note"]
    assert shown.rows == [["1", "two\nlines"], ["2", "x"]]


def test_long_cells_are_cut():
    shown = csv_first_rows(io.StringIO("A\n" + "x" * 1000 + "\n", newline=""), 20)
    assert len(shown.rows[0][0]) == MAX_CELL_CHARS and shown.rows[0][0].endswith("…")


def test_an_empty_csv_is_a_note():
    assert csv_first_rows(io.StringIO(""), 20).note == "the file is empty"


def test_ndjson_columns_follow_the_first_object():
    lines = [{"b": 1, "a": "x"}, {"a": "y", "b": [1, 2]}, {"b": True}]
    text = "\n".join(json.dumps(line) for line in lines) + "\n"
    shown = ndjson_first_rows(io.StringIO(text), 20)
    assert shown.columns == ["b", "a"]
    assert shown.rows == [["1", "x"], ["[1, 2]", "y"], ["true", ""]]


def test_an_ndjson_line_that_is_not_an_object_is_refused():
    with pytest.raises(ValueError, match="not a JSON object"):
        ndjson_first_rows(io.StringIO("[1]\n"), 20)
