"""Shared by the ledger tests: a ledger under test on either backend, a fixed data set, an in-memory outbox."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

import asyncpg
import orjson

from tollgate.budgets.model import OutboxItem
from tollgate.ledger import Ledger, open_ledger
from tollgate.types import Usage, UsageRecord

T = TypeVar("T")


@dataclass
class Kit:
    """One ledger database under test: its URL, and real faults to inject into it."""

    kind: str
    url: str

    def run(self, scenario: Callable[[Ledger], Awaitable[T]], *, timezone: str | None = None) -> T:
        """``scenario`` on a ledger opened on this database (with ``timezone``: one that builds the rollup)."""

        async def main() -> T:
            ledger = open_ledger(self.url, timezone=timezone)
            try:
                return await scenario(ledger)
            finally:
                await ledger.close()

        return asyncio.run(main())

    def execute(self, *statements: str) -> None:
        """Run SQL against the database directly (outside the code under test)."""
        if self.kind == "sqlite":
            db = sqlite3.connect(self.url.removeprefix("sqlite:///"))
            for statement in statements:
                db.execute(statement)
            db.commit()
            db.close()
            return

        async def main() -> None:
            conn = await asyncpg.connect(self.url)
            try:
                for statement in statements:
                    await conn.execute(statement)
            finally:
                await conn.close()

        asyncio.run(main())

    def fetch(self, sql: str) -> list[tuple[object, ...]]:
        if self.kind == "sqlite":
            db = sqlite3.connect(self.url.removeprefix("sqlite:///"))
            rows = db.execute(sql).fetchall()
            db.close()
            return rows

        async def main() -> list[tuple[object, ...]]:
            conn = await asyncpg.connect(self.url)
            try:
                return [tuple(row) for row in await conn.fetch(sql)]
            finally:
                await conn.close()

        return asyncio.run(main())

    def break_inserts(self) -> None:
        """Make every insert into the ledger fail inside the database, as a full disk or lost table would."""
        if self.kind == "sqlite":
            self.execute(
                "CREATE TRIGGER ledger_refuses BEFORE INSERT ON usage_ledger BEGIN SELECT RAISE(ABORT, 'no'); END"
            )
        else:
            self.execute(
                "CREATE FUNCTION ledger_refuses() RETURNS trigger LANGUAGE plpgsql AS"
                " $$ BEGIN RAISE EXCEPTION 'no'; END $$",
                "CREATE TRIGGER ledger_refuses BEFORE INSERT ON usage_ledger"
                " FOR EACH ROW EXECUTE FUNCTION ledger_refuses()",
            )

    def repair_inserts(self) -> None:
        self.execute("DROP TRIGGER ledger_refuses" + ("" if self.kind == "sqlite" else " ON usage_ledger"))


@contextmanager
def ledger_kit(kind: str, tmp_path: object, postgres_dsn: str | None) -> Iterator[Kit]:
    """A fresh SQLite file, or a fresh PostgreSQL schema (dropped afterwards)."""
    if kind == "sqlite":
        yield Kit("sqlite", f"sqlite:///{tmp_path}/ledger.db")
        return
    assert postgres_dsn is not None
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = Kit("postgres", postgres_dsn)
    admin.execute(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in postgres_dsn else "?"
    try:
        yield Kit("postgres", f"{postgres_dsn}{separator}search_path={schema}")
    finally:
        admin.execute(f"DROP SCHEMA {schema} CASCADE")


def at(text: str) -> float:
    """``2026-11-01T10:00:00`` (UTC) → unix seconds."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp()


def record(
    request_id: str,
    when: str,
    *,
    team: str | None = "payments",
    developer: str | None = "alice",
    repo: str | None = "web",
    env: str | None = "dev",
    key_name: str = "alice-laptop",
    model: str = "gpt-4o-mini",
    provider: str | None = "openai",
    upstream_model: str | None = "gpt-4o-mini",
    usage: Usage | None = None,
    cost_micros: int = 0,
    outcome: str = "ok",
    status: int = 200,
    rejected_by: str | None = None,
    estimate_tokens: int = 0,
) -> UsageRecord:
    return UsageRecord(
        request_id=request_id,
        started_at=at(when),
        key_name=key_name,
        developer=developer,
        team=team,
        repo=repo,
        env=env,
        endpoint="/v1/chat/completions",
        model=model,
        upstream_model=upstream_model,
        provider=provider,
        deployment=f"{provider}/{upstream_model}" if provider else None,
        usage=usage or Usage(),
        usage_source="provider" if provider else "none",
        cost_micros=cost_micros,
        estimate_tokens=estimate_tokens,
        status=status,
        outcome=outcome,
        rejected_by=rejected_by,
        streamed=False,
        latency_ms=12.5,
        ttft_ms=None,
    )


def dataset() -> list[UsageRecord]:
    """The fixed data set the report tests count over (times UTC; Europe/Berlin is UTC+1 from 2026-10-25 01:00Z).

    November 2026 in Europe/Berlin is [2026-10-31T23:00Z, 2026-11-30T23:00Z): r2 is in it (00:30 local on the 1st),
    r1 and r7 are not; in UTC, r2 is October and r7 is November.
    """
    return [
        record("r1", "2026-10-31T22:30:00", usage=Usage(100, 50, 20, 0, 0), cost_micros=1_500),
        record("r2", "2026-10-31T23:30:00", usage=Usage(1000, 200), cost_micros=12_345),
        record(
            "r3",
            "2026-11-01T10:00:00",
            team="search",
            developer="carol",
            repo="api",
            key_name="carol",
            model="claude-haiku-4-5",
            provider="anthropic",
            upstream_model="claude-haiku-4-5",
            usage=Usage(300, 40, 0, 100, 0),
            cost_micros=2_000_001,
        ),
        record(
            "r4",
            "2026-11-02T12:00:00",
            developer=None,
            env="ci",
            key_name="ci-payments",
            model="fast",
            usage=Usage(500, 500, 0, 0, 100),
            cost_micros=999_999,
        ),
        record(
            "r5",
            "2026-11-02T13:00:00",
            provider=None,
            upstream_model=None,
            outcome="rejected",
            status=429,
            rejected_by="dev-daily",
            estimate_tokens=5000,
        ),
        record(
            "r6",
            "2026-11-30T22:59:59",
            team=None,
            developer=None,
            repo=None,
            env="prod",
            key_name="anon",
            usage=Usage(10, 5),
            cost_micros=7,
        ),
        record(
            "r7",
            "2026-11-30T23:00:00",
            team="search",
            developer="carol",
            repo="api",
            key_name="carol",
            usage=Usage(1, 1),
            cost_micros=1_000_000,
        ),
        # Around the end of summer time (2026-10-25 01:00Z): r8 and r9 are both the 25th in Berlin.
        record("r8", "2026-10-24T22:30:00", team="search", developer="carol", usage=Usage(1, 0), cost_micros=1),
        record("r9", "2026-10-25T22:30:00", team="search", developer="carol", usage=Usage(2, 0), cost_micros=2),
        record("r10", "2026-10-25T23:30:00", team="search", developer="carol", usage=Usage(4, 0), cost_micros=4),
    ]


def payload(item: UsageRecord) -> bytes:
    """The outbox entry the settle step writes for a record."""
    return orjson.dumps(item)


@dataclass
class MemoryOutbox:
    """An honest in-memory outbox: entries stay until acknowledged; ``fail_acks`` makes the next acks fail the way
    a store that went away would."""

    items: list[OutboxItem] = field(default_factory=list)
    fail_acks: int = 0
    reads: int = 0
    _next_id: int = 0

    def append(self, data: bytes) -> None:
        self._next_id += 1
        self.items.append(OutboxItem(str(self._next_id), data))

    async def read_outbox(self, max_items: int) -> list[OutboxItem]:
        self.reads += 1
        return list(self.items[:max_items])

    async def ack_outbox(self, ids: Sequence[str]) -> None:
        from tollgate.errors import StoreUnavailable

        if self.fail_acks:
            self.fail_acks -= 1
            raise StoreUnavailable("the outbox did not answer")
        gone = set(ids)
        self.items = [item for item in self.items if item.id not in gone]
