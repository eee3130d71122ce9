"""The SQLite ledger's writer connection: its statement journals stay in memory (decision 0056)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.ledger.support import record
from tollgate.ledger.sqlite_ledger import SqliteLedger

MEMORY = 2  # PRAGMA temp_store: 0 default, 1 file, 2 memory


def test_inserts_keep_their_statement_journals_in_memory(tmp_path: Path) -> None:
    async def scenario() -> tuple[int, int]:
        ledger = SqliteLedger(str(tmp_path / "ledger.db"), timezone="UTC")
        try:
            await ledger.migrate()
            written = await ledger.insert([record("r1", "2026-11-03T10:00:00+00:00")])
            temp_store = await ledger._run(lambda db: int(db.execute("PRAGMA temp_store").fetchone()[0]))
            return written, temp_store
        finally:
            await ledger.close()

    assert asyncio.run(scenario()) == (1, MEMORY)
