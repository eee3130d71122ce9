"""Group commit for an SQLite connection: the operations waiting at one moment run in one transaction.

One dedicated thread owns the connection and is fed by a ``queue.SimpleQueue``. It blocks for the first operation,
takes every other one already waiting (up to ``MAX_BATCH``) without blocking, runs them all in one
``BEGIN IMMEDIATE … COMMIT`` and only then — one ``call_soon_threadsafe`` per event loop and batch — resolves their
futures. So a caller told "done" holds a committed result (docs/decisions/0019), while a burst of N operations pays
for one lock acquisition, one commit and one thread hand-off instead of N.

Contracts:

- Each transaction opens a *session* on the connection (the caller's ``session`` factory: for the counter store, the
  connection and the counters the transaction has touched, ``sqlite_counter_rows.py``). An operation is a function of
  that session, run inside the transaction; it must not begin, commit or roll back itself. ``session.finish()`` runs
  after the last operation and before ``COMMIT`` (the counter store writes its changed counters there); when it
  raises, the batch is treated like one whose operation raised (below), so a change only one operation's data
  makes unwritable fails that operation alone.
- An operation may run twice: when any operation of a batch raises, the whole batch is rolled back and every
  operation is re-run alone in a transaction of its own, so the failing one fails alone and the others commit. An
  operation must therefore depend only on its arguments and the database (no side effects outside it, none kept in
  the session beyond its transaction: a re-run gets a new session).
- A failure to connect, to begin or to commit is not any one operation's fault: every operation of the batch gets it
  (the next batch connects again).
- Failures arrive as the sqlite3 exceptions themselves; callers translate them (``sqlite_base.sqlite_errors``).
- ``close()`` lets every operation queued before it finish, then closes the connection and ends the thread. An
  operation submitted after ``close()`` fails with ``sqlite3.ProgrammingError``, like a closed connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from tollgate.stores.sqlite_base import checkpoint_if_due, transaction

MAX_BATCH = 512  # operations per transaction at most, so the write lock is never held for long

_T = TypeVar("_T")


class Session(Protocol):
    def finish(self) -> None:
        """Called once every operation of the transaction ran, before ``COMMIT``."""


_S = TypeVar("_S", bound=Session)


@dataclass(slots=True)
class _Job:
    work: Callable[[Any], Any]
    future: asyncio.Future[Any]
    ok: bool = False
    value: Any = None  # the result, or the exception when not ok


class _Stop:
    """The queue's last item: ``close()`` was called; ``future`` learns when the connection is closed."""

    def __init__(self, future: asyncio.Future[None]) -> None:
        self.future = future


class BatchExecutor(Generic[_S]):
    """Runs operations on one connection, in one thread, many per transaction, each given the transaction's session."""

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        session: Callable[[sqlite3.Connection], _S],
        *,
        name: str = "tollgate-sqlite",
    ) -> None:
        self._connect = connect
        self._session = session
        self._name = name
        self._queue: queue.SimpleQueue[_Job | _Stop] = queue.SimpleQueue()
        self._lock = threading.Lock()  # makes "closed?" and "enqueue" one step
        self._thread: threading.Thread | None = None  # started by the first operation
        self._db: sqlite3.Connection | None = None  # opened lazily, in the thread
        self._closed = False
        self.batches = 0  # transactions begun, re-runs of a failed batch included

    async def run(self, work: Callable[[_S], _T]) -> _T:
        """The result of ``work(session)`` once the transaction it ran in has committed."""
        future: asyncio.Future[_T] = asyncio.get_running_loop().create_future()
        with self._lock:
            if self._closed:
                raise sqlite3.ProgrammingError("Cannot operate on a closed database.")
            if self._thread is None:
                # A daemon: a store nobody closed must not keep the interpreter alive; uncommitted work is lost.
                self._thread = threading.Thread(target=self._serve, name=self._name, daemon=True)
                self._thread.start()
            self._queue.put(_Job(work, future))
        return await future

    async def close(self) -> None:
        """Finish the queued operations, close the connection, end the thread. Closing twice is harmless."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._thread is None:
                return
            self._queue.put(_Stop(future))
        await future
        self._thread.join()

    # -- the thread -----------------------------------------------------------------------------------------------

    def _serve(self) -> None:
        while True:
            jobs, stop = self._take()
            if jobs:
                self._run_batch(jobs)
                _deliver(jobs)
                if self._db is not None:
                    checkpoint_if_due(self._db)  # after the answers: it may wait for the disk
            if stop is not None:
                try:
                    self._close_connection()
                finally:
                    _resolve_stop(stop)
                return

    def _take(self) -> tuple[list[_Job], _Stop | None]:
        """Block for the first item, then take what else is waiting; a ``_Stop`` ends the batch."""
        jobs: list[_Job] = []
        item = self._queue.get()
        while True:
            if isinstance(item, _Stop):
                return jobs, item
            jobs.append(item)
            if len(jobs) >= MAX_BATCH:
                return jobs, None
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return jobs, None

    def _run_batch(self, jobs: Sequence[_Job]) -> None:
        try:
            db = self._connection()
        except Exception as exc:  # every job learns why (the caller translates it)
            _fail(jobs, exc)
            return
        try:
            self._run_together(db, jobs)
        except _OperationFailed:
            if len(jobs) == 1:
                return  # it was alone already: its error is recorded
            # One of them raised: everything was rolled back; run each alone so only the failing one fails.
            for job in jobs:
                try:
                    self._run_together(db, [job])
                except _OperationFailed:
                    pass  # its error is recorded in the job
                except Exception as exc:
                    _fail([job], exc)
        except Exception as exc:  # BEGIN or COMMIT failed: nobody's fault, everybody's answer
            _fail(jobs, exc)

    def _run_together(self, db: sqlite3.Connection, jobs: Sequence[_Job]) -> None:
        """Run ``jobs`` in one transaction. Results are recorded; nothing is delivered here."""
        self.batches += 1
        with transaction(db, checkpoint=False):
            session = self._session(db)
            for job in jobs:
                try:
                    job.value, job.ok = job.work(session), True
                except Exception as exc:
                    job.value, job.ok = exc, False
                    raise _OperationFailed from exc
            try:
                session.finish()
            except Exception as exc:  # maybe one operation's doing: each alone will tell (``_run_batch``)
                _fail(jobs, exc)
                raise _OperationFailed from exc
        # Committed. A job that raised in an earlier attempt but succeeded now keeps the new result.

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            self._db = self._connect()
        return self._db

    def _close_connection(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


class _OperationFailed(Exception):
    """An operation raised inside a batch (its exception is recorded in its job)."""


def _fail(jobs: Sequence[_Job], exc: BaseException) -> None:
    for job in jobs:
        job.value, job.ok = exc, False


def _deliver(jobs: Sequence[_Job]) -> None:
    """Resolve the futures: one ``call_soon_threadsafe`` per event loop for the whole batch."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Job]] = {}
    for job in jobs:
        by_loop.setdefault(job.future.get_loop(), []).append(job)
    for loop, some in by_loop.items():
        with contextlib.suppress(RuntimeError):  # that loop is closed: nobody is waiting any more
            loop.call_soon_threadsafe(_resolve, some)


def _resolve(jobs: Sequence[_Job]) -> None:
    """On the event loop: hand each job's outcome to its future (a cancelled caller no longer wants it)."""
    for job in jobs:
        if job.future.cancelled():
            continue
        if job.ok:
            job.future.set_result(job.value)
        else:
            job.future.set_exception(job.value)


def _resolve_stop(stop: _Stop) -> None:
    def done() -> None:
        if not stop.future.cancelled():
            stop.future.set_result(None)

    with contextlib.suppress(RuntimeError):
        stop.future.get_loop().call_soon_threadsafe(done)
