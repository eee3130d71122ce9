"""Benchmark: what one round trip to another process costs on this machine, on the same core and across cores.

Usage: ``.venv/bin/python -m bench.wakeups [--pings 5000]``. Not a test; the numbers of record are in
``bench/results.md`` (the 1-connection latency section).

The load benchmark pins the gateway to core 0 and wrk, the simulator and Redis to core 1, so a request through the
gateway crosses cores three times (wrk → gateway, gateway → Redis, gateway → simulator) where wrk → simulator direct
stays on core 1. At one connection every crossing wakes an idle core, which a virtual machine pays dearly for. This
script measures that price with the gateway's own Redis client: ``PING`` round trips from a client pinned to core 0
to a ``redis-server`` pinned to core 1, then to one pinned to core 0, medians and p90 of ``--pings`` each.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence

from bench.run import free_port
from tollgate.stores.resp import RespClient

CLIENT_CORE = "0"


async def _round_trips(port: int, pings: int) -> list[float]:
    client = RespClient.from_url(f"redis://127.0.0.1:{port}/0")
    try:
        await client.execute("PING")  # connect
        times = []
        for _ in range(pings):
            began = time.perf_counter()
            await client.execute("PING")
            times.append((time.perf_counter() - began) * 1e6)
        return times
    finally:
        await client.close()


def _measure(server_core: str, pings: int) -> tuple[float, float]:
    port = free_port()
    server = subprocess.Popen(
        ["taskset", "-c", server_core, "redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        for _ in range(100):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.1):
                    break
            except OSError:
                time.sleep(0.05)
        times = asyncio.run(_round_trips(port, pings))
        return statistics.median(times), statistics.quantiles(times, n=10)[-1]
    finally:
        server.terminate()
        server.wait(timeout=10)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.wakeups", description=__doc__.split("\n\n")[0])
    parser.add_argument("--pings", type=int, default=5000)
    args = parser.parse_args(argv)
    if os.environ.get("TOLLGATE_WAKEUPS_PINNED") != "1":  # run the client itself on CLIENT_CORE
        env = {**os.environ, "TOLLGATE_WAKEUPS_PINNED": "1"}
        command = ["taskset", "-c", CLIENT_CORE, sys.executable, "-m", "bench.wakeups", *(argv or sys.argv[1:])]
        return subprocess.run(command, env=env, check=False).returncode
    print("| redis-server on | client on | PING round trip p50 µs | p90 µs |")
    print("|---|---|---:|---:|")
    for server_core, label in (("1", "core 1 (another core)"), (CLIENT_CORE, "core 0 (the same core)")):
        p50, p90 = _measure(server_core, args.pings)
        print(f"| {label} | core {CLIENT_CORE} | {p50:.1f} | {p90:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
