"""Reading PostgreSQL's COPY text format: escapes, NULL, and chunks that end anywhere."""

from __future__ import annotations

import pytest

from tollgate.ledger.copy_text import CopyTextRows

# What PostgreSQL 15 prints for ``COPY (SELECT 20758, x, 12) TO STDOUT`` with these x (recorded with psql).
TRANSCRIPT = (
    b"20758\tplain\t12\n"
    b"20758\t\\N\t12\n"
    b"20758\t\t12\n"
    b"20758\t\\\\N\t12\n"
    b"20758\tback\\\\slash\t12\n"
    b"20758\ttab\\tx\t12\n"
    b"20758\ttwo\\nlines\t12\n"
    b"20758\tcr\\rx\t12\n"
    b"20758\t\\b\\f\\v\x01\x7f\t12\n"
    b'20758\ta,b "q"\t12\n'
    b"20758\t\xc3\x84rger \xf0\x9f\x98\x80\t12\n"
)
ROWS = [
    ("20758", "plain", "12"),
    ("20758", None, "12"),
    ("20758", "", "12"),
    ("20758", "\\N", "12"),
    ("20758", "back\\slash", "12"),
    ("20758", "tab\tx", "12"),
    ("20758", "two\nlines", "12"),
    ("20758", "cr\rx", "12"),
    ("20758", "\b\f\v\x01\x7f", "12"),
    ("20758", 'a,b "q"', "12"),
    ("20758", "Ärger 😀", "12"),
]


def test_rows_of_one_chunk() -> None:
    rows = CopyTextRows()
    assert rows.feed(TRANSCRIPT) == ROWS
    rows.close()


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64])
def test_chunks_may_end_anywhere(size: int) -> None:
    rows = CopyTextRows()
    read = [row for start in range(0, len(TRANSCRIPT), size) for row in rows.feed(TRANSCRIPT[start : start + size])]
    assert read == ROWS
    rows.close()


def test_output_that_ends_inside_a_row_is_an_error() -> None:
    rows = CopyTextRows()
    assert rows.feed(b"20758\tplain\t12\n20758\tpla") == [("20758", "plain", "12")]
    with pytest.raises(ValueError, match="ended inside a row"):
        rows.close()
