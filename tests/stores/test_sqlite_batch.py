"""Group commit: many operations per transaction, each failing alone, answered only after the commit, drained on close.

Every test runs against a real SQLite file; a second, independent connection checks what was committed. A "gate"
operation holds the executor's thread until released, so the operations queued behind it form one batch.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tollgate.budgets.model import Claim, CounterKey, Reservation
from tollgate.errors import StoreUnavailable
from tollgate.stores.sqlite_base import connect_wal
from tollgate.stores.sqlite_batch import BatchExecutor
from tollgate.stores.sqlite_counters import SqliteCounterStore

NOW = 1_900_000_000.0
DAY = 1_899_936_000


def connector(path: Path) -> Callable[[], sqlite3.Connection]:
    """Connects like the stores do, with a table ``t`` whose foreign key is checked only at COMMIT."""

    def connect() -> sqlite3.Connection:
        db = connect_wal(str(path))
        db.execute("PRAGMA foreign_keys = ON")
        db.execute("CREATE TABLE IF NOT EXISTS parent (id INTEGER PRIMARY KEY)")
        db.execute(
            "CREATE TABLE IF NOT EXISTS t (v INTEGER NOT NULL,"
            " parent INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)"
        )
        return db

    return connect


class Plain:
    """The session of these tests: the connection, and nothing to do before COMMIT."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def finish(self) -> None:
        pass


def insert(value: int, parent: int | None = None) -> Callable[[Plain], int]:
    def work(session: Plain) -> int:
        session.db.execute("INSERT INTO t (v, parent) VALUES (?, ?)", (value, parent))
        return value

    return work


def committed(path: Path) -> list[int]:
    db = sqlite3.connect(path)
    try:
        return [v for (v,) in db.execute("SELECT v FROM t ORDER BY v")]
    finally:
        db.close()


class Gate:
    """An operation that keeps the executor's thread busy until ``open()``."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.released = threading.Event()

    def __call__(self, session: Plain) -> str:
        self.entered.set()
        assert self.released.wait(10)
        return "gate"

    async def hold(self, executor: BatchExecutor[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(executor.run(self))
        await asyncio.to_thread(self.entered.wait, 10)
        return task

    def open(self) -> None:
        self.released.set()


async def queued(*calls: Awaitable[Any]) -> list[asyncio.Task[Any]]:
    """Tasks for ``calls``, each already in the executor's queue."""
    tasks = [asyncio.ensure_future(call) for call in calls]
    await asyncio.sleep(0)
    return tasks


async def behind_a_gate(executor: BatchExecutor[Any], *calls: Awaitable[Any]) -> list[Any]:
    """Run ``calls`` as one batch (queued while a gate holds the executor's thread); outcomes or exceptions."""
    gate = Gate()
    held = await gate.hold(executor)
    tasks = await queued(*calls)
    gate.open()
    await held
    return list(await asyncio.gather(*tasks, return_exceptions=True))


def test_operations_waiting_together_share_one_transaction(tmp_path: Path) -> None:
    async def main() -> tuple[list[int], int]:
        executor = BatchExecutor(connector(tmp_path / "b.db"), Plain)
        try:
            gate = Gate()
            held = await gate.hold(executor)
            tasks = await queued(*(executor.run(insert(i)) for i in range(100)))
            gate.open()
            assert await held == "gate"
            return list(await asyncio.gather(*tasks)), executor.batches
        finally:
            await executor.close()

    results, batches = asyncio.run(main())
    assert results == list(range(100))
    assert batches == 2  # the gate's, then the hundred
    assert committed(tmp_path / "b.db") == list(range(100))


def test_many_concurrent_operations_become_few_transactions(tmp_path: Path) -> None:
    async def main() -> int:
        executor = BatchExecutor(connector(tmp_path / "b.db"), Plain)
        try:
            await asyncio.gather(*(executor.run(insert(i)) for i in range(500)))
            return executor.batches
        finally:
            await executor.close()

    assert asyncio.run(main()) < 50
    assert len(committed(tmp_path / "b.db")) == 500


def test_a_failing_operation_fails_alone_and_the_others_commit(tmp_path: Path) -> None:
    def half_then_fail(session: Plain) -> None:
        session.db.execute("INSERT INTO t (v) VALUES (666)")  # written, then rolled back with the rest of it
        session.db.execute("INSERT INTO nowhere VALUES (1)")

    async def main() -> tuple[list[Any], int]:
        executor = BatchExecutor(connector(tmp_path / "b.db"), Plain)
        try:
            calls = executor.run(insert(1)), executor.run(half_then_fail), executor.run(insert(2))
            return await behind_a_gate(executor, *calls), executor.batches
        finally:
            await executor.close()

    outcomes, batches = asyncio.run(main())
    assert outcomes[0] == 1
    assert isinstance(outcomes[1], sqlite3.OperationalError)
    assert str(outcomes[1]) == "no such table: nowhere"
    assert outcomes[2] == 2
    assert batches == 1 + 1 + 3  # the gate; the batch, rolled back; each of its three alone
    assert committed(tmp_path / "b.db") == [1, 2]


def test_a_failing_store_operation_is_store_unavailable_and_fails_alone(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    claim = Claim(CounterKey("dev-daily", "alice", DAY), DAY + 3 * 86_400, 1000, None, True, "hard")

    async def main() -> list[Any]:
        store = SqliteCounterStore(str(path))
        try:
            await store.ping()
            db = sqlite3.connect(path)
            db.execute("CREATE TRIGGER outbox_refuses BEFORE INSERT ON outbox BEGIN SELECT RAISE(ABORT, 'no'); END")
            db.commit()
            db.close()
            return await asyncio.gather(  # type: ignore[return-value]
                store.reserve([claim], Reservation("r1", 10, 0, NOW + 900), NOW),
                store.settle([claim], None, tokens=5, micros=0, now=NOW, request_id="x", payload=b"{}"),
                store.reserve([claim], Reservation("r2", 20, 0, NOW + 900), NOW),
                return_exceptions=True,
            )
        finally:
            await store.close()

    first, failed, second = asyncio.run(main())
    assert isinstance(failed, StoreUnavailable)
    assert isinstance(failed.__cause__, sqlite3.IntegrityError)
    assert first.refused is None
    assert second.refused is None
    assert second.states[0].reserved_tokens == 30
    assert second.states[0].used_tokens == 0


def test_each_result_is_committed_when_it_arrives(tmp_path: Path) -> None:
    path = tmp_path / "b.db"

    async def main() -> list[list[int]]:
        executor = BatchExecutor(connector(path), Plain)
        try:
            gate = Gate()
            held = await gate.hold(executor)
            seen: list[list[int]] = []

            async def insert_then_look(value: int) -> None:
                await executor.run(insert(value))
                seen.append(committed(path))  # a second, independent connection, the moment the result arrives

            tasks = await queued(*(insert_then_look(i) for i in range(5)))
            gate.open()
            await held
            await asyncio.gather(*tasks)
            return seen
        finally:
            await executor.close()

    assert asyncio.run(main()) == [[0, 1, 2, 3, 4]] * 5


def test_a_commit_that_fails_fails_every_operation_of_its_batch(tmp_path: Path) -> None:
    path = tmp_path / "b.db"

    async def main() -> tuple[list[Any], int]:
        executor = BatchExecutor(connector(path), Plain)
        try:
            # The foreign key is checked at COMMIT only: no operation raises, the commit does.
            outcomes = await behind_a_gate(executor, executor.run(insert(1)), executor.run(insert(2, parent=42)))
            assert await executor.run(insert(3)) == 3  # the connection is usable again
            return outcomes, executor.batches
        finally:
            await executor.close()

    outcomes, batches = asyncio.run(main())
    assert [type(outcome) for outcome in outcomes] == [sqlite3.IntegrityError, sqlite3.IntegrityError]
    assert batches == 3
    assert committed(path) == [3]


def test_close_lets_queued_operations_finish(tmp_path: Path) -> None:
    async def main() -> list[int]:
        executor = BatchExecutor(connector(tmp_path / "b.db"), Plain)
        gate = Gate()
        held = await gate.hold(executor)
        tasks = await queued(*(executor.run(insert(i)) for i in range(50)))
        threading.Timer(0.2, gate.open).start()
        await executor.close()
        assert all(task.done() for task in [held, *tasks])
        await held
        return list(await asyncio.gather(*tasks))

    assert asyncio.run(main()) == list(range(50))
    assert committed(tmp_path / "b.db") == list(range(50))


def test_an_operation_after_close_fails(tmp_path: Path) -> None:
    async def main() -> None:
        executor = BatchExecutor(connector(tmp_path / "b.db"), Plain)
        assert await executor.run(insert(1)) == 1
        await executor.close()
        await executor.close()  # twice is harmless
        with pytest.raises(sqlite3.ProgrammingError, match="closed"):
            await executor.run(insert(2))

    asyncio.run(main())
    assert committed(tmp_path / "b.db") == [1]


def test_a_store_used_after_close_is_unavailable(tmp_path: Path) -> None:
    async def main() -> None:
        store = SqliteCounterStore(str(tmp_path / "c.db"))
        await store.ping()
        await store.close()
        with pytest.raises(StoreUnavailable):
            await store.ping()

    asyncio.run(main())


def test_closing_an_unused_executor_starts_nothing(tmp_path: Path) -> None:
    async def main() -> None:
        executor = BatchExecutor(connector(tmp_path / "b.db"), Plain)
        await executor.close()
        assert executor.batches == 0

    asyncio.run(main())
    assert not (tmp_path / "b.db").exists()


def test_a_failed_connect_fails_the_batch_and_the_next_one_connects_again(tmp_path: Path) -> None:
    path = tmp_path / "later" / "b.db"

    async def main() -> None:
        executor = BatchExecutor(connector(path), Plain)
        try:
            with pytest.raises(sqlite3.OperationalError):
                await executor.run(insert(1))
            path.parent.mkdir()
            assert await executor.run(insert(2)) == 2
        finally:
            await executor.close()

    asyncio.run(main())
    assert committed(path) == [2]


def test_an_operation_that_fails_alone_is_not_run_again(tmp_path: Path) -> None:
    runs = []

    def fail(session: Plain) -> None:
        runs.append(1)
        raise sqlite3.IntegrityError("no")

    async def main() -> int:
        executor = BatchExecutor(connector(tmp_path / "b.db"), Plain)
        try:
            with pytest.raises(sqlite3.IntegrityError, match="no"):
                await executor.run(fail)
            return executor.batches
        finally:
            await executor.close()

    assert asyncio.run(main()) == 1
    assert runs == [1]


class Picky(Plain):
    """A session whose ``finish`` refuses when an operation marked it: the fault comes from one operation's data."""

    def __init__(self, db: sqlite3.Connection) -> None:
        super().__init__(db)
        self.marked = False

    def finish(self) -> None:
        if self.marked:
            raise sqlite3.IntegrityError("refused at finish")


def test_a_finish_that_fails_reruns_each_operation_alone_with_a_new_session(tmp_path: Path) -> None:
    def marks(session: Picky) -> None:
        session.db.execute("INSERT INTO t (v) VALUES (666)")
        session.marked = True

    async def main() -> tuple[list[Any], int]:
        executor = BatchExecutor(connector(tmp_path / "b.db"), Picky)
        try:
            calls = executor.run(insert(1)), executor.run(marks), executor.run(insert(2))
            return await behind_a_gate(executor, *calls), executor.batches
        finally:
            await executor.close()

    outcomes, batches = asyncio.run(main())
    assert outcomes[0] == 1
    assert isinstance(outcomes[1], sqlite3.IntegrityError)
    assert str(outcomes[1]) == "refused at finish"
    assert outcomes[2] == 2  # its own transaction got a session nobody had marked
    assert batches == 1 + 1 + 3
    assert committed(tmp_path / "b.db") == [1, 2]


def test_finish_runs_once_per_transaction_after_every_operation(tmp_path: Path) -> None:
    finished: list[list[int]] = []

    class Counting(Plain):
        def __init__(self, db: sqlite3.Connection) -> None:
            super().__init__(db)
            self.seen: list[int] = []

        def finish(self) -> None:
            finished.append(list(self.seen))

    def note(value: int) -> Callable[[Counting], int]:
        def work(session: Counting) -> int:
            session.seen.append(value)
            return value

        return work

    async def main() -> None:
        executor = BatchExecutor(connector(tmp_path / "b.db"), Counting)
        try:
            gate = Gate()
            held = await gate.hold(executor)
            tasks = await queued(*(executor.run(note(i)) for i in range(5)))
            gate.open()
            await held
            assert await asyncio.gather(*tasks) == [0, 1, 2, 3, 4]
        finally:
            await executor.close()

    asyncio.run(main())
    assert finished == [[], [0, 1, 2, 3, 4]]  # the gate's transaction, then the five together
