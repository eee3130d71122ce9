"""Where finished requests go besides the ledger outbox: a structured log line and, for tests, memory."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

import orjson

from tollgate.types import UsageRecord


class UsageRecorder(Protocol):
    def record(self, record: UsageRecord) -> None: ...


class LogRecorder:
    """One JSON log line per request on the ``tollgate.usage`` logger."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._logger = logger or logging.getLogger("tollgate.usage")

    def record(self, record: UsageRecord) -> None:
        if self._logger.isEnabledFor(logging.INFO):
            self._logger.info(orjson.dumps(record).decode())


class MemoryRecorder:
    """Keeps the last ``limit`` records in memory (tests, and the in-process inspection of a running gateway)."""

    def __init__(self, limit: int = 10_000) -> None:
        self._limit = limit
        self.records: list[UsageRecord] = []

    def record(self, record: UsageRecord) -> None:
        self.records.append(record)
        if len(self.records) > self._limit:
            del self.records[: len(self.records) - self._limit]


class FanOutRecorder:
    """Hands each record to several recorders in order."""

    def __init__(self, recorders: Sequence[UsageRecorder]) -> None:
        self._recorders = tuple(recorders)

    def record(self, record: UsageRecord) -> None:
        for recorder in self._recorders:
            recorder.record(record)
