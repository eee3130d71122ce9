"""What every SQLite adapter (budget counters, ledger) shares: URL parsing, WAL connections, transactions and the
one translation of sqlite3 failures into ``StoreUnavailable``."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from tollgate.errors import StoreUnavailable

BUSY_TIMEOUT_MS = 10_000


@contextmanager
def sqlite_errors(message: str) -> Iterator[None]:
    """Turn every sqlite3 failure into ``StoreUnavailable(message)``."""
    try:
        yield
    except (sqlite3.Error, sqlite3.Warning) as exc:
        raise StoreUnavailable(message) from exc


def sqlite_path(url: str) -> str:
    """The file of a ``sqlite:///relative.db`` or ``sqlite:////absolute.db`` URL."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise ValueError(f"not a sqlite:/// URL: {url!r}")
    return url[len(prefix) :]


def connect_wal(path: str) -> sqlite3.Connection:
    """A connection in WAL mode with a busy timeout, in autocommit (transactions are explicit)."""
    db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
    try:
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
    except BaseException:
        db.close()
        raise
    return db


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` … ``COMMIT``: the write lock is taken before the first read."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
