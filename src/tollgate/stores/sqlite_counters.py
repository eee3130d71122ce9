"""Budget counters and the ledger outbox in one SQLite file, shared by the worker processes of one host.

Concurrency (docs/decisions/0013, 0019): WAL journal, every change in a ``BEGIN IMMEDIATE`` transaction (it takes the
single write lock up front, so read-decide-write can never interleave with another process), ``busy_timeout`` so a
waiting process queues instead of failing. Each store owns one connection, used only by its own thread
(``stores/sqlite_batch.py``), so the event loop never blocks on the lock; the operations waiting at one moment share
one transaction (group commit), and each caller hears back only after that transaction committed. Within a
transaction the counters live in memory (``stores/sqlite_counter_rows.py``, decision 0058): each is read once and each
changed one written once, before ``COMMIT``, however many reserves and settles of the batch touched it.

Tables: ``budget_counters`` (one row per budget, scope value and window start), ``budget_reservations`` (one row per
held reservation per counter, with its deadline) and ``outbox`` (ledger entries waiting for the ledger writer). The
logic mirrors ``stores/lua/*.lua``; the contract tests hold both to the same cases. ``budget_counters.next_deadline``
is never later than the earliest deadline of the counter's reservations (NULL: none held), so the purge of expired
reservations runs only when one can have expired; settles leave it early, and the next purge corrects it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import TypeVar

from tollgate.budgets.model import Claim, CounterKey, CounterState, OutboxItem, Reservation, ReserveOutcome
from tollgate.stores.sqlite_base import DrainLock, connect_wal, sqlite_errors, sqlite_path, transaction
from tollgate.stores.sqlite_batch import BatchExecutor
from tollgate.stores.sqlite_counter_rows import CounterRows, state_of

SWEEP_INTERVAL_S = 60.0  # how often settle drops counters whose expiry passed

_T = TypeVar("_T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS budget_counters (
    budget TEXT NOT NULL,
    scope_value TEXT NOT NULL,
    window_start INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_tokens INTEGER NOT NULL DEFAULT 0,
    used_micros INTEGER NOT NULL DEFAULT 0,
    reserved_tokens INTEGER NOT NULL DEFAULT 0,
    reserved_micros INTEGER NOT NULL DEFAULT 0,
    blocked INTEGER NOT NULL DEFAULT 0,
    next_deadline REAL,
    PRIMARY KEY (budget, window_start, scope_value)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS budget_counters_expiry ON budget_counters (expires_at);
CREATE TABLE IF NOT EXISTS budget_reservations (
    budget TEXT NOT NULL,
    scope_value TEXT NOT NULL,
    window_start INTEGER NOT NULL,
    reservation_id TEXT NOT NULL,
    tokens INTEGER NOT NULL,
    micros INTEGER NOT NULL,
    deadline REAL NOT NULL,
    PRIMARY KEY (budget, window_start, scope_value, reservation_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS budget_reservations_deadline
    ON budget_reservations (budget, window_start, scope_value, deadline);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL,
    payload BLOB NOT NULL
);
"""

# Files made before next_deadline existed get it here; the earliest held deadline of each counter fills it.
_MIGRATE_NEXT_DEADLINE = (
    "ALTER TABLE budget_counters ADD COLUMN next_deadline REAL",
    "UPDATE budget_counters SET next_deadline = (SELECT min(r.deadline) FROM budget_reservations AS r"
    " WHERE r.budget = budget_counters.budget AND r.scope_value = budget_counters.scope_value"
    " AND r.window_start = budget_counters.window_start)",
)

_WHERE_KEY = "WHERE budget = ? AND scope_value = ? AND window_start = ?"

_INSERT_HOLD = (
    "INSERT INTO budget_reservations (budget, scope_value, window_start, reservation_id, tokens, micros, deadline)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)


def translate_errors() -> AbstractContextManager[None]:
    """sqlite3 failures as ``StoreUnavailable`` (the translation lives in ``stores/sqlite_base.py``)."""
    return sqlite_errors("the budget counter store did not answer")


class SqliteCounterStore:
    def __init__(self, path: str) -> None:
        self._executor = BatchExecutor(lambda: _connect(path), CounterRows, name="tollgate-sqlite")
        self._next_sweep = 0.0
        self._drain = DrainLock(path)

    @classmethod
    def from_url(cls, url: str) -> SqliteCounterStore:
        return cls(sqlite_path(url))

    @property
    def batches(self) -> int:
        """Transactions run so far (observability: compare with the operations asked for)."""
        return self._executor.batches

    # -- the CounterStore protocol --------------------------------------------------------------------------------

    async def reserve(self, claims: Sequence[Claim], reservation: Reservation, now: float) -> ReserveOutcome:
        return await self._run(lambda rows: _reserve(rows, claims, reservation, now))

    async def settle(
        self,
        claims: Sequence[Claim],
        reservation: Reservation | None,
        *,
        tokens: int,
        micros: int,
        now: float,
        request_id: str,
        payload: bytes,
    ) -> None:
        # Decided here, not in the operation: an operation may be run twice (sqlite_batch.py).
        sweep = now >= self._next_sweep
        if sweep:
            self._next_sweep = now + SWEEP_INTERVAL_S

        def work(rows: CounterRows) -> None:
            _settle(rows, claims, reservation, tokens, micros, now)
            rows.db.execute("INSERT INTO outbox (request_id, payload) VALUES (?, ?)", (request_id, payload))
            if sweep:
                _sweep(rows, now)

        await self._run(work)

    def settle_now(
        self,
        claims: Sequence[Claim],
        reservation: Reservation | None,
        *,
        tokens: int,
        micros: int,
        now: float,
        request_id: str,
        payload: bytes,
    ) -> None:
        """Not possible here (a settle is durable only once its transaction commits): the caller awaits ``settle``."""
        return None

    async def append_outbox(self, request_id: str, payload: bytes) -> None:
        def work(rows: CounterRows) -> None:
            rows.db.execute("INSERT INTO outbox (request_id, payload) VALUES (?, ?)", (request_id, payload))

        await self._run(work)

    async def read_outbox(self, max_items: int) -> list[OutboxItem]:
        """The oldest entries; none while another process of this host drains the outbox (``DrainLock``)."""
        with translate_errors():
            if not self._drain.try_hold():
                return []

        def work(rows: CounterRows) -> list[OutboxItem]:
            found = rows.db.execute("SELECT id, payload FROM outbox ORDER BY id LIMIT ?", (max_items,)).fetchall()
            return [OutboxItem(str(row_id), bytes(payload)) for row_id, payload in found]

        return await self._run(work)

    async def ack_outbox(self, ids: Sequence[str]) -> None:
        keys = [(int(i),) for i in ids]

        def work(rows: CounterRows) -> None:
            rows.db.executemany("DELETE FROM outbox WHERE id = ?", keys)

        if keys:
            await self._run(work)

    async def snapshot(self, windows: Sequence[tuple[str, int]], now: float) -> list[CounterState]:
        def work(rows: CounterRows) -> list[CounterState]:
            rows.flush()  # counters this transaction created must be listed below
            states: list[CounterState] = []
            for budget, start in windows:
                values = rows.db.execute(
                    "SELECT scope_value FROM budget_counters WHERE budget = ? AND window_start = ?"
                    " ORDER BY scope_value",
                    (budget, start),
                ).fetchall()
                states.extend(_read(rows, CounterKey(budget, value, start), now) for (value,) in values)
            return states

        return await self._run(work)

    async def ping(self) -> None:
        await self._run(lambda rows: rows.db.execute("SELECT 1").fetchone())

    async def close(self) -> None:
        try:
            await self._executor.close()
        finally:
            self._drain.release()

    # -- plumbing -------------------------------------------------------------------------------------------------

    async def _run(self, work: Callable[[CounterRows], _T]) -> _T:
        with translate_errors():
            return await self._executor.run(work)


def _connect(path: str) -> sqlite3.Connection:
    db = connect_wal(path)
    try:
        with transaction(db):
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            columns = {row[1] for row in db.execute("PRAGMA table_info(budget_counters)")}
            if "next_deadline" not in columns:
                for statement in _MIGRATE_NEXT_DEADLINE:
                    db.execute(statement)
    except BaseException:
        db.close()
        raise
    return db


def _reserve(rows: CounterRows, claims: Sequence[Claim], reservation: Reservation, now: float) -> ReserveOutcome:
    states = [_read(rows, claim.counter, now) for claim in claims]
    fits = [
        claim.admits(state, reservation.tokens, reservation.micros) for claim, state in zip(claims, states, strict=True)
    ]
    for index, claim in enumerate(claims):
        if claim.blocking and not fits[index]:
            return ReserveOutcome(index, tuple(states))  # nothing written but purges, which commit (harmless)
    holds = []
    for claim, fit in zip(claims, fits, strict=True):
        blocked = 0 if fit else 1
        if claim.reserve:
            holds.append(
                (*_key(claim.counter), reservation.id, reservation.tokens, reservation.micros, reservation.deadline)
            )
            rows.add(
                claim.counter,
                claim.expires_at,
                reserved_tokens=reservation.tokens,
                reserved_micros=reservation.micros,
                blocked=blocked,
                deadline=reservation.deadline,
            )
        elif blocked:
            rows.add(claim.counter, claim.expires_at, blocked=blocked)
    if holds:
        rows.db.executemany(_INSERT_HOLD, holds)
    # Read after every change: a counter named twice shows both.
    return ReserveOutcome(None, tuple(state_of(claim.counter, rows.get(claim.counter)) for claim in claims))


def _settle(
    rows: CounterRows,
    claims: Sequence[Claim],
    reservation: Reservation | None,
    tokens: int,
    micros: int,
    now: float,
) -> None:
    for claim in claims:
        held_tokens = held_micros = 0
        if claim.reserve and reservation is not None:
            # Its own hold first, expired or not: the purge below would give back an expired one just the same, and
            # a hold already purged (by another request) is not found here, so nothing is subtracted twice.
            gone = rows.db.execute(
                f"DELETE FROM budget_reservations {_WHERE_KEY} AND reservation_id = ? RETURNING tokens, micros",
                (*_key(claim.counter), reservation.id),
            ).fetchall()
            held_tokens = sum(row[0] for row in gone)
            held_micros = sum(row[1] for row in gone)
        row = rows.add(
            claim.counter,
            claim.expires_at,
            used_tokens=tokens,
            used_micros=micros,
            reserved_tokens=-held_tokens,
            reserved_micros=-held_micros,
        )
        if row.next_deadline is not None and row.next_deadline <= now:
            _purge(rows, claim.counter, now)


def _read(rows: CounterRows, key: CounterKey, now: float) -> CounterState:
    """The counter after its expired reservations were purged (the purge runs only if one can have expired)."""
    row = rows.get(key)
    if row.next_deadline is not None and row.next_deadline <= now:
        _purge(rows, key, now)
    return state_of(key, row)


def _purge(rows: CounterRows, key: CounterKey, now: float) -> None:
    """Drop the counter's reservations whose deadline passed, give back what they held, and set ``next_deadline``
    to the earliest deadline left."""
    gone = rows.db.execute(
        f"DELETE FROM budget_reservations {_WHERE_KEY} AND deadline <= ? RETURNING tokens, micros", (*_key(key), now)
    ).fetchall()
    (earliest,) = rows.db.execute(f"SELECT min(deadline) FROM budget_reservations {_WHERE_KEY}", _key(key)).fetchone()
    rows.give_back(key, sum(r[0] for r in gone), sum(r[1] for r in gone), earliest)


def _sweep(rows: CounterRows, now: float) -> None:
    """Drop counters (and their reservations, all past deadline by then) whose expiry passed."""
    rows.flush()
    rows.db.execute(
        "DELETE FROM budget_reservations WHERE (budget, window_start, scope_value) IN"
        " (SELECT budget, window_start, scope_value FROM budget_counters WHERE expires_at <= ?)",
        (now,),
    )
    rows.db.execute("DELETE FROM budget_counters WHERE expires_at <= ?", (now,))


def _key(key: CounterKey) -> tuple[str, str, int]:
    return key.budget, key.scope_value, key.window_start
