"""Benchmark: CPU per EVALSHA call of redis-py (``redis.asyncio``, the pool the store used) against ``resp.RespClient``.

Usage: ``.venv/bin/python -m bench.clients_redis [--url redis://127.0.0.1:6379/13] [--calls 20000]
[--concurrency 16] [--runs 3]``. Not a test; numbers of record: docs/decisions/0015-own-redis-client.md.

Every call runs ``stores/lua/reserve.lua`` by SHA on 3 post-mode claims (nothing is held, limits out of reach), the
command the gateway sends on every admitted request, from ``--concurrency`` tasks on one event loop. Measured per
call, the median of ``--runs``: CPU of this process (``time.process_time``: packing, writing, parsing, futures,
the event loop; Redis's own CPU is another process) and wall time. Rows: redis-py, the own client, and the own
client behind ``RedisCounterStore.reserve`` (key encoding cache, reply to ``ReserveOutcome``), each on uvloop (what
the gateway runs) and on the default asyncio loop. Keys go under the hash tag ``{tgbench}`` and are deleted after;
use a database no test flushes (the default, 13).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import redis
import redis.asyncio
import uvloop

from tollgate.budgets.model import Claim, CounterKey, Reservation
from tollgate.stores.redis_counters import LuaScript, RedisCounterStore
from tollgate.stores.resp import RespClient

PREFIX = "tgbench"
NOW = 1_900_000_000.0
DAY = 1_899_936_000
CLAIMS = [
    Claim(CounterKey(budget, value, DAY), DAY + 40 * 86_400, 10**12, 10**15, False, "hard")
    for budget, value in (("dev-daily", "bench-dev"), ("team-monthly", "bench-team"), ("env-daily", "dev"))
]
RESERVATION = Reservation("bench-request-0001", 1200, 3400, NOW + 900)

Call = Callable[[], Awaitable[Any]]


def evalsha_arguments(store: RedisCounterStore) -> tuple[list[str], list[str | int]]:
    """The reserve script's keys and arguments for ``CLAIMS``, as the store used to build them per call."""
    keys = [name for claim in CLAIMS for name in store.keys.of_claim(claim)]
    args: list[str | int] = [repr(NOW), "bench-request-0001|1200|3400", 1200, 3400, repr(NOW + 900)]
    for claim in CLAIMS:
        args += [claim.counter.scope_value, claim.expires_at, claim.cap_tokens or -1, claim.cap_micros or -1, 0, 1]
    return keys, args


async def measure(call: Call, calls: int, concurrency: int) -> tuple[float, float]:
    """CPU and wall seconds for ``calls`` calls spread over ``concurrency`` tasks."""
    left = calls

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await call()

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.process_time() - cpu, time.perf_counter() - wall


async def redis_py_calls(url: str) -> tuple[Call, Callable[[], Awaitable[None]]]:
    pool = redis.asyncio.BlockingConnectionPool.from_url(url, max_connections=64, timeout=10.0)
    client = redis.asyncio.Redis.from_pool(pool)
    script = LuaScript("reserve.lua")
    keys, args = evalsha_arguments(RedisCounterStore(RespClient.from_url(url), PREFIX))
    await client.script_load(script.source)

    def call() -> Awaitable[Any]:
        return client.evalsha(script.sha, len(keys), *keys, *args)

    return call, client.aclose


async def own_client_calls(url: str) -> tuple[Call, Callable[[], Awaitable[None]]]:
    client = RespClient.from_url(url)
    script = LuaScript("reserve.lua")
    keys, args = evalsha_arguments(RedisCounterStore(client, PREFIX))
    await client.execute("SCRIPT", "LOAD", script.source)

    def call() -> Awaitable[Any]:
        return client.submit(script.evalsha.pack(len(keys), *keys, *args))

    return call, client.close


async def store_calls(url: str) -> tuple[Call, Callable[[], Awaitable[None]]]:
    store = RedisCounterStore.from_url(url, PREFIX)

    def call() -> Awaitable[Any]:
        return store.reserve(CLAIMS, RESERVATION, NOW)

    return call, store.close


SUBJECTS = {"redis-py 8.1 (pool)": redis_py_calls, "own client": own_client_calls, "own client + store": store_calls}


async def one_subject(name: str, url: str, calls: int, concurrency: int, runs: int) -> tuple[float, float]:
    call, close = await SUBJECTS[name](url)
    try:
        await measure(call, min(2000, calls), concurrency)  # warm up: connections open, caches filled
        results = [await measure(call, calls, concurrency) for _ in range(runs)]
    finally:
        await close()
    cpu = statistics.median(r[0] for r in results)
    wall = statistics.median(r[1] for r in results)
    return cpu / calls * 1e6, wall / calls * 1e6


def table(rows: Sequence[tuple[str, str, float, float]]) -> str:
    lines = ["| client | loop | CPU µs/call | wall µs/call |", "|---|---|---:|---:|"]
    lines += [f"| {name} | {loop} | {cpu:.1f} | {wall:.1f} |" for name, loop, cpu, wall in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--runs", type=int, default=3)
    options = parser.parse_args()
    rows = []
    for loop_name, runner in (("uvloop", uvloop.run), ("asyncio", asyncio.run)):
        for name in SUBJECTS:
            cpu, wall = runner(one_subject(name, options.url, options.calls, options.concurrency, options.runs))
            rows.append((name, loop_name, cpu, wall))
    cleanup = redis.Redis.from_url(options.url)
    keys = list(cleanup.scan_iter(match="{" + PREFIX + "}:*"))
    if keys:
        cleanup.delete(*keys)
    cleanup.close()
    print(f"{options.calls} EVALSHA reserve.lua (3 claims) per run, {options.concurrency} concurrent, median of "
          f"{options.runs} runs")  # fmt: skip
    print(table(rows))


if __name__ == "__main__":
    main()
