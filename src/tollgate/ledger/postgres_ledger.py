"""The ledger in PostgreSQL (for a fleet of gateway replicas), through an asyncpg pool.

A batch is ONE statement: ``INSERT … SELECT … FROM unnest($1::text[], …) ON CONFLICT (request_id) DO NOTHING``,
which commits on return, so the writer may acknowledge the outbox as soon as ``insert`` returns. Migrations run in a
transaction holding a transaction-level advisory lock, so replicas starting at once apply each version exactly once;
a replica that finds the schema current takes no lock and writes nothing (a read-only role can run reports).

Tables live in the connection's ``search_path`` (``postgresql://…/db?search_path=tollgate`` selects a schema).
Reports aggregate in SQL, with the local day from ``(started_at AT TIME ZONE tz)::date``; those the daily rollup
answers (``ledger/rollup.py``) read ``usage_rollup``, in a read-only REPEATABLE READ transaction that also reads the
rollup state, so both come from one snapshot; the transaction plans every statement afresh (a generic plan of a
prepared report does not know the period). An export at full grain (``export_rows``, the FOCUS export) reads the
rollup through ``COPY (…) TO STDOUT`` in that same kind of transaction: the server prints every value as text and
``copy_text.py`` cuts the stream into rows. A ledger opened with a time zone (re)builds the rollup in
``migrate()`` in one transaction that holds ``SHARE ROW EXCLUSIVE`` on the ledger table: inserts wait for it (the
writer retries; the outbox keeps the entries), so no row is both in the build and added by the trigger, or in
neither.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type information

from tollgate.errors import StoreUnavailable
from tollgate.ledger import rollup, schema
from tollgate.ledger.copy_text import CopyTextRows
from tollgate.ledger.reports import ExportSink, ReportQuery, ReportRow, SummaryTuple, export_rows, report_rows
from tollgate.ledger.rollup import RollupState
from tollgate.types import UsageRecord

CONNECT_TIMEOUT_S = 10.0
POOL_MIN_SIZE = 1
POOL_MAX_SIZE = 4
_EPOCH = dt.date(1970, 1, 1)  # export rows count days from here
MIGRATION_LOCK_KEY = 0x746F6C6C67617465  # "tollgate": one advisory lock for every tollgate migration

_ARRAY_TYPES = {
    schema.TEXT: "text[]",
    schema.TEXT_NULL: "text[]",
    schema.INT: "int4[]",
    schema.BIGINT: "int8[]",
    schema.FLOAT: "float8[]",
    schema.FLOAT_NULL: "float8[]",
    schema.BOOL: "bool[]",
    schema.TIMESTAMP: "float8[]",  # unix seconds, converted with to_timestamp()
}
_FOREIGN_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError, OSError)
# asyncpg prepares every statement and PostgreSQL switches a prepared statement to a generic plan after five runs: for a
# report that plan does not know the period, guesses a few hundred rows, and sorted the full-grain rollup read on disk
# instead of walking its index (0.3 s became 4-5 s from the sixth run on one connection). Reports plan every run.
_CUSTOM_PLANS = "SET LOCAL plan_cache_mode = force_custom_plan"


def insert_sql() -> str:
    columns = ", ".join(schema.COLUMN_NAMES)
    arrays = ", ".join(f"${index}::{_ARRAY_TYPES[column.kind]}" for index, column in enumerate(schema.COLUMNS, start=1))
    select = ", ".join(
        f"to_timestamp({column.name})" if column.kind == schema.TIMESTAMP else column.name for column in schema.COLUMNS
    )
    return (
        f"INSERT INTO {schema.TABLE} ({columns}) SELECT {select} FROM unnest({arrays}) AS batch ({columns})"
        " ON CONFLICT (request_id) DO NOTHING"
    )


_INSERT = insert_sql()
_AGGREGATES = (
    "count(*), count(*) FILTER (WHERE outcome = 'rejected'), sum(input_tokens)::bigint,"
    " sum(cached_input_tokens)::bigint, sum(cache_write_tokens)::bigint, sum(output_tokens)::bigint,"
    " sum(reasoning_tokens)::bigint, sum(cost_micros)::bigint"
)


@asynccontextmanager
async def translate_errors() -> AsyncIterator[None]:
    """Turn every asyncpg and connection failure into ``StoreUnavailable`` (the one place that does)."""
    try:
        yield
    except _FOREIGN_ERRORS as exc:
        raise StoreUnavailable("the ledger store did not answer") from exc


class PostgresLedger:
    def __init__(self, dsn: str, *, timezone: str | None = None) -> None:
        self._dsn = dsn
        self._timezone = timezone  # build the rollup for this zone in migrate(); None: leave it as it is
        self._pool: Any = None  # an asyncpg.Pool, created on first use inside the running loop
        self._pool_lock = asyncio.Lock()

    async def migrate(self) -> int:
        async with translate_errors():
            pool = await self._connected()
            async with pool.acquire() as conn:
                if not schema.pending(await _applied(conn)) and await self._rollup_current(conn):
                    return 0  # the common case: no lock, no write
                async with conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
                    await conn.execute(schema.create_migrations_table(schema.POSTGRES))
                    todo = schema.pending(await _applied(conn))  # again, under the lock
                    for migration in todo:
                        for statement in migration.statements(schema.POSTGRES):
                            await conn.execute(statement)
                        await conn.execute(
                            f"INSERT INTO {schema.MIGRATIONS_TABLE} (component, version, name) VALUES ($1, $2, $3)",
                            schema.COMPONENT,
                            migration.version,
                            migration.name,
                        )
                    if not await self._rollup_current(conn):  # again, under the lock
                        await _build_rollup(conn, self._timezone)
                    return len(todo)

    async def insert(self, records: Sequence[UsageRecord]) -> int:
        if not records:
            return 0
        rows = [schema.row_values(record) for record in records]
        columns = [list(values) for values in zip(*rows, strict=True)]
        async with translate_errors():
            pool = await self._connected()
            status: str = await pool.execute(_INSERT, *columns)
        return int(status.rsplit(" ", 1)[-1])  # "INSERT 0 <new rows>"

    async def summarize(self, query: ReportQuery) -> list[ReportRow]:
        return report_rows(query, await self.summary_tuples(query))

    async def summary_tuples(self, query: ReportQuery) -> list[SummaryTuple]:
        async with translate_errors():
            pool = await self._connected()
            async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
                await conn.execute(_CUSTOM_PLANS)
                use_rollup = rollup.answers(query, await _rollup_state(conn))
                sql, params = rollup_sql(query) if use_rollup else summary_sql(query)
                records = await conn.fetch(sql, *params)
        if use_rollup and rollup.full_grain(query):
            return rollup.fold(records, 1 + len(query.by))
        return [tuple(record) for record in records]

    async def export_rows(self, query: ReportQuery, sink: ExportSink) -> None:
        if not (rollup.full_grain(query) and await self._export_from_rollup(query, sink)):
            sink(export_rows(query, await self.summary_tuples(query)))

    async def _export_from_rollup(self, query: ReportQuery, sink: ExportSink) -> bool:
        """Stream the full-grain rollup rows of ``query`` to ``sink`` through ``COPY … TO STDOUT``: the server prints
        every value as text, which the writers print as it is, so a row costs Python a split rather than decoding
        fifteen values. False (nothing handed) when the rollup does not answer the query."""
        rows = CopyTextRows()
        failure: Exception | None = None

        async def output(chunk: bytes) -> None:
            nonlocal failure
            if failure is not None:
                return  # read the rest and drop it: asyncpg 0.32 hangs when the callback raises at the last chunk
            try:
                sink(rows.feed(chunk))
            except Exception as exc:
                failure = exc

        async with translate_errors():
            pool = await self._connected()
            async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
                if not rollup.answers(query, await _rollup_state(conn)):
                    return False
                sql, params = rollup_export_sql(query)
                await conn.copy_from_query(sql, *params, output=output)  # arguments inlined: a custom plan
        if failure is not None:
            raise failure  # the sink's own error, not the database's: outside translate_errors
        rows.close()
        return True

    async def count(self) -> int:
        async with translate_errors():
            pool = await self._connected()
            count = await pool.fetchval(f"SELECT count(*) FROM {schema.TABLE}")
        return int(count)

    async def close(self) -> None:
        async with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            async with translate_errors():
                await pool.close()

    async def _rollup_current(self, conn: Any) -> bool:
        """Whether the rollup needs no build: no time zone given, or built for it."""
        if self._timezone is None:
            return True
        return await _rollup_state(conn) == RollupState(self._timezone, complete=True)

    async def _connected(self) -> Any:
        async with self._pool_lock:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    self._dsn, min_size=POOL_MIN_SIZE, max_size=POOL_MAX_SIZE, timeout=CONNECT_TIMEOUT_S
                )
            return self._pool


def summary_sql(query: ReportQuery) -> tuple[str, list[object]]:
    """The one aggregating statement over the ledger for ``query``: ``day, *by, requests, rejections, tokens…,
    cost_micros`` (day NULL unless daily), ordered by day and then each group value (``COLLATE "C"``: code-point
    order, as SQLite) with NULLs last. asyncpg decodes ``date``, ``text`` and ``bigint`` to the types wanted."""
    params: list[object] = [
        dt.datetime.fromtimestamp(query.period.start, dt.UTC),
        dt.datetime.fromtimestamp(query.period.end, dt.UTC),
    ]
    day = "NULL::date"
    if query.daily:
        params.append(query.period.timezone)
        day = f"(started_at AT TIME ZONE ${len(params)}::text)::date AS day"
    where = ["started_at >= $1", "started_at < $2", *_filters(query, params)]
    sql = f"SELECT {', '.join([day, *query.by, _AGGREGATES])} FROM {schema.TABLE} WHERE {' AND '.join(where)}"
    return sql + schema.report_grouping(schema.POSTGRES, daily=query.daily, by=query.by), params


def rollup_sql(query: ReportQuery) -> tuple[str, list[object]]:
    """The statement over ``usage_rollup`` for a query it answers, with the same columns and order as
    ``summary_sql``; at full grain the rollup rows themselves in index order, for ``rollup.fold``."""
    if rollup.full_grain(query):
        return _rollup_in_order(query, ["day", *query.by, *schema.ROLLUP_MEASURES])
    params: list[object] = [query.period.first_day, query.period.last_day]
    where = ["day >= $1", "day <= $2", *_filters(query, params)]
    select = ["day" if query.daily else "NULL::date", *query.by]
    select += [f"sum({name})::bigint" for name in schema.ROLLUP_MEASURES]
    sql = f"SELECT {', '.join(select)} FROM {schema.ROLLUP_TABLE} WHERE {' AND '.join(where)}"
    return sql + schema.report_grouping(schema.POSTGRES, daily=query.daily, by=query.by), params


def rollup_export_sql(query: ReportQuery) -> tuple[str, list[object]]:
    """The rollup rows of a full-grain query in index order with the columns of ``reports.ExportRow``."""
    return _rollup_in_order(query, [f"day - DATE '{_EPOCH}'", *query.by, *rollup.EXPORT_COLUMNS])


def _rollup_in_order(query: ReportQuery, columns: Sequence[str]) -> tuple[str, list[object]]:
    params: list[object] = [query.period.first_day, query.period.last_day]
    where = ["day >= $1", "day <= $2", *_filters(query, params)]
    order = ", ".join(schema.rollup_key(schema.POSTGRES))
    sql = f"SELECT {', '.join(columns)} FROM {schema.ROLLUP_TABLE} WHERE {' AND '.join(where)} ORDER BY {order}"
    return sql, params


def _filters(query: ReportQuery, params: list[object]) -> list[str]:
    where = []
    for column, values in query.filters:
        params.append(list(values))
        where.append(f"{column} = ANY(${len(params)}::text[])")
    if query.dispatched_only:
        where.append("provider IS NOT NULL")
    return where


async def _rollup_state(conn: Any) -> RollupState | None:
    """The rollup's state, or None before migration 2."""
    if await conn.fetchval("SELECT to_regclass($1)", schema.ROLLUP_STATE_TABLE) is None:
        return None
    row = await conn.fetchrow(f"SELECT timezone, built_through >= build_target FROM {schema.ROLLUP_STATE_TABLE}")
    return RollupState(row[0], row[1])


_BUILD = f"INSERT INTO {schema.ROLLUP_TABLE} ({', '.join(schema.ROLLUP_COLUMNS)}) " + schema.rollup_aggregate(
    schema.POSTGRES, day="(started_at AT TIME ZONE $1::text)::date", source=schema.TABLE, where="true"
)


async def _build_rollup(conn: Any, timezone: str | None) -> None:
    """Rebuild the rollup for ``timezone`` from every ledger row, inside the caller's transaction; inserts wait."""
    await conn.execute(f"LOCK TABLE {schema.TABLE} IN SHARE ROW EXCLUSIVE MODE")
    await conn.execute(f"DELETE FROM {schema.ROLLUP_TABLE}")
    await conn.execute(
        f"UPDATE {schema.ROLLUP_STATE_TABLE} SET timezone = $1, built_through = 0, build_target = 0", timezone
    )
    await conn.execute(_BUILD, timezone)
    await conn.execute(f"ANALYZE {schema.ROLLUP_TABLE}")


async def _applied(conn: Any) -> set[int]:
    if await conn.fetchval("SELECT to_regclass($1)", schema.MIGRATIONS_TABLE) is None:
        return set()
    rows = await conn.fetch(f"SELECT version FROM {schema.MIGRATIONS_TABLE} WHERE component = $1", schema.COMPONENT)
    return {int(row[0]) for row in rows}
