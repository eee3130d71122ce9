"""The budget counters one SQLite transaction touches, kept in memory until it commits (docs/decisions/0058).

A group-commit transaction (``sqlite_batch.py``) carries the reserves and settles of many requests, and most of them
touch the same few counters (a team's, an environment's, a busy developer's). ``CounterRows`` is the transaction's
session: it reads each counter at most once, applies every operation's change to it in Python, and writes each
changed counter once, in one ``executemany``, just before ``COMMIT`` (``finish``). Each operation sees a counter
exactly as the operations before it in the transaction left it, as if each had written it; no other connection can
tell the difference, because none sees anything of a transaction before its ``COMMIT``, and none can write between
its ``BEGIN IMMEDIATE`` and its ``COMMIT``. Reservation rows and the outbox are written at once, as before.

The rule that keeps it exact: inside a transaction, ``budget_counters`` is read and changed only through this class;
SQL that reads or deletes counter rows directly runs after ``flush()``, which writes what changed and forgets
everything read.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from tollgate.budgets.model import CounterKey, CounterState

_SELECT = (
    "SELECT expires_at, used_tokens, used_micros, reserved_tokens, reserved_micros, blocked, next_deadline"
    " FROM budget_counters WHERE budget = ? AND scope_value = ? AND window_start = ?"
)
_WRITE = """
INSERT INTO budget_counters
    (budget, scope_value, window_start, expires_at, used_tokens, used_micros, reserved_tokens, reserved_micros,
     blocked, next_deadline)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (budget, window_start, scope_value) DO UPDATE SET
    expires_at = excluded.expires_at,
    used_tokens = excluded.used_tokens,
    used_micros = excluded.used_micros,
    reserved_tokens = excluded.reserved_tokens,
    reserved_micros = excluded.reserved_micros,
    blocked = excluded.blocked,
    next_deadline = excluded.next_deadline
"""


@dataclass(slots=True)
class CounterRow:
    """One counter as this transaction sees it (all zero when the file has none yet)."""

    expires_at: int = 0
    used_tokens: int = 0
    used_micros: int = 0
    reserved_tokens: int = 0
    reserved_micros: int = 0
    blocked: int = 0
    next_deadline: float | None = None  # never later than the earliest deadline of its reservations; None: none held


class CounterRows:
    """The session of one counter-store transaction: its connection and the counters it has read or changed."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self._rows: dict[CounterKey, CounterRow] = {}
        self._changed: set[CounterKey] = set()  # of the counters in _rows, those to write

    def get(self, key: CounterKey) -> CounterRow:
        """The counter as the transaction has it now (read from the file the first time). Change it only through
        ``add`` and ``give_back``."""
        row = self._rows.get(key)
        if row is None:
            found = self.db.execute(_SELECT, (key.budget, key.scope_value, key.window_start)).fetchone()
            row = CounterRow(*found) if found is not None else CounterRow()
            self._rows[key] = row
        return row

    def add(
        self,
        key: CounterKey,
        expires_at: int,
        *,
        used_tokens: int = 0,
        used_micros: int = 0,
        reserved_tokens: int = 0,
        reserved_micros: int = 0,
        blocked: int = 0,
        deadline: float | None = None,
    ) -> CounterRow:
        """Add to the counter (created when missing), keep its expiry the later of the two and ``next_deadline`` no
        later than ``deadline``; returns it as it is now."""
        row = self.get(key)
        row.expires_at = max(row.expires_at, expires_at)
        row.used_tokens += used_tokens
        row.used_micros += used_micros
        row.reserved_tokens += reserved_tokens
        row.reserved_micros += reserved_micros
        row.blocked += blocked
        if deadline is not None and (row.next_deadline is None or deadline < row.next_deadline):
            row.next_deadline = deadline
        self._changed.add(key)
        return row

    def give_back(self, key: CounterKey, tokens: int, micros: int, next_deadline: float | None) -> None:
        """A purge: the expired reservations' ``tokens`` and ``micros`` are no longer reserved, and the earliest
        deadline still held is ``next_deadline`` (None: nothing held)."""
        row = self.get(key)
        row.reserved_tokens -= tokens
        row.reserved_micros -= micros
        row.next_deadline = next_deadline
        self._changed.add(key)

    def flush(self) -> None:
        """Write every changed counter and forget every counter read, so that SQL on ``budget_counters`` sees them."""
        if self._changed:
            self.db.executemany(
                _WRITE,
                [
                    (
                        key.budget,
                        key.scope_value,
                        key.window_start,
                        row.expires_at,
                        row.used_tokens,
                        row.used_micros,
                        row.reserved_tokens,
                        row.reserved_micros,
                        row.blocked,
                        row.next_deadline,
                    )
                    for key, row in self._rows.items()
                    if key in self._changed
                ],
            )
        self._changed.clear()
        self._rows.clear()

    finish = flush  # the batch executor's hook: called after the last operation, before COMMIT


def state_of(key: CounterKey, row: CounterRow) -> CounterState:
    return CounterState(
        key.budget,
        key.scope_value,
        key.window_start,
        row.used_tokens,
        row.used_micros,
        row.reserved_tokens,
        row.reserved_micros,
        row.blocked,
    )
