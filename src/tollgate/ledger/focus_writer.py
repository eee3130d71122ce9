"""The FOCUS export as text: CSV or a JSON array, written as the ledger streams its rows.

``CsvWriter`` and ``JsonWriter`` take the rows of ``Ledger.export_rows`` (``reports.ExportRow``: a day number, the
group values, the numbers as ints or as their decimal text) a batch at a time and write FOCUS text to a file:
``write(batch)`` for each batch, then ``close()``. Nothing is held but the lines of one chunk, so an export of
hundreds of thousands of rows (bench/results-ledger.md) needs no list of them. The text is exactly what
``csv.writer(out, lineterminator="\\n")`` writing ``FOCUS_COLUMNS`` and then ``csv_values`` of every ``focus_rows``
row prints, or ``orjson.dumps([json_values(row) …], option=orjson.OPT_INDENT_2)`` and a newline
(tests/ledger/test_focus_writer.py compares them on values that need quoting and escaping).

How: most of the 38 columns depend only on the day or only on the (provider, model, attribution) group. A line is
cut into pieces by what its cells depend on — the numbers of the row, the day (``_DAY_PIECES``), the group
(``_GROUP_PIECES``) or nothing — and the day and group pieces are rendered once each, by the same ``csv`` /
``orjson`` calls ``csv_values`` / ``json_values`` go through; one f-string per line puts them in ``FOCUS_COLUMNS``
order around the numbers. Numbers need no quoting or escaping in either format, so they are printed as they come.

Consecutive rows of one day and group are pieces of one FOCUS row (the rollup keeps a row per requested model):
the writer sums them into the line it wrote last, which it keeps back until the next row is known. Nothing is
written before the first batch or ``close()``, so a read that fails before any row leaves the output empty.
"""

from __future__ import annotations

import csv
import functools
import io
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TextIO

import orjson

from tollgate.ledger.focus import ATTRIBUTION, CONSTANT_VALUES, FOCUS_COLUMNS, RESOURCE_GRAIN, FocusValues, tags_text
from tollgate.ledger.reports import MICROS_PER_USD, ExportRow, day_from_number, usd, usd_number

WRITE_CHUNK_ROWS = 250  # lines joined and written at once (larger chunks were slower: fresh memory for each join)

_DAY_PIECES: tuple[tuple[str, ...], ...] = (
    ("BillingCurrency", "BillingPeriodEnd", "BillingPeriodStart", "ChargeCategory", "ChargeClass"),
    ("ChargeFrequency", "ChargePeriodEnd", "ChargePeriodStart"),
    ("x_ChargeDate",),
)
_GROUP_PIECES: tuple[tuple[str, ...], ...] = (
    ("BillingAccountId", "BillingAccountName"),
    ("ChargeDescription",),
    ("InvoiceIssuerName",),
    (
        "PricingUnit",
        "ProviderName",
        "PublisherName",
        "ResourceId",
        "ResourceName",
        "ResourceType",
        "ServiceCategory",
        "ServiceName",
        "SubAccountId",
        "SubAccountName",
        "Tags",
    ),
)


class FocusWriter(ABC):
    """What both formats share: the pieces of each day and group rendered once, consecutive rows of one FOCUS row
    summed, lines written a chunk at a time. A format supplies ``_render`` (the text of some columns), ``_line`` and
    what goes around and between lines (``_start``, ``_before``, ``_between``, ``_end``)."""

    _between: str  # what goes between two lines of a chunk

    def __init__(
        self,
        out: TextIO,
        *,
        timezone: str,
        providers: Mapping[str, str],
        attribution: Sequence[str] = ATTRIBUTION,
        chunk_rows: int = WRITE_CHUNK_ROWS,
    ) -> None:
        self._out = out
        self._chunk_rows = chunk_rows
        self._values = FocusValues(timezone, providers, attribution)
        self._width = 1 + len(RESOURCE_GRAIN) + len(attribution)  # where the numbers start: after day and group
        self._days: dict[Any, tuple[str, ...]] = {}  # day as the rows give it → its pieces
        self._groups: dict[tuple[Any, ...], tuple[str, ...]] = {}  # group values → their pieces
        self._lines: list[str] = []  # rendered, not yet written; the last one waits for the next row
        self._last: tuple[ExportRow, tuple[str, ...], tuple[str, ...]] | None = None  # row, day and group pieces
        self._written = 0
        self._started = False

    @classmethod
    def write_all(
        cls,
        rows: Iterable[ExportRow],
        out: TextIO,
        *,
        timezone: str,
        providers: Mapping[str, str],
        attribution: Sequence[str] = ATTRIBUTION,
    ) -> int:
        """All of ``rows`` as one export; returns how many FOCUS rows were written."""
        writer = cls(out, timezone=timezone, providers=providers, attribution=attribution)
        writer.write(rows)
        return writer.close()

    def write(self, rows: Iterable[ExportRow]) -> None:
        """Add ``rows`` (in report order) to the export."""
        self._begin()
        days, groups, lines, line = self._days, self._groups, self._lines, self._line  # locals: once per row
        width, chunk = self._width, self._chunk_rows
        last_row, last_day, last_group = self._last or ((), (), ())
        for row in rows:
            day = days.get(row[0]) or self._day(row[0])
            key = row[1:width]
            group = groups.get(key) or self._group(key)
            if group is last_group and day is last_day:  # another piece of the FOCUS row just rendered
                last_row = _summed(last_row, row, width)
                lines[-1] = line(last_row, day, group)
                continue
            last_row, last_day, last_group = row, day, group
            lines.append(line(row, day, group))
            if len(lines) > chunk:
                self._flush(keep=1)
        if last_row:
            self._last = (last_row, last_day, last_group)

    def close(self) -> int:
        """Write what is left and the end of the document; returns how many FOCUS rows were written."""
        self._begin()
        self._flush(keep=0)
        self._out.write(self._end(self._written))
        return self._written

    def _begin(self) -> None:
        if not self._started:
            self._out.write(self._start())
            self._started = True

    def _flush(self, keep: int) -> None:
        lines = self._lines
        count = len(lines) - keep
        if count > 0:
            self._out.write(self._before(first=not self._written))
            self._out.write(self._between.join(lines[:count]))  # written apart: no copy of the chunk to prefix it
            self._written += count
            del lines[:count]

    def _day(self, day: Any) -> tuple[str, ...]:
        values = {**CONSTANT_VALUES, **self._values.day_values(day_from_number(int(day)))}
        pieces = self._days[day] = tuple(self._render(names, values) for names in _DAY_PIECES)
        return pieces

    def _group(self, group: tuple[Any, ...]) -> tuple[str, ...]:
        values = {**CONSTANT_VALUES, **self._values.group_values(group)}
        pieces = self._groups[group] = tuple(self._render(names, values) for names in _GROUP_PIECES)
        return pieces

    @abstractmethod
    def _render(self, names: Sequence[str], values: Mapping[str, Any]) -> str:
        """The text of the columns ``names`` (adjacent in a line) with these values."""

    @abstractmethod
    def _line(self, row: ExportRow, day: tuple[str, ...], group: tuple[str, ...]) -> str:
        """The text of one FOCUS row from its numbers and its day's and group's pieces."""

    @abstractmethod
    def _start(self) -> str: ...

    @abstractmethod
    def _before(self, *, first: bool) -> str:
        """What goes before a chunk of lines (``first``: the document's first lines)."""

    @abstractmethod
    def _end(self, rows: int) -> str: ...


class CsvWriter(FocusWriter):
    """The export as CSV: a header line, then a line per FOCUS row."""

    _between = ""  # each line ends with its newline

    def _render(self, names: Sequence[str], values: Mapping[str, Any]) -> str:
        return ",".join(_csv_cell(tags_text(values[name]) if name == "Tags" else values[name]) for name in names)

    def _line(self, row: ExportRow, day: tuple[str, ...], group: tuple[str, ...]) -> str:
        requests, input_tokens, cached, cache_write, output_tokens, reasoning, tokens, micros = row[self._width :]
        micros = int(micros)
        # ``usd`` inlined for the usual non-negative amount: a call per row costs a tenth of the line.
        cost = f"{micros // MICROS_PER_USD}.{micros % MICROS_PER_USD:06d}" if micros >= 0 else usd(micros)
        d0, d1, d2 = day
        g0, g1, g2, g3 = group
        return (
            f"{cost},{g0},{d0},{g1},{d1},{tokens},{_CSV_UNIT},{cost},{cost},{g2},{cost},{_CSV_CATEGORY},{tokens},{g3},"
            f"{d2},{requests},{input_tokens},{cached},{cache_write},{output_tokens},{reasoning}\n"
        )

    def _start(self) -> str:
        return _csv_cells(FOCUS_COLUMNS) + "\n"

    def _before(self, *, first: bool) -> str:
        return ""

    def _end(self, rows: int) -> str:
        return ""


class JsonWriter(FocusWriter):
    """The export as a JSON array of objects, indented by two spaces as ``orjson.OPT_INDENT_2`` does."""

    _between = ",\n"

    def _render(self, names: Sequence[str], values: Mapping[str, Any]) -> str:
        return _json_members(names, values)

    def _line(self, row: ExportRow, day: tuple[str, ...], group: tuple[str, ...]) -> str:
        requests, input_tokens, cached, cache_write, output_tokens, reasoning, tokens, micros = row[self._width :]
        cost = orjson.dumps(usd_number(int(micros))).decode()
        d0, d1, d2 = day
        g0, g1, g2, g3 = group
        return (
            f'  {{\n    "BilledCost": {cost},\n{g0},\n{d0},\n{g1},\n{d1},\n    "ConsumedQuantity": {tokens},\n'
            f'{_JSON_UNIT},\n    "ContractedCost": {cost},\n    "EffectiveCost": {cost},\n{g2},\n'
            f'    "ListCost": {cost},\n{_JSON_CATEGORY},\n    "PricingQuantity": {tokens},\n{g3},\n'
            f'{d2},\n    "x_Requests": {requests},\n    "x_InputTokens": {input_tokens},\n'
            f'    "x_CachedInputTokens": {cached},\n    "x_CacheWriteTokens": {cache_write},\n'
            f'    "x_OutputTokens": {output_tokens},\n    "x_ReasoningTokens": {reasoning}\n  }}'
        )

    def _start(self) -> str:
        return "["

    def _before(self, *, first: bool) -> str:
        return "\n" if first else ",\n"

    def _end(self, rows: int) -> str:
        return "\n]\n" if rows else "]\n"


def _summed(first: ExportRow, second: ExportRow, width: int) -> ExportRow:
    """Two pieces of one FOCUS row as one (its numbers as ints from here on)."""
    numbers = (int(a) + int(b) for a, b in zip(first[width:], second[width:], strict=True))
    return (*first[:width], *numbers)


def _csv_cells(values: Iterable[Any]) -> str:
    """``values`` as ``csv.writer`` prints them inside a line (a trailing empty cell keeps a lone empty value from
    being quoted, as it is not alone in a real line)."""
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerow([*values, ""])
    return text.getvalue()[: -len(",\n")]


@functools.lru_cache(maxsize=65_536)
def _csv_cell(value: str | None) -> str:
    """One value as its CSV cell (``csv.writer`` decides quoting cell by cell); few values recur across many groups."""
    return _csv_cells([value])


def _json_members(names: Sequence[str], values: Mapping[str, Any]) -> str:
    """The ``"name": value`` lines of columns ``names`` as ``orjson`` indents them in an object of the array."""
    text = orjson.dumps([{name: values[name] for name in names}], option=orjson.OPT_INDENT_2).decode()
    return text[len("[\n  {\n") : -len("\n  }\n]")]


_CSV_UNIT, _CSV_CATEGORY = (_csv_cells([CONSTANT_VALUES[name]]) for name in ("ConsumedUnit", "PricingCategory"))
_JSON_UNIT, _JSON_CATEGORY = (_json_members((name,), CONSTANT_VALUES) for name in ("ConsumedUnit", "PricingCategory"))
