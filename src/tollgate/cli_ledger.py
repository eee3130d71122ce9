"""``tollgate report``, the chargeback CSV, the FOCUS export and ``ledger verify``: the ledger for people and tools.

``report``, ``chargeback`` and ``focus_export`` are what the argument parser in ``cli.py`` calls. Each opens the
configured ledger (``settings.ledger``) directly, brings its schema up to date, runs ONE aggregating query and
prints the result as a table, CSV or JSON. Exit status: 0 success, 1 the ledger could not be read, 2 bad options
(the message says which).

When the report's period contains now and budgets are configured, ``report`` also reads the counter store and adds
every budget counter of the current windows with its burn-rate forecast — the rows of ``tollgate budgets status``
(``cli_budgets.read_status``), after the table (a "budgets" section) and in JSON (a ``budgets`` array). CSV stays
one table of usage rows; the counters are in ``--format json`` and ``tollgate budgets status --json``.

Money is printed from integer micro-dollars exactly: ``cost_usd`` has six decimal places in tables and CSV, and is
a JSON number whose text is that same decimal (``cost_micros`` beside it is the integer).

``verify`` first drains the counter store's ledger outbox into the ledger (a ``LedgerWriter`` flush: idempotent,
safe beside a running gateway's own writer), then compares every counter of the current windows with the ledger
(``ledger/verify.py``). Exit status 0 when all agree, 1 when any differ or a store cannot be read.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import sys
import time
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import orjson

from tollgate.budgets.model import Budget
from tollgate.budgets.windows import window_at
from tollgate.cli_budgets import read_status, status_json
from tollgate.cli_budgets import render_table as render_budgets
from tollgate.errors import BadRequest, StoreUnavailable
from tollgate.ledger import open_ledger
from tollgate.ledger.focus import focus_query, parse_attribution, provider_names
from tollgate.ledger.focus_writer import CsvWriter, FocusWriter, JsonWriter
from tollgate.ledger.reports import (
    Period,
    Report,
    ReportQuery,
    ReportRow,
    make_report,
    parse_by,
    parse_period,
    report_query,
    usd,
    usd_number,
)
from tollgate.ledger.verify import CounterCheck, compare, verify_query
from tollgate.ledger.writer import LedgerWriter
from tollgate.services.admission import BudgetStatus
from tollgate.settings import Settings
from tollgate.stores import open_counter_store

FORMATS = ("table", "csv", "json")
FOCUS_FORMATS = ("csv", "json")
MEASURE_COLUMNS = (
    "requests",
    "rejections",
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "total_tokens",
    "cost_usd",
)
_TABLE_HEADINGS = (
    "REQUESTS",
    "REJECTED",
    "INPUT",
    "CACHED",
    "CACHE_WRITE",
    "OUTPUT",
    "REASONING",
    "TOTAL_TOKENS",
    "COST_USD",
)
CHARGEBACK_COLUMNS = (
    "period_start",
    "period_end",
    "team",
    "requests",
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "total_tokens",
    "cost_usd",
)
# The budgets section of a report: used against limit and the forecast (the rest is in ``tollgate budgets status``).
BUDGET_COLUMNS = ("BUDGET", "SCOPE", "VALUE", "WINDOW", "USED", "LIMIT", "USED%", "RUNS OUT", "RESETS AT")
_VERIFY_HEADINGS = ("BUDGET", "SCOPE", "VALUE", "WINDOW", "COUNTER", "LEDGER", "RESERVED", "")
UNATTRIBUTED = "(unattributed)"
NONE_IN_TABLE = "(none)"


@dataclass(frozen=True, slots=True)
class BudgetSection:
    """Every budget counter of the current windows at ``now``, as ``tollgate budgets status`` reads them."""

    rows: tuple[BudgetStatus, ...]
    now: float
    timezone: str


def report(
    settings: Settings,
    *,
    by: list[str],
    period: str | None,
    date_from: str | None,
    date_to: str | None,
    daily: bool,
    fmt: str,
    out: TextIO,
    err: TextIO | None = None,
    today: dt.date | None = None,
    now: float | None = None,
) -> int:
    """Requests, tokens by kind, cost and rejections per group (and per local day with ``daily``); in table and JSON
    also the budgets' current windows when the period contains ``now`` (default: the clock; ``today`` defaults to
    its local date)."""
    at = time.time() if now is None else now
    try:
        if fmt not in FORMATS:
            raise BadRequest(f"--format must be one of {', '.join(FORMATS)}")
        names = parse_by(by)
        day = today or dt.datetime.fromtimestamp(at, zoneinfo.ZoneInfo(settings.timezone)).date()
        query = report_query(_period(settings, period, date_from, date_to, day), names, daily=daily)
        rows = asyncio.run(_summarize(settings.ledger, query))
        budgets = None if fmt == "csv" else _budget_section(settings, query.period, at)
    except (BadRequest, StoreUnavailable) as exc:
        return _fail(exc, err)
    result = make_report(query, names, rows)
    if fmt == "json":
        out.write(render_json(result, budgets))
    elif fmt == "csv":
        render_csv(result, out)
    else:
        out.write(render_table(result, budgets))
    return 0


def _budget_section(settings: Settings, period: Period, now: float) -> BudgetSection | None:
    """The counters of the current windows, or None when the period does not contain ``now`` or no budget is
    configured (then the counter store is not opened at all)."""
    if not settings.budgets or not period.start <= now < period.end:
        return None
    rows = asyncio.run(read_status(settings, now))
    return BudgetSection(tuple(rows), now, settings.timezone)


def chargeback(
    settings: Settings,
    *,
    period: str | None,
    date_from: str | None,
    date_to: str | None,
    out: TextIO,
    team: str | None = None,
    err: TextIO | None = None,
    today: dt.date | None = None,
) -> int:
    """One CSV line per team (or only ``team``): what the period's usage cost it. Requests without a team are
    charged to ``(unattributed)``."""
    try:
        chosen = _period(settings, period, date_from, date_to, today)
        query = report_query(chosen, ["team"], daily=False, filters={"team": [team]} if team else None)
        rows = asyncio.run(_summarize(settings.ledger, query))
    except (BadRequest, StoreUnavailable) as exc:
        return _fail(exc, err)
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CHARGEBACK_COLUMNS)
    for row in make_report(query, ["team"], rows).rows:
        writer.writerow(
            [
                chosen.first_day.isoformat(),
                chosen.last_day.isoformat(),
                row.group[0] or UNATTRIBUTED,
                row.requests,
                row.input_tokens,
                row.cached_input_tokens,
                row.cache_write_tokens,
                row.output_tokens,
                row.reasoning_tokens,
                row.total_tokens,
                usd(row.cost_micros),
            ]
        )
    return 0


def focus_export(
    settings: Settings,
    *,
    period: str | None,
    date_from: str | None,
    date_to: str | None,
    fmt: str,
    out: TextIO,
    by: list[str] | None = None,
    err: TextIO | None = None,
    today: dt.date | None = None,
) -> int:
    """The period's usage as FOCUS rows (see ``ledger/focus.py``), as CSV or a JSON array. ``by`` narrows the
    attribution columns in the grain and in Tags (default: team, developer, repo, env). A full-grain export has
    hundreds of thousands of rows: they are written as the ledger streams them (``Ledger.export_rows`` into a
    ``focus_writer`` writer), so a store that fails part way leaves a partial file and exit status 1."""
    try:
        if fmt not in FOCUS_FORMATS:
            raise BadRequest(f"--format must be one of {', '.join(FOCUS_FORMATS)}")
        attribution = parse_attribution(by)
        query = focus_query(_period(settings, period, date_from, date_to, today), attribution)
        writer = (JsonWriter if fmt == "json" else CsvWriter)(
            out, timezone=settings.timezone, providers=provider_names(settings.providers), attribution=attribution
        )
        asyncio.run(_export(settings, query, writer))
    except (BadRequest, StoreUnavailable) as exc:
        return _fail(exc, err)
    writer.close()
    return 0


async def _export(settings: Settings, query: ReportQuery, writer: FocusWriter) -> None:
    ledger = open_ledger(settings.ledger)
    try:
        await ledger.migrate()
        await ledger.export_rows(query, writer.write)
    finally:
        await ledger.close()


# -- rendering -------------------------------------------------------------------------------------------------------


def render_table(result: Report, budgets: BudgetSection | None = None) -> str:
    """Aligned columns, one line per row and a TOTAL line; without groups only the TOTAL line. Then, with
    ``budgets``, a blank line and the budgets section."""
    daily = result.query.daily
    keys = [*(["DAY"] if daily else []), *(name.upper() for name in result.by)]
    lines = [[*_keys(row, daily, NONE_IN_TABLE), *_table_measures(row)] for row in result.rows] if keys else []
    keys = keys or [""]
    lines.append(["TOTAL", *[""] * (len(keys) - 1), *_table_measures(result.total)])
    headings = [*keys, *_TABLE_HEADINGS]
    widths = [max(len(line[index]) for line in [headings, *lines]) for index in range(len(headings))]
    title = f"usage {result.query.period.label}" + (f" by {','.join(result.by)}" if result.by else "")
    text = [title]
    for line in [headings, *lines]:
        cells = [
            cell.ljust(width) if index < len(keys) else cell.rjust(width)
            for index, (cell, width) in enumerate(zip(line, widths, strict=True))
        ]
        text.append("  ".join(cells).rstrip())
    if budgets is not None:
        at = dt.datetime.fromtimestamp(int(budgets.now), zoneinfo.ZoneInfo(budgets.timezone)).isoformat()
        text += ["", f"budgets in their current windows at {at}"]
        text.append(render_budgets(budgets.rows, budgets.now, BUDGET_COLUMNS).rstrip("\n"))
    return "\n".join(text) + "\n"


def render_csv(result: Report, out: TextIO) -> None:
    daily = result.query.daily
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*(["day"] if daily else []), *result.by, *MEASURE_COLUMNS])
    for row in result.rows:
        writer.writerow([*_keys(row, daily, ""), *_measures(row), usd(row.cost_micros)])


def render_json(result: Report, budgets: BudgetSection | None = None) -> str:
    """The report as one object; with ``budgets``, a ``budgets`` array of ``budgets status --json`` objects."""
    period = result.query.period
    document: dict[str, Any] = {
        "period": _period_json(period),
        "by": list(result.by),
        "daily": result.query.daily,
        "rows": [_row_json(result, row) for row in result.rows],
        "total": _measures_json(result.total),
    }
    if budgets is not None:
        document["budgets"] = [status_json(row, budgets.now) for row in budgets.rows]
    return orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n"


def _period_json(period: Period) -> dict[str, Any]:
    return {
        "from": period.first_day.isoformat(),
        "to": period.last_day.isoformat(),
        "timezone": period.timezone,
        "start": dt.datetime.fromtimestamp(period.start, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "end": dt.datetime.fromtimestamp(period.end, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def _row_json(result: Report, row: ReportRow) -> dict[str, Any]:
    keys: dict[str, Any] = {"day": row.day.isoformat()} if row.day is not None else {}
    keys.update(zip(result.by, row.group, strict=True))
    return {**keys, **_measures_json(row)}


def _measures_json(row: ReportRow) -> dict[str, Any]:
    return {
        "requests": row.requests,
        "rejections": row.rejections,
        "input_tokens": row.input_tokens,
        "cached_input_tokens": row.cached_input_tokens,
        "cache_write_tokens": row.cache_write_tokens,
        "output_tokens": row.output_tokens,
        "reasoning_tokens": row.reasoning_tokens,
        "total_tokens": row.total_tokens,
        "cost_micros": row.cost_micros,
        "cost_usd": usd_number(row.cost_micros),
    }


def _keys(row: ReportRow, daily: bool, none: str) -> list[str]:
    day = [row.day.isoformat() if row.day is not None else ""] if daily else []
    return [*day, *(none if value is None else value for value in row.group)]


def _measures(row: ReportRow) -> list[int]:
    return [
        row.requests,
        row.rejections,
        row.input_tokens,
        row.cached_input_tokens,
        row.cache_write_tokens,
        row.output_tokens,
        row.reasoning_tokens,
        row.total_tokens,
    ]


def _table_measures(row: ReportRow) -> list[str]:
    return [f"{value:,}" for value in _measures(row)] + [usd(row.cost_micros)]


# -- ledger verify --------------------------------------------------------------------------------------------------


def verify(
    settings: Settings, *, as_json: bool, out: TextIO, err: TextIO | None = None, now: float | None = None
) -> int:
    """Compare every budget counter of the current windows with the ledger; 0 when all agree, 1 otherwise."""
    try:
        checks = asyncio.run(_verify(settings, time.time() if now is None else now))
    except StoreUnavailable as exc:
        return _fail(exc, err)
    out.write(render_verify_json(checks) if as_json else render_verify_table(checks))
    return 0 if all(check.agrees for check in checks) else 1


async def _verify(settings: Settings, now: float) -> list[CounterCheck]:
    budgets = [Budget.from_settings(spec) for spec in settings.budgets]
    zone = zoneinfo.ZoneInfo(settings.timezone)
    windows = {budget.name: window_at(budget.window, now, zone) for budget in budgets}
    store = open_counter_store(settings.store)
    ledger = open_ledger(settings.ledger)
    try:
        await ledger.migrate()
        await LedgerWriter(ledger, outbox=store).flush()  # catch the ledger up with what the counters were charged
        states = await store.snapshot([(name, window.start) for name, window in windows.items()], now)
        sums = {}  # one grouped query per distinct window, shared by the budgets on it
        for window in {window.start: window for window in windows.values()}.values():
            sums[window.start] = await ledger.summarize(verify_query(window, settings.timezone))
        rows = {name: sums[window.start] for name, window in windows.items()}
        return compare(budgets, windows, states, rows)
    finally:
        await store.close()
        await ledger.close()


def render_verify_table(checks: Sequence[CounterCheck]) -> str:
    if not checks:
        return "no counters in the current windows: nothing to verify\n"
    cells = [_VERIFY_HEADINGS, *(_verify_cells(check) for check in checks)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(_VERIFY_HEADINGS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in cells]
    differ = sum(not check.agrees for check in checks)
    verdict = f"{differ} of {len(checks)} counters differ from the ledger" if differ else "all counters agree"
    return "\n".join([*lines, verdict]) + "\n"


def _verify_cells(check: CounterCheck) -> tuple[str, ...]:
    return (
        check.budget,
        check.scope,
        check.scope_value,
        f"{check.window} {check.window_start}",
        f"{check.counter_tokens:,} tok / ${usd(check.counter_micros)}",
        f"{check.ledger_tokens:,} tok / ${usd(check.ledger_micros)}",
        f"{check.reserved_tokens:,} tok / ${usd(check.reserved_micros)}",
        "ok" if check.agrees else "DIFFERS",
    )


def render_verify_json(checks: Sequence[CounterCheck]) -> str:
    document = {
        "ok": all(check.agrees for check in checks),
        "differences": sum(not check.agrees for check in checks),
        "counters": [
            {
                "budget": check.budget,
                "scope": check.scope,
                "scope_value": check.scope_value,
                "window": check.window,
                "window_start": check.window_start,
                "counter": {"tokens": check.counter_tokens, "cost_micros": check.counter_micros},
                "ledger": {"tokens": check.ledger_tokens, "cost_micros": check.ledger_micros},
                "reserved": {"tokens": check.reserved_tokens, "cost_micros": check.reserved_micros},
                "agrees": check.agrees,
            }
            for check in checks
        ],
    }
    return orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n"


# -- plumbing --------------------------------------------------------------------------------------------------------


def _period(
    settings: Settings, period: str | None, date_from: str | None, date_to: str | None, today: dt.date | None
) -> Period:
    if today is None:
        today = dt.datetime.now(zoneinfo.ZoneInfo(settings.timezone)).date()
    return parse_period(period, date_from, date_to, timezone=settings.timezone, today=today)


async def _summarize(url: str, query: ReportQuery) -> Sequence[ReportRow]:
    ledger = open_ledger(url)
    try:
        await ledger.migrate()
        return await ledger.summarize(query)
    finally:
        await ledger.close()


def _fail(exc: BadRequest | StoreUnavailable, err: TextIO | None) -> int:
    print(f"tollgate: {exc.message}", file=err or sys.stderr)
    return 2 if isinstance(exc, BadRequest) else 1
