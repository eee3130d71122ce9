"""Benchmark: CPU per upstream request of aiohttp (as the gateway used it), httpx and the own HTTP/1.1 client.

Usage: ``.venv/bin/python -m bench.clients_http [--requests 10000] [--concurrency 16] [--runs 3]
[--clients aiohttp,httpx,own]``. Not a test; numbers of record: docs/decisions/0016-own-upstream-http-client.md.

Every request is what the gateway sends per non-streaming chat completion: a POST of an 810-byte JSON body with the
gateway's upstream headers, answered by a 532-byte JSON body with content-length, read whole, from
``--concurrency`` tasks on one event loop, over pooled keep-alive connections. The server is a minimal HTTP/1.1
server (uvloop + httptools, below) in a child process pinned to core 1; this process is pinned to core 0. Measured
per request, the median of ``--runs``: CPU of this process (``time.process_time``: building the request, writing,
parsing, pooling, futures, the event loop) and wall time. Rows: aiohttp 3 (``ClientSession`` configured as
``upstream/client.py`` configured it before decision 0016), httpx (``AsyncClient``), the own client behind
``UpstreamClient`` (what the gateway calls) and bare ``Http1Client``; each on uvloop (what the gateway runs) and on
the default asyncio loop.
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
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp
import httptools
import httpx
import orjson
import uvloop

from tollgate.upstream.client import Timeouts, UpstreamClient
from tollgate.upstream.http1 import Http1Client

CLIENT_CORE = 0
SERVER_CORE = 1
TIMEOUTS = Timeouts(10.0, 60.0)
REQUEST = orjson.dumps(
    {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are a careful assistant that answers in one short paragraph. " * 3},
            {"role": "user", "content": "Summarise the trade-offs of HTTP keep-alive for an API gateway. " * 4},
            {"role": "assistant", "content": "Keep-alive saves handshakes but needs idle expiry. " * 2},
            {"role": "user", "content": "And what about the race when the server closes an idle connection?"},
        ],
        "max_tokens": 256,
        "stream": False,
    }
)
HEADERS = {
    "content-type": "application/json",
    "accept-encoding": "identity",
    "accept": "application/json",
    "authorization": "Bearer sk-bench-0123456789abcdef0123456789abcdef",
}
ANSWER = orjson.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1_900_000_000,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Keep-alive connections save a handshake per request. " * 5,
                },
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 152, "completion_tokens": 48, "total_tokens": 200},
    }
)
RESPONSE = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-request-id: req_bench\r\n"
    b"openai-processing-ms: 12\r\ncontent-length: %d\r\n\r\n%s" % (len(ANSWER), ANSWER)
)


# -- the server (child process)


class _ServerProtocol(asyncio.Protocol):
    """Answers every request with ``RESPONSE``, keep-alive."""

    def __init__(self) -> None:
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            if self._transport is not None:
                self._transport.close()

    def on_message_complete(self) -> None:
        if self._transport is not None:
            self._transport.write(RESPONSE)


def serve(port: int) -> None:
    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(_ServerProtocol, "127.0.0.1", port, backlog=1024)
        await server.serve_forever()

    uvloop.run(main())


# -- the clients

Call = Callable[[], Awaitable[Any]]
Subject = Callable[[str], Awaitable[tuple[Call, Callable[[], Awaitable[None]]]]]


async def aiohttp_client(url: str) -> tuple[Call, Callable[[], Awaitable[None]]]:
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=30.0, ttl_dns_cache=60, enable_cleanup_closed=True)
    session = aiohttp.ClientSession(
        connector=connector, auto_decompress=False, skip_auto_headers=("User-Agent",), trust_env=False
    )

    async def call() -> bytes:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=TIMEOUTS.connect_s, sock_read=TIMEOUTS.read_s)
        response = await session.request(
            "POST", url, data=REQUEST, headers=dict(HEADERS), timeout=timeout, allow_redirects=False
        )
        try:
            return await response.read()
        finally:
            response.release()

    return call, session.close


async def httpx_client(url: str) -> tuple[Call, Callable[[], Awaitable[None]]]:
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None, keepalive_expiry=30.0)
    client = httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(60.0, connect=10.0), trust_env=False)

    async def call() -> bytes:
        response = await client.post(url, content=REQUEST, headers=HEADERS)
        return response.content

    return call, client.aclose


async def own_upstream_client(url: str) -> tuple[Call, Callable[[], Awaitable[None]]]:
    client = UpstreamClient()

    async def call() -> bytes:
        response = await client.send(url, HEADERS, REQUEST, TIMEOUTS)
        return await response.read()

    return call, client.close


async def own_http1_client(url: str) -> tuple[Call, Callable[[], Awaitable[None]]]:
    client = Http1Client()

    async def call() -> bytes:
        response = await client.request(url, HEADERS, REQUEST, connect_s=10.0, read_s=60.0)
        return await response.read()

    async def close() -> None:
        client.close()

    return call, close


SUBJECTS: dict[str, Subject] = {
    f"aiohttp {aiohttp.__version__}": aiohttp_client,
    f"httpx {httpx.__version__}": httpx_client,
    "own: UpstreamClient": own_upstream_client,
    "own: Http1Client": own_http1_client,
}


async def measure(call: Call, requests: int, concurrency: int) -> tuple[float, float]:
    """CPU and wall seconds for ``requests`` calls spread over ``concurrency`` tasks."""
    left = requests

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            body = await call()
            assert body == ANSWER

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.process_time() - cpu, time.perf_counter() - wall


async def one_subject(subject: Subject, url: str, requests: int, concurrency: int, runs: int) -> tuple[float, float]:
    call, close = await subject(url)
    try:
        await measure(call, min(2000, requests), concurrency)  # warm up: connections open, caches filled
        results = [await measure(call, requests, concurrency) for _ in range(runs)]
    finally:
        await close()
    cpu = statistics.median(r[0] for r in results)
    wall = statistics.median(r[1] for r in results)
    return cpu / requests * 1e6, wall / requests * 1e6


def table(rows: Sequence[tuple[str, str, float, float]]) -> str:
    lines = ["| client | loop | CPU µs/request | wall µs/request |", "|---|---|---:|---:|"]
    lines += [f"| {name} | {loop} | {cpu:.1f} | {wall:.1f} |" for name, loop, cpu, wall in rows]
    return "\n".join(lines)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("the bench server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--clients", default="aiohttp,httpx,own", help="which rows, by the start of their name")
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)  # the child process
    options = parser.parse_args()
    if options.serve:
        serve(options.serve)
        return
    port = free_port()
    two_cores = len(os.sched_getaffinity(0)) >= 2
    prefix = ["taskset", "-c", str(SERVER_CORE)] if two_cores else []
    server = subprocess.Popen([*prefix, sys.executable, "-m", "bench.clients_http", "--serve", str(port)])
    try:
        wait_listening(port)
        if two_cores:
            os.sched_setaffinity(0, {CLIENT_CORE})
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        rows = []
        for loop_name, runner in (("uvloop", uvloop.run), ("asyncio", asyncio.run)):
            for name, subject in SUBJECTS.items():
                if not name.startswith(tuple(options.clients.split(","))):
                    continue
                cpu, wall = runner(one_subject(subject, url, options.requests, options.concurrency, options.runs))
                rows.append((name, loop_name, cpu, wall))
    finally:
        server.terminate()
        server.wait(timeout=10)
    layout = "client on core 0, server on core 1" if two_cores else "unpinned"
    print(
        f"{options.requests} POSTs ({len(REQUEST)} B up, {len(ANSWER)} B down) per run, {options.concurrency} "
        f"concurrent, median of {options.runs} runs; {layout}"
    )
    print(table(rows))


if __name__ == "__main__":
    main()
