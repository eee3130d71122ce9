"""The ledger in PostgreSQL (for a fleet of gateway replicas), through an asyncpg pool.

A batch is ONE statement: ``INSERT … SELECT … FROM unnest($1::text[], …) ON CONFLICT (request_id) DO NOTHING``,
which commits on return, so the writer may acknowledge the outbox as soon as ``insert`` returns. Migrations run in a
transaction holding a transaction-level advisory lock, so replicas starting at once apply each version exactly once;
a replica that finds the schema current takes no lock and writes nothing (a read-only role can run reports).

Tables live in the connection's ``search_path`` (``postgresql://…/db?search_path=tollgate`` selects a schema).
Reports aggregate in SQL, with the local day from ``(started_at AT TIME ZONE tz)::date``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type information

from tollgate.errors import StoreUnavailable
from tollgate.ledger import schema
from tollgate.ledger.reports import ReportQuery, ReportRow
from tollgate.types import UsageRecord

CONNECT_TIMEOUT_S = 10.0
POOL_MIN_SIZE = 1
POOL_MAX_SIZE = 4
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
    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._pool: Any = None  # an asyncpg.Pool, created on first use inside the running loop
        self._pool_lock = asyncio.Lock()

    async def migrate(self) -> int:
        async with translate_errors():
            pool = await self._connected()
            async with pool.acquire() as conn:
                if not schema.pending(await _applied(conn)):
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
        sql, params = summary_sql(query)
        async with translate_errors():
            pool = await self._connected()
            records = await pool.fetch(sql, *params)
        return _report_rows(query, records)

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

    async def _connected(self) -> Any:
        async with self._pool_lock:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    self._dsn, min_size=POOL_MIN_SIZE, max_size=POOL_MAX_SIZE, timeout=CONNECT_TIMEOUT_S
                )
            return self._pool


def summary_sql(query: ReportQuery) -> tuple[str, list[object]]:
    """The one aggregating statement for ``query``: ``[day,] *by, requests, rejections, tokens…, cost_micros``,
    ordered by day and then each group value (``COLLATE "C"``: code-point order, as SQLite) with NULLs last."""
    params: list[object] = [
        dt.datetime.fromtimestamp(query.period.start, dt.UTC),
        dt.datetime.fromtimestamp(query.period.end, dt.UTC),
    ]
    select: list[str] = []
    if query.daily:
        params.append(query.period.timezone)
        select.append(f"(started_at AT TIME ZONE ${len(params)}::text)::date AS day")
    select += list(query.by)
    where = ["started_at >= $1", "started_at < $2"]
    for column, values in query.filters:
        params.append(list(values))
        where.append(f"{column} = ANY(${len(params)}::text[])")
    if query.dispatched_only:
        where.append("provider IS NOT NULL")
    sql = f"SELECT {', '.join([*select, _AGGREGATES])} FROM {schema.TABLE} WHERE {' AND '.join(where)}"
    if select:
        keys = (["day"] if query.daily else []) + [f'{column} COLLATE "C" NULLS LAST' for column in query.by]
        sql += f" GROUP BY {', '.join(str(position) for position in range(1, len(select) + 1))}"
        sql += f" ORDER BY {', '.join(keys)}"
    return sql, params


def _report_rows(query: ReportQuery, records: list[Any]) -> list[ReportRow]:
    """asyncpg already decodes ``date``, ``text`` and ``bigint`` to the types ``ReportRow`` holds."""
    keys = len(query.by)
    if not query.daily:
        return [ReportRow(None, tuple(row[:keys]), *row[keys:]) for row in records if row[keys]]
    return [ReportRow(row[0], tuple(row[1 : keys + 1]), *row[keys + 1 :]) for row in records]


async def _applied(conn: Any) -> set[int]:
    if await conn.fetchval("SELECT to_regclass($1)", schema.MIGRATIONS_TABLE) is None:
        return set()
    rows = await conn.fetch(f"SELECT version FROM {schema.MIGRATIONS_TABLE} WHERE component = $1", schema.COMPONENT)
    return {int(row[0]) for row in rows}
