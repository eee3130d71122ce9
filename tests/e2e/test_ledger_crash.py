"""Kill the whole gateway mid-load and count: nothing a client saw completed is missing from the ledger.

The real ``tollgate serve --workers 2`` (its own in-process simulated provider per worker, answering after a delay so
requests are in flight) takes concurrent streaming and non-streaming load from two developers for a few seconds;
then its whole process group (server and workers) is SIGKILLed. For the last ``STALL_S`` before the kill the ledger
refuses inserts (a trigger, as a full disk would), so the kill certainly finds requests settled in the counter store
whose ledger entries sit in the outbox, never inserted. Every response a client received in full — a 200 whose body
ended, or a 429 refusal — is noted with its ``x-request-id``. The ledger is repaired, the gateway started again on
the same config (its ledger writer drains the outbox left behind) and stopped gracefully, and then:

- every request id a client saw completed has exactly one ledger row, with the status the client saw;
- the ledger has no duplicate request ids, and no more rows nobody saw than requests were cut off by the kill;
- once the reservation TTL has passed, ``tollgate ledger verify`` finds every counter equal to the ledger, with
  nothing still reserved.

Run on both pairs of stores: Redis counters + PostgreSQL ledger (the fleet), and the embedded default (SQLite
counters and ledger in one file).

What a crash may lose, by design: a request in flight at the kill was reserved but never settled, so it has no
ledger row and charged nothing; its reservation expires after ``reservation_ttl_seconds`` (see
test_budget_concurrency.py). Its client got no complete answer — that is what this test checks. A settled request
whose answer never reached its client does have a row (counted in the bound above).

A stream counts as completed once ``data: [DONE]`` arrived, even if the kill cut the body before it ended: the
gateway settles before it relays the terminating event (``MeteredStream``), so a client that stops reading at
``[DONE]`` (the synchronous openai SDK does) never holds an answer that was not charged. Such streams are also
counted and printed (``done_only``).
"""

from __future__ import annotations

import asyncio
import io
import json
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import redis

from tests.e2e.processes import ServerProcess, kill_group, tollgate_serve
from tests.ledger.support import Kit, ledger_kit
from tollgate.cli_ledger import verify
from tollgate.settings import load_settings
from tollgate.stores.redis_counters import CounterKeys

pytestmark = pytest.mark.slow

ALICE = "tg-alice-" + "a" * 40
BOB = "tg-bob-" + "b" * 42
WORKERS = 2
CLIENTS = 12  # concurrent clients; every fourth is bob's, every other one streams
LOAD_S = 2.5  # load before the kill
STALL_S = 0.7  # for the last STALL_S of the load, the ledger refuses inserts: the outbox fills up
REFUSED_PAUSE_S = 0.02  # a refused client waits this long before its next request (429s are fast)
TTL_S = 2  # reservation_ttl_seconds
BOB_TOKENS = 400  # bob's daily cap: about twenty of his requests, then 429s
DRAIN_TIMEOUT_S = 10.0
MESSAGES = [{"role": "user", "content": "Say hello to the gateway."}]

CONFIG = """
store: {store}
{ledger}
timezone: UTC
reservation_ttl_seconds: {ttl}
providers:
  sim: {{type: simulated}}
models:
  - {{name: gpt-4o-mini, provider: sim, upstream_model: "gpt-4o-mini+sim-latency-100+sim-chunk-delay-10"}}
keys:
  - {{name: alice, key: "file:{tmp}/alice.key", developer: alice, team: payments, env: dev}}
  - {{name: bob, key: "file:{tmp}/bob.key", developer: bob, team: search, env: dev}}
budgets:
  - {{name: "dev-daily-{unique}", scope: developer, window: daily, limit: {{tokens: 10000000}}, mode: reserve,
     overrides: {{bob: {{tokens: {bob}}}}}}}
  - {{name: "team-monthly-{unique}", scope: team, window: monthly, limit: {{usd: 1000}}, mode: reserve}}
  - {{name: "all-weekly-{unique}", scope: global, window: weekly, limit: {{tokens: 100000000, usd: 10000}},
     enforce: soft}}
"""


@dataclass
class Stores:
    """The store URLs under test, the ledger to count rows in, and how to read the outbox's length."""

    store: str
    ledger: Kit
    ledger_line: str  # the config's ``ledger:`` line ("" for the default: the store's SQLite file)

    def outbox_length(self) -> int:
        if self.store.startswith("redis"):
            client = redis.Redis.from_url(self.store)
            try:
                return int(client.xlen(CounterKeys().ledger))
            finally:
                client.close()
        db = sqlite3.connect(self.store.removeprefix("sqlite:///"))
        try:
            return int(db.execute("SELECT count(*) FROM outbox").fetchone()[0])
        finally:
            db.close()

    def ledger_rows(self) -> list[tuple[str, int]]:
        """(request id, status) of every ledger row."""
        return [(str(rid), int(str(status))) for rid, status in self.ledger.fetch(_ROWS)]


_ROWS = "SELECT request_id, status FROM usage_ledger"


@pytest.fixture(params=["redis+postgres", "sqlite"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stores]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/tollgate.db"
        yield Stores(url, Kit("sqlite", url), "")  # no ledger line: the default is the store's file
        return
    redis_url = str(request.getfixturevalue("redis_url"))
    with ledger_kit("postgres", tmp_path, request.getfixturevalue("postgres_dsn")) as kit:
        yield Stores(redis_url, kit, f"ledger: {kit.url}")


def write_config(tmp_path: Path, stores: Stores, unique: str) -> Path:
    (tmp_path / "alice.key").write_text(ALICE)
    (tmp_path / "bob.key").write_text(BOB)
    path = tmp_path / "tollgate.yaml"
    path.write_text(
        CONFIG.format(
            store=stores.store, ledger=stores.ledger_line, tmp=tmp_path, ttl=TTL_S, unique=unique, bob=BOB_TOKENS
        )
    )
    return path


@dataclass
class Seen:
    """What the clients saw."""

    completed: dict[str, int] = field(default_factory=dict)  # request id → 200 or 429, answer received in full
    other: dict[str, int] = field(default_factory=dict)  # complete answers with any other status
    done_only: list[str] = field(default_factory=list)  # streams cut after ``data: [DONE]`` arrived
    cut: int = 0  # requests sent whose answer the kill cut off (or that got no answer at all)
    refused_connections: int = 0  # requests that found the gateway already dead


async def client_loop(client: httpx.AsyncClient, index: int, stop: asyncio.Event, seen: Seen) -> None:
    key = BOB if index % 4 == 0 else ALICE
    stream = index % 2 == 1
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": 10, "stream": stream}
    headers = {"authorization": f"Bearer {key}"}
    while not stop.is_set():
        request_id: str | None = None
        received = b""
        try:
            async with client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as response:
                request_id = response.headers["x-request-id"]
                async for chunk in response.aiter_bytes():
                    received += chunk
        except httpx.ConnectError:
            seen.refused_connections += 1
            return
        except httpx.TransportError:
            seen.cut += 1
            if b"data: [DONE]" in received and request_id is not None:
                seen.done_only.append(request_id)
                seen.completed[request_id] = 200  # the whole answer arrived: it must be in the ledger
            return
        if response.status_code in (200, 429):
            seen.completed[request_id] = response.status_code
        else:
            seen.other[request_id] = response.status_code
        if response.status_code == 429:
            await asyncio.sleep(REFUSED_PAUSE_S)


async def load_then_kill(server: ServerProcess, ledger: Kit) -> Seen:
    """CLIENTS concurrent clients for LOAD_S seconds, the ledger refusing inserts for the last STALL_S of them (so
    the kill finds settled requests in the outbox, never inserted), then SIGKILL the process group under them."""
    seen = Seen()
    stop = asyncio.Event()
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=server.base_url, limits=limits, timeout=30.0) as client:
        tasks = [asyncio.create_task(client_loop(client, index, stop, seen)) for index in range(CLIENTS)]
        await asyncio.sleep(LOAD_S - STALL_S)
        await asyncio.to_thread(ledger.break_inserts)
        await asyncio.sleep(STALL_S)
        stop.set()  # clients start nothing new; what is in flight stays in flight
        kill_group(server)
        await asyncio.gather(*tasks)
    return seen


def wait_for_drain(stores: Stores) -> None:
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while stores.outbox_length() > 0:
        if time.monotonic() > deadline:
            raise AssertionError(f"the restarted gateway left {stores.outbox_length()} outbox entries undrained")
        time.sleep(0.05)


def test_a_gateway_killed_mid_load_loses_no_completed_request(stores: Stores, tmp_path: Path, unique: str) -> None:
    config = write_config(tmp_path, stores, unique)

    # 1. Load, then SIGKILL server and workers together.
    with tollgate_serve(config, WORKERS, tmp_path / "server.log") as server:
        seen = asyncio.run(load_then_kill(server, stores.ledger))
    killed_at = time.time()
    pending = stores.outbox_length()
    rows_at_kill = len(stores.ledger_rows())
    stores.ledger.repair_inserts()

    # 2. Start again on the same config: the writer drains the outbox; then a graceful stop.
    with tollgate_serve(config, WORKERS, tmp_path / "restart.log") as server:
        wait_for_drain(stores)
    assert server.process.returncode == 0, (tmp_path / "restart.log").read_text()

    # 3. Count.
    rows = stores.ledger_rows()
    statuses = dict(rows)
    admitted = sum(status == 200 for status in seen.completed.values())
    refused = sum(status == 429 for status in seen.completed.values())
    print(
        f"\n{stores.store.split(':', 1)[0]}: seen completed {len(seen.completed)} ({admitted} x 200, {refused} x 429),"
        f" cut by the kill {seen.cut} (of which after [DONE] {len(seen.done_only)}), refused connections"
        f" {seen.refused_connections}; at the kill: ledger {rows_at_kill} rows, outbox {pending} entries;"
        f" after the restart: ledger {len(rows)} rows"
    )
    assert not seen.other, seen.other
    assert admitted > 0 and refused > 0 and seen.cut > 0  # both outcomes counted, and the kill did cut requests
    assert pending > 0  # the restart had settled requests to recover
    assert len(statuses) == len(rows), "duplicate request ids in the ledger"
    missing = sorted(rid for rid in seen.completed if rid not in statuses)
    assert not missing, f"{len(missing)} requests a client saw completed have no ledger row: {missing[:5]}"
    assert {rid: statuses[rid] for rid in seen.completed} == seen.completed
    unseen = len(rows) - len(seen.completed)
    assert 0 <= unseen <= seen.cut, "ledger rows nobody saw, beyond the requests the kill cut off"

    # 4. After the reservation TTL, every counter equals the ledger and nothing is reserved.
    time.sleep(max(0.0, killed_at + TTL_S + 0.5 - time.time()))
    out = io.StringIO()
    code = verify(load_settings(config), as_json=True, out=out)
    report = json.loads(out.getvalue())
    assert code == 0, out.getvalue()
    assert report["ok"] is True and report["differences"] == 0
    counters = {(c["budget"].rsplit("-", 1)[0], c["scope_value"]): c for c in report["counters"]}
    assert sorted(counters) == [
        ("all-weekly", "*"),
        ("dev-daily", "alice"),
        ("dev-daily", "bob"),
        ("team-monthly", "payments"),
        ("team-monthly", "search"),
    ]
    assert all(c["reserved"] == {"tokens": 0, "cost_micros": 0} for c in counters.values())
    assert counters[("dev-daily", "bob")]["counter"]["tokens"] <= BOB_TOKENS
