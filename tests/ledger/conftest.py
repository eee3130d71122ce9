"""The ``kit`` fixture: every ledger contract test runs against SQLite (a temp file) and PostgreSQL (a fresh
schema)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.ledger.support import Kit, ledger_kit


@pytest.fixture(params=["sqlite", "postgres"])
def kit(request: pytest.FixtureRequest, tmp_path: object) -> Iterator[Kit]:
    dsn = request.getfixturevalue("postgres_dsn") if request.param == "postgres" else None
    with ledger_kit(request.param, tmp_path, dsn) as kit:
        yield kit
