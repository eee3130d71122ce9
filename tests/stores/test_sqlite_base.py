"""The writer lock every ``transaction()`` takes before ``BEGIN IMMEDIATE``, and transactions that fail cleanly."""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from tollgate.stores.sqlite_base import CHECKPOINT_EVERY, WRITER_LOCK_SUFFIX, connect_wal, transaction


def lock_is_free(path: Path) -> bool:
    fd = os.open(str(path) + WRITER_LOCK_SUFFIX, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # closing drops a lock taken above
    return True


def test_a_transaction_holds_the_writer_lock_until_commit(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    db = connect_wal(str(path))
    try:
        assert lock_is_free(path)
        with transaction(db):
            assert not lock_is_free(path)
        assert lock_is_free(path)
    finally:
        db.close()


def test_the_writer_lock_is_released_on_rollback(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    db = connect_wal(str(path))
    try:
        with pytest.raises(sqlite3.OperationalError), transaction(db):
            db.execute("INSERT INTO nowhere VALUES (1)")
        assert lock_is_free(path)
        assert not db.in_transaction
    finally:
        db.close()


def test_two_connections_of_one_process_take_turns_on_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    first, second = connect_wal(str(path)), connect_wal(str(path))
    order: list[str] = []
    try:
        first.execute("CREATE TABLE t (v TEXT)")
        # Far shorter than the first's transaction: the second must wait on the flock, not in SQLite's busy handler.
        second.execute("PRAGMA busy_timeout = 20")

        def write_second() -> None:
            with transaction(second):
                order.append("second begins")
                second.execute("INSERT INTO t VALUES ('second')")

        with transaction(first):
            other = threading.Thread(target=write_second)
            other.start()
            time.sleep(0.3)
            order.append("first commits")
            first.execute("INSERT INTO t VALUES ('first')")
        other.join(10)
        assert order == ["first commits", "second begins"]
        assert [v for (v,) in first.execute("SELECT v FROM t ORDER BY rowid")] == ["first", "second"]
    finally:
        first.close()
        second.close()


def _add_many(path: str, count: int) -> None:
    """One OS process: ``count`` read-increment-write transactions on one counter."""
    db = connect_wal(path)
    try:
        for _ in range(count):
            with transaction(db):
                (value,) = db.execute("SELECT v FROM counter").fetchone()
                db.execute("UPDATE counter SET v = ?", (value + 1,))
    finally:
        db.close()


@pytest.mark.slow
def test_processes_take_turns_and_lose_no_update(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    db = connect_wal(str(path))
    try:
        db.execute("CREATE TABLE counter (v INTEGER NOT NULL)")
        db.execute("INSERT INTO counter VALUES (0)")
        context = multiprocessing.get_context("spawn")
        with context.Pool(2) as pool:
            pool.starmap(_add_many, [(str(path), 300), (str(path), 300)])
        assert db.execute("SELECT v FROM counter").fetchone() == (600,)
    finally:
        db.close()


def test_an_in_memory_database_has_no_writer_lock(tmp_path: Path) -> None:
    db = connect_wal(":memory:")
    try:
        assert getattr(db, "writer_lock", None) is None
        with transaction(db):
            db.execute("CREATE TABLE t (v INTEGER)")
        assert db.execute("SELECT count(*) FROM t").fetchone() == (0,)
    finally:
        db.close()


def test_a_writer_lock_that_cannot_be_opened_is_an_sqlite_error(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    Path(str(path) + WRITER_LOCK_SUFFIX).mkdir()  # a directory cannot be opened for writing
    with pytest.raises(sqlite3.OperationalError, match="writer lock") as caught:
        connect_wal(str(path))
    assert isinstance(caught.value.__cause__, OSError)


def test_a_failed_commit_rolls_back_and_leaves_the_connection_usable(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    db = connect_wal(str(path))
    try:
        db.execute("PRAGMA foreign_keys = ON")
        db.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
        db.execute("CREATE TABLE child (parent INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)")
        with pytest.raises(sqlite3.IntegrityError), transaction(db):
            db.execute("INSERT INTO child VALUES (42)")  # checked at COMMIT
        assert not db.in_transaction
        assert lock_is_free(path)
        with transaction(db):
            db.execute("INSERT INTO parent VALUES (42)")
            db.execute("INSERT INTO child VALUES (42)")
        assert db.execute("SELECT count(*) FROM child").fetchone() == (1,)
    finally:
        db.close()


def test_a_nested_transaction_fails_and_keeps_the_outer_lock(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    db = connect_wal(str(path))
    try:
        with transaction(db):
            with pytest.raises(sqlite3.OperationalError, match="within a transaction"), transaction(db):
                pass
            assert not lock_is_free(path)
        assert lock_is_free(path)
    finally:
        db.close()


def test_checkpoints_run_every_so_many_commits_and_not_inside_commit(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    db = connect_wal(str(path))
    try:
        assert db.execute("PRAGMA wal_autocheckpoint").fetchone() == (0,)
        db.execute("CREATE TABLE t (v BLOB)")
        empty = path.stat().st_size
        for _ in range(CHECKPOINT_EVERY - 1):
            with transaction(db):
                db.execute("INSERT INTO t VALUES (zeroblob(4000))")
        assert path.stat().st_size == empty  # every page still only in the WAL
        with transaction(db):
            db.execute("INSERT INTO t VALUES (zeroblob(4000))")
        assert path.stat().st_size > CHECKPOINT_EVERY * 4000  # the hundredth commit was followed by a checkpoint
    finally:
        db.close()
