"""The ledger table rendered per dialect, the migration list, and a record as a row."""

from __future__ import annotations

import pytest

from tests.ledger.support import record
from tollgate.ledger import schema
from tollgate.types import Usage


def test_postgres_table() -> None:
    ddl = schema.create_table(schema.POSTGRES)
    assert ddl.startswith(
        "CREATE TABLE IF NOT EXISTS usage_ledger (\n    request_id text NOT NULL,\n"
        "    started_at timestamptz NOT NULL,\n"
    )
    assert "    cost_micros bigint NOT NULL,\n" in ddl
    assert "    ttft_ms double precision,\n" in ddl
    assert ddl.endswith("    PRIMARY KEY (request_id)\n)")


def test_sqlite_table() -> None:
    ddl = schema.create_table(schema.SQLITE)
    assert ddl.startswith(
        "CREATE TABLE IF NOT EXISTS usage_ledger (\n    id INTEGER PRIMARY KEY,\n"
        "    request_id TEXT NOT NULL,\n    started_at REAL NOT NULL,\n"
    )
    assert "    streamed INTEGER NOT NULL,\n" in ddl
    assert ddl.endswith("    UNIQUE (request_id)\n)")


def test_migrations_are_numbered_from_one_without_gaps() -> None:
    assert [migration.version for migration in schema.MIGRATIONS] == list(range(1, len(schema.MIGRATIONS) + 1))
    assert len(schema.MIGRATIONS) == schema.LATEST_VERSION
    assert [migration.version for migration in schema.pending(set())] == [1, 2]
    assert [migration.version for migration in schema.pending({1})] == [2]
    assert schema.pending({1, 2}) == ()
    assert len(schema.MIGRATIONS[0].statements(schema.SQLITE)) == 7  # the table and six indexes
    with pytest.raises(ValueError, match="unknown dialect 'oracle'"):
        schema.MIGRATIONS[0].statements("oracle")


def test_row_values_follow_the_column_order() -> None:
    item = record("r", "2026-11-01T00:00:00", usage=Usage(1, 2, 3, 4, 5), cost_micros=6, estimate_tokens=7)
    row = dict(zip(schema.COLUMN_NAMES, schema.row_values(item), strict=True))
    assert {
        name: row[name]
        for name in (
            "request_id",
            "input_tokens",
            "output_tokens",
            "cached_input_tokens",
            "cache_write_tokens",
            "reasoning_tokens",
            "cost_micros",
            "estimate_tokens",
        )
    } == {
        "request_id": "r",
        "input_tokens": 1,
        "output_tokens": 2,
        "cached_input_tokens": 3,
        "cache_write_tokens": 4,
        "reasoning_tokens": 5,
        "cost_micros": 6,
        "estimate_tokens": 7,
    }
