"""Budget counters and the ledger outbox in one SQLite file, shared by the worker processes of one host.

Concurrency (docs/decisions/0013): WAL journal, every change in a ``BEGIN IMMEDIATE`` transaction (it takes the
single write lock up front, so read-decide-write can never interleave with another process), ``busy_timeout`` so a
waiting process queues instead of failing. Each store owns one connection, used only by its own single worker thread,
so the event loop never blocks on the lock.

Tables: ``budget_counters`` (one row per budget, scope value and window start), ``budget_reservations`` (one row per
held reservation per counter, with its deadline) and ``outbox`` (ledger entries waiting for the ledger writer). The
SQL mirrors ``stores/lua/*.lua``; the contract tests hold both to the same cases.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from typing import TypeVar

from tollgate.budgets.model import Claim, CounterKey, CounterState, OutboxItem, Reservation, ReserveOutcome
from tollgate.stores.sqlite_base import connect_wal, sqlite_errors, sqlite_path, transaction

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

_ADD = """
INSERT INTO budget_counters
    (budget, scope_value, window_start, expires_at, used_tokens, used_micros, reserved_tokens, reserved_micros,
     blocked)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (budget, window_start, scope_value) DO UPDATE SET
    expires_at = max(expires_at, excluded.expires_at),
    used_tokens = used_tokens + excluded.used_tokens,
    used_micros = used_micros + excluded.used_micros,
    reserved_tokens = reserved_tokens + excluded.reserved_tokens,
    reserved_micros = reserved_micros + excluded.reserved_micros,
    blocked = blocked + excluded.blocked
"""


def translate_errors() -> AbstractContextManager[None]:
    """sqlite3 failures as ``StoreUnavailable`` (the translation lives in ``stores/sqlite_base.py``)."""
    return sqlite_errors("the budget counter store did not answer")


class SqliteCounterStore:
    def __init__(self, path: str) -> None:
        self._path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tollgate-sqlite")
        self._db: sqlite3.Connection | None = None  # opened lazily, in the worker thread
        self._next_sweep = 0.0
        self._closed = False

    @classmethod
    def from_url(cls, url: str) -> SqliteCounterStore:
        return cls(sqlite_path(url))

    # -- the CounterStore protocol --------------------------------------------------------------------------------

    async def reserve(self, claims: Sequence[Claim], reservation: Reservation, now: float) -> ReserveOutcome:
        return await self._run(lambda db: _reserve(db, claims, reservation, now))

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
        def work(db: sqlite3.Connection) -> None:
            with transaction(db):
                _settle(db, claims, reservation, tokens, micros, now)
                db.execute("INSERT INTO outbox (request_id, payload) VALUES (?, ?)", (request_id, payload))
                if now >= self._next_sweep:
                    _sweep(db, now)
                    self._next_sweep = now + SWEEP_INTERVAL_S

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
        def work(db: sqlite3.Connection) -> None:
            with transaction(db):
                db.execute("INSERT INTO outbox (request_id, payload) VALUES (?, ?)", (request_id, payload))

        await self._run(work)

    async def read_outbox(self, max_items: int) -> list[OutboxItem]:
        def work(db: sqlite3.Connection) -> list[OutboxItem]:
            rows = db.execute("SELECT id, payload FROM outbox ORDER BY id LIMIT ?", (max_items,)).fetchall()
            return [OutboxItem(str(row_id), bytes(payload)) for row_id, payload in rows]

        return await self._run(work)

    async def ack_outbox(self, ids: Sequence[str]) -> None:
        def work(db: sqlite3.Connection) -> None:
            with transaction(db):
                db.executemany("DELETE FROM outbox WHERE id = ?", [(int(i),) for i in ids])

        if ids:
            await self._run(work)

    async def snapshot(self, windows: Sequence[tuple[str, int]], now: float) -> list[CounterState]:
        def work(db: sqlite3.Connection) -> list[CounterState]:
            states = []
            with transaction(db):
                for budget, start in windows:
                    values = db.execute(
                        "SELECT scope_value FROM budget_counters WHERE budget = ? AND window_start = ?"
                        " ORDER BY scope_value",
                        (budget, start),
                    ).fetchall()
                    for (value,) in values:
                        key = CounterKey(budget, value, start)
                        _purge(db, key, now)
                        states.append(_read(db, key))
            return states

        return await self._run(work)

    async def ping(self) -> None:
        await self._run(lambda db: db.execute("SELECT 1").fetchone())

    async def close(self) -> None:
        def work() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, work)
        self._executor.shutdown(wait=True)

    # -- plumbing -------------------------------------------------------------------------------------------------

    async def _run(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, work)

    def _call(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        with translate_errors():
            if self._db is None:
                self._db = _connect(self._path)
            return work(self._db)


def _connect(path: str) -> sqlite3.Connection:
    db = connect_wal(path)
    try:
        with transaction(db):
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
    except BaseException:
        db.close()
        raise
    return db


def _reserve(db: sqlite3.Connection, claims: Sequence[Claim], reservation: Reservation, now: float) -> ReserveOutcome:
    with transaction(db):
        states: list[CounterState] = []
        fits: list[bool] = []
        for claim in claims:
            _purge(db, claim.counter, now)
            states.append(_read(db, claim.counter))
            fits.append(claim.admits(states[-1], reservation.tokens, reservation.micros))
        for index, claim in enumerate(claims):
            if claim.blocking and not fits[index]:
                return ReserveOutcome(index, tuple(states))  # the purges above still commit
        for claim, fit in zip(claims, fits, strict=True):
            blocked = 0 if fit else 1
            if claim.reserve:
                db.execute(
                    "INSERT INTO budget_reservations"
                    " (budget, scope_value, window_start, reservation_id, tokens, micros, deadline)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        *_key(claim.counter),
                        reservation.id,
                        reservation.tokens,
                        reservation.micros,
                        reservation.deadline,
                    ),
                )
                _add(db, claim, reserved_tokens=reservation.tokens, reserved_micros=reservation.micros, blocked=blocked)
            elif blocked:
                _add(db, claim, blocked=blocked)
        return ReserveOutcome(None, tuple(_read(db, claim.counter) for claim in claims))


def _settle(
    db: sqlite3.Connection,
    claims: Sequence[Claim],
    reservation: Reservation | None,
    tokens: int,
    micros: int,
    now: float,
) -> None:
    for claim in claims:
        _purge(db, claim.counter, now)
        held_tokens = held_micros = 0
        if claim.reserve and reservation is not None:
            gone = db.execute(
                "DELETE FROM budget_reservations"
                " WHERE budget = ? AND scope_value = ? AND window_start = ? AND reservation_id = ?"
                " RETURNING tokens, micros",
                (*_key(claim.counter), reservation.id),
            ).fetchall()
            # Not found: the reservation expired and was purged already; its hold is gone, do not subtract twice.
            held_tokens = sum(row[0] for row in gone)
            held_micros = sum(row[1] for row in gone)
        _add(
            db,
            claim,
            used_tokens=tokens,
            used_micros=micros,
            reserved_tokens=-held_tokens,
            reserved_micros=-held_micros,
        )


def _purge(db: sqlite3.Connection, key: CounterKey, now: float) -> None:
    """Drop the counter's reservations whose deadline passed and give back what they held."""
    gone = db.execute(
        "DELETE FROM budget_reservations"
        " WHERE budget = ? AND scope_value = ? AND window_start = ? AND deadline <= ?"
        " RETURNING tokens, micros",
        (*_key(key), now),
    ).fetchall()
    if gone:
        db.execute(
            "UPDATE budget_counters SET reserved_tokens = reserved_tokens - ?, reserved_micros = reserved_micros - ?"
            " WHERE budget = ? AND scope_value = ? AND window_start = ?",
            (sum(row[0] for row in gone), sum(row[1] for row in gone), *_key(key)),
        )


def _read(db: sqlite3.Connection, key: CounterKey) -> CounterState:
    row = db.execute(
        "SELECT used_tokens, used_micros, reserved_tokens, reserved_micros, blocked FROM budget_counters"
        " WHERE budget = ? AND scope_value = ? AND window_start = ?",
        _key(key),
    ).fetchone()
    if row is None:
        return CounterState(key.budget, key.scope_value, key.window_start)
    return CounterState(key.budget, key.scope_value, key.window_start, *row)


def _add(
    db: sqlite3.Connection,
    claim: Claim,
    *,
    used_tokens: int = 0,
    used_micros: int = 0,
    reserved_tokens: int = 0,
    reserved_micros: int = 0,
    blocked: int = 0,
) -> None:
    db.execute(
        _ADD,
        (*_key(claim.counter), claim.expires_at, used_tokens, used_micros, reserved_tokens, reserved_micros, blocked),
    )


def _sweep(db: sqlite3.Connection, now: float) -> None:
    """Drop counters (and their reservations, all past deadline by then) whose expiry passed."""
    db.execute(
        "DELETE FROM budget_reservations WHERE (budget, window_start, scope_value) IN"
        " (SELECT budget, window_start, scope_value FROM budget_counters WHERE expires_at <= ?)",
        (now,),
    )
    db.execute("DELETE FROM budget_counters WHERE expires_at <= ?", (now,))


def _key(key: CounterKey) -> tuple[str, str, int]:
    return key.budget, key.scope_value, key.window_start
