"""The ledger writer: batches, flushes on close, drains an outbox and acknowledges only what was committed."""

from __future__ import annotations

import asyncio
import logging
import pathlib
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

import orjson
import pytest

from tests.ledger.support import Kit, MemoryOutbox, payload, record
from tollgate.errors import StoreUnavailable
from tollgate.ledger import Ledger, open_ledger
from tollgate.ledger.writer import LedgerWriter, check_record, record_from_payload
from tollgate.stores.sqlite_counters import SqliteCounterStore
from tollgate.types import Usage, UsageRecord


class BatchLog:
    """A real ledger that also notes the size of every batch it is handed."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.batches: list[int] = []

    async def insert(self, records: Sequence[UsageRecord]) -> int:
        self.batches.append(len(records))
        return await self.ledger.insert(records)


def records(count: int, prefix: str = "req") -> list[UsageRecord]:
    return [
        record(f"{prefix}-{index}", "2026-11-01T10:00:00", usage=Usage(10, 5), cost_micros=100)
        for index in range(count)
    ]


class Unused:
    """A ledger for tests that must not reach one."""

    async def insert(self, records: Sequence[UsageRecord]) -> int:
        raise AssertionError("no insert expected")


async def eventually(condition: Callable[[], bool], limit_s: float = 10.0) -> None:
    """Wait until ``condition()`` holds (polling; a bound on waiting, not on speed)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.01)


def test_added_records_are_written_in_batches(kit: Kit) -> None:
    async def scenario(ledger: Ledger) -> tuple[int, list[int], int, int]:
        await ledger.migrate()
        log = BatchLog(ledger)
        writer = LedgerWriter(log, batch_size=3)
        for item in records(7):
            writer.add(item)
        written = await writer.flush()
        await writer.close()
        return written, log.batches, writer.pending, await ledger.count()

    assert kit.run(scenario) == (7, [3, 3, 1], 0, 7)


def test_writing_the_same_request_twice_keeps_one_row(kit: Kit) -> None:
    async def scenario(ledger: Ledger) -> tuple[int, int, int, int]:
        await ledger.migrate()
        writer = LedgerWriter(ledger)
        for item in records(2) + records(3):
            writer.add(item)
        written = await writer.flush()
        await writer.close()
        return written, writer.written, writer.duplicates, await ledger.count()

    assert kit.run(scenario) == (3, 3, 2, 3)


def test_a_full_batch_is_written_without_waiting_for_the_interval(kit: Kit) -> None:
    async def scenario(ledger: Ledger) -> int:
        await ledger.migrate()
        writer = LedgerWriter(ledger, batch_size=4, interval_s=3600)
        await writer.start()
        for item in records(4):
            writer.add(item)
        await eventually(lambda: writer.written == 4)
        await writer.close()
        return await ledger.count()

    assert kit.run(scenario) == 4


def test_a_partial_batch_is_written_after_the_interval(kit: Kit) -> None:
    async def scenario(ledger: Ledger) -> int:
        await ledger.migrate()
        writer = LedgerWriter(ledger, batch_size=100, interval_s=0.05)
        await writer.start()
        writer.add(records(1)[0])
        await eventually(lambda: writer.written == 1)
        await writer.close()
        return await ledger.count()

    assert kit.run(scenario) == 1


def test_close_flushes_what_is_pending(kit: Kit) -> None:
    async def scenario(ledger: Ledger) -> tuple[int, int, int]:
        await ledger.migrate()
        outbox = MemoryOutbox()
        for item in records(3, "boxed"):
            outbox.append(payload(item))
        writer = LedgerWriter(ledger, outbox=outbox, batch_size=100, interval_s=3600)
        await writer.start()
        for item in records(2):
            writer.add(item)
        await writer.close()
        await writer.close()  # idempotent
        return await ledger.count(), writer.pending, len(outbox.items)

    assert kit.run(scenario) == (5, 0, 0)


def test_outbox_is_drained_and_acknowledged(kit: Kit) -> None:
    async def scenario(ledger: Ledger) -> tuple[int, int, list[int], int]:
        await ledger.migrate()
        outbox = MemoryOutbox()
        for item in records(5):
            outbox.append(payload(item))
        log = BatchLog(ledger)
        writer = LedgerWriter(log, outbox=outbox, batch_size=2)
        written = await writer.flush()
        return written, len(outbox.items), log.batches, await ledger.count()

    assert kit.run(scenario) == (5, 0, [2, 2, 1], 5)


def test_a_failing_insert_leaves_the_outbox_unacknowledged(kit: Kit) -> None:
    kit.run(lambda ledger: ledger.migrate())
    kit.break_inserts()
    outbox = MemoryOutbox()
    for item in records(3):
        outbox.append(payload(item))

    async def failing(ledger: Ledger) -> int:
        writer = LedgerWriter(ledger, outbox=outbox)
        with pytest.raises(StoreUnavailable):
            await writer.flush()
        return len(outbox.items)

    assert kit.run(failing) == 3
    kit.repair_inserts()

    async def recovering(ledger: Ledger) -> tuple[int, int, int]:
        writer = LedgerWriter(ledger, outbox=outbox)
        written = await writer.flush()
        return written, len(outbox.items), await ledger.count()

    assert kit.run(recovering) == (3, 0, 3)


def test_added_records_survive_a_failed_insert(kit: Kit) -> None:
    kit.run(lambda ledger: ledger.migrate())
    kit.break_inserts()

    async def scenario(ledger: Ledger) -> tuple[int, int, int, int]:
        writer = LedgerWriter(ledger, batch_size=2)
        for item in records(3):
            writer.add(item)
        with pytest.raises(StoreUnavailable):
            await writer.flush()
        pending = writer.pending
        await asyncio.to_thread(kit.repair_inserts)
        written = await writer.flush()
        return pending, written, writer.pending, await ledger.count()

    assert kit.run(scenario) == (3, 3, 0, 3)


def test_the_background_task_retries_after_a_failure(kit: Kit) -> None:
    kit.run(lambda ledger: ledger.migrate())
    kit.break_inserts()

    async def scenario(ledger: Ledger) -> tuple[int, int]:
        outbox = MemoryOutbox()
        for item in records(2):
            outbox.append(payload(item))
        writer = LedgerWriter(ledger, outbox=outbox, interval_s=0.01, logger=logging.getLogger("test.ledger"))
        await writer.start()
        await eventually(lambda: writer.failures >= 1)
        assert len(outbox.items) == 2
        await asyncio.to_thread(kit.repair_inserts)
        await eventually(lambda: not outbox.items)
        await writer.close()
        return writer.written, await ledger.count()

    assert kit.run(scenario) == (2, 2)


def test_a_crash_between_commit_and_ack_loses_nothing_and_duplicates_nothing(kit: Kit) -> None:
    async def scenario(ledger: Ledger) -> tuple[int, int, int, int]:
        await ledger.migrate()
        outbox = MemoryOutbox(fail_acks=1)
        for item in records(4):
            outbox.append(payload(item))
        writer = LedgerWriter(ledger, outbox=outbox)
        with pytest.raises(StoreUnavailable):
            await writer.flush()  # inserted and committed, then the ack failed
        left = len(outbox.items)
        await writer.flush()  # read again, inserted again (skipped), acknowledged
        return left, len(outbox.items), writer.duplicates, await ledger.count()

    assert kit.run(scenario) == (4, 0, 4, 4)


def test_an_entry_that_can_never_be_written_is_logged_and_acknowledged(
    kit: Kit, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario(ledger: Ledger) -> tuple[int, int, int]:
        await ledger.migrate()
        outbox = MemoryOutbox()
        outbox.append(payload(records(1, "good")[0]))
        outbox.append(b"{not json")
        outbox.append(orjson.dumps({"request_id": "x", "started_at": 1.0}))  # no endpoint
        outbox.append(payload(records(1, "also-good")[0]))
        writer = LedgerWriter(ledger, outbox=outbox)
        await writer.flush()
        return writer.rejected, len(outbox.items), await ledger.count()

    with caplog.at_level(logging.ERROR, logger="tollgate.ledger"):
        assert kit.run(scenario) == (2, 0, 2)
    assert [message.split(" (")[0] for message in caplog.messages] == [
        "outbox entry 2 rejected",
        "outbox entry 3 rejected",
    ]


def test_drains_the_sqlite_counter_store_outbox_in_the_same_file(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/tollgate.db"

    async def main() -> tuple[int, int]:
        store = SqliteCounterStore.from_url(url)
        ledger = open_ledger(url)
        try:
            await ledger.migrate()
            for item in records(3):
                await store.append_outbox(item.request_id, payload(item))
            writer = LedgerWriter(ledger, outbox=store)
            await writer.flush()
            await writer.close()
            return len(await store.read_outbox(10)), await ledger.count()
        finally:
            await ledger.close()
            await store.close()

    assert asyncio.run(main()) == (0, 3)


def test_payload_round_trip() -> None:
    item = record("rt", "2026-11-01T10:00:00", usage=Usage(1, 2, 3, 4, 5), cost_micros=9)
    item.ttft_ms = 3.5
    assert record_from_payload(payload(item)) == item


def test_payload_with_unknown_fields_and_missing_defaults() -> None:
    data = {
        "request_id": "x",
        "started_at": 5,
        "key_name": None,
        "developer": None,
        "team": "t",
        "repo": None,
        "env": None,
        "endpoint": "/v1/messages",
        "model": "m",
        "usage": {"input_tokens": 7},
        "future": 1,
    }
    assert record_from_payload(orjson.dumps(data)) == UsageRecord(
        request_id="x",
        started_at=5,
        key_name=None,
        developer=None,
        team="t",
        repo=None,
        env=None,
        endpoint="/v1/messages",
        model="m",
        usage=Usage(input_tokens=7),
    )


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"request_id": 5}, "request_id must be a string"),
        ({"team": "a\x00b"}, "team must be a string or null"),
        ({"status": 2**31}, "status must be an integer from 0 to 2147483647"),
        ({"cost_micros": -1}, "cost_micros must be an integer from 0 to 9223372036854775807"),
        ({"usage": Usage(output_tokens=True)}, "usage.output_tokens must be an integer from 0 to 2147483647"),
        ({"started_at": float("nan")}, "started_at must be a finite number"),
        ({"ttft_ms": "1"}, "ttft_ms must be a finite number or null"),
        ({"streamed": 1}, "streamed must be true or false"),
    ],
)
def test_check_record_names_the_fault(change: dict[str, object], problem: str) -> None:
    item = record("bad", "2026-11-01T10:00:00")
    for name, value in change.items():
        setattr(item, name, value)
    assert check_record(item) == problem


def test_a_bad_added_record_is_rejected_not_queued() -> None:
    async def main() -> tuple[int, int]:
        writer = LedgerWriter(Unused())
        item = record("bad", "2026-11-01T10:00:00")
        item.status = -1
        writer.add(item)
        return writer.pending, writer.rejected

    assert asyncio.run(main()) == (0, 1)


def test_records_beyond_max_pending_drop_the_oldest(kit: Kit) -> None:
    async def scenario(ledger: Ledger) -> tuple[int, int]:
        await ledger.migrate()
        writer = LedgerWriter(ledger, batch_size=2, max_pending=3)
        for item in records(5):
            writer.add(item)
        pending, dropped = writer.pending, writer.dropped
        await writer.close()
        return pending, dropped

    assert kit.run(scenario) == (3, 2)
    assert kit.fetch("SELECT request_id FROM usage_ledger ORDER BY request_id") == [("req-2",), ("req-3",), ("req-4",)]


# A writer process that commits its 30th batch and then hangs before acknowledging it, until it is killed.
_STALLING_WRITER = """
import asyncio, pathlib, sys
from tollgate.ledger import open_ledger
from tollgate.ledger.writer import LedgerWriter
from tollgate.stores.sqlite_counters import SqliteCounterStore

url, marker = sys.argv[1], pathlib.Path(sys.argv[2])


class StallingOutbox:
    def __init__(self, store):
        self.store = store
        self.acks = 0

    async def read_outbox(self, max_items):
        return await self.store.read_outbox(max_items)

    async def ack_outbox(self, ids):
        self.acks += 1
        if self.acks == 30:
            marker.write_text("batch 30 committed, not acknowledged")
            await asyncio.sleep(3600)
        await self.store.ack_outbox(ids)


async def main():
    store = SqliteCounterStore.from_url(url)
    ledger = open_ledger(url)
    await ledger.migrate()
    await LedgerWriter(ledger, outbox=StallingOutbox(store), batch_size=10).flush()


asyncio.run(main())
"""


@pytest.mark.slow
def test_a_writer_killed_between_commit_and_ack_loses_and_duplicates_nothing(tmp_path: pathlib.Path) -> None:
    url = f"sqlite:///{tmp_path}/tollgate.db"
    marker = tmp_path / "stalled"

    async def fill() -> None:
        store = SqliteCounterStore.from_url(url)
        try:
            for item in records(1000):
                await store.append_outbox(item.request_id, payload(item))
        finally:
            await store.close()

    asyncio.run(fill())
    process = subprocess.Popen([sys.executable, "-c", _STALLING_WRITER, url, str(marker)])
    try:
        waited = 0.0
        while not marker.exists() and process.poll() is None and waited < 120:
            time.sleep(0.02)
            waited += 0.02
        assert marker.exists(), f"the writer process never stalled (exit status {process.poll()})"
    finally:
        process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL

    async def recover() -> tuple[int, int, int, int, int]:
        store = SqliteCounterStore.from_url(url)
        ledger = open_ledger(url)
        try:
            before = await ledger.count()
            writer = LedgerWriter(ledger, outbox=store, batch_size=100)
            written = await writer.flush()
            return before, written, writer.duplicates, await ledger.count(), len(await store.read_outbox(10))
        finally:
            await ledger.close()
            await store.close()

    # 30 batches of 10 committed, 29 acknowledged: the 30th batch is read again and skipped as duplicates.
    assert asyncio.run(recover()) == (300, 700, 10, 1000, 0)
