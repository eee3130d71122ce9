"""End to end: budgets enforced by the real gateway (in-process, over HTTP) against the simulator, seen through the
official ``openai`` and ``anthropic`` SDKs — on SQLite and on Redis counters.

Numbers used below (the simulator's answers are deterministic): the prompt ``Say hello to the gateway.`` is
estimated at 14 input tokens and billed by the simulator as 7; with ``max_tokens=10`` a request is estimated at 24
tokens and uses 17 (7 in + 10 out).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import anthropic
import openai
import pytest
import redis

from tests.servers import RunningGateway, running_gateway, wait_for
from tollgate.services.admission import Admission, BudgetStatus
from tollgate.simulator import Simulator, SimulatorServer
from tollgate.stores import open_counter_store

PROVIDER_KEY = "sk-sim-provider-secret"
ALICE = "tg-alice-" + "a" * 40
CI = "tg-ci-" + "i" * 43
ENVIRON = {"SIM_KEY": PROVIDER_KEY, "ALICE_KEY": ALICE, "CI_KEY": CI}
MESSAGES = [{"role": "user", "content": "Say hello to the gateway."}]
ESTIMATE = 24  # tokens reserved for MESSAGES with max_tokens=10
USED = 17  # tokens the simulator bills for MESSAGES with max_tokens=10

HEAD = """
store: {store}
ledger: sqlite:///{tmp}/ledger.db
timezone: UTC
providers:
  sim-openai: {{type: openai-compatible, base_url: "{sim}/v1", api_key: env:SIM_KEY}}
  sim-anthropic: {{type: anthropic, base_url: "{sim}", api_key: env:SIM_KEY}}
models:
  - {{name: gpt-4o-mini, provider: sim-openai}}
  - {{name: fast, provider: sim-openai, upstream_model: gpt-4o-mini}}
  - {{name: claude-haiku-4-5, provider: sim-anthropic}}
  - {{name: broken, provider: sim-openai, upstream_model: "gpt-4o-mini+sim-status-500"}}
keys:
  - {{name: alice, key: env:ALICE_KEY, developer: alice, team: payments, env: dev}}
  - {{name: ci, key: env:CI_KEY, team: payments, env: ci}}
budgets:
"""

TOKENS_40 = "  - {name: dev-daily, scope: developer, window: daily, limit: {tokens: 40}}\n"


@pytest.fixture(params=["sqlite", "redis"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "redis":
        return str(request.getfixturevalue("redis_url"))
    return f"sqlite:///{tmp_path}/counters.db"


@pytest.fixture
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer(Simulator(require_key=PROVIDER_KEY)) as server:
        yield server


Start = Callable[[str], RunningGateway]


@pytest.fixture
def start(tmp_path: Path, store_url: str, sim: SimulatorServer) -> Iterator[Start]:
    """``start(budgets_yaml)`` runs a gateway with those budgets; it is stopped after the test."""
    with contextlib.ExitStack() as stack:

        def run(budgets: str) -> RunningGateway:
            config = HEAD.format(store=store_url, tmp=tmp_path, sim=sim.base_url) + budgets
            return stack.enter_context(running_gateway(tmp_path, config, ENVIRON))

        yield run


def status(gw: RunningGateway) -> dict[tuple[str, str | None], BudgetStatus]:
    """Every budget row, read through a store of its own (as ``tollgate budgets status`` does)."""
    settings = gw.gateway.settings

    async def read() -> list[BudgetStatus]:
        store = open_counter_store(settings.store)
        try:
            return await Admission(settings, store).status()
        finally:
            await store.close()

    return {(row.budget, row.scope_value): row for row in asyncio.run(read())}


def next_midnight_utc() -> dt.datetime:
    today = dt.datetime.now(dt.UTC).date()
    return dt.datetime.combine(today + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)


def assert_rate_limit_headers(headers: Mapping[str, str], limit: int, used: int) -> None:
    retry_after = int(headers["retry-after"])
    assert 0 < retry_after <= 86_400
    assert headers["x-ratelimit-limit-tokens"] == str(limit)
    assert headers["x-ratelimit-remaining-tokens"] == str(limit - used)
    assert headers["x-ratelimit-reset-tokens"] == f"{retry_after}s"
    assert headers["x-should-retry"] == "false"


def assert_budget_error(error: dict[str, object], limit: int, used: int) -> None:
    assert error["type"] == "budget_exceeded"
    assert error["budget"] == "dev-daily"
    assert error["scope"] == "developer" and error["scope_value"] == "alice"
    assert error["window"] == "daily"
    assert error["limit_tokens"] == limit and error["used_tokens"] == used
    reset_at = dt.datetime.fromisoformat(str(error["reset_at"]))
    assert reset_at == next_midnight_utc() and reset_at.utcoffset() == dt.timedelta(0)


# -- item 8: the 429, through both SDKs, not retried -------------------------------------------------------------


def test_openai_sdk_raises_rate_limit_error_once_and_provider_untouched(start: Start, sim: SimulatorServer) -> None:
    gw = start(TOKENS_40)
    client = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=ALICE)  # default max_retries (2)
    assert client.max_retries == 2
    first = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=10)  # type: ignore[arg-type]
    assert first.headers["x-tollgate-budget-remaining-tokens"] == str(40 - ESTIMATE)
    assert first.parse().usage.total_tokens == USED  # type: ignore[union-attr]

    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=10)  # type: ignore[arg-type]

    response = info.value.response
    assert response.status_code == 429
    assert_rate_limit_headers(response.headers, limit=40, used=USED)
    assert_budget_error(response.json()["error"], limit=40, used=USED)
    assert len(sim.simulator.received) == 1  # only the first, admitted request reached the provider
    # The gateway saw exactly two requests: the SDK did not retry the 429.
    wait_for(lambda: len(gw.records) == 2)
    assert [r.outcome for r in gw.records] == ["ok", "rejected"]
    assert gw.records[1].rejected_by == "dev-daily"


def test_anthropic_sdk_raises_rate_limit_error_once_and_provider_untouched(start: Start, sim: SimulatorServer) -> None:
    gw = start(TOKENS_40)
    client = anthropic.Anthropic(base_url=gw.base_url, api_key=ALICE)  # default max_retries (2)
    assert client.max_retries == 2
    first = client.messages.with_raw_response.create(model="claude-haiku-4-5", max_tokens=10, messages=MESSAGES)  # type: ignore[arg-type]
    assert first.headers["x-tollgate-budget-remaining-tokens"] == str(40 - ESTIMATE)

    with pytest.raises(anthropic.RateLimitError) as info:
        client.messages.create(model="claude-haiku-4-5", max_tokens=10, messages=MESSAGES)  # type: ignore[arg-type]

    response = info.value.response
    assert response.status_code == 429
    assert_rate_limit_headers(response.headers, limit=40, used=USED)
    body = response.json()
    assert body["type"] == "error" and body["request_id"].startswith("req_")
    assert_budget_error(body["error"], limit=40, used=USED)
    assert len(sim.simulator.received) == 1
    wait_for(lambda: len(gw.records) == 2)
    assert [r.outcome for r in gw.records] == ["ok", "rejected"]


def test_usd_budget_rejects_once_spent_and_reports_remaining_dollars(start: Start, sim: SimulatorServer) -> None:
    # `fast` is an alias priced by its upstream name gpt-4o-mini ($0.15 in / $0.60 out per million tokens).
    # max_tokens=150 reserves 14 * 0.15 + 150 * 0.60 = 92.1 -> 93 micro-dollars of the 100; the simulator answers 16
    # words: 7 * 0.15 + 16 * 0.60 = 10.65 -> 11 used, so the second request (11 + 93 > 100) is refused.
    gw = start("  - {name: dev-usd, scope: developer, match: {model: [fast]}, window: daily, limit: {usd: 0.0001}}\n")
    client = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=ALICE)
    first = client.chat.completions.with_raw_response.create(model="fast", messages=MESSAGES, max_tokens=150)  # type: ignore[arg-type]
    assert "x-tollgate-budget-remaining-tokens" not in first.headers
    assert first.headers["x-tollgate-budget-remaining-usd"] == "0.000007"  # 100 - 93 (the estimate, rounded up)

    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="fast", messages=MESSAGES, max_tokens=150)  # type: ignore[arg-type]

    error = info.value.response.json()["error"]
    assert error["type"] == "budget_exceeded" and error["budget"] == "dev-usd"
    assert error["limit_usd"] == 0.0001 and error["limit_tokens"] is None
    assert error["used_usd"] == 0.000011  # 10.65 micro-dollars, rounded up
    assert "x-ratelimit-limit-tokens" not in info.value.response.headers
    assert info.value.response.headers["x-should-retry"] == "false"
    assert len(sim.simulator.received) == 1
    row = status(gw)[("dev-usd", "alice")]
    assert row.used_micros == gw.records[0].cost_micros == 11 and row.reserved_micros == 0


# -- item 2: layered budgets -------------------------------------------------------------------------------------


def test_one_request_charges_developer_and_team_and_a_team_key_skips_the_developer_budget(start: Start) -> None:
    gw = start(
        "  - {name: dev-daily, scope: developer, window: daily, limit: {tokens: 1000}}\n"
        "  - {name: team-daily, scope: team, window: daily, limit: {tokens: 1000}}\n"
    )
    for key in (ALICE, CI):
        openai.OpenAI(base_url=gw.base_url + "/v1", api_key=key, max_retries=0).chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,  # type: ignore[arg-type]
            max_tokens=10,
        )
    rows = status(gw)
    assert set(rows) == {("dev-daily", "alice"), ("team-daily", "payments")}
    assert rows[("dev-daily", "alice")].used_tokens == USED
    assert rows[("team-daily", "payments")].used_tokens == 2 * USED
    assert all(row.reserved_tokens == 0 for row in rows.values())


def test_team_budget_refuses_even_when_the_developer_budget_has_room(start: Start, sim: SimulatorServer) -> None:
    gw = start(
        "  - {name: dev-daily, scope: developer, window: daily, limit: {tokens: 1000}}\n"
        "  - {name: team-daily, scope: team, window: daily, limit: {tokens: 40}}\n"
    )
    ci = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=CI)
    alice = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=ALICE)
    ci.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=10)  # type: ignore[arg-type]
    with pytest.raises(openai.RateLimitError) as info:
        alice.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=10)  # type: ignore[arg-type]
    error = info.value.response.json()["error"]
    assert error["budget"] == "team-daily" and error["scope_value"] == "payments" and error["used_tokens"] == USED
    assert len(sim.simulator.received) == 1
    rows = status(gw)
    # All or nothing: the refused request reserved nothing on the developer budget either.
    assert rows[("dev-daily", None)].used_tokens == 0
    assert rows[("team-daily", "payments")].used_tokens == USED


# -- item 9: soft and shadow -------------------------------------------------------------------------------------


def test_soft_and_shadow_budgets_never_block_and_count_would_have_blocked(start: Start, sim: SimulatorServer) -> None:
    gw = start(
        "  - {name: dev-soft, scope: developer, window: daily, limit: {tokens: 20}, enforce: soft}\n"
        "  - {name: dev-shadow, scope: developer, window: daily, limit: {tokens: 20}, enforce: shadow}\n"
    )
    client = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=ALICE, max_retries=0)
    for _ in range(3):
        raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=10)  # type: ignore[arg-type]
        assert raw.http_response.status_code == 200
        assert "x-tollgate-budget-remaining-tokens" not in raw.headers  # no hard budget
    assert len(sim.simulator.received) == 3
    rows = status(gw)
    for name in ("dev-soft", "dev-shadow"):
        row = rows[(name, "alice")]
        assert row.used_tokens == 3 * USED and row.reserved_tokens == 0
        assert row.blocked == 3  # every request's estimate (24) exceeded the limit (20)
        assert row.percent == pytest.approx(100.0 * 3 * USED / 20)


# -- streams and failures settle ---------------------------------------------------------------------------------


def test_stream_settles_the_actual_usage(start: Start) -> None:
    gw = start("  - {name: dev-daily, scope: developer, window: daily, limit: {tokens: 1000}}\n")
    client = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=ALICE)
    chunks = list(
        client.chat.completions.create(  # type: ignore[call-overload]
            model="gpt-4o-mini", messages=MESSAGES, max_tokens=6, stream=True, stream_options={"include_usage": True}
        )
    )
    usage = [c.usage for c in chunks if c.usage is not None]
    assert len(usage) == 1 and usage[0].total_tokens == 13
    with anthropic.Anthropic(base_url=gw.base_url, api_key=ALICE).messages.stream(
        model="claude-haiku-4-5",
        max_tokens=5,
        messages=MESSAGES,  # type: ignore[arg-type]
    ) as stream:
        final = stream.get_final_message()
    assert final.usage.input_tokens + final.usage.output_tokens == 12
    wait_for(lambda: len(gw.records) == 2)
    row = status(gw)[("dev-daily", "alice")]
    assert row.used_tokens == 13 + 12 and row.reserved_tokens == 0


def test_upstream_failure_releases_the_reservation(start: Start, sim: SimulatorServer) -> None:
    gw = start("  - {name: dev-daily, scope: developer, window: daily, limit: {tokens: 40}}\n")
    client = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=ALICE, max_retries=0)
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="broken", messages=MESSAGES, max_tokens=10)  # type: ignore[arg-type]
    wait_for(lambda: len(gw.records) == 1)
    row = status(gw)[("dev-daily", "alice")]
    assert (row.used_tokens, row.reserved_tokens) == (0, 0)
    # The whole budget is there: a request needing it is admitted.
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=10)  # type: ignore[arg-type]
    assert len(sim.simulator.received) == 2


# -- item 13: two store round trips ------------------------------------------------------------------------------


def watch_redis(url: str, marker: str, seen: list[str], ready: threading.Event) -> None:
    """Collect every command (not those run inside Lua) Redis executes, until one mentions ``marker``."""
    client = redis.Redis.from_url(url, socket_timeout=10)
    try:
        with client.monitor() as monitor:
            ready.set()
            for command in monitor.listen():
                if command["client_type"] != "lua":
                    seen.append(command["command"])
                if marker in command["command"]:
                    return
    finally:
        client.close()


def test_an_admitted_request_costs_two_store_round_trips_on_redis(
    tmp_path: Path, redis_url: str, sim: SimulatorServer, unique: str
) -> None:
    budgets = (
        f"  - {{name: dev-{unique}, scope: developer, window: daily, limit: {{tokens: 50}}}}\n"
        f"  - {{name: team-{unique}, scope: team, window: monthly, limit: {{tokens: 1000}}}}\n"
        f"  - {{name: shadow-{unique}, scope: key, window: weekly, limit: {{tokens: 1}}, enforce: shadow}}\n"
    )
    config = HEAD.format(store=redis_url, tmp=tmp_path, sim=sim.base_url) + budgets
    seen: list[str] = []
    ready = threading.Event()
    with running_gateway(tmp_path, config, ENVIRON) as gw:
        client = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=ALICE)
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=10)  # type: ignore[arg-type]
        wait_for(lambda: len(gw.records) == 1)
        watcher = threading.Thread(target=watch_redis, args=(redis_url, f"end-{unique}", seen, ready))
        watcher.start()
        try:
            assert ready.wait(10)
            # Scripts are loaded (by the first request); now one admitted request (three budgets), then one refused.
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=10)  # type: ignore[arg-type]
            with pytest.raises(openai.RateLimitError):
                client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=10)  # type: ignore[arg-type]
            wait_for(lambda: len(gw.records) == 3)
        finally:
            with redis.Redis.from_url(redis_url) as marker:
                marker.echo(f"end-{unique}")
            watcher.join(timeout=15)
        assert not watcher.is_alive()
    mine = [command.split()[0] for command in seen if unique in command and not command.startswith("ECHO")]
    # Admitted: reserve + settle (the ledger entry rides in settle). Refused: reserve + the refusal's ledger entry.
    assert mine == ["EVALSHA", "EVALSHA", "EVALSHA", "XADD"], mine
