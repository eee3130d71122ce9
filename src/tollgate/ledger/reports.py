"""Report queries and row shaping: what to aggregate over which calendar period, and the rows that come back.

Pure (no I/O, no clock reads; "today" is passed in). A report is one ``ReportQuery``: a period in the configured
time zone (``[start, end)`` in unix seconds, local midnight to local midnight, as the budget windows are), the
columns to group by, whether to split by local day, and optional equality filters. The ledger adapters turn it into
one aggregating SQL statement (``Ledger.summarize``) and hand back ``ReportRow``s ordered by local day, then by each
group value in code-point (byte) order with missing values last (both stores sort in SQL the same way);
``make_report`` adds the total. Money stays integer micro-dollars until it is printed (``usd``).

Periods: ``--period 2026`` (a year), ``2026-11`` (a month), ``2026-11-05`` (a day); or ``--from D --to D`` with
both dates inclusive (``--to`` defaults to today); nothing at all means the current month.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
import zoneinfo
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tollgate.budgets.windows import local_midnight
from tollgate.errors import BadRequest

# What a report may group or filter by: the name on the command line → the ledger column.
GROUPABLE: Mapping[str, str] = {
    "team": "team",
    "developer": "developer",
    "repo": "repo",
    "model": "model",
    "env": "env",
    "key": "key_name",
    "provider": "provider",
    "upstream_model": "upstream_model",
    "endpoint": "endpoint",
}
MICROS_PER_USD = 1_000_000
SECONDS_PER_DAY = 86_400
_YEAR = re.compile(r"^\d{4}$")
_MONTH = re.compile(r"^\d{4}-\d{2}$")
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_EPOCH = dt.date(1970, 1, 1)


@dataclass(frozen=True, slots=True)
class Period:
    """Local days ``first_day`` … ``last_day`` (inclusive) in ``timezone``, i.e. unix seconds ``[start, end)``."""

    first_day: dt.date
    last_day: dt.date
    timezone: str
    start: int
    end: int

    @property
    def label(self) -> str:
        return f"{self.first_day.isoformat()}..{self.last_day.isoformat()} ({self.timezone})"

    def days(self) -> list[dt.date]:
        count = (self.last_day - self.first_day).days + 1
        return [self.first_day + dt.timedelta(days=index) for index in range(count)]


@dataclass(frozen=True, slots=True)
class ReportQuery:
    """One aggregation: ``by`` and the keys of ``filters`` are ledger column names (from ``GROUPABLE``). The
    stores return its rows ordered by day, then by each ``by`` value (code-point order, missing values last)."""

    period: Period
    by: tuple[str, ...]
    daily: bool = False
    filters: tuple[tuple[str, tuple[str, ...]], ...] = ()
    dispatched_only: bool = False  # only requests that reached a provider (``provider IS NOT NULL``)

    def __post_init__(self) -> None:
        allowed = set(GROUPABLE.values())
        for name in (*self.by, *(column for column, _ in self.filters)):
            if name not in allowed:
                raise ValueError(f"not a report column: {name!r}")  # a bug, not a user error: names are mapped


# One summary row as a plain tuple, as ``Ledger.summary_tuples`` returns it: ``(day or None, *group values, requests,
# rejections, input_tokens, cached_input_tokens, cache_write_tokens, output_tokens, reasoning_tokens, cost_micros)``.
# Building a ``ReportRow`` costs more than the query's share when there are hundreds of thousands.
SummaryTuple = tuple[Any, ...]

# One row of an export, as ``Ledger.export_rows`` streams them: ``(day, *group values, requests, input_tokens,
# cached_input_tokens, cache_write_tokens, output_tokens, reasoning_tokens, input + output tokens, cost_micros)``, the
# day as days since 1970-01-01. Numbers are ints or their decimal text (PostgreSQL's COPY hands text, which the
# FOCUS writers print as it is); a missing group value is None. Unlike summary tuples, the numbers of one day and
# group may come in several consecutive rows (the rollup keeps one per requested model), which the reader sums.
ExportRow = tuple[Any, ...]
ExportSink = Callable[[Sequence[ExportRow]], None]  # takes each batch of an export as it is read


@dataclass(frozen=True, slots=True)
class ReportRow:
    """The aggregates of one group (and local day, when daily)."""

    day: dt.date | None
    group: tuple[str | None, ...]
    requests: int = 0
    rejections: int = 0
    input_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    cost_micros: int = 0

    @property
    def total_tokens(self) -> int:
        """What a token budget is charged: input (including cached and cache-write) plus output."""
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True, slots=True)
class Report:
    """Rows ordered by day, then group values (code-point order, missing values last), and their sum."""

    query: ReportQuery
    by: tuple[str, ...]  # the names as given on the command line
    rows: tuple[ReportRow, ...]
    total: ReportRow = field(default_factory=lambda: ReportRow(None, ()))


@dataclass(frozen=True, slots=True)
class OffsetPiece:
    """From the previous piece's ``until`` (or the period start) up to ``until``, local time is UTC + ``offset_s``."""

    until: int
    offset_s: int


# -- parsing what the command line says ----------------------------------------------------------------------------


def parse_by(by: Iterable[str]) -> tuple[str, ...]:
    """``["team,model", "env"]`` → ``("team", "model", "env")``; unknown names raise ``BadRequest``."""
    names: list[str] = []
    for part in by:
        for name in part.split(","):
            name = name.strip()
            if not name:
                continue
            if name not in GROUPABLE:
                raise BadRequest(f"cannot group by {name!r}; choose from {', '.join(GROUPABLE)}")
            if name not in names:
                names.append(name)
    return tuple(names)


def parse_period(
    period: str | None, date_from: str | None, date_to: str | None, *, timezone: str, today: dt.date
) -> Period:
    """The calendar period the options name, in ``timezone``; raises ``BadRequest`` when they do not name one."""
    if period is not None and (date_from is not None or date_to is not None):
        raise BadRequest("give either --period or --from/--to, not both")
    if period is not None:
        first, last = _named_period(period.strip())
    elif date_from is not None:
        first = _date(date_from, "--from")
        last = _date(date_to, "--to") if date_to is not None else today
        if last < first:
            raise BadRequest(f"--to {last.isoformat()} is before --from {first.isoformat()}")
    elif date_to is not None:
        raise BadRequest("--to needs --from")
    else:
        first, last = today.replace(day=1), _month_end(today)
    return make_period(first, last, timezone)


def make_period(first_day: dt.date, last_day: dt.date, timezone: str) -> Period:
    zone = zoneinfo.ZoneInfo(timezone)
    start = int(local_midnight(first_day, zone).timestamp())
    end = int(local_midnight(last_day + dt.timedelta(days=1), zone).timestamp())
    return Period(first_day, last_day, timezone, start, end)


def _named_period(text: str) -> tuple[dt.date, dt.date]:
    try:
        if _YEAR.match(text):
            year = int(text)
            return dt.date(year, 1, 1), dt.date(year, 12, 31)
        if _MONTH.match(text):
            first = dt.date(int(text[:4]), int(text[5:7]), 1)
            return first, _month_end(first)
        if _DAY.match(text):
            day = dt.date.fromisoformat(text)
            return day, day
    except ValueError:
        pass
    raise BadRequest(f"--period {text!r} is not a year (2026), a month (2026-11) or a day (2026-11-05)")


def _date(text: str, option: str) -> dt.date:
    try:
        if not _DAY.match(text.strip()):
            raise ValueError(text)
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise BadRequest(f"{option} {text!r} is not a date (YYYY-MM-DD)") from None


def _month_end(day: dt.date) -> dt.date:
    following = dt.date(day.year + day.month // 12, day.month % 12 + 1, 1)
    return following - dt.timedelta(days=1)


# -- building queries ----------------------------------------------------------------------------------------------


def report_query(
    period: Period, by: Sequence[str], *, daily: bool, filters: Mapping[str, Sequence[str]] | None = None
) -> ReportQuery:
    """A query grouped by command-line names ``by`` (see ``parse_by``), filtered by ``filters`` (name → values)."""
    where = tuple((GROUPABLE[name], tuple(values)) for name, values in (filters or {}).items())
    return ReportQuery(period=period, by=tuple(GROUPABLE[name] for name in by), daily=daily, filters=where)


def offset_pieces(period: Period) -> tuple[OffsetPiece, ...]:
    """The time zone's UTC offsets over the period, for stores that compute the local day themselves.

    Offsets change only at transitions (DST); between two local midnights there is at most one, found by bisection
    to the second. The last piece ends at ``period.end``.
    """
    zone = zoneinfo.ZoneInfo(period.timezone)
    boundaries = [int(local_midnight(day, zone).timestamp()) for day in period.days()] + [period.end]
    pieces: list[OffsetPiece] = []
    current = _offset(period.start, zone)
    for low, high in itertools.pairwise(boundaries):
        if _offset(low, zone) != current:  # a transition exactly at local midnight
            pieces.append(OffsetPiece(low, current))
            current = _offset(low, zone)
        if _offset(high - 1, zone) != current:
            change = _first_change(low, high - 1, current, zone)
            pieces.append(OffsetPiece(change, current))
            current = _offset(change, zone)
    pieces.append(OffsetPiece(period.end, current))
    return tuple(pieces)


def zone_offsets(timezone: str, start: int, end: int) -> tuple[OffsetPiece, ...]:
    """The zone's UTC offsets over unix seconds ``[start, end)``, found like ``offset_pieces`` (at most one
    transition per 24 hours, located by bisection to the second); the last piece ends at ``end``."""
    zone = zoneinfo.ZoneInfo(timezone)
    pieces: list[OffsetPiece] = []
    known, current = start, _offset(start, zone)  # ``known`` has the offset ``current``
    while known < end - 1:
        probe = min(known + SECONDS_PER_DAY, end - 1)
        if _offset(probe, zone) == current:
            known = probe
            continue
        change = _first_change(known, probe, current, zone)
        pieces.append(OffsetPiece(change, current))
        known, current = change, _offset(change, zone)
    pieces.append(OffsetPiece(end, current))
    return tuple(pieces)


def _offset(at: int, zone: zoneinfo.ZoneInfo) -> int:
    offset = dt.datetime.fromtimestamp(at, zone).utcoffset()
    return int(offset.total_seconds()) if offset is not None else 0


def _first_change(low: int, high: int, before: int, zone: zoneinfo.ZoneInfo) -> int:
    """The first second in ``(low, high]`` whose offset differs from ``before`` (``high``'s does)."""
    while high - low > 1:
        middle = (low + high) // 2
        if _offset(middle, zone) == before:
            low = middle
        else:
            high = middle
    return high


def day_from_number(number: int) -> dt.date:
    """Days since 1970-01-01 → the date (the SQLite adapter computes local days as such numbers)."""
    return _EPOCH + dt.timedelta(days=number)


def day_number(day: dt.date) -> int:
    """The date as days since 1970-01-01 (SQLite's rollup ``day``, an export row's day)."""
    return (day - _EPOCH).days


# -- shaping results -----------------------------------------------------------------------------------------------


def report_rows(query: ReportQuery, rows: Iterable[SummaryTuple]) -> list[ReportRow]:
    """Summary tuples of ``query`` as ``ReportRow``s. Without a day split, a row of no requests (the one row an
    ungrouped query returns over an empty period) is left out."""
    keys = len(query.by)
    if query.daily:
        return [ReportRow(row[0], tuple(row[1 : keys + 1]), *row[keys + 1 :]) for row in rows]
    return [ReportRow(None, tuple(row[1 : keys + 1]), *row[keys + 1 :]) for row in rows if row[keys + 1]]


def export_rows(query: ReportQuery, rows: Iterable[SummaryTuple]) -> list[ExportRow]:
    """Summary tuples of a daily ``query`` as export rows (``ExportRow``)."""
    keys = 1 + len(query.by)
    exported = []
    for row in rows:
        requests, _, inputs, cached, written, outputs, reasoning, cost = row[keys:]
        measures = (requests, inputs, cached, written, outputs, reasoning, inputs + outputs, cost)
        exported.append((day_number(row[0]), *row[1:keys], *measures))
    return exported


def make_report(query: ReportQuery, by: Sequence[str], rows: Iterable[ReportRow]) -> Report:
    """The rows as ``Ledger.summarize`` ordered them, and their total."""
    kept = tuple(rows)
    return Report(query=query, by=tuple(by), rows=kept, total=total(kept))


def total(rows: Sequence[ReportRow]) -> ReportRow:
    return ReportRow(
        None,
        (),
        sum(row.requests for row in rows),
        sum(row.rejections for row in rows),
        sum(row.input_tokens for row in rows),
        sum(row.cached_input_tokens for row in rows),
        sum(row.cache_write_tokens for row in rows),
        sum(row.output_tokens for row in rows),
        sum(row.reasoning_tokens for row in rows),
        sum(row.cost_micros for row in rows),
    )


def usd(micros: int) -> str:
    """Micro-dollars as an exact decimal string with six places: ``1234567`` → ``"1.234567"``."""
    sign = "-" if micros < 0 else ""
    whole, fraction = divmod(abs(micros), MICROS_PER_USD)
    return f"{sign}{whole}.{fraction:06d}"


def usd_number(micros: int) -> float:
    """Micro-dollars as a JSON number. The division is correctly rounded, so the shortest repr of the result is the
    exact six-place decimal for any amount under 10^9 USD (15 significant digits)."""
    return micros / MICROS_PER_USD
