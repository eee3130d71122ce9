"""Proof under concurrency and after a crash: the real ``tollgate serve --workers 4`` (a subprocess, its own
in-process simulated provider per worker) holds a hard token budget exactly, on SQLite and on Redis counters.

The prompt used here is estimated at 24 tokens (14 + ``max_tokens`` 10) and billed at 17 by the simulator.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.processes import ServerProcess, running, tollgate_serve
from tollgate.services.admission import Admission, BudgetStatus
from tollgate.settings import load_settings
from tollgate.stores import open_counter_store

pytestmark = pytest.mark.slow

ALICE = "tg-alice-" + "a" * 40
BOB = "tg-bob-" + "b" * 42
WORKERS = 4
SENT = 400
LIMIT = 4_800  # 199 to 282 of the 400 requests (24 tokens reserved, 17 used each)
CRASH_LIMIT = 1_000
MESSAGES = [{"role": "user", "content": "Say hello to the gateway."}]

CONFIG = """
store: {store}
ledger: sqlite:///{tmp}/ledger.db
timezone: UTC
reservation_ttl_seconds: {ttl}
providers:
  sim: {{type: simulated}}
models:
  - {{name: gpt-4o-mini, provider: sim}}
  - {{name: stuck, provider: sim, upstream_model: "gpt-4o-mini+sim-latency-5000"}}
keys:
  - {{name: alice, key: "file:{tmp}/alice.key", developer: alice, team: payments, env: dev}}
  - {{name: bob, key: "file:{tmp}/bob.key", developer: bob, team: search, env: dev}}
budgets:
  - {{name: "dev-daily-{unique}", scope: developer, window: daily, limit: {{tokens: {limit}}}, mode: reserve,
     overrides: {{bob: {{tokens: {crash_limit}}}}}}}
"""


@pytest.fixture(params=["sqlite", "redis"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "redis":
        return str(request.getfixturevalue("redis_url"))
    return f"sqlite:///{tmp_path}/counters.db"


def write_config(tmp_path: Path, store_url: str, ttl: int, unique: str) -> Path:
    path = tmp_path / "tollgate.yaml"
    (tmp_path / "alice.key").write_text(ALICE)
    (tmp_path / "bob.key").write_text(BOB)
    text = CONFIG.format(store=store_url, tmp=tmp_path, ttl=ttl, unique=unique, limit=LIMIT, crash_limit=CRASH_LIMIT)
    path.write_text(text)
    return path


@pytest.fixture
def serve(
    tmp_path: Path, store_url: str, unique: str, request: pytest.FixtureRequest
) -> Iterator[tuple[ServerProcess, Path]]:
    # A budget name of its own, so its Redis keys cannot meet those of another test run sharing db 15.
    config = write_config(tmp_path, store_url, ttl=request.param, unique=unique)
    with tollgate_serve(config, WORKERS, tmp_path / "server.log") as server:
        yield server, config


def status(config: Path, developer: str, now: float | None = None) -> BudgetStatus | None:
    """The developer's row of the one budget, read through a store of its own (as ``tollgate budgets status`` does)."""
    settings = load_settings(config)

    async def read() -> list[BudgetStatus]:
        store = open_counter_store(settings.store)
        try:
            return await Admission(settings, store).status(now)
        finally:
            await store.close()

    rows = [row for row in asyncio.run(read()) if row.scope_value == developer]
    assert len(rows) <= 1, rows
    return rows[0] if rows else None  # None: no counter yet


def held(config: Path, developer: str, now: float | None = None) -> tuple[int, int]:
    """(used, reserved) tokens of the developer's counter at ``now`` (default: now), (0, 0) before it exists."""
    row = status(config, developer, now)
    return (0, 0) if row is None else (row.used_tokens, row.reserved_tokens)


async def fire(base_url: str, count: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": 10}
    headers = {"authorization": f"Bearer {ALICE}"}
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30.0) as client:
        start = asyncio.Event()

        async def one() -> httpx.Response:
            await start.wait()
            return await client.post("/v1/chat/completions", json=body, headers=headers)

        tasks = [asyncio.create_task(one()) for _ in range(count)]
        await asyncio.sleep(0)
        start.set()
        return await asyncio.gather(*tasks)


@pytest.mark.parametrize("serve", [900], indirect=True)
def test_concurrent_requests_never_overspend_and_leave_no_reservation(serve: tuple[ServerProcess, Path]) -> None:
    server, config = serve
    responses = asyncio.run(fire(server.base_url, SENT))

    statuses = [r.status_code for r in responses]
    admitted = [r for r in responses if r.status_code == 200]
    rejected = [r for r in responses if r.status_code == 429]
    assert len(admitted) + len(rejected) == SENT, sorted(set(statuses))
    assert all(r.json()["error"]["type"] == "budget_exceeded" for r in rejected)
    spent = sum(r.json()["usage"]["total_tokens"] for r in admitted)
    row = status(config, "alice")
    assert row is not None
    print(
        f"\n{config.read_text().split()[1]}: admitted {len(admitted)}, rejected {len(rejected)}, "
        f"spent {spent} of {LIMIT}, counter used {row.used_tokens}, reserved {row.reserved_tokens}"
    )
    assert spent <= LIMIT
    assert row.used_tokens == spent
    assert row.reserved_tokens == 0
    # The same through the command line an operator would use.
    cli = subprocess.run(
        [sys.executable, "-m", "tollgate.cli", "budgets", "status", "--json", "--config", str(config)],
        capture_output=True,
        timeout=30,
        check=True,
    )
    (alice,) = [b for b in json.loads(cli.stdout)["budgets"] if b["scope_value"] == "alice"]
    assert alice["budget"].startswith("dev-daily-") and alice["enforce"] == "hard" and alice["mode"] == "reserve"
    assert alice["used"]["tokens"] == spent and alice["reserved"]["tokens"] == 0
    assert alice["limit"]["tokens"] == LIMIT
    # Filled, not starved: a refusal means used + reserved + 24 > LIMIT at that moment, and every reservation of 24
    # later settled at 17; so at least (LIMIT - 24) * 17 / 24 was spent and at least (LIMIT - 24) / 24 admitted.
    assert spent >= (LIMIT - 24) * 17 // 24
    assert len(admitted) >= (LIMIT - 24) // 24 and len(rejected) > 0


def raw_request(port: int, key: str, max_tokens: int) -> socket.socket:
    """Send a chat completion on a socket of our own (so its local port identifies the connection); not read."""
    body = (
        b'{"model": "stuck", "max_tokens": %d, "messages": [{"role": "user", "content": "Say hello to the gateway."}]}'
        % max_tokens
    )
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    sock.sendall(head.encode() + body)
    return sock


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout} s: {what}")
        time.sleep(0.05)


def chat(server: ServerProcess, key: str, max_tokens: int) -> httpx.Response:
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": max_tokens}
    return httpx.post(
        server.base_url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}, timeout=10
    )


@pytest.mark.parametrize("serve", [2], indirect=True)
def test_a_killed_worker_reservation_expires_and_the_budget_is_whole_again(serve: tuple[ServerProcess, Path]) -> None:
    server, config = serve
    full = CRASH_LIMIT - 14  # max_tokens whose estimate (14 + max_tokens) is the whole budget
    # 1. A request that reserves 914 of bob's 1,000 tokens and hangs upstream for 5 s.
    sock = raw_request(server.port, BOB, max_tokens=900)
    try:
        wait_until(lambda: held(config, "bob") == (0, 914), 5, "the reservation is held")
        # 2. While it is held, a request that needs the whole budget is refused.
        assert chat(server, BOB, full).status_code == 429
        # 3. SIGKILL the worker serving it: no settle will ever run.
        worker = server.worker_holding(sock.getsockname()[1])
        assert worker is not None, "no worker holds the connection"
        os.kill(worker, signal.SIGKILL)
        killed_at = time.time()
        assert sock.recv(1) == b""  # the connection died with the worker, unanswered
    finally:
        sock.close()
    # The worker is gone and the reservation with it still stands (read as of the kill, before its deadline).
    wait_until(lambda: not running(worker), 5, "the killed worker is dead")
    assert held(config, "bob", now=killed_at) == (0, 914)
    # 4. After the 2 s TTL the budget is whole again, with no job and no repair.
    wait_until(lambda: held(config, "bob") == (0, 0), 10, "the reservation expires")
    admitted = chat(server, BOB, full)
    assert admitted.status_code == 200, admitted.text
    assert admitted.headers["x-tollgate-budget-remaining-tokens"] == "0"
