"""SQLite specifics: URL paths, WAL mode, expired counters swept, and a total mapping of sqlite3 errors."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from tollgate.budgets.model import Claim, CounterKey, Reservation
from tollgate.errors import StoreUnavailable
from tollgate.stores.sqlite_counters import SqliteCounterStore, sqlite_path, translate_errors

NOW = 1_900_000_000.0
DAY = 1_899_936_000
EXPIRES = DAY + 2 * 86_400 + 900


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///./tollgate.db", "./tollgate.db"),
        ("sqlite:///data/counters.db", "data/counters.db"),
        ("sqlite:////var/lib/tollgate/counters.db", "/var/lib/tollgate/counters.db"),
        ("sqlite:///:memory:", ":memory:"),
    ],
)
def test_sqlite_path(url: str, path: str) -> None:
    assert sqlite_path(url) == path


@pytest.mark.parametrize("url", ["sqlite://relative.db", "sqlite:///", "redis://x"])
def test_sqlite_path_rejects(url: str) -> None:
    with pytest.raises(ValueError, match="not a sqlite:/// URL"):
        sqlite_path(url)


def test_the_file_is_in_wal_mode(tmp_path: Path) -> None:
    async def main() -> None:
        store = SqliteCounterStore(str(tmp_path / "c.db"))
        try:
            await store.ping()
        finally:
            await store.close()

    asyncio.run(main())
    db = sqlite3.connect(tmp_path / "c.db")
    try:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        db.close()


def test_settle_sweeps_counters_whose_expiry_passed(tmp_path: Path) -> None:
    claim = Claim(CounterKey("dev-daily", "alice", DAY), EXPIRES, 1000, None, True, "hard")

    async def main() -> None:
        store = SqliteCounterStore(str(tmp_path / "c.db"))
        try:
            await store.reserve([claim], Reservation("lost", 10, 0, NOW + 900), NOW)
            assert len(await store.snapshot([("dev-daily", DAY)], NOW)) == 1
        finally:
            await store.close()
        store = SqliteCounterStore(str(tmp_path / "c.db"))
        try:
            await store.settle([], None, tokens=0, micros=0, now=EXPIRES, request_id="x", payload=b"{}")
            assert await store.snapshot([("dev-daily", DAY)], EXPIRES) == []
        finally:
            await store.close()

    asyncio.run(main())
    db = sqlite3.connect(tmp_path / "c.db")
    try:
        assert db.execute("SELECT count(*) FROM budget_reservations").fetchone() == (0,)
    finally:
        db.close()


def test_close_twice_is_harmless(tmp_path: Path) -> None:
    async def main() -> None:
        store = SqliteCounterStore(str(tmp_path / "c.db"))
        await store.ping()
        await store.close()
        await store.close()

    asyncio.run(main())


def _all_subclasses(cls: type[BaseException]) -> list[type[BaseException]]:
    found = []
    for sub in cls.__subclasses__():
        found.append(sub)
        found.extend(_all_subclasses(sub))
    return found


@pytest.mark.parametrize(
    "exception_class",
    [sqlite3.Error, *_all_subclasses(sqlite3.Error), sqlite3.Warning],
    ids=lambda cls: cls.__name__,
)
def test_every_sqlite_error_becomes_store_unavailable(exception_class: type[BaseException]) -> None:
    error = exception_class("boom")
    with pytest.raises(StoreUnavailable) as caught, translate_errors():
        raise error
    assert caught.value.__cause__ is error
    assert caught.value.message == "the budget counter store did not answer"


_SCHEMA_BEFORE_NEXT_DEADLINE = """
CREATE TABLE budget_counters (
    budget TEXT NOT NULL, scope_value TEXT NOT NULL, window_start INTEGER NOT NULL, expires_at INTEGER NOT NULL,
    used_tokens INTEGER NOT NULL DEFAULT 0, used_micros INTEGER NOT NULL DEFAULT 0,
    reserved_tokens INTEGER NOT NULL DEFAULT 0, reserved_micros INTEGER NOT NULL DEFAULT 0,
    blocked INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (budget, window_start, scope_value)
) WITHOUT ROWID;
CREATE TABLE budget_reservations (
    budget TEXT NOT NULL, scope_value TEXT NOT NULL, window_start INTEGER NOT NULL, reservation_id TEXT NOT NULL,
    tokens INTEGER NOT NULL, micros INTEGER NOT NULL, deadline REAL NOT NULL,
    PRIMARY KEY (budget, window_start, scope_value, reservation_id)
) WITHOUT ROWID;
INSERT INTO budget_counters VALUES ('dev-daily', 'alice', 1899936000, 1900109700, 5, 0, 80, 0, 0);
INSERT INTO budget_counters VALUES ('dev-daily', 'bob', 1899936000, 1900109700, 7, 0, 0, 0, 0);
INSERT INTO budget_reservations VALUES ('dev-daily', 'alice', 1899936000, 'late', 50, 0, 1900000900.0);
INSERT INTO budget_reservations VALUES ('dev-daily', 'alice', 1899936000, 'early', 30, 0, 1900000300.0);
"""


def test_a_file_from_before_next_deadline_is_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    db = sqlite3.connect(path)
    db.executescript(_SCHEMA_BEFORE_NEXT_DEADLINE)
    db.close()

    async def main() -> list[list[tuple[int, int]]]:
        store = SqliteCounterStore(str(path))
        try:
            seen = []
            for at in (NOW + 299, NOW + 300, NOW + 900):  # the reservations expire at NOW + 300 and NOW + 900
                states = await store.snapshot([("dev-daily", DAY)], at)
                seen.append([(state.used_tokens, state.reserved_tokens) for state in states])
            return seen
        finally:
            await store.close()

    migrated = sqlite3.connect(path)
    try:
        assert asyncio.run(main()) == [[(5, 80), (7, 0)], [(5, 50), (7, 0)], [(5, 0), (7, 0)]]
        assert migrated.execute("SELECT scope_value, next_deadline FROM budget_counters ORDER BY 1").fetchall() == [
            ("alice", None),
            ("bob", None),
        ]
    finally:
        migrated.close()


def test_the_migration_fills_next_deadline_with_the_earliest_held(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    db = sqlite3.connect(path)
    db.executescript(_SCHEMA_BEFORE_NEXT_DEADLINE)
    db.close()

    async def main() -> None:
        store = SqliteCounterStore(str(path))
        try:
            await store.ping()
        finally:
            await store.close()

    asyncio.run(main())
    db = sqlite3.connect(path)
    try:
        assert db.execute("SELECT scope_value, next_deadline FROM budget_counters ORDER BY 1").fetchall() == [
            ("alice", NOW + 300),
            ("bob", None),
        ]
        columns = [row[1] for row in db.execute("PRAGMA table_info(budget_counters)")]
        assert columns.count("next_deadline") == 1
    finally:
        db.close()
    asyncio.run(main())  # a second start finds the column and leaves it alone


def test_a_purge_runs_only_when_a_reservation_can_have_expired(tmp_path: Path) -> None:
    claim = Claim(CounterKey("dev-daily", "alice", DAY), EXPIRES, 1000, None, True, "hard")
    path = tmp_path / "c.db"

    def next_deadline() -> float | None:
        db = sqlite3.connect(path)
        try:
            value: float | None = db.execute("SELECT next_deadline FROM budget_counters").fetchone()[0]
            return value
        finally:
            db.close()

    async def main() -> list[float | None]:
        store = SqliteCounterStore(str(path))
        seen = []
        try:
            first, second = Reservation("r1", 10, 0, NOW + 900), Reservation("r2", 10, 0, NOW + 1000)
            await store.reserve([claim], first, NOW)
            await store.reserve([claim], second, NOW + 100)
            seen.append(next_deadline())
            await store.settle([claim], first, tokens=4, micros=0, now=NOW + 200, request_id="r1", payload=b"{}")
            seen.append(next_deadline())  # left early: no purge is due yet
            states = await store.snapshot([("dev-daily", DAY)], NOW + 900)  # due: the purge finds r2 still held
            assert [(s.used_tokens, s.reserved_tokens) for s in states] == [(4, 10)]
            seen.append(next_deadline())
            await store.settle([claim], second, tokens=6, micros=0, now=NOW + 950, request_id="r2", payload=b"{}")
            seen.append(next_deadline())
            states = await store.snapshot([("dev-daily", DAY)], NOW + 1000)
            assert [(s.used_tokens, s.reserved_tokens) for s in states] == [(10, 0)]
            seen.append(next_deadline())
        finally:
            await store.close()
        return seen

    assert asyncio.run(main()) == [NOW + 900, NOW + 900, NOW + 1000, NOW + 1000, None]


def test_one_store_per_file_drains_the_outbox_until_it_closes(tmp_path: Path) -> None:
    """The workers of a host share one outbox; the one holding the drain lock reads it, the others read nothing (and
    write nothing twice into the ledger) until it closes or dies."""
    url = f"sqlite:///{tmp_path}/tollgate.db"

    async def main() -> None:
        first, second = SqliteCounterStore.from_url(url), SqliteCounterStore.from_url(url)
        try:
            await second.append_outbox("r1", b'{"request_id":"r1"}')
            assert [item.payload for item in await first.read_outbox(10)] == [b'{"request_id":"r1"}']
            assert await second.read_outbox(10) == []  # the first holds the drain lock
            await first.close()
            assert [item.payload for item in await second.read_outbox(10)] == [b'{"request_id":"r1"}']
        finally:
            await first.close()
            await second.close()

    asyncio.run(main())
