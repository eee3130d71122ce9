"""The ledger in an SQLite file (the embedded default; it may be the same file as the budget counters).

Same concurrency rules as ``stores/sqlite_counters.py`` (docs/decisions/0013): WAL journal, every write in a
``BEGIN IMMEDIATE`` transaction, a ``busy_timeout`` so a waiting process queues. One connection, used only by this
store's single worker thread, so the event loop never waits on the file. Migrations run inside ``BEGIN IMMEDIATE``
too, which makes concurrent workers starting at once apply each version exactly once.

Reports aggregate in SQL (the statements are in ``sqlite_sql.py``), on up to ``PARALLEL_READERS`` read-only
connections of their own (WAL lets them read beside the writer). SQLite has no time zones, so the local day of a row
is computed from the offsets the zone had over the period. Two choices keep a report over a million rows well under
two seconds (bench/results-ledger.md):

- SQLite's planner takes any range on an indexed column for selective, and walks the ``started_at`` index with one
  table lookup per row even when the period holds the whole ledger. When the period covers at least
  ``SCAN_COVERAGE`` of the ledger's time span (and no filter narrows it), the query says ``NOT INDEXED`` and reads
  the table straight through instead, about a third faster.
- A daily report is cut into contiguous runs of local days, one statement per reader in parallel; the runs' rows
  do not overlap and come back in day order, so they are simply concatenated.

Reports the daily rollup answers (``ledger/rollup.py``) read ``usage_rollup`` instead, whose ``day`` is already the
local day (the trigger finds the offset in ``usage_rollup_offsets``). Each statement runs in a read transaction
with its check of the rollup state, so both come from one snapshot. A ledger opened with a time zone builds the
rollup in ``migrate()``: the restart (clear, offsets, target = the last ledger id) in one transaction, then the rows
up to the target in transactions of ``rollup.BUILD_CHUNK_ROWS`` ids, so the write lock (which the budget counters
may share) is never held for long; rows inserted meanwhile have higher ids and are added by the trigger.

An export at full grain (``export_rows``, the FOCUS export) reads the rollup rows in index order on one reader and
hands them to its sink ``EXPORT_BATCH_ROWS`` at a time, as the cursor returns them, on that reader's thread.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import functools
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from typing import Any, TypeVar

from tollgate.ledger import rollup, schema
from tollgate.ledger.reports import (
    ExportSink,
    Period,
    ReportQuery,
    ReportRow,
    SummaryTuple,
    day_from_number,
    export_rows,
    make_period,
    report_rows,
)
from tollgate.ledger.rollup import RollupState
from tollgate.ledger.sqlite_sql import rollup_export_sql, rollup_sql, summary_sql
from tollgate.stores.sqlite_base import BUSY_TIMEOUT_MS, connect_wal, sqlite_errors, sqlite_path, transaction
from tollgate.types import UsageRecord

MMAP_BYTES = 256 * 1024 * 1024
PARALLEL_READERS = 2  # report statements run at once (one per reader thread and connection)
EXPORT_BATCH_ROWS = 1_000  # rows of an export fetched and handed on at once
SCAN_COVERAGE = 0.25  # a period covering this share of the ledger's time span is read by a full scan

_T = TypeVar("_T")
_INSERT = (
    f"INSERT INTO {schema.TABLE} ({', '.join(schema.COLUMN_NAMES)})"
    f" VALUES ({', '.join('?' for _ in schema.COLUMN_NAMES)})"
    " ON CONFLICT (request_id) DO NOTHING"
)


def translate_errors() -> AbstractContextManager[None]:
    """sqlite3 failures as ``StoreUnavailable`` (the translation lives in ``stores/sqlite_base.py``)."""
    return sqlite_errors("the ledger store did not answer")


class SqliteLedger:
    def __init__(self, path: str, *, timezone: str | None = None) -> None:
        self._path = path
        self._timezone = timezone  # build the rollup for this zone in migrate(); None: leave it as it is
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tollgate-ledger")
        self._db: sqlite3.Connection | None = None  # opened lazily, in the worker thread
        # Reports read on connections of their own, one per reader thread.
        self._readers = ThreadPoolExecutor(max_workers=PARALLEL_READERS, thread_name_prefix="tollgate-ledger-read")
        self._reader_local = threading.local()
        self._reader_dbs: list[sqlite3.Connection] = []
        self._reader_lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str, *, timezone: str | None = None) -> SqliteLedger:
        return cls(sqlite_path(url), timezone=timezone)

    async def migrate(self) -> int:
        return await self._run(functools.partial(_migrate, timezone=self._timezone))

    async def insert(self, records: Sequence[UsageRecord]) -> int:
        rows = [schema.row_values(record) for record in records]

        def work(db: sqlite3.Connection) -> int:
            with transaction(db):
                cursor = db.executemany(_INSERT, rows)
                return max(cursor.rowcount, 0)

        return await self._run(work) if rows else 0

    async def summarize(self, query: ReportQuery) -> list[ReportRow]:
        return report_rows(query, await self.summary_tuples(query))

    async def summary_tuples(self, query: ReportQuery) -> list[SummaryTuple]:
        rolled = await self._read(functools.partial(_from_rollup, query))
        if rolled is not None:
            return rolled
        span = await self._read(_time_span)
        scan = not query.filters and _coverage(query.period, span) >= SCAN_COVERAGE
        parts = _day_runs(query, PARALLEL_READERS) if query.daily else [query]
        work = (functools.partial(_from_ledger, part, scan=scan) for part in parts)
        results = await asyncio.gather(*(self._read(part) for part in work))
        return [row for rows in results for row in rows]

    async def export_rows(self, query: ReportQuery, sink: ExportSink) -> None:
        if not await self._read(functools.partial(_export_from_rollup, query, sink)):
            sink(export_rows(query, await self.summary_tuples(query)))

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
                # Each row's insert runs its own statement journal (the rollup trigger could fail after the row is
                # in); on disk that was a temporary file written for every row, about 40 % of the insert's time
                # (decision 0056). In memory it is one row's pages; the rollup build sorts in memory too, one chunk
                # of rollup.BUILD_CHUNK_ROWS rows at a time.
                self._db.execute("PRAGMA temp_store = MEMORY")
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


def _from_rollup(query: ReportQuery, db: sqlite3.Connection) -> list[SummaryTuple] | None:
    """``query``'s summary tuples from the rollup, or None when it does not answer the query. The state and the
    rows are read in one transaction (one snapshot), and by one statement: the rollup is read fast enough that
    fetching its rows dominates, and two threads fetching at once only fight for the GIL."""
    db.execute("BEGIN")
    try:
        if not rollup.answers(query, _rollup_state(db)):
            return None
        rows = db.execute(*rollup_sql(query)).fetchall()  # one C loop: faster than iterating the cursor
        if rollup.full_grain(query):
            return rollup.fold(rows, 1 + len(query.by), _day_dates())
        return _dated(rows)
    finally:
        db.execute("COMMIT")


def _export_from_rollup(query: ReportQuery, sink: ExportSink, db: sqlite3.Connection) -> bool:
    """Hand ``sink`` the full-grain rollup rows of ``query`` as export rows, ``EXPORT_BATCH_ROWS`` at a time, all
    read in one transaction with the state check; False (and nothing handed) when the rollup does not answer it.
    Rows are handed as the cursor returns them: the statement computes the export's columns, so a row needs no
    Python work before the writer."""
    if not rollup.full_grain(query):
        return False  # grouped in SQL: few rows, read by ``summary_tuples``
    db.execute("BEGIN")
    try:
        if not rollup.answers(query, _rollup_state(db)):
            return False
        cursor = db.execute(*rollup_export_sql(query))
        try:
            while batch := cursor.fetchmany(EXPORT_BATCH_ROWS):
                sink(batch)
        finally:
            cursor.close()
        return True
    finally:
        db.execute("COMMIT")


def _from_ledger(query: ReportQuery, db: sqlite3.Connection, *, scan: bool) -> list[SummaryTuple]:
    return _dated(db.execute(*summary_sql(query, scan=scan)))


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


def _day_dates() -> Callable[[int], dt.date]:
    """Days since the epoch → dates, each worked out once."""
    days: dict[int, dt.date] = {}

    def date(number: int) -> dt.date:
        return days.get(number) or days.setdefault(number, day_from_number(number))

    return date


def _dated(rows: Iterable[tuple[Any, ...]]) -> list[SummaryTuple]:
    """Summary tuples with SQLite's day numbers as dates (rows without a day are kept as they are)."""
    date = _day_dates()
    return [row if row[0] is None else (date(row[0]), *row[1:]) for row in rows]


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


def _migrate(db: sqlite3.Connection, *, timezone: str | None) -> int:
    todo: tuple[schema.Migration, ...] = ()
    if schema.pending(_applied(db)):  # the common case is not: no write lock taken
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
    if timezone is not None:
        _build_rollup(db, timezone)
    return len(todo)


def _rollup_state(db: sqlite3.Connection) -> RollupState | None:
    """The rollup's state, or None before migration 2."""
    exists = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (schema.ROLLUP_STATE_TABLE,)
    ).fetchone()
    if exists is None:
        return None
    timezone, complete = db.execute(
        f"SELECT timezone, built_through >= build_target FROM {schema.ROLLUP_STATE_TABLE}"
    ).fetchone()
    return RollupState(timezone, bool(complete))


def _build_rollup(db: sqlite3.Connection, timezone: str) -> None:
    """Make the rollup complete for ``timezone``: restart it if it was built for another zone (or never), then
    add the ledger rows it has not seen, a chunk per transaction. Several workers may run this at once."""
    if _rollup_state(db) == RollupState(timezone, complete=True):
        return  # the common case: no write lock taken
    with transaction(db):
        state = _rollup_state(db)
        if state is not None and state.timezone != timezone:
            db.execute(f"DELETE FROM {schema.ROLLUP_TABLE}")
            db.execute(f"DELETE FROM {schema.ROLLUP_OFFSETS_TABLE}")
            db.executemany(
                f"INSERT INTO {schema.ROLLUP_OFFSETS_TABLE} (until, offset_s) VALUES (?, ?)",
                rollup.offset_table(timezone),
            )
            db.execute(
                f"UPDATE {schema.ROLLUP_STATE_TABLE} SET timezone = ?, built_through = 0,"
                f" build_target = (SELECT coalesce(max(id), 0) FROM {schema.TABLE})",
                (timezone,),
            )
    while _build_rollup_chunk(db, timezone):
        pass


_BUILD_CHUNK = (
    f"INSERT INTO {schema.ROLLUP_TABLE} ({', '.join(schema.ROLLUP_COLUMNS)}) "
    + schema.rollup_aggregate(
        schema.SQLITE, day=schema.sqlite_local_day("started_at"), source=schema.TABLE, where="id > ? AND id <= ?"
    )
    + f" {schema.rollup_upsert(schema.SQLITE)}"
)


def _build_rollup_chunk(db: sqlite3.Connection, timezone: str) -> bool:
    """Add the next ``BUILD_CHUNK_ROWS`` ledger ids to the rollup; False when there is nothing left to add (or
    another process has since rebuilt it for another zone: the last one started wins)."""
    with transaction(db):
        zone, done, target = db.execute(
            f"SELECT timezone, built_through, build_target FROM {schema.ROLLUP_STATE_TABLE}"
        ).fetchone()
        if zone != timezone or done >= target:
            return False
        upto = min(done + rollup.BUILD_CHUNK_ROWS, target)
        db.execute(_BUILD_CHUNK, (done, upto))
        db.execute(f"UPDATE {schema.ROLLUP_STATE_TABLE} SET built_through = ?", (upto,))
    return True
