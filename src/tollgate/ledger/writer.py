"""The ledger writer: moves finished requests into the ledger in batches, off the hot path.

Two sources, drained in this order on every pass:

- records handed in with ``add(record)`` (a gateway without an outbox): kept in memory until written;
- the counter store's **outbox** (``Outbox``): ledger entries the settle step wrote atomically with the budget
  charge. They are read, inserted, and acknowledged only after the insert has committed, so a crash at any point
  loses nothing: what was not acknowledged is read again and inserted again, and the insert skips request ids
  already present (``ON CONFLICT DO NOTHING``). Several writers draining one outbox are therefore safe too; the
  stores let one of them read it at a time anyway (SQLite: ``sqlite_base.DrainLock``; Redis: the drain lease).

A pass runs every ``interval_s``, as soon as ``batch_size`` records are waiting, on ``flush()``, and a last time on
``close()`` (graceful shutdown). A failed pass is logged and retried with a growing delay (at most
``MAX_RETRY_DELAY_S``); records stay where they were. An entry that can never be inserted (not JSON, a missing or
mistyped field, a number out of the column's range) is logged in full and acknowledged, so it cannot block the
outbox forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Sequence
from dataclasses import fields
from typing import Any, Protocol

import orjson

from tollgate.budgets.model import OutboxItem
from tollgate.errors import StoreUnavailable
from tollgate.types import Usage, UsageRecord

__all__ = ["LedgerSink", "LedgerWriter", "Outbox", "OutboxItem", "check_record", "record_from_payload"]

DEFAULT_BATCH_SIZE = 500
DEFAULT_INTERVAL_S = 0.25
DEFAULT_MAX_PENDING = 100_000  # records from add() kept while the ledger is down; the oldest go first
MAX_RETRY_DELAY_S = 10.0
INT4_MAX = 2**31 - 1
INT8_MAX = 2**63 - 1

_TEXT = ("request_id", "endpoint", "usage_source", "outcome")
_TEXT_OR_NONE = (
    "key_name",
    "developer",
    "team",
    "repo",
    "env",
    "model",
    "upstream_model",
    "provider",
    "deployment",
    "rejected_by",
)
_INT4 = ("estimate_tokens", "status")
_NUMBER = ("started_at", "latency_ms")
_USAGE = tuple(field.name for field in fields(Usage))
_RECORD = tuple(field.name for field in fields(UsageRecord))


class Outbox(Protocol):
    """Where the counter store keeps ledger entries until the writer has them safely in the ledger."""

    async def read_outbox(self, max_items: int) -> list[OutboxItem]:
        """The oldest entries, oldest first; they stay until acknowledged."""
        ...

    async def ack_outbox(self, ids: Sequence[str]) -> None: ...


class LedgerSink(Protocol):
    async def insert(self, records: Sequence[UsageRecord]) -> int:
        """Insert, skipping request ids already present; returns after the commit; how many rows were new."""
        ...


class LedgerWriter:
    def __init__(
        self,
        ledger: LedgerSink,
        *,
        outbox: Outbox | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        interval_s: float = DEFAULT_INTERVAL_S,
        max_pending: int = DEFAULT_MAX_PENDING,
        logger: logging.Logger | None = None,
    ) -> None:
        if batch_size < 1 or interval_s <= 0 or max_pending < batch_size:
            raise ValueError("batch_size >= 1, interval_s > 0 and max_pending >= batch_size")
        self._ledger = ledger
        self._outbox = outbox
        self._batch_size = batch_size
        self._interval_s = interval_s
        self._max_pending = max_pending
        self._log = logger or logging.getLogger("tollgate.ledger")
        self._pending: list[UsageRecord] = []
        self._pass_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        # Counters for metrics and tests.
        self.written = 0  # rows newly inserted
        self.duplicates = 0  # records whose request id was already in the ledger
        self.rejected = 0  # entries that could never be inserted (logged, acknowledged)
        self.dropped = 0  # records from add() given up (over max_pending, or after close)
        self.failures = 0  # passes that failed and will be retried

    @property
    def pending(self) -> int:
        """Records handed in with ``add`` and not yet written."""
        return len(self._pending)

    async def start(self) -> None:
        """Start the background task that runs a pass every ``interval_s``."""
        if self._task is None and not self._closed:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="tollgate-ledger-writer")

    def add(self, record: UsageRecord) -> None:
        """Queue one record (never blocks, never raises for a bad record: it is logged and counted instead)."""
        problem = check_record(record)
        if problem is not None:
            self.rejected += 1
            self._log.error("ledger record %s rejected: %s", record.request_id, problem)
            return
        if self._closed:
            self.dropped += 1
            self._log.error("ledger record %s arrived after the writer closed; dropped", record.request_id)
            return
        self._pending.append(record)
        if len(self._pending) > self._max_pending:
            excess = len(self._pending) - self._max_pending
            del self._pending[:excess]
            self.dropped += excess
            self._log.error("ledger unreachable: %d oldest records dropped (max_pending %d)", excess, self._max_pending)
        if len(self._pending) >= self._batch_size:
            self._wake.set()

    async def flush(self) -> int:
        """Run one pass now: every added record, then the outbox until it is empty. Returns the rows newly
        written; raises ``StoreUnavailable`` (nothing acknowledged that was not committed) if a store fails."""
        async with self._pass_lock:
            return await self._write_pending() + await self._drain_outbox()

    async def close(self) -> None:
        """Stop the background task and write what is left (graceful shutdown). Idempotent."""
        if self._closed:
            return
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            self._wake.set()
            await task
        try:
            await self.flush()
        except StoreUnavailable:
            self._log.exception(
                "ledger writer closing: the last pass failed; %d added records lost (outbox entries stay)",
                len(self._pending),
            )
            self.dropped += len(self._pending)
            self._pending.clear()

    # -- the pass ---------------------------------------------------------------------------------------------------

    async def _write_pending(self) -> int:
        written = 0
        while self._pending:
            # Take the batch off the queue first: add() may trim the queue's front while the insert is awaited.
            batch = self._pending[: self._batch_size]
            del self._pending[: len(batch)]
            try:
                inserted = await self._ledger.insert(batch)
            except BaseException:
                self._pending[0:0] = batch  # not written: first in line for the next pass
                raise
            written += self._count(batch, inserted)
        return written

    async def _drain_outbox(self) -> int:
        if self._outbox is None:
            return 0
        written = 0
        while True:
            items = await self._outbox.read_outbox(self._batch_size)
            if not items:
                return written
            records = [record for record in map(self._decode, items) if record is not None]
            if records:
                written += self._count(records, await self._ledger.insert(records))
            await self._outbox.ack_outbox([item.id for item in items])  # only after the insert committed
            if len(items) < self._batch_size:
                return written

    def _count(self, batch: Sequence[UsageRecord], inserted: int) -> int:
        self.written += inserted
        self.duplicates += len(batch) - inserted
        return inserted

    def _decode(self, item: OutboxItem) -> UsageRecord | None:
        try:
            record = record_from_payload(item.payload)
        except ValueError as exc:
            problem = str(exc)
        else:
            problem = check_record(record) or ""
            if not problem:
                return record
        self.rejected += 1
        self._log.error(
            "outbox entry %s rejected (%s); payload: %s", item.id, problem, item.payload.decode("utf-8", "replace")
        )
        return None

    async def _run(self) -> None:
        delay = self._interval_s
        while not self._closed:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            self._wake.clear()
            if self._closed:
                return  # close() runs the last pass itself
            try:
                await self.flush()
            except Exception:  # a store failure or a bug: log it, keep the records, try again later
                self.failures += 1
                delay = min(delay * 2, MAX_RETRY_DELAY_S)
                self._log.exception("ledger write failed; retrying in %.1f s", delay)
            else:
                delay = self._interval_s


def record_from_payload(payload: bytes) -> UsageRecord:
    """An outbox entry (``orjson.dumps(record)``) back into a ``UsageRecord``; raises ``ValueError`` if it is not
    one. Unknown fields are ignored and missing optional ones take their defaults, so writers and gateways of
    neighbouring versions understand each other."""
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise ValueError("not JSON") from exc
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    usage = data.get("usage") or {}
    if not isinstance(usage, dict):
        raise ValueError("usage is not an object")
    values: dict[str, Any] = {name: data[name] for name in _RECORD if name in data and name != "usage"}
    try:
        return UsageRecord(**values, usage=Usage(**{name: usage[name] for name in _USAGE if name in usage}))
    except TypeError as exc:
        raise ValueError(f"missing field: {exc}") from exc


def check_record(record: UsageRecord) -> str | None:
    """Why ``record`` cannot be stored in the ledger's columns, or None if it can."""
    for name in _TEXT:
        if not _is_text(getattr(record, name)):
            return f"{name} must be a string"
    for name in _TEXT_OR_NONE:
        value = getattr(record, name)
        if value is not None and not _is_text(value):
            return f"{name} must be a string or null"
    for name in _INT4:
        if not _is_int(getattr(record, name), INT4_MAX):
            return f"{name} must be an integer from 0 to {INT4_MAX}"
    if not _is_int(record.cost_micros, INT8_MAX):
        return f"cost_micros must be an integer from 0 to {INT8_MAX}"
    for name in _USAGE:
        if not _is_int(getattr(record.usage, name), INT4_MAX):
            return f"usage.{name} must be an integer from 0 to {INT4_MAX}"
    for name in _NUMBER:
        if not _is_number(getattr(record, name)):
            return f"{name} must be a finite number"
    if record.ttft_ms is not None and not _is_number(record.ttft_ms):
        return "ttft_ms must be a finite number or null"
    if not isinstance(record.streamed, bool):
        return "streamed must be true or false"
    return None


def _is_text(value: object) -> bool:
    return isinstance(value, str) and "\x00" not in value  # PostgreSQL text cannot hold NUL


def _is_int(value: object, maximum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= maximum


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
