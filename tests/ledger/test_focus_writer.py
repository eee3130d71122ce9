"""The FOCUS writers print exactly what ``csv.writer`` over ``csv_values`` and ``orjson`` over ``json_values`` print,
however the rows come: numbers as ints or as text, in batches of any size, one FOCUS row in several pieces."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Callable, Sequence
from typing import Any

import orjson
import pytest

from tollgate.ledger.focus import FOCUS_COLUMNS, csv_values, focus_rows, json_values
from tollgate.ledger.focus_writer import CsvWriter, FocusWriter, JsonWriter
from tollgate.ledger.reports import ExportRow, ReportRow, day_number

PROVIDERS = {"openai": "OpenAI", "anthropic": "Anthropic", "we,ird": 'Co "x"'}  # a company csv must quote
# Values csv and JSON must escape, missing values, and days across the end of summer time.
TRICKY = [None, "", "a,b", 'say "hi"', "two\nlines", "cr\rx", "Ärger", "emoji 😀", "back\\slash", "tab\tx", "plain"]
ALL = ("team", "developer", "repo", "env")


def report_rows(attribution: tuple[str, ...]) -> list[ReportRow]:
    rows = []
    for index, value in enumerate(TRICKY):
        day = dt.date(2026, 10, 24) + dt.timedelta(days=index // 3)
        provider = ["openai", "anthropic", None, "we,ird"][index % 4]
        attributes = [TRICKY[(index + offset) % len(TRICKY)] for offset in range(len(attribution))]
        cost = [0, 7, 1_234_567_890, -1_500_001][index % 4]  # negative: only ever by hand, but usd() prints it
        measures = (index + 1, 0, 10**index, index, 2 * index, 3 * index, index // 2, cost)
        rows.append(ReportRow(day, (provider, value, *attributes), *measures))
    return rows


def export_row(row: ReportRow) -> ExportRow:
    return (
        day_number(row.day or dt.date.min),
        *row.group,
        row.requests,
        row.input_tokens,
        row.cached_input_tokens,
        row.cache_write_tokens,
        row.output_tokens,
        row.reasoning_tokens,
        row.input_tokens + row.output_tokens,
        row.cost_micros,
    )


def as_text(row: ExportRow, width: int) -> ExportRow:
    """The row as PostgreSQL's COPY hands it: every number (and the day) as decimal text."""
    return (str(row[0]), *row[1:width], *map(str, row[width:]))


def in_pieces(row: ExportRow, width: int) -> list[ExportRow]:
    """The row as three consecutive rollup rows (three requested models), the last one's numbers as text."""
    numbers = row[width:]
    first = tuple(number // 2 for number in numbers)
    second = tuple(number // 4 for number in numbers)
    third = tuple(str(number - a - b) for number, a, b in zip(numbers, first, second, strict=True))
    return [(*row[:width], *first), (*row[:width], *second), (*row[:width], *third)]


FORMS: dict[str, Callable[[list[ExportRow], int], list[ExportRow]]] = {
    "ints": lambda rows, width: rows,
    "text": lambda rows, width: [as_text(row, width) for row in rows],
    "pieces": lambda rows, width: [piece for row in rows for piece in in_pieces(row, width)],
}


def expected(report: list[ReportRow], timezone: str, attribution: tuple[str, ...]) -> tuple[str, str]:
    values = focus_rows(report, timezone=timezone, providers=PROVIDERS, attribution=attribution)
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows([FOCUS_COLUMNS, *(csv_values(row) for row in values)])
    document = orjson.dumps([json_values(row) for row in values], option=orjson.OPT_INDENT_2).decode() + "\n"
    return text.getvalue(), document


def written(kind: type[FocusWriter], batches: Sequence[Sequence[ExportRow]], **shape: Any) -> tuple[str, int]:
    out = io.StringIO()
    writer = kind(out, **shape)
    for batch in batches:
        writer.write(batch)
    count = writer.close()
    return out.getvalue(), count


@pytest.mark.parametrize("form", sorted(FORMS))
@pytest.mark.parametrize("batch", [1, 2, 1000])
@pytest.mark.parametrize("attribution", [ALL, ("team",), ("env",), ()])
@pytest.mark.parametrize("timezone", ["Europe/Berlin", "UTC", "Asia/Kathmandu"])
def test_the_writers_print_what_csv_values_and_json_values_print(
    form: str, batch: int, attribution: tuple[str, ...], timezone: str
) -> None:
    report = report_rows(attribution)
    width = 3 + len(attribution)
    rows = FORMS[form]([export_row(row) for row in report], width)
    batches = [rows[index : index + batch] for index in range(0, len(rows), batch)]
    shape = {"timezone": timezone, "providers": PROVIDERS, "attribution": attribution, "chunk_rows": 3}
    csv_text, json_text = expected(report, timezone, attribution)
    assert written(CsvWriter, batches, **shape) == (csv_text, len(report))
    assert written(JsonWriter, batches, **shape) == (json_text, len(report))


def test_rows_of_two_days_or_two_groups_are_not_summed() -> None:
    rows = [
        (20_000, "openai", "m", "t", "d", "r", "e", 1, 10, 0, 0, 5, 0, 15, 3),
        (20_001, "openai", "m", "t", "d", "r", "e", 1, 10, 0, 0, 5, 0, 15, 3),  # the next day
        (20_001, "openai", "m", "t", "d", "r", None, 1, 10, 0, 0, 5, 0, 15, 3),  # another group
        (20_001, "openai", "m", "t", "d", "r", None, "2", "20", "0", "0", "10", "0", "30", "6"),  # that group again
    ]
    out = io.StringIO()
    assert CsvWriter.write_all(rows, out, timezone="UTC", providers={}) == 3
    assert [line.split(",")[-6:] for line in out.getvalue().splitlines()[1:]] == [
        ["1", "10", "0", "0", "5", "0"],
        ["1", "10", "0", "0", "5", "0"],
        ["3", "30", "0", "0", "15", "0"],
    ]


def test_writing_no_rows() -> None:
    written_csv, written_json = io.StringIO(), io.StringIO()
    assert CsvWriter.write_all([], written_csv, timezone="UTC", providers={}) == 0
    assert JsonWriter.write_all([], written_json, timezone="UTC", providers={}) == 0
    assert written_csv.getvalue() == ",".join(FOCUS_COLUMNS) + "\n"
    assert written_json.getvalue() == "[]\n"


def test_nothing_is_written_before_the_first_batch() -> None:
    out = io.StringIO()
    writer = JsonWriter(out, timezone="UTC", providers={})
    assert out.getvalue() == ""
    writer.write([])
    assert out.getvalue() == "["
