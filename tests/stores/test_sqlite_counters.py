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
