"""The ledger in an SQLite file (the embedded default; it may be the same file as the budget counters).

Same concurrency rules as ``stores/sqlite_counters.py`` (docs/decisions/0013): WAL journal, every write in a
``BEGIN IMMEDIATE`` transaction, a ``busy_timeout`` so a waiting process queues. One connection, used only by this
store's single worker thread, so the event loop never waits on the file. Migrations run inside ``BEGIN IMMEDIATE``
too, which makes concurrent workers starting at once apply each version exactly once.

Reports aggregate in SQL, on up to ``PARALLEL_READERS`` read-only connections of their own (WAL lets them read
beside the writer). SQLite has no time zones, so the local day of a row is computed from the offsets the zone had over
the period (``reports.offset_pieces``): ``(started_at + offset) / 86400`` days since the epoch. Two choices keep a
report over a million rows well under two seconds (bench/results-ledger.md):

- SQLite's planner takes any range on an indexed column for selective, and walks the ``started_at`` index with one
  table lookup per row even when the period holds the whole ledger. When the period covers at least
  ``SCAN_COVERAGE`` of the ledger's time span (and no filter narrows it), the query says ``NOT INDEXED`` and reads
  the table straight through instead, about a third faster.
- A daily report is cut into contiguous runs of local days, one statement per reader in parallel; the runs' rows
  do not overlap and come back in day order, so they are simply concatenated.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from typing import Any, TypeVar

from tollgate.ledger import schema
from tollgate.ledger.reports import Period, ReportQuery, ReportRow, day_from_number, make_period, offset_pieces
from tollgate.stores.sqlite_base import BUSY_TIMEOUT_MS, connect_wal, sqlite_errors, sqlite_path, transaction
from tollgate.types import UsageRecord

SECONDS_PER_DAY = 86_400
MMAP_BYTES = 256 * 1024 * 1024
PARALLEL_READERS = 2  # report statements run at once (one per reader thread and connection)
SCAN_COVERAGE = 0.25  # a period covering this share of the ledger's time span is read by a full scan

_T = TypeVar("_T")
_INSERT = (
    f"INSERT INTO {schema.TABLE} ({', '.join(schema.COLUMN_NAMES)})"
    f" VALUES ({', '.join('?' for _ in schema.COLUMN_NAMES)})"
    " ON CONFLICT (request_id) DO NOTHING"
)
_AGGREGATES = (
    "count(*), sum(outcome = 'rejected'), sum(input_tokens), sum(cached_input_tokens), sum(cache_write_tokens),"
    " sum(output_tokens), sum(reasoning_tokens), sum(cost_micros)"
)


def translate_errors() -> AbstractContextManager[None]:
    """sqlite3 failures as ``StoreUnavailable`` (the translation lives in ``stores/sqlite_base.py``)."""
    return sqlite_errors("the ledger store did not answer")


class SqliteLedger:
    def __init__(self, path: str) -> None:
        self._path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tollgate-ledger")
        self._db: sqlite3.Connection | None = None  # opened lazily, in the worker thread
        # Reports read on connections of their own, one per reader thread.
        self._readers = ThreadPoolExecutor(max_workers=PARALLEL_READERS, thread_name_prefix="tollgate-ledger-read")
        self._reader_local = threading.local()
        self._reader_dbs: list[sqlite3.Connection] = []
        self._reader_lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str) -> SqliteLedger:
        return cls(sqlite_path(url))

    async def migrate(self) -> int:
        return await self._run(_migrate)

    async def insert(self, records: Sequence[UsageRecord]) -> int:
        rows = [schema.row_values(record) for record in records]

        def work(db: sqlite3.Connection) -> int:
            with transaction(db):
                cursor = db.executemany(_INSERT, rows)
                return max(cursor.rowcount, 0)

        return await self._run(work) if rows else 0

    async def summarize(self, query: ReportQuery) -> list[ReportRow]:
        span = await self._read(_time_span)
        scan = not query.filters and _coverage(query.period, span) >= SCAN_COVERAGE
        parts = _day_runs(query, PARALLEL_READERS) if query.daily else [query]

        def work(part: ReportQuery) -> Callable[[sqlite3.Connection], list[ReportRow]]:
            sql, params = summary_sql(part, scan=scan)
            return lambda db: _report_rows(part, db.execute(sql, params).fetchall())

        results = await asyncio.gather(*(self._read(work(part)) for part in parts))
        return [row for rows in results for row in rows]

    async def count(self) -> int:
        def work(db: sqlite3.Connection) -> int:
            (count,) = db.execute(f"SELECT count(*) FROM {schema.TABLE}").fetchone()
            return int(count)

        return await self._run(work)

    async def close(self) -> None:
        def work() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, work)
        self._executor.shutdown(wait=True)
        self._readers.shutdown(wait=True)
        with self._reader_lock:
            for db in self._reader_dbs:
                db.close()
            self._reader_dbs.clear()

    async def _run(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, work)

    def _call(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        with translate_errors():
            if self._db is None:
                self._db = connect_wal(self._path)
            return work(self._db)

    async def _read(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._call_reader, work)

    def _call_reader(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        with translate_errors():
            db: sqlite3.Connection | None = getattr(self._reader_local, "db", None)
            if db is None:
                db = _connect_reader(self._path)
                self._reader_local.db = db
                with self._reader_lock:
                    self._reader_dbs.append(db)
            return work(db)


def summary_sql(query: ReportQuery, *, scan: bool = False) -> tuple[str, list[object]]:
    """The one aggregating statement for ``query``: ``[day,] *by, requests, rejections, tokens…, cost_micros``,
    ordered by day and then each group value (BINARY collation: code-point order) with NULLs last. ``scan`` reads
    the table straight through rather than through an index."""
    select: list[str] = []
    params: list[object] = []
    if query.daily:
        select.append(f"{_local_day(query, params)} AS day")
    select += list(query.by)
    where = ["started_at >= ?", "started_at < ?"]
    params += [query.period.start, query.period.end]
    for column, values in query.filters:
        where.append(f"{column} IN ({', '.join('?' for _ in values)})" if values else "0")
        params += list(values)
    if query.dispatched_only:
        where.append("provider IS NOT NULL")
    source = f"{schema.TABLE} NOT INDEXED" if scan else schema.TABLE
    sql = f"SELECT {', '.join([*select, _AGGREGATES])} FROM {source} WHERE {' AND '.join(where)}"
    if select:
        keys = (["day"] if query.daily else []) + [f"{column} NULLS LAST" for column in query.by]
        sql += f" GROUP BY {', '.join(str(position) for position in range(1, len(select) + 1))}"
        sql += f" ORDER BY {', '.join(keys)}"
    return sql, params


def _time_span(db: sqlite3.Connection) -> tuple[float, float] | None:
    """The first and last ``started_at`` in the ledger (two index probes), or None when it is empty."""
    first, last = db.execute(
        f"SELECT (SELECT min(started_at) FROM {schema.TABLE}), (SELECT max(started_at) FROM {schema.TABLE})"
    ).fetchone()
    return None if first is None else (float(first), float(last))


def _coverage(period: Period, span: tuple[float, float] | None) -> float:
    """The share of the ledger's time span that ``period`` covers (rows are assumed spread evenly over time)."""
    if span is None:
        return 0.0
    first, last = span
    overlap = min(period.end, last + 1) - max(period.start, first)
    return max(0.0, overlap) / (last + 1 - first)


def _day_runs(query: ReportQuery, count: int) -> list[ReportQuery]:
    """``query`` cut into at most ``count`` queries over contiguous runs of its local days, in day order."""
    days = query.period.days()
    size = -(-len(days) // count)
    runs = [days[index : index + size] for index in range(0, len(days), size)]
    timezone = query.period.timezone
    return [dataclasses.replace(query, period=make_period(run[0], run[-1], timezone)) for run in runs]


def _local_day(query: ReportQuery, params: list[object]) -> str:
    """Days since the epoch in local time; the offset is chosen per row by which piece ``started_at`` falls in."""
    pieces = offset_pieces(query.period)
    if len(pieces) == 1:
        params.append(pieces[0].offset_s)
        return f"CAST((started_at + ?) / {SECONDS_PER_DAY} AS INTEGER)"
    cases = []
    for piece in pieces[:-1]:
        cases.append("WHEN started_at < ? THEN ?")
        params += [piece.until, piece.offset_s]
    params.append(pieces[-1].offset_s)
    return f"CAST((started_at + CASE {' '.join(cases)} ELSE ? END) / {SECONDS_PER_DAY} AS INTEGER)"


def _report_rows(query: ReportQuery, rows: list[tuple[Any, ...]]) -> list[ReportRow]:
    keys = len(query.by)
    if not query.daily:
        return [ReportRow(None, row[:keys], *row[keys:]) for row in rows if row[keys]]
    days: dict[int, dt.date] = {}
    return [
        ReportRow(
            days.get(row[0]) or days.setdefault(row[0], day_from_number(row[0])), row[1 : keys + 1], *row[keys + 1 :]
        )
        for row in rows
    ]


def _connect_reader(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
    try:
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        db.execute("PRAGMA query_only = 1")
        db.execute(f"PRAGMA mmap_size = {MMAP_BYTES}")  # reports scan the table: read it mapped, not copied
    except BaseException:
        db.close()
        raise
    return db


def _applied(db: sqlite3.Connection) -> set[int]:
    exists = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (schema.MIGRATIONS_TABLE,)
    ).fetchone()
    if exists is None:
        return set()
    rows = db.execute(
        f"SELECT version FROM {schema.MIGRATIONS_TABLE} WHERE component = ?", (schema.COMPONENT,)
    ).fetchall()
    return {int(version) for (version,) in rows}


def _migrate(db: sqlite3.Connection) -> int:
    if not schema.pending(_applied(db)):
        return 0  # the common case: no write lock taken
    with transaction(db):
        db.execute(schema.create_migrations_table(schema.SQLITE))
        todo = schema.pending(_applied(db))  # again, under the lock: another worker may have just finished
        for migration in todo:
            for statement in migration.statements(schema.SQLITE):
                db.execute(statement)
            db.execute(
                f"INSERT INTO {schema.MIGRATIONS_TABLE} (component, version, name, applied_at) VALUES (?, ?, ?, ?)",
                (schema.COMPONENT, migration.version, migration.name, time.time()),
            )
    return len(todo)
