"""A transaction's counters in memory (``CounterRows``): read once, written once, and exactly what running each
operation in its own transaction would have left.

Real SQLite files throughout; SQL is counted with the connection's trace callback.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from tollgate.budgets.model import Claim, CounterKey, Reservation
from tollgate.stores import open_counter_store
from tollgate.stores.redis_counters import RedisCounterStore
from tollgate.stores.sqlite_base import connect_wal, transaction
from tollgate.stores.sqlite_counter_rows import CounterRows, state_of
from tollgate.stores.sqlite_counters import SqliteCounterStore

NOW = 1_900_000_000.0
DAY = 1_899_936_000
MONTH = 1_898_553_600
EXPIRES = DAY + 2 * 86_400 + 900

ALICE = CounterKey("dev-daily", "alice", DAY)
TEAM = CounterKey("team-monthly", "core", MONTH)
BOB = CounterKey("dev-daily", "bob", DAY)


def new_file(path: Path) -> None:
    async def main() -> None:
        store = SqliteCounterStore(str(path))
        try:
            await store.ping()  # creates the schema
        finally:
            await store.close()

    asyncio.run(main())


def counter_sql(statements: list[str], verb: str) -> list[str]:
    return [s for s in statements if s.lstrip().upper().startswith(verb) and "budget_counters" in s]


def test_a_transaction_reads_each_counter_once_and_writes_each_changed_one_once(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    new_file(path)
    db = connect_wal(str(path))
    statements: list[str] = []
    try:
        db.set_trace_callback(statements.append)
        with transaction(db):
            rows = CounterRows(db)
            for i in range(10):
                rows.add(ALICE, EXPIRES, reserved_tokens=10, deadline=NOW + 900 - i)
                rows.add(TEAM, EXPIRES + 1, used_tokens=3, used_micros=7)
            assert rows.get(BOB).used_tokens == 0  # read, never changed
            rows.finish()
        db.set_trace_callback(None)
        assert len(counter_sql(statements, "SELECT")) == 3
        assert len(counter_sql(statements, "INSERT")) == 2  # alice and the team; bob was only read
        found = db.execute(
            "SELECT budget, scope_value, expires_at, used_tokens, used_micros, reserved_tokens, next_deadline"
            " FROM budget_counters ORDER BY budget"
        ).fetchall()
    finally:
        db.close()
    assert found == [
        ("dev-daily", "alice", EXPIRES, 0, 0, 100, NOW + 891),
        ("team-monthly", "core", EXPIRES + 1, 30, 70, 0, None),
    ]


def test_add_keeps_the_later_expiry_and_the_earlier_deadline(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    new_file(path)
    db = connect_wal(str(path))
    try:
        with transaction(db):
            rows = CounterRows(db)
            rows.add(ALICE, EXPIRES, reserved_tokens=5, deadline=NOW + 600)
            rows.finish()
        with transaction(db):
            rows = CounterRows(db)
            row = rows.add(ALICE, EXPIRES - 10, reserved_tokens=5, deadline=NOW + 900)
            assert (row.expires_at, row.next_deadline, row.reserved_tokens) == (EXPIRES, NOW + 600, 10)
            row = rows.add(ALICE, EXPIRES + 10, used_tokens=1)  # no deadline: next_deadline stays
            assert (row.expires_at, row.next_deadline) == (EXPIRES + 10, NOW + 600)
            row = rows.add(ALICE, EXPIRES, deadline=NOW + 300)
            assert row.next_deadline == NOW + 300
            rows.finish()
        assert db.execute("SELECT expires_at, next_deadline, reserved_tokens FROM budget_counters").fetchone() == (
            EXPIRES + 10,
            NOW + 300,
            10,
        )
    finally:
        db.close()


def test_flush_writes_and_forgets_so_sql_sees_the_counters_and_the_next_get_reads_again(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    new_file(path)
    db = connect_wal(str(path))
    statements: list[str] = []
    try:
        with transaction(db):
            rows = CounterRows(db)
            rows.add(ALICE, EXPIRES, used_tokens=4)
            assert db.execute("SELECT count(*) FROM budget_counters").fetchone() == (0,)  # not written yet
            rows.flush()
            assert db.execute("SELECT used_tokens FROM budget_counters").fetchone() == (4,)
            db.execute("UPDATE budget_counters SET used_tokens = 40")  # SQL after a flush, as the sweep does
            db.set_trace_callback(statements.append)
            assert state_of(ALICE, rows.get(ALICE)).used_tokens == 40
            rows.finish()  # nothing changed since the flush: nothing written
            db.set_trace_callback(None)
    finally:
        db.close()
    assert len(counter_sql(statements, "SELECT")) == 1
    assert counter_sql(statements, "INSERT") == []


def test_a_rolled_back_transaction_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    new_file(path)
    db = connect_wal(str(path))
    try:
        try:
            with transaction(db):
                rows = CounterRows(db)
                rows.add(ALICE, EXPIRES, used_tokens=4)
                rows.finish()
                raise RuntimeError("after the flush, before the commit")
        except RuntimeError:
            pass
        assert db.execute("SELECT count(*) FROM budget_counters").fetchone() == (0,)
    finally:
        db.close()


# -- batched transactions give what separate ones give ------------------------------------------------------------

Op = Callable[[SqliteCounterStore | RedisCounterStore], Awaitable[Any]]  # one script, either store


def _claims() -> list[Claim]:
    return [
        Claim(ALICE, EXPIRES, 300, None, True, "hard"),
        Claim(TEAM, EXPIRES + 86_400, 2_000, 10_000, True, "hard"),
        Claim(CounterKey("env-daily", "dev", DAY), EXPIRES, 120, None, True, "soft"),  # soon over: counts "blocked"
        Claim(CounterKey("org-daily", "all", DAY), EXPIRES, 5_000, None, False, "hard"),  # post mode: holds nothing
    ]


def _script(*, twice: bool = True) -> list[Op]:
    """Reserves that fill alice's counter and are then refused, settles (some after their hold expired, so purges
    run), a reserve for bob's counter (new inside the batch), snapshots in between, and (``twice``) a counter named
    twice in one request."""
    claims = _claims()
    bob = [Claim(BOB, EXPIRES, 100, None, True, "hard"), *claims[1:]]
    both = [claims[0], Claim(ALICE, EXPIRES, 300, None, False, "hard")]  # held once, read twice
    ops: list[Op] = []

    held: dict[str, Reservation] = {}  # what each reserve asked for, as the gateway hands it back to settle

    def reserve(
        rid: str, tokens: int, now: float, ttl: float = 900, which: list[Claim] | None = None, micros: int = 50
    ) -> Op:
        chosen = which or claims
        reservation = held[rid] = Reservation(rid, tokens, micros, now + ttl)
        return lambda store: store.reserve(chosen, reservation, now)

    def settle(rid: str, tokens: int, now: float, which: list[Claim] | None = None) -> Op:
        chosen = which or claims
        reservation = held.get(rid)
        return lambda store: store.settle(
            chosen, reservation, tokens=tokens, micros=tokens * 3, now=now, request_id=rid, payload=rid.encode()
        )

    def snapshot(now: float) -> Op:
        windows = [("dev-daily", DAY), ("team-monthly", MONTH), ("env-daily", DAY), ("org-daily", DAY)]
        return lambda store: store.snapshot(windows, now)

    for i in range(12):  # 12 × 40 > 300: alice refuses from the eighth on
        ops.append(reserve(f"r{i}", 40, NOW, ttl=5 if i % 3 == 0 else 900))
        if i % 4 == 3:
            ops.append(snapshot(NOW))
    ops.append(reserve("b0", 30, NOW, which=bob))
    ops.append(snapshot(NOW))
    for i in range(0, 12, 2):  # r0, r6 expired by NOW + 10; r3, r9 expired too but never settled
        ops.append(settle(f"r{i}", 25, NOW + 10))
    ops.append(settle("b0", 31, NOW + 10, which=bob))
    if twice:
        ops.append(reserve("t0", 7, NOW + 10, which=both))
        ops.append(snapshot(NOW + 10))
        ops.append(settle("t0", 5, NOW + 11, which=both))
    ops.append(settle("x", 9, NOW + 12, which=claims[3:]))  # no reservation: usage only
    ops.append(snapshot(NOW + 12))
    return ops


def _run(path: Path, ops: list[Op], *, together: bool) -> tuple[list[Any], int]:
    async def main() -> tuple[list[Any], int]:
        store = SqliteCounterStore(str(path))
        try:
            await store.ping()
            before = store.batches
            if together:
                outcomes = list(await asyncio.gather(*(op(store) for op in ops)))
            else:
                outcomes = [await op(store) for op in ops]
            return outcomes, store.batches - before
        finally:
            await store.close()

    return asyncio.run(main())


def _run_on_redis(url: str, ops: list[Op]) -> list[Any]:
    async def main() -> list[Any]:
        store = open_counter_store(url)
        try:
            return [await op(store) for op in ops]
        finally:
            await store.close()

    return asyncio.run(main())


def _contents(path: Path) -> list[list[tuple[Any, ...]]]:
    db = sqlite3.connect(path)
    try:
        return [
            db.execute("SELECT * FROM budget_counters ORDER BY budget, scope_value").fetchall(),
            db.execute("SELECT * FROM budget_reservations ORDER BY reservation_id, budget").fetchall(),
            db.execute("SELECT request_id, payload FROM outbox ORDER BY id").fetchall(),
        ]
    finally:
        db.close()


def test_operations_batched_together_leave_what_separate_transactions_leave(tmp_path: Path) -> None:
    ops = _script()
    alone, alone_batches = _run(tmp_path / "alone.db", ops, together=False)
    together, together_batches = _run(tmp_path / "together.db", ops, together=True)
    assert alone_batches == len(ops)
    assert together_batches <= 3  # the first operation may go before the others are queued
    assert together == alone
    assert _contents(tmp_path / "together.db") == _contents(tmp_path / "alone.db")
    # The script does what it says: refusals, soft "blocked" counts, purged holds, a counter named twice.
    reserves = [o for o in alone if o is not None and not isinstance(o, list)]
    assert sum(o.refused is not None for o in reserves) >= 4
    final = {(s.budget, s.scope_value): s for s in alone[-1]}
    assert final["env-daily", "dev"].blocked > 0
    assert final["dev-daily", "bob"].used_tokens == 31
    assert final["org-daily", "all"].reserved_tokens == 0
    assert final["org-daily", "all"].used_tokens > 0


def test_operations_batched_together_answer_what_the_redis_store_answers(tmp_path: Path, redis_url: str) -> None:
    """The same script against the other implementation (Lua, one operation at a time): an arithmetic slip made the
    same way batched and alone would pass the test above, not this one. Without the counter named twice: no budget
    set can name one counter twice, and there the stores differ (Redis answers each claim with the counter as that
    claim left it, SQLite with the counter after the whole request)."""
    ops = _script(twice=False)
    together, _ = _run(tmp_path / "together.db", ops, together=True)
    assert together == _run_on_redis(redis_url, ops)


def test_a_sweep_in_the_batch_deletes_counters_the_batch_created_before_it(tmp_path: Path) -> None:
    """The sweep's SQL runs after ``flush()``: a counter the same transaction created and changed, already expired at
    the sweep's clock, is deleted with its hold, not written back after the DELETE by ``finish()``."""
    soon = Claim(ALICE, int(NOW) + 10, 1000, None, True, "hard")
    path = tmp_path / "c.db"

    async def main() -> int:
        store = SqliteCounterStore(str(path))
        try:
            await store.ping()
            before = store.batches
            await asyncio.gather(
                store.reserve([soon], Reservation("r1", 10, 0, NOW + 900), NOW),
                # A store's first settle sweeps; with no claims it touches no counter itself.
                store.settle([], None, tokens=0, micros=0, now=NOW + 100, request_id="s", payload=b"{}"),
            )
            return store.batches - before
        finally:
            await store.close()

    assert asyncio.run(main()) == 1  # both in one transaction, or this test proves nothing
    contents = _contents(path)
    assert contents[0] == []  # the counter
    assert contents[1] == []  # its hold
