"""``tollgate budgets status``: every budget and scope value in its current window, as a table or as JSON.

It opens the configured counter store directly (the ``--url`` form through the admin API is a later issue), reads
the counters with their expired reservations purged, and prints used, reserved, limit (after overrides), percent
used, the reset time, the burn-rate forecast (when, at the window's rate so far, the counter runs out: an ISO time,
or ``-`` / null when not before the reset; ``budgets/forecast.py``) and, for soft and shadow budgets, how many
requests they would have refused.

``read_status``, ``status_json`` and ``render_table`` are shared with ``tollgate report`` (``cli_ledger.py``), which
adds the same rows (a narrower table) after a report whose period contains now.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
import time
from collections.abc import Sequence
from typing import TextIO

import orjson

from tollgate.budgets.forecast import earliest, runs_out_at
from tollgate.errors import StoreUnavailable
from tollgate.services.admission import Admission, BudgetStatus
from tollgate.settings import Settings
from tollgate.stores import open_counter_store

COLUMNS = (
    "BUDGET",
    "SCOPE",
    "VALUE",
    "WINDOW",
    "ENFORCE",
    "USED",
    "RESERVED",
    "LIMIT",
    "USED%",
    "RUNS OUT",
    "RESETS AT",
    "BLOCKED",
)


def budgets_status(
    settings: Settings, *, as_json: bool, out: TextIO, now: float | None = None, err: TextIO | None = None
) -> int:
    """Print the status; exit status 0, or 1 when the store cannot be read."""
    at = time.time() if now is None else now
    try:
        rows = asyncio.run(read_status(settings, at))
    except StoreUnavailable as exc:
        print(f"tollgate: {exc.message} ({settings.store.split('://', 1)[0]})", file=err or sys.stderr)
        return 1
    out.write(render_json(rows, settings.timezone, at) if as_json else render_table(rows, at))
    return 0


async def read_status(settings: Settings, now: float) -> list[BudgetStatus]:
    """Every budget and scope value in its current window at ``now``, read from the configured counter store."""
    store = open_counter_store(settings.store)
    try:
        return await Admission(settings, store).status(now)
    finally:
        await store.close()


def render_json(rows: Sequence[BudgetStatus], timezone: str, now: float) -> str:
    return orjson.dumps({"timezone": timezone, "budgets": [status_json(row, now) for row in rows]}).decode() + "\n"


def runs_out(row: BudgetStatus, now: float) -> str | None:
    """When this counter runs out at its window's rate so far (ISO, the window's offset), or None."""
    start = dt.datetime.fromisoformat(row.window_start)
    end = dt.datetime.fromisoformat(row.reset_at)
    units = ((row.used_tokens, row.limit_tokens), (row.used_micros, row.limit_micros))
    at = earliest(
        runs_out_at(used, limit, start.timestamp(), end.timestamp(), now) for used, limit in units if limit is not None
    )
    if at is None:
        return None
    return dt.datetime.fromtimestamp(int(at), start.tzinfo).isoformat()


def status_json(row: BudgetStatus, now: float) -> dict[str, object]:
    """One row as the JSON object of ``budgets status --json`` (and of ``report --format json``'s ``budgets``)."""
    percent = row.percent
    return {
        "budget": row.budget,
        "scope": row.scope,
        "scope_value": row.scope_value,
        "window": row.window,
        "window_start": row.window_start,
        "reset_at": row.reset_at,
        "enforce": row.enforce,
        "mode": row.mode,
        "limit": {"tokens": row.limit_tokens, "usd": _usd(row.limit_micros)},
        "used": {"tokens": row.used_tokens, "usd": _usd(row.used_micros)},
        "reserved": {"tokens": row.reserved_tokens, "usd": _usd(row.reserved_micros)},
        "percent": None if percent is None else round(percent, 2),
        "runs_out_at": runs_out(row, now),
        "would_have_blocked": row.blocked,
    }


def _usd(micros: int | None) -> float | None:
    return None if micros is None else micros / 1_000_000


def render_table(rows: Sequence[BudgetStatus], now: float, columns: Sequence[str] = COLUMNS) -> str:
    """Aligned columns; ``columns`` picks (and orders) a subset of ``COLUMNS``."""
    if not rows:
        return "no budgets configured\n"
    picks = [COLUMNS.index(name) for name in columns]
    full = [_cells(row, now) for row in rows]
    cells = [tuple(columns), *(tuple(line[i] for i in picks) for line in full)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return "".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() + "\n" for line in cells
    )


def _cells(row: BudgetStatus, now: float) -> tuple[str, ...]:
    percent = row.percent
    return (
        row.budget,
        row.scope,
        row.scope_value if row.scope_value is not None else "-",
        row.window,
        row.enforce,
        _amount(row, row.used_tokens, row.used_micros),
        _amount(row, row.reserved_tokens, row.reserved_micros),
        _amount(row, row.limit_tokens, row.limit_micros),
        "-" if percent is None else f"{percent:.1f}%",
        runs_out(row, now) or "-",
        row.reset_at,
        "-" if row.enforce == "hard" else str(row.blocked),
    )


def _amount(row: BudgetStatus, tokens: int | None, micros: int | None) -> str:
    """The units this budget limits: ``1,234 tok``, ``$5.00`` or both."""
    parts = []
    if row.limit_tokens is not None:
        parts.append(f"{tokens or 0:,} tok")
    if row.limit_micros is not None:
        parts.append(f"${(micros or 0) / 1_000_000:,.2f}")
    return " / ".join(parts)
