"""Benchmark: how many rows per second the ledger writer moves from an outbox into the ledger, on SQLite and
PostgreSQL, with and without the daily rollup maintained by the ledger's trigger.

Usage: ``.venv/bin/python -m bench.ledger_writer [--rows 100000] [--existing 200000] [--runs 3]
[--backends sqlite,postgres] [--rollup] [--ids sequential|random|time] [--postgres DSN]``. Not a test; numbers of
record: bench/results-ledger.md.

A fresh ledger first gets ``--existing`` rows (the bulk path of ``bench/ledger_reports.py``), then ``--rows`` outbox
entries of the same generated kind (one month, worst-case attribution spread) are drained by one
``LedgerWriter.flush()`` in batches of 500 (the default), timed. With ``--rollup`` the ledger is opened with the
bench's time zone, so ``migrate()`` builds the rollup and every insert also updates it; without, the rollup is never
built and the trigger does nothing (a tollgate without the rollup behaves the same: run this file with
``PYTHONPATH=<old checkout>/src`` to measure one). Median of ``--runs``, each on a new ledger.

``--ids`` chooses the new entries' request ids: ``sequential`` (``writer-00000001``…, the default), ``random`` (96
random bits, the gateway's ids before decision 0055) or ``time`` (milliseconds then 80 random bits, as the gateway
makes them now, at three requests per millisecond).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from bench.ledger_reports import TIMEZONE, generate, prepare
from tollgate.ledger import open_ledger, schema
from tollgate.ledger.writer import LedgerWriter, OutboxItem
from tollgate.types import Usage, UsageRecord

USAGE_COLUMNS = ("input_tokens", "cached_input_tokens", "cache_write_tokens", "output_tokens", "reasoning_tokens")


@dataclass
class ListOutbox:
    """An in-memory outbox: entries stay until acknowledged."""

    items: list[OutboxItem] = field(default_factory=list)

    async def read_outbox(self, max_items: int) -> list[OutboxItem]:
        return self.items[:max_items]

    async def ack_outbox(self, ids: Sequence[str]) -> None:
        gone = set(ids)
        self.items = [item for item in self.items if item.id not in gone]


IDS = ("sequential", "random", "time")
TIME_IDS_FROM_MS = 1_795_000_000_000  # 2026-11-17, after every generated row


def request_id(kind: str, index: int, rng: random.Random) -> str:
    if kind == "sequential":
        return f"writer-{index:08d}"
    if kind == "random":
        return f"req_{rng.getrandbits(96):024x}"
    return f"req_{TIME_IDS_FROM_MS + index // 3:012x}{rng.getrandbits(80):020x}"


def outbox_entries(count: int, ids: str = "sequential") -> list[OutboxItem]:
    """``count`` outbox entries (what settle writes) with request ids the generated ledger does not hold."""
    names = schema.COLUMN_NAMES
    rng = random.Random(20261129)
    entries = []
    for index, row in enumerate(generate(count)):
        values: dict[str, Any] = dict(zip(names, row, strict=True))
        usage = Usage(**{name: values.pop(name) for name in USAGE_COLUMNS})
        values["request_id"] = request_id(ids, index, rng)
        record = UsageRecord(**values, usage=usage)
        entries.append(OutboxItem(str(index), orjson.dumps(record)))
    return entries


async def drain(url: str, entries: list[OutboxItem], *, rollup: bool) -> float:
    """Rows per second of one flush of ``entries`` into the ledger at ``url``."""
    ledger = open_ledger(url, timezone=TIMEZONE) if rollup else open_ledger(url)
    try:
        await ledger.migrate()
        outbox = ListOutbox(list(entries))
        writer = LedgerWriter(ledger, outbox=outbox)
        started = time.perf_counter()
        written = await writer.flush()
        elapsed = time.perf_counter() - started
        assert written == len(entries) and not outbox.items
        return written / elapsed
    finally:
        await ledger.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--existing", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--rollup", action="store_true", help="build the rollup, so every insert updates it")
    parser.add_argument("--ids", choices=IDS, default="sequential", help="the new entries' request ids")
    parser.add_argument(
        "--postgres", default=os.environ.get("TOLLGATE_BENCH_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
    )
    args = parser.parse_args()
    entries = outbox_entries(args.rows, args.ids)
    for backend in args.backends.split(","):
        rates = []
        for _ in range(args.runs):
            url, cleanup = prepare(backend, argparse.Namespace(rows=args.existing, postgres=args.postgres))
            try:
                rates.append(asyncio.run(drain(url, entries, rollup=args.rollup)))
            finally:
                cleanup()
        runs = ", ".join(f"{rate:,.0f}" for rate in rates)
        rollup = "on" if args.rollup else "off"
        print(f"{backend}: rollup {rollup}, ids {args.ids}: median {statistics.median(rates):,.0f} rows/s ({runs})")


if __name__ == "__main__":
    main()
