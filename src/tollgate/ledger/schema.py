"""The ledger table and its versioned migrations, written once and rendered for SQLite and PostgreSQL.

One row per request (admitted or rejected), keyed by ``request_id``. Columns are declared once in ``V1_COLUMNS``
with a portable kind; ``ddl`` renders them per dialect. Money is ``cost_micros``, an integer count of micro-dollars
(docs/decisions/0051); ``started_at`` is unix seconds (``REAL``) in SQLite and ``timestamptz`` in PostgreSQL.

Migrations are numbered and append-only: never edit a released one. A later change adds ``Migration(2, …)`` with
its own statements (for a new column: an ``ALTER TABLE … ADD COLUMN`` per dialect, and the column appended to
``COLUMNS`` only, never to ``V1_COLUMNS``). Applied versions are recorded in ``schema_migrations`` under the
component name ``ledger``, so other parts of tollgate can share that table in the same database. The adapters apply
migrations under a lock (SQLite ``BEGIN IMMEDIATE``, PostgreSQL an advisory lock), so concurrent workers starting at
once apply each version exactly once.

Pure: no I/O here; ``ledger/sqlite_ledger.py`` and ``ledger/postgres_ledger.py`` execute what this module renders.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tollgate.types import UsageRecord

TABLE = "usage_ledger"
MIGRATIONS_TABLE = "schema_migrations"
COMPONENT = "ledger"
SQLITE = "sqlite"
POSTGRES = "postgres"

# Portable column kinds and their rendering per dialect.
TEXT = "text"  # NOT NULL text
TEXT_NULL = "text?"
INT = "int"  # NOT NULL integer (token counts, status)
BIGINT = "bigint"  # NOT NULL 64-bit integer (micro-dollars)
FLOAT = "float"
FLOAT_NULL = "float?"
BOOL = "bool"
TIMESTAMP = "timestamp"

_TYPES: dict[str, dict[str, str]] = {
    SQLITE: {
        TEXT: "TEXT NOT NULL",
        TEXT_NULL: "TEXT",
        INT: "INTEGER NOT NULL",
        BIGINT: "INTEGER NOT NULL",
        FLOAT: "REAL NOT NULL",
        FLOAT_NULL: "REAL",
        BOOL: "INTEGER NOT NULL",
        TIMESTAMP: "REAL NOT NULL",  # unix seconds
    },
    POSTGRES: {
        TEXT: "text NOT NULL",
        TEXT_NULL: "text",
        INT: "integer NOT NULL",
        BIGINT: "bigint NOT NULL",
        FLOAT: "double precision NOT NULL",
        FLOAT_NULL: "double precision",
        BOOL: "boolean NOT NULL",
        TIMESTAMP: "timestamptz NOT NULL",
    },
}


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    kind: str


# The columns migration 1 creates, in insert order. Frozen: later columns go into ``COLUMNS`` via a new migration.
V1_COLUMNS: tuple[Column, ...] = (
    Column("request_id", TEXT),
    Column("started_at", TIMESTAMP),
    Column("key_name", TEXT_NULL),
    Column("developer", TEXT_NULL),
    Column("team", TEXT_NULL),
    Column("repo", TEXT_NULL),
    Column("env", TEXT_NULL),
    Column("endpoint", TEXT),
    Column("model", TEXT_NULL),  # as the caller asked for it
    Column("upstream_model", TEXT_NULL),  # as served
    Column("provider", TEXT_NULL),
    Column("deployment", TEXT_NULL),
    Column("input_tokens", INT),
    Column("cached_input_tokens", INT),
    Column("cache_write_tokens", INT),
    Column("output_tokens", INT),
    Column("reasoning_tokens", INT),
    Column("cost_micros", BIGINT),
    Column("estimate_tokens", INT),
    Column("status", INT),
    Column("outcome", TEXT),
    Column("rejected_by", TEXT_NULL),
    Column("streamed", BOOL),
    Column("usage_source", TEXT),
    Column("latency_ms", FLOAT),
    Column("ttft_ms", FLOAT_NULL),
)
COLUMNS: tuple[Column, ...] = V1_COLUMNS
COLUMN_NAMES: tuple[str, ...] = tuple(column.name for column in COLUMNS)

# Reports filter on time, and on time within one team / developer / repo / model / env.
INDEXED_DIMENSIONS: tuple[str, ...] = ("team", "developer", "repo", "model", "env")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sqlite: tuple[str, ...]
    postgres: tuple[str, ...]

    def statements(self, dialect: str) -> tuple[str, ...]:
        if dialect == SQLITE:
            return self.sqlite
        if dialect == POSTGRES:
            return self.postgres
        raise ValueError(f"unknown dialect {dialect!r}")


def create_table(dialect: str, columns: tuple[Column, ...] = V1_COLUMNS) -> str:
    """``CREATE TABLE`` for the ledger; ``request_id`` is the primary key (PostgreSQL) or a unique key beside the
    rowid (SQLite, so a full scan reads the table in insertion order)."""
    types = _TYPES[dialect]
    lines = [f"{column.name} {types[column.kind]}" for column in columns]
    if dialect == SQLITE:
        lines.insert(0, "id INTEGER PRIMARY KEY")
        lines.append("UNIQUE (request_id)")
    else:
        lines.append("PRIMARY KEY (request_id)")
    body = ",\n    ".join(lines)
    return f"CREATE TABLE IF NOT EXISTS {TABLE} (\n    {body}\n)"


def create_indexes() -> tuple[str, ...]:
    """The report indexes; the same text in both dialects."""
    statements = [f"CREATE INDEX IF NOT EXISTS {TABLE}_started_at ON {TABLE} (started_at)"]
    statements += [
        f"CREATE INDEX IF NOT EXISTS {TABLE}_{name}_started_at ON {TABLE} ({name}, started_at)"
        for name in INDEXED_DIMENSIONS
    ]
    return tuple(statements)


def create_migrations_table(dialect: str) -> str:
    applied_at = "REAL NOT NULL" if dialect == SQLITE else "timestamptz NOT NULL DEFAULT now()"
    return (
        f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (\n"
        "    component TEXT NOT NULL,\n"
        "    version INTEGER NOT NULL,\n"
        "    name TEXT NOT NULL,\n"
        f"    applied_at {applied_at},\n"
        "    PRIMARY KEY (component, version)\n"
        ")"
    )


# -- migration 2: the daily rollup (docs/decisions/0053) ------------------------------------------------------------
#
# ``usage_rollup`` holds the ledger summed per local day × ROLLUP_DIMENSIONS in the time zone that
# ``usage_rollup_state`` names (NULL: not built; ``ledger/rollup.py`` builds it). A trigger on the ledger adds every
# row actually inserted (an insert skipped by ``ON CONFLICT DO NOTHING`` fires nothing), in the same transaction.
# The key treats a missing value as one value of its own that sorts last: ``(x IS NULL), coalesce(x, '')``.

ROLLUP_TABLE = "usage_rollup"
ROLLUP_STATE_TABLE = "usage_rollup_state"
ROLLUP_OFFSETS_TABLE = "usage_rollup_offsets"  # SQLite, which has no time zones: the zone's UTC offsets over time
ROLLUP_DIMENSIONS: tuple[str, ...] = ("provider", "upstream_model", "team", "developer", "repo", "env", "model")
ROLLUP_MEASURES: tuple[str, ...] = (
    "requests",
    "rejections",
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cost_micros",
)
ROLLUP_COLUMNS: tuple[str, ...] = ("day", *ROLLUP_DIMENSIONS, *ROLLUP_MEASURES)
_SUMMED = ROLLUP_MEASURES[2:]  # ledger columns summed as they are


def _code_point_order(dialect: str) -> str:
    """What follows a text expression so that it sorts in code-point (byte) order, as SQLite does by default."""
    return ' COLLATE "C"' if dialect == POSTGRES else ""


def report_grouping(dialect: str, *, daily: bool, by: Sequence[str]) -> str:
    """A report's ``GROUP BY`` the day (when ``daily``, the first column) and ``by`` (the next ones), and its
    ``ORDER BY`` them: code-point order, NULLs last, the same in both dialects ("" when there is nothing to group)."""
    positions = [1] if daily else []
    positions += range(2, len(by) + 2)
    if not positions:
        return ""
    collate = _code_point_order(dialect)
    keys = (["day"] if daily else []) + [f"{column}{collate} NULLS LAST" for column in by]
    return f" GROUP BY {', '.join(map(str, positions))} ORDER BY {', '.join(keys)}"


def rollup_key(dialect: str) -> tuple[str, ...]:
    """The rollup's unique key and index order: the day, then per dimension (missing?, value in code-point order)."""
    collate = _code_point_order(dialect)
    pairs = ((f"({name} IS NULL)", f"(coalesce({name}, '')){collate}") for name in ROLLUP_DIMENSIONS)
    return ("day", *(part for pair in pairs for part in pair))


def rollup_upsert(dialect: str) -> str:
    """The ``ON CONFLICT`` clause that adds rows to the rollup rows of the same key."""
    sets = ", ".join(f"{name} = {ROLLUP_TABLE}.{name} + excluded.{name}" for name in ROLLUP_MEASURES)
    return f"ON CONFLICT ({', '.join(rollup_key(dialect))}) DO UPDATE SET {sets}"


def rollup_aggregate(dialect: str, *, day: str, source: str, where: str) -> str:
    """``SELECT`` of rollup rows (``ROLLUP_COLUMNS``) summing the ledger rows of ``source`` that match ``where``;
    ``day`` is the SQL of a row's local day."""
    rejected = "sum(outcome = 'rejected')" if dialect == SQLITE else "count(*) FILTER (WHERE outcome = 'rejected')"
    sums = ", ".join(f"sum({name})" for name in _SUMMED)
    group = ", ".join(str(position) for position in range(1, len(ROLLUP_DIMENSIONS) + 2))
    return (
        f"SELECT {day}, {', '.join(ROLLUP_DIMENSIONS)}, count(*), {rejected}, {sums} FROM {source}"
        f" WHERE {where} GROUP BY {group}"
    )


def sqlite_local_day(started_at: str) -> str:
    """SQLite: the local day (days since 1970-01-01) of unix seconds ``started_at``, from the offsets table."""
    offset = f"(SELECT offset_s FROM {ROLLUP_OFFSETS_TABLE} WHERE until > {started_at} ORDER BY until LIMIT 1)"
    return f"CAST(({started_at} + {offset}) / 86400 AS INTEGER)"


def _create_rollup(dialect: str) -> tuple[str, ...]:
    day, total, text, whole = (
        ("INTEGER NOT NULL", "INTEGER NOT NULL", "TEXT", "INTEGER")
        if dialect == SQLITE
        else ("date NOT NULL", "bigint NOT NULL", "text", "bigint")
    )
    columns = [f"day {day}", *(f"{name} {text}" for name in ROLLUP_DIMENSIONS)]
    columns += [f"{name} {total}" for name in ROLLUP_MEASURES]
    return (
        f"CREATE TABLE {ROLLUP_TABLE} ({', '.join(columns)})",
        f"CREATE UNIQUE INDEX {ROLLUP_TABLE}_key ON {ROLLUP_TABLE} ({', '.join(rollup_key(dialect))})",
        f"CREATE TABLE {ROLLUP_STATE_TABLE} (id {whole} PRIMARY KEY CHECK (id = 1), timezone {text},"
        f" built_through {whole} NOT NULL DEFAULT 0, build_target {whole} NOT NULL DEFAULT 0)",
        f"INSERT INTO {ROLLUP_STATE_TABLE} (id) VALUES (1)",
    )


def _sqlite_rollup_trigger() -> tuple[str, ...]:
    dimensions = [f"NEW.{name}" for name in ROLLUP_DIMENSIONS]
    sums = [f"NEW.{name}" for name in _SUMMED]
    values = ", ".join([sqlite_local_day("NEW.started_at"), *dimensions, "1", "NEW.outcome = 'rejected'", *sums])
    return (
        f"CREATE TABLE {ROLLUP_OFFSETS_TABLE} (until REAL PRIMARY KEY, offset_s INTEGER NOT NULL) WITHOUT ROWID",
        f"CREATE TRIGGER {ROLLUP_TABLE}_add AFTER INSERT ON {TABLE}"
        f" WHEN (SELECT timezone FROM {ROLLUP_STATE_TABLE}) IS NOT NULL BEGIN"
        f" INSERT INTO {ROLLUP_TABLE} ({', '.join(ROLLUP_COLUMNS)}) VALUES ({values}) {rollup_upsert(SQLITE)}; END",
    )


def _postgres_rollup_trigger() -> tuple[str, ...]:
    # One statement per insert statement, over the rows it really inserted; ordered by key so that two writers
    # lock rollup rows in the same order (no deadlock).
    select = rollup_aggregate(
        POSTGRES,
        day="(started_at AT TIME ZONE state.timezone)::date",
        source=f"inserted CROSS JOIN {ROLLUP_STATE_TABLE} AS state",
        where="state.timezone IS NOT NULL",
    )
    order = ", ".join(str(position) for position in range(1, len(ROLLUP_DIMENSIONS) + 2))
    return (
        f"CREATE FUNCTION {ROLLUP_TABLE}_add() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$"
        f" BEGIN INSERT INTO {ROLLUP_TABLE} ({', '.join(ROLLUP_COLUMNS)}) {select} ORDER BY {order}"
        f" {rollup_upsert(POSTGRES)}; RETURN NULL; END $$",
        f"CREATE TRIGGER {ROLLUP_TABLE}_add AFTER INSERT ON {TABLE} REFERENCING NEW TABLE AS inserted"
        f" FOR EACH STATEMENT EXECUTE FUNCTION {ROLLUP_TABLE}_add()",
    )


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        version=1,
        name="create usage_ledger",
        sqlite=(create_table(SQLITE), *create_indexes()),
        postgres=(create_table(POSTGRES), *create_indexes()),
    ),
    Migration(
        version=2,
        name="create usage_rollup",
        sqlite=(*_create_rollup(SQLITE), *_sqlite_rollup_trigger()),
        postgres=(*_create_rollup(POSTGRES), *_postgres_rollup_trigger()),
    ),
)
LATEST_VERSION = MIGRATIONS[-1].version


def pending(applied: set[int]) -> tuple[Migration, ...]:
    """The migrations not yet applied, in version order."""
    return tuple(migration for migration in MIGRATIONS if migration.version not in applied)


def row_values(record: UsageRecord) -> tuple[object, ...]:
    """One record as a row in ``COLUMNS`` order (``started_at`` as unix seconds; adapters convert it)."""
    usage = record.usage
    return (
        record.request_id,
        record.started_at,
        record.key_name,
        record.developer,
        record.team,
        record.repo,
        record.env,
        record.endpoint,
        record.model,
        record.upstream_model,
        record.provider,
        record.deployment,
        usage.input_tokens,
        usage.cached_input_tokens,
        usage.cache_write_tokens,
        usage.output_tokens,
        usage.reasoning_tokens,
        record.cost_micros,
        record.estimate_tokens,
        record.status,
        record.outcome,
        record.rejected_by,
        record.streamed,
        record.usage_source,
        record.latency_ms,
        record.ttft_ms,
    )
