"""The durable usage ledger: one row per request, written off the hot path, read by reports and exports.

``Ledger`` is the port every ledger store satisfies (``sqlite_ledger.SqliteLedger``,
``postgres_ledger.PostgresLedger``); ``open_ledger`` picks one by URL. Given the configured time zone (the gateway
does), ``migrate()`` also builds the daily rollup reports read (``rollup.py``) for that zone. The stores are imported
only when opened, so importing the pure parts of this package (``schema``, ``reports``, ``focus``) never loads a
database driver.
Every ``Ledger`` method raises ``StoreUnavailable`` when the database fails.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from tollgate.ledger.reports import ExportSink, ReportQuery, ReportRow, SummaryTuple
from tollgate.types import UsageRecord

__all__ = ["Ledger", "open_ledger"]


class Ledger(Protocol):
    async def migrate(self) -> int:
        """Apply the schema migrations not yet applied (safe to call from many workers at once); how many ran. A
        ledger opened with a time zone then builds the rollup for it, unless it is built for it already."""
        ...

    async def insert(self, records: Sequence[UsageRecord]) -> int:
        """Insert in one transaction, skipping request ids already present; how many rows were new. Returns only
        after the commit."""
        ...

    async def summarize(self, query: ReportQuery) -> list[ReportRow]:
        """The query's rows, ordered by day, then by each group value (code-point order, missing values last)."""
        ...

    async def summary_tuples(self, query: ReportQuery) -> list[SummaryTuple]:
        """``summarize`` as plain tuples (``reports.SummaryTuple``), for exports of many rows."""
        ...

    async def export_rows(self, query: ReportQuery, sink: ExportSink) -> None:
        """A daily query's rows as ``reports.ExportRow``s, in ``summarize`` order, handed to ``sink`` a batch at a
        time as they are read, for exports of many rows (the FOCUS export). SQLite calls ``sink`` on its reader
        thread. Consecutive rows of one day and group are pieces of one row, to be summed. An exception from
        ``sink`` ends the read and reaches the caller as it is."""
        ...

    async def count(self) -> int:
        """How many rows the ledger holds."""
        ...

    async def close(self) -> None: ...


def open_ledger(url: str, *, timezone: str | None = None) -> Ledger:
    """The ledger store for ``sqlite:///path`` or ``postgresql://…`` (``postgres://…``); not connected until used.
    With ``timezone``, ``migrate()`` builds the rollup for that zone (a long first build: do it where the gateway
    starts, not in a one-off command)."""
    if url.startswith("sqlite:"):
        from tollgate.ledger.sqlite_ledger import SqliteLedger

        return SqliteLedger.from_url(url, timezone=timezone)
    if url.startswith(("postgresql:", "postgres:")):
        from tollgate.ledger.postgres_ledger import PostgresLedger

        return PostgresLedger(url, timezone=timezone)
    raise ValueError(f"not a ledger URL (sqlite:/// or postgresql://): {url.split('://', 1)[0]!r}")
