"""What every SQLite adapter (budget counters, ledger) shares: URL parsing, WAL connections, transactions and the
one translation of sqlite3 failures into ``StoreUnavailable``.

Writers of one file queue on a lock of their own before SQLite's (docs/decisions/0019): ``transaction()`` takes an
exclusive ``flock`` on ``<file>-writer.lock`` before ``BEGIN IMMEDIATE`` and drops it after ``COMMIT``/``ROLLBACK``.
A waiting process sleeps in the kernel and is woken the moment the lock is free, where SQLite's busy handler would
poll with growing sleeps (slow, and unfair: the process that just committed usually wins again). Every connection
holds its own descriptor, so two connections of one process exclude each other like two processes do. The kernel
drops the lock of a process that dies. Programs that do not take it (the ``sqlite3`` shell) still meet SQLite's own
lock and ``busy_timeout``; the flock has no timeout of its own, so a writer stopped (not killed) inside a
transaction stalls the others until it resumes.

SQLite's automatic checkpoint runs inside ``COMMIT`` and syncs the file: under the flock every other writer would
wait for that sync (it made the p99 ten times longer). So these connections turn it off and run a ``PASSIVE``
checkpoint themselves every ``CHECKPOINT_EVERY`` commits, after dropping the flock; a passive checkpoint blocks no
writer.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from tollgate.errors import StoreUnavailable

BUSY_TIMEOUT_MS = 10_000
WRITER_LOCK_SUFFIX = "-writer.lock"
DRAIN_LOCK_SUFFIX = "-outbox.lock"
CHECKPOINT_EVERY = 100  # commits of one connection between its checkpoints (about a second of full load)

_T = TypeVar("_T")


class WalConnection(sqlite3.Connection):
    """A connection that also holds the descriptor of its file's writer lock (None: an in-memory database)."""

    writer_lock: int | None = None
    commits = 0  # since this connection's last checkpoint

    def close(self) -> None:
        if self.writer_lock is not None:
            os.close(self.writer_lock)
            self.writer_lock = None
        super().close()


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


def connect_wal(path: str) -> WalConnection:
    """A connection in WAL mode with a busy timeout, in autocommit (transactions are explicit), holding its file's
    writer lock descriptor."""
    db = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False, factory=WalConnection
    )
    try:
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        _set_wal(db, path)
        db.execute("PRAGMA synchronous = NORMAL")
        if _lockable(path):
            db.writer_lock = _open_lock_file(path + WRITER_LOCK_SUFFIX)
            db.execute("PRAGMA wal_autocheckpoint = 0")  # transaction() checkpoints, outside the flock
    except BaseException:
        db.close()
        raise
    return db


@contextmanager
def transaction(db: sqlite3.Connection, *, checkpoint: bool = True) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` … ``COMMIT``: the write lock is taken before the first read (and the writer lock, when the
    connection has one, before that). A failed ``COMMIT`` rolls back, so the connection stays usable. After the
    commit, ``checkpoint_if_due``; ``checkpoint=False`` leaves that to the caller (who has something more urgent)."""
    # Inside a transaction already, BEGIN fails below; the lock is left alone so the outer one keeps it.
    lock = None if db.in_transaction else getattr(db, "writer_lock", None)
    if lock is not None:
        _os_call(fcntl.flock, lock, fcntl.LOCK_EX)
    try:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:  # SQLite rolls back by itself after some errors (SQLITE_FULL, SQLITE_IOERR, …)
                db.execute("ROLLBACK")
            raise
    finally:
        if lock is not None:
            _os_call(fcntl.flock, lock, fcntl.LOCK_UN)
    if isinstance(db, WalConnection):
        db.commits += 1
        if checkpoint:
            checkpoint_if_due(db)


def checkpoint_if_due(db: sqlite3.Connection) -> None:
    """A passive checkpoint when the connection has committed ``CHECKPOINT_EVERY`` times since its last one. Call it
    outside any transaction."""
    if not isinstance(db, WalConnection) or db.writer_lock is None or db.commits < CHECKPOINT_EVERY:
        return
    db.commits = 0
    # The transaction has committed: a checkpoint that fails (another one running, a read error) must not make it
    # look failed. The next one catches up.
    with contextlib.suppress(sqlite3.Error):
        db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


class DrainLock:
    """Which process drains a file's outbox: the one holding an exclusive ``flock`` on ``<file>-outbox.lock``.

    ``try_hold`` takes it without waiting and keeps it until ``release`` (or the process dies: the kernel drops it), so
    the workers of one host do not all read and insert the same entries (the inserts are idempotent; the work is not
    free). A file of no path (in memory) has one process: it always holds.
    """

    def __init__(self, path: str) -> None:
        self._path = path + DRAIN_LOCK_SUFFIX if _lockable(path) else None
        self._fd: int | None = None

    def try_hold(self) -> bool:
        """Whether this process holds the lock now (a failure other than "held elsewhere" is raised as
        ``sqlite3.OperationalError``, like the writer lock's)."""
        if self._path is None or self._fd is not None:
            return True
        fd = _open_lock_file(self._path)
        try:
            _os_call(fcntl.flock, fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except sqlite3.OperationalError as exc:
            os.close(fd)
            if isinstance(exc.__cause__, BlockingIOError):
                return False
            raise
        self._fd = fd
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor releases the flock


def _lockable(path: str) -> bool:
    """Whether ``path`` names a file that lock files can sit beside (not in memory, not a ``file:`` URI)."""
    return bool(path) and path != ":memory:" and not path.startswith("file:")


def _open_lock_file(path: str) -> int:
    return _os_call(os.open, path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)


def _os_call(function: Callable[..., _T], *args: Any) -> _T:
    """``function(*args)``, its ``OSError`` raised as ``sqlite3.OperationalError`` (so ``sqlite_errors`` maps it)."""
    try:
        return function(*args)
    except OSError as exc:
        raise sqlite3.OperationalError(f"writer lock: {exc.strerror or exc}") from exc


def _set_wal(db: sqlite3.Connection, path: str) -> None:
    """``journal_mode = WAL``; switching a new file needs an exclusive lock that the busy handler does not wait for,
    so processes opening one file at once take the writer flock around it."""
    if not _lockable(path):
        db.execute("PRAGMA journal_mode = WAL")
        return
    fd = _open_lock_file(path + WRITER_LOCK_SUFFIX)
    try:
        _os_call(fcntl.flock, fd, fcntl.LOCK_EX)
        db.execute("PRAGMA journal_mode = WAL")
    finally:
        os.close(fd)  # closing the descriptor releases the flock
