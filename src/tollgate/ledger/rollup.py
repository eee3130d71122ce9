"""The daily rollup, the pure part: which report queries it answers, and what the stores need to build and read it.

``usage_rollup`` (migration 2, ``schema.py``) holds the ledger summed per local day × ``ROLLUP_DIMENSIONS`` (provider,
served model, team, developer, repo, env, requested model) in ONE time zone, named in ``usage_rollup_state``. A
trigger adds each row the ledger really inserts, in the insert's transaction, so an insert skipped as a duplicate
request id adds nothing. The state is NULL until a ledger opened with a time zone (``open_ledger(url, timezone=…)``,
as the gateway does) builds the rollup in ``migrate()``: from every existing row, and again from scratch when the
configured zone changes. Reads never build.

A report reads the rollup when ``answers(query, state)``: the rollup is complete and built for the query's zone, the
period is whole local days, and every column it groups or filters by is a rollup dimension. Anything else — a
report by key or endpoint, the verify query (it groups by key), another time zone, a rollup not yet built — reads the
raw ledger, so results never depend on which path answered (tests/ledger/test_rollup.py compares them).

The FOCUS export at full attribution grain (``full_grain``) reads the rollup rows in the order of its index and
sums rows that differ only by requested model here (``fold``), which is cheaper than an SQL ``GROUP BY`` when nearly
every group is one row. Pure: no I/O.
"""

from __future__ import annotations

import datetime as dt
import operator
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from tollgate.ledger.reports import ReportQuery, SummaryTuple, make_period, zone_offsets
from tollgate.ledger.schema import ROLLUP_DIMENSIONS

BUILD_CHUNK_ROWS = 50_000  # SQLite builds in transactions of this many ledger rows: the write lock is held briefly
OFFSETS_FROM = 0  # SQLite's offsets table covers 1970-01-01 …
OFFSETS_UNTIL = 7_258_118_400  # … to 2200-01-01 UTC; the last offset applies beyond
OFFSETS_FOREVER = 1e18  # the ``until`` of the last offset
FULL_GRAIN: tuple[str, ...] = ROLLUP_DIMENSIONS[:-1]  # every dimension but the requested model: FOCUS's full grain
# The numbers of ``reports.ExportRow`` as SQL over the rollup's columns (the same in both dialects).
EXPORT_COLUMNS: tuple[str, ...] = (
    "requests",
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "input_tokens + output_tokens",
    "cost_micros",
)


@dataclass(frozen=True, slots=True)
class RollupState:
    """What ``usage_rollup_state`` says: the zone the rollup is built for (None: not built), and whether the build
    has reached every ledger row (SQLite builds in several transactions)."""

    timezone: str | None
    complete: bool


def answers(query: ReportQuery, state: RollupState | None) -> bool:
    """Whether the rollup in ``state`` gives exactly the rows the raw ledger would for ``query``."""
    period = query.period
    if state is None or not state.complete or state.timezone != period.timezone:
        return False
    if not {*query.by, *(column for column, _ in query.filters)} <= set(ROLLUP_DIMENSIONS):
        return False
    return make_period(period.first_day, period.last_day, period.timezone) == period  # whole local days


def full_grain(query: ReportQuery) -> bool:
    """A daily query by every rollup dimension but the requested model, in index order: read in order and ``fold``."""
    return query.daily and query.by == FULL_GRAIN


def offset_table(timezone: str) -> list[tuple[float, int]]:
    """SQLite's ``usage_rollup_offsets`` rows for ``timezone``: (until, offset_s), the offset applying to unix
    seconds before ``until`` (and from the previous row's ``until`` on)."""
    pieces = zone_offsets(timezone, OFFSETS_FROM, OFFSETS_UNTIL)
    rows: list[tuple[float, int]] = [(float(piece.until), piece.offset_s) for piece in pieces]
    rows[-1] = (OFFSETS_FOREVER, rows[-1][1])
    return rows


def fold(rows: Iterable[Sequence[Any]], keys: int, day: Callable[[Any], dt.date] | None = None) -> list[SummaryTuple]:
    """Rows ordered so that rows with equal first ``keys`` values (day and group) are adjacent, as summary tuples
    with those rows summed; ``day`` converts the store's day value."""
    folded: list[SummaryTuple] = []
    append = folded.append  # bound once: this loop runs once per row of a full-grain export
    previous: Sequence[Any] | None = None
    for row in rows:
        key = row[:keys]
        if key == previous:
            last = folded[-1]
            folded[-1] = (*last[:keys], *map(operator.add, last[keys:], row[keys:]))
        else:
            previous = key
            append((day(row[0]), *row[1:]) if day is not None else tuple(row))
    return folded
