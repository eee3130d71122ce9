"""Benchmark: reserve + settle pairs per second against a counter store, the way the gateway's hot path uses it.

Usage: ``.venv/bin/python -m bench.sqlite_store [--pairs 5000] [--concurrency 16] [--claims 3] [--runs 3]
[--url sqlite:///…|redis://…]``. Not a test; numbers of record: docs/decisions/0019-sqlite-group-commit.md.

Each simulated request reserves on ``--claims`` hard counters (developer, team, env: all match every request, limits
far out of reach, like the load benchmark's configuration), then settles with a ~400-byte ledger payload, as
``--concurrency`` tasks on one event loop. Without ``--url`` each run gets a new SQLite file in a temp directory.
Reported: the median of ``--runs`` for pairs/s and store ops/s (2 per pair), p50/p99 of one pair, and — when the
store counts them — transactions (``batches``) per run. To measure another version of the store, run this file with
``PYTHONPATH=<other checkout>/src``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from dataclasses import dataclass

from tollgate.budgets.model import Claim, CounterKey, Reservation
from tollgate.stores import open_counter_store

NOW = 1_900_000_000.0
DAY = 1_899_936_000
MONTH = 1_898_553_600
EXPIRES = DAY + 40 * 86_400
PAYLOAD = b'{"request_id":"%s","model":"gpt-4o-mini","usage":{"input_tokens":812,"output_tokens":120}}' + b" " * 300
BUDGETS = (("dev-daily", "bench-dev", DAY), ("team-monthly", "bench-team", MONTH), ("env-daily", "dev", DAY))


@dataclass(frozen=True)
class Run:
    seconds: float
    latencies: list[float]
    batches: int | None


def make_claims(count: int) -> list[Claim]:
    names = [BUDGETS[i % len(BUDGETS)] for i in range(count)]
    return [
        Claim(
            CounterKey(budget if i < len(BUDGETS) else f"{budget}-{i}", value, start),
            EXPIRES,
            10**12,
            10**15,
            True,
            "hard",
        )
        for i, (budget, value, start) in enumerate(names)
    ]


async def one_run(url: str, pairs: int, concurrency: int, claims: list[Claim]) -> Run:
    store = open_counter_store(url)
    latencies: list[float] = []
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        while next_index < pairs:
            index = next_index
            next_index += 1
            rid = f"req-{index:08d}"
            reservation = Reservation(rid, 2000, 3000, NOW + 900)
            started = time.perf_counter()
            outcome = await store.reserve(claims, reservation, NOW)
            assert outcome.refused is None
            await store.settle(
                claims, reservation, tokens=932, micros=1400, now=NOW, request_id=rid, payload=PAYLOAD % rid.encode()
            )
            latencies.append(time.perf_counter() - started)

    try:
        await store.ping()  # connect and create the schema outside the timed part
        before = getattr(store, "batches", None)
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
        after = getattr(store, "batches", None)
    finally:
        await store.close()
    batches = after - before if isinstance(after, int) and isinstance(before, int) else None
    return Run(seconds, latencies, batches)


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--claims", type=int, default=3)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--url", default=None, help="a store URL (default: a new SQLite file per run)")
    args = parser.parse_args()
    claims = make_claims(args.claims)
    runs = []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            url = args.url or f"sqlite:///{tmp}/counters.db"
            runs.append(asyncio.run(one_run(url, args.pairs, args.concurrency, claims)))
    rates = [args.pairs / run.seconds for run in runs]
    p50 = statistics.median(quantile(run.latencies, 0.50) for run in runs) * 1000
    p99 = statistics.median(quantile(run.latencies, 0.99) for run in runs) * 1000
    batches = [run.batches for run in runs if run.batches is not None]
    print(
        f"store: {args.url or 'sqlite (temp file)'}; {args.pairs} pairs x {args.runs} runs, "
        f"concurrency {args.concurrency}, {args.claims} claims"
    )
    print(f"pairs/s: {statistics.median(rates):,.0f} (runs: {', '.join(f'{r:,.0f}' for r in rates)})")
    print(f"ops/s:   {2 * statistics.median(rates):,.0f}")
    print(f"pair latency p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    if batches:
        ops = 2 * args.pairs
        median = statistics.median(batches)
        print(f"transactions per run: {median:,.0f} for {ops:,} ops ({ops / median:.1f} ops per transaction)")


if __name__ == "__main__":
    main()
