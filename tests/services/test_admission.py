"""Admission with the real stores: every matching budget at once, refusals that name the budget, settle, status."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path

import orjson
import pytest
import redis

from tollgate.budgets.model import CounterState
from tollgate.errors import BudgetExceeded, StoreUnavailable
from tollgate.services import admission as admission_module
from tollgate.services.admission import Admission, BudgetStatus, CounterStore, Ticket
from tollgate.settings import BudgetSettings, Limit, Settings
from tollgate.stores import open_counter_store
from tollgate.types import Caller, Usage, UsageRecord

# 2030-03-15 12:00 in Berlin (UTC+1): in the future, so Redis keeps the counters it is told expire after the window.
NOON = dt.datetime(2030, 3, 15, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=1))).timestamp()
RESET = "2030-03-16T00:00:00+01:00"
SECONDS_TO_RESET = 12 * 3600

ALICE = Caller(key_name="alice-laptop", developer="alice", team="payments", repo="web", env="dev", priority=0)
BOB = Caller(key_name="bob-laptop", developer="bob", team="payments", repo="web", env="dev", priority=0)
CHECKOUT = Caller(key_name="checkout", developer=None, team="payments", repo="web", env="prod", priority=0)
CI = Caller(key_name="ci", developer=None, team="payments", repo="api", env="ci", priority=0)

DEV_DAILY = BudgetSettings(
    name="dev-daily",
    scope="developer",
    window="daily",
    limit=Limit(tokens=1000),
    match={"env": ("dev",)},
    overrides={"bob": Limit(tokens=5000)},
)
TEAM_MONTHLY = BudgetSettings(name="team-monthly", scope="team", window="monthly", limit=Limit(usd_micros=2_000_000))


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["sqlite", "redis"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/counters.db"
    url: str = request.getfixturevalue("redis_url")
    return url


def settings(*budgets: BudgetSettings, ttl: int = 900) -> Settings:
    return Settings(config_path="test.yaml", timezone="Europe/Berlin", reservation_ttl_s=ttl, budgets=budgets)


def run(url: str, config: Settings, scenario: Callable[[Admission, CounterStore, Clock], Awaitable[None]]) -> None:
    async def main() -> None:
        store = open_counter_store(url)
        clock = Clock(NOON)
        try:
            await scenario(Admission(config, store, clock), store, clock)
        finally:
            await store.close()

    asyncio.run(main())


def record(request_id: str, caller: Caller, tokens: int = 0, micros: int = 0) -> UsageRecord:
    return UsageRecord(
        request_id=request_id,
        started_at=NOON,
        key_name=caller.key_name,
        developer=caller.developer,
        team=caller.team,
        repo=caller.repo,
        env=caller.env,
        endpoint="/v1/chat/completions",
        model="gpt-4o-mini",
        usage=Usage(input_tokens=tokens // 2, output_tokens=tokens - tokens // 2),
        cost_micros=micros,
    )


async def used(admission: Admission) -> dict[tuple[str, str | None], tuple[int, int, int, int, int]]:
    return {
        (row.budget, row.scope_value): (
            row.used_tokens,
            row.used_micros,
            row.reserved_tokens,
            row.reserved_micros,
            row.blocked,
        )
        for row in await admission.status()
    }


def test_a_request_is_charged_to_every_matching_budget(store_url: str) -> None:
    repo = BudgetSettings(name="repo-daily", scope="repo", window="daily", limit=Limit(tokens=100_000))

    async def scenario(admission: Admission, store: CounterStore, clock: Clock) -> None:
        ticket = await admission.admit(
            ALICE, "gpt-4o-mini", estimate_tokens=600, estimate_micros=300_000, request_id="r1"
        )
        assert await used(admission) == {
            ("dev-daily", "alice"): (0, 0, 600, 300_000, 0),
            ("team-monthly", "payments"): (0, 0, 600, 300_000, 0),
            ("repo-daily", "web"): (0, 0, 600, 300_000, 0),
        }
        await admission.settle(ticket, record("r1", ALICE, 250, 125_000))
        assert await used(admission) == {
            ("dev-daily", "alice"): (250, 125_000, 0, 0, 0),
            ("team-monthly", "payments"): (250, 125_000, 0, 0, 0),
            ("repo-daily", "web"): (250, 125_000, 0, 0, 0),
        }

    run(store_url, settings(DEV_DAILY, TEAM_MONTHLY, repo), scenario)


def test_the_refusal_names_the_hard_budget_and_when_it_resets(store_url: str) -> None:
    async def scenario(admission: Admission, store: CounterStore, clock: Clock) -> None:
        await admission.admit(ALICE, "gpt-4o-mini", estimate_tokens=700, estimate_micros=10, request_id="r1")
        with pytest.raises(BudgetExceeded) as caught:
            await admission.admit(ALICE, "gpt-4o-mini", estimate_tokens=400, estimate_micros=10, request_id="r2")
        error = caught.value
        assert (error.budget, error.scope, error.scope_value, error.window) == (
            "dev-daily",
            "developer",
            "alice",
            "daily",
        )
        assert (error.limit_tokens, error.used_tokens, error.limit_usd, error.used_usd) == (1000, 700, None, 0.00001)
        assert (error.reset_at, error.retry_after_s) == (RESET, SECONDS_TO_RESET)
        assert error.headers()["x-ratelimit-remaining-tokens"] == "300"
        # Nothing of the refused request was held on the team budget either (all or nothing).
        assert await used(admission) == {
            ("dev-daily", "alice"): (0, 0, 700, 10, 0),
            ("team-monthly", "payments"): (0, 0, 700, 10, 0),
        }

    run(store_url, settings(DEV_DAILY, TEAM_MONTHLY), scenario)


def test_a_usd_refusal(store_url: str) -> None:
    async def scenario(admission: Admission, store: CounterStore, clock: Clock) -> None:
        ticket = await admission.admit(CI, "gpt-4o", estimate_tokens=10, estimate_micros=1_500_000, request_id="r1")
        await admission.settle(ticket, record("r1", CI, 10, 1_750_000))
        with pytest.raises(BudgetExceeded) as caught:
            await admission.admit(CI, "gpt-4o", estimate_tokens=10, estimate_micros=300_000, request_id="r2")
        error = caught.value
        assert (error.budget, error.scope_value, error.window) == ("team-monthly", "payments", "monthly")
        assert (error.limit_tokens, error.limit_usd, error.used_usd) == (None, 2.0, 1.75)
        assert error.reset_at == "2030-04-01T00:00:00+02:00"
        assert "$1.75 of $2.00" in error.message

    run(store_url, settings(DEV_DAILY, TEAM_MONTHLY), scenario)


def test_an_override_replaces_the_limit_for_its_scope_value(store_url: str) -> None:
    async def scenario(admission: Admission, store: CounterStore, clock: Clock) -> None:
        ticket = await admission.admit(BOB, "m", estimate_tokens=4000, estimate_micros=0, request_id="b1")
        assert ticket.remaining_tokens == 1000
        with pytest.raises(BudgetExceeded) as caught:
            await admission.admit(ALICE, "m", estimate_tokens=4000, estimate_micros=0, request_id="a1")
        assert (caught.value.scope_value, caught.value.limit_tokens) == ("alice", 1000)
        rows = {row.scope_value: row for row in await admission.status()}
        assert (rows["bob"].limit_tokens, rows["bob"].reserved_tokens) == (5000, 4000)

    run(store_url, settings(DEV_DAILY), scenario)


def test_remaining_is_the_tightest_hard_budget(store_url: str) -> None:
    soft = BudgetSettings(
        name="soft-tight", scope="team", window="daily", limit=Limit(tokens=10, usd_micros=1), enforce="soft"
    )
    wide = BudgetSettings(name="wide", scope="global", window="weekly", limit=Limit(tokens=10_000, usd_micros=5_000))

    async def scenario(admission: Admission, store: CounterStore, clock: Clock) -> None:
        ticket = await admission.admit(ALICE, "m", estimate_tokens=300, estimate_micros=1_000, request_id="r1")
        assert (ticket.remaining_tokens, ticket.remaining_usd) == (700, 0.004)
        ci_ticket = await admission.admit(CI, "m", estimate_tokens=300, estimate_micros=1_000, request_id="r2")
        assert (ci_ticket.remaining_tokens, ci_ticket.remaining_usd) == (9400, 0.003)

    run(store_url, settings(DEV_DAILY, soft, wide), scenario)


def test_no_matching_budget_needs_no_store_call_to_admit(tmp_path: Path) -> None:
    async def main() -> None:
        store = open_counter_store("redis://127.0.0.1:1/0")  # nothing listens there
        try:
            admission = Admission(settings(DEV_DAILY), store, Clock(NOON))
            assert admission.applies(CI, "m") is False and admission.applies(ALICE, "m") is True
            ticket = await admission.admit(CI, "m", estimate_tokens=10**9, estimate_micros=10**9, request_id="r1")
            assert ticket == Ticket(None, None, "r1")
            with pytest.raises(StoreUnavailable):  # settle still writes the ledger entry: one call
                await admission.settle(ticket, record("r1", CI, 5))
        finally:
            await store.close()

    asyncio.run(main())


def test_store_calls_are_timed_and_failures_counted(tmp_path: Path) -> None:
    seen: list[tuple[str, bool]] = []

    def observe(operation: str, seconds: float, ok: bool) -> None:
        assert 0 <= seconds < 30
        seen.append((operation, ok))

    async def main() -> None:
        good = open_counter_store(f"sqlite:///{tmp_path / 'c.db'}")
        bad = open_counter_store("redis://127.0.0.1:1/0")  # nothing listens there
        try:
            admission = Admission(settings(DEV_DAILY), good, Clock(NOON), observe_store=observe)
            ticket = await admission.admit(ALICE, "m", estimate_tokens=1, estimate_micros=0, request_id="r1")
            await admission.settle(ticket, record("r1", ALICE, 1))
            await admission.record_rejection(record("r0", ALICE, 0))
            assert seen == [("reserve", True), ("settle", True), ("outbox", True)]
            seen.clear()
            failing = Admission(settings(DEV_DAILY), bad, Clock(NOON), observe_store=observe)
            with pytest.raises(StoreUnavailable):
                await failing.admit(ALICE, "m", estimate_tokens=1, estimate_micros=0, request_id="r2")
            with pytest.raises(StoreUnavailable):
                await failing.settle(Ticket(None, None, "r3"), record("r3", ALICE, 1))
            with pytest.raises(StoreUnavailable):
                await failing.record_rejection(record("r4", ALICE, 0))
            assert seen == [("reserve", False), ("settle", False), ("outbox", False)]
        finally:
            await good.close()
            await bad.close()

    asyncio.run(main())


def _watch(url: str, ready: threading.Event, seen: list[str]) -> None:
    """Collect the commands clients send (not those scripts run) until ``ECHO stop``, as Redis MONITOR shows them."""
    client = redis.Redis.from_url(url)
    try:
        with client.monitor() as monitor:
            ready.set()
            for line in monitor.listen():
                if line["client_type"] == "lua":
                    continue
                command = str(line["command"])
                seen.append(command if command.startswith("ECHO ") else command.split(" ", 1)[0].upper())
                if command == "ECHO stop":
                    return
    finally:
        client.close()


def test_admit_and_settle_are_one_round_trip_each(redis_url: str) -> None:
    repo = BudgetSettings(name="repo-daily", scope="repo", window="daily", limit=Limit(tokens=100_000))
    ready, seen = threading.Event(), list[str]()
    watcher = threading.Thread(target=_watch, args=(redis_url, ready, seen))
    watcher.start()
    ready.wait(10)
    marker = redis.Redis.from_url(redis_url)
    marker.ping()

    async def scenario(admission: Admission, store: CounterStore, clock: Clock) -> None:
        # Warm up: the connection is open and the scripts are loaded before counting starts.
        warm = await admission.admit(CI, "m", estimate_tokens=10, estimate_micros=0, request_id="w1")
        await admission.settle(warm, record("w1", CI, 5))
        marker.echo("admit")
        ticket = await admission.admit(ALICE, "m", estimate_tokens=10, estimate_micros=0, request_id="r1")
        marker.echo("settle")
        await admission.settle(ticket, record("r1", ALICE, 5))
        marker.echo("stop")

    try:
        run(redis_url, settings(DEV_DAILY, TEAM_MONTHLY, repo), scenario)
    finally:
        marker.echo("stop")
        watcher.join(10)
        marker.close()
    counted = seen[seen.index("ECHO admit") : seen.index("ECHO stop")]
    assert counted == ["ECHO admit", "EVALSHA", "ECHO settle", "EVALSHA"]


def test_modes_by_environment_and_post_with_allowance(store_url: str) -> None:
    team = BudgetSettings(name="team-daily", scope="team", window="daily", limit=Limit(tokens=1000), allowance=0.1)

    async def scenario(admission: Admission, store: CounterStore, clock: Clock) -> None:
        # prod defaults to post: a huge estimate is not held and does not refuse.
        prod = await admission.admit(CHECKOUT, "m", estimate_tokens=50_000, estimate_micros=0, request_id="p1")
        assert await used(admission) == {("team-daily", None): (0, 0, 0, 0, 0)}  # no counter written yet
        await admission.settle(prod, record("p1", CHECKOUT, 1099))
        # 1099 < 1000 × 1.1: still admitted in post mode; dev (reserve) has no room left.
        await admission.admit(CHECKOUT, "m", estimate_tokens=1, estimate_micros=0, request_id="p2")
        with pytest.raises(BudgetExceeded):
            await admission.admit(ALICE, "m", estimate_tokens=1, estimate_micros=0, request_id="d1")
        overshoot = await admission.admit(CHECKOUT, "m", estimate_tokens=1, estimate_micros=0, request_id="p3")
        await admission.settle(overshoot, record("p3", CHECKOUT, 2))
        with pytest.raises(BudgetExceeded) as caught:  # 1101 ≥ 1100
            await admission.admit(CHECKOUT, "m", estimate_tokens=1, estimate_micros=0, request_id="p4")
        assert (caught.value.used_tokens, caught.value.limit_tokens) == (1101, 1000)

    run(store_url, settings(team), scenario)


def test_a_budget_mode_overrides_the_environment_default(store_url: str) -> None:
    post = BudgetSettings(
        name="dev-post",
        scope="developer",
        window="daily",
        limit=Limit(tokens=100),
        mode="post",
        match={"env": ("dev",)},
    )
    reserve = BudgetSettings(
        name="prod-reserve",
        scope="team",
        window="daily",
        limit=Limit(tokens=100),
        mode="reserve",
        match={"env": ("prod",)},
    )

    async def scenario(admission: Admission, store: CounterStore, clock: Clock) -> None:
        await admission.admit(ALICE, "m", estimate_tokens=500, estimate_micros=0, request_id="d1")
        with pytest.raises(BudgetExceeded) as caught:
            await admission.admit(CHECKOUT, "m", estimate_tokens=500, estimate_micros=0, request_id="p1")
        assert caught.value.budget == "prod-reserve"
        assert await used(admission) == {("dev-post", None): (0, 0, 0, 0, 0), ("prod-reserve", None): (0, 0, 0, 0, 0)}

    run(store_url, settings(post, reserve), scenario)


def test_an_env_with_no_admission_entry_reserves(store_url: str) -> None:
    staging = Caller(key_name="s", developer="eve", team="t", repo=None, env="staging", priority=0)
    anywhere = BudgetSettings(name="per-dev", scope="developer", window="daily", limit=Limit(tokens=100))

    async def scenario(admission: Admission, store: CounterStore, clock: Clock) -> None:
        await admission.admit(staging, "m", estimate_tokens=60, estimate_micros=0, request_id="s1")
        assert await used(admission) == {("per-dev", "eve"): (0, 0, 60, 0, 0)}

    run(store_url, settings(anywhere), scenario)


def test_soft_and_shadow_never_refuse_and_shadow_counts(store_url: str) -> None:
    shadow = BudgetSettings(
        name="shadow-dev", scope="developer", window="daily", limit=Limit(tokens=100), enforce="shadow"
    )
    soft = BudgetSettings(name="soft-team", scope="team", window="daily", limit=Limit(tokens=100), enforce="soft")

    async def scenario(admission: Admission, store: CounterStore, clock: Clock) -> None:
        for i in range(3):
            ticket = await admission.admit(ALICE, "m", estimate_tokens=80, estimate_micros=0, request_id=f"r{i}")
            assert ticket.remaining_tokens is None  # soft and shadow budgets do not set the remaining headers
        assert await used(admission) == {
            ("shadow-dev", "alice"): (0, 0, 240, 0, 2),
            ("soft-team", "payments"): (0, 0, 240, 0, 2),
        }

    run(store_url, settings(shadow, soft), scenario)


def test_settle_once_with_the_record_in_the_outbox(store_url: str) -> None:
    async def scenario(admission: Admission, store: CounterStore, clock: Clock) -> None:
        ticket = await admission.admit(ALICE, "m", estimate_tokens=500, estimate_micros=0, request_id="r1")
        done = record("r1", ALICE, 120)
        await admission.settle(ticket, done)
        await admission.settle(ticket, done)  # a second settle is ignored
        assert await used(admission) == {("dev-daily", "alice"): (120, 0, 0, 0, 0)}
        rejected = record("r2", ALICE)
        rejected.outcome, rejected.rejected_by, rejected.status = "rejected", "dev-daily", 429
        await admission.record_rejection(rejected)
        items = await store.read_outbox(10)
        assert [orjson.loads(item.payload)["request_id"] for item in items] == ["r1", "r2"]
        assert items[0].payload == orjson.dumps(done)
        assert orjson.loads(items[0].payload)["usage"]["output_tokens"] == 60
        assert orjson.loads(items[1].payload)["rejected_by"] == "dev-daily"

    run(store_url, settings(DEV_DAILY), scenario)


def test_a_lost_reservation_frees_the_budget_after_the_deadline(store_url: str) -> None:
    async def scenario(admission: Admission, store: CounterStore, clock: Clock) -> None:
        await admission.admit(ALICE, "m", estimate_tokens=1000, estimate_micros=0, request_id="lost")
        clock.now = NOON + 59
        with pytest.raises(BudgetExceeded):
            await admission.admit(ALICE, "m", estimate_tokens=1, estimate_micros=0, request_id="r2")
        clock.now = NOON + 60
        ticket = await admission.admit(ALICE, "m", estimate_tokens=1000, estimate_micros=0, request_id="r3")
        assert ticket.remaining_tokens == 0

    run(store_url, settings(DEV_DAILY, ttl=60), scenario)


def test_one_second_after_local_midnight_the_daily_budget_is_fresh(store_url: str) -> None:
    async def scenario(admission: Admission, store: CounterStore, clock: Clock) -> None:
        clock.now = NOON + SECONDS_TO_RESET - 1  # 23:59:59 in Berlin
        ticket = await admission.admit(ALICE, "m", estimate_tokens=1000, estimate_micros=0, request_id="r1")
        await admission.settle(ticket, record("r1", ALICE, 1000))
        with pytest.raises(BudgetExceeded) as caught:
            await admission.admit(ALICE, "m", estimate_tokens=1, estimate_micros=0, request_id="r2")
        assert caught.value.retry_after_s == 1
        clock.now = NOON + SECONDS_TO_RESET + 1  # 00:00:01
        fresh = await admission.admit(ALICE, "m", estimate_tokens=1000, estimate_micros=0, request_id="r3")
        assert fresh.remaining_tokens == 0

    run(store_url, settings(DEV_DAILY), scenario)


def test_resolved_budgets_follow_the_clock_both_ways(store_url: str) -> None:
    # Plans are cached per (caller, model) while the clock stays inside their windows; a clock stepped back to the
    # previous day (NTP) must charge that day's counter again, not the cached one.
    async def scenario(admission: Admission, store: CounterStore, clock: Clock) -> None:
        starts = []
        for at in (NOON, NOON + 60, NOON + SECONDS_TO_RESET + 1, NOON):
            clock.now = at
            ticket = await admission.admit(ALICE, "m", estimate_tokens=1, estimate_micros=0, request_id=f"r{at}")
            starts.append(ticket.claims[0].counter.window_start)
            await admission.settle(ticket, record(f"r{at}", ALICE, 1))
        assert starts[0] == starts[1] == starts[3]
        assert starts[2] == starts[0] + 86_400

    run(store_url, settings(DEV_DAILY), scenario)


def test_the_plan_cache_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(admission_module, "PLAN_CACHE_SIZE", 3)

    async def scenario(admission: Admission, store: CounterStore, clock: Clock) -> None:
        for n in range(10):
            caller = Caller(key_name="ci", developer=f"dev{n}", team="payments", repo=f"r{n}", env="dev", priority=0)
            ticket = await admission.admit(caller, "m", estimate_tokens=1, estimate_micros=0, request_id=f"r{n}")
            assert ticket.claims[0].counter.scope_value == f"dev{n}"
            assert len(admission._plans) <= 3

    run(f"sqlite:///{tmp_path / 'c.db'}", settings(DEV_DAILY), scenario)


def test_status_lists_every_budget_and_scope_value(store_url: str) -> None:
    shadow = BudgetSettings(
        name="shadow-all", scope="global", window="weekly", limit=Limit(tokens=10), enforce="shadow", mode="post"
    )

    async def scenario(admission: Admission, store: CounterStore, clock: Clock) -> None:
        bob = await admission.admit(BOB, "m", estimate_tokens=400, estimate_micros=0, request_id="b1")
        await admission.settle(bob, record("b1", BOB, 20))
        await admission.admit(ALICE, "m", estimate_tokens=250, estimate_micros=0, request_id="a1")
        await admission.admit(ALICE, "m", estimate_tokens=5, estimate_micros=0, request_id="a2")
        rows = await admission.status()
        assert rows == [
            BudgetStatus(
                "dev-daily",
                "developer",
                "alice",
                "daily",
                "2030-03-15T00:00:00+01:00",
                RESET,
                "hard",
                None,
                1000,
                None,
                0,
                0,
                255,
                0,
                0,
            ),
            BudgetStatus(
                "dev-daily",
                "developer",
                "bob",
                "daily",
                "2030-03-15T00:00:00+01:00",
                RESET,
                "hard",
                None,
                5000,
                None,
                20,
                0,
                0,
                0,
                0,
            ),
            BudgetStatus(
                "ci-monthly",
                "repo",
                None,
                "monthly",
                "2030-03-01T00:00:00+01:00",
                "2030-04-01T00:00:00+02:00",
                "hard",
                None,
                None,
                2_000_000,
                0,
                0,
                0,
                0,
                0,
            ),
            BudgetStatus(
                "shadow-all",
                "global",
                "*",
                "weekly",
                "2030-03-11T00:00:00+01:00",
                "2030-03-18T00:00:00+01:00",
                "shadow",
                "post",
                10,
                None,
                20,
                0,
                0,
                0,
                2,
            ),
        ]
        assert [row.percent for row in rows] == [0.0, 0.4, 0.0, 200.0]

    ci = BudgetSettings(
        name="ci-monthly", scope="repo", window="monthly", limit=Limit(usd_micros=2_000_000), match={"env": ("ci",)}
    )
    run(store_url, settings(DEV_DAILY, ci, shadow), scenario)


def test_counter_state_defaults_are_zero() -> None:
    assert CounterState("b", "v", 0) == CounterState("b", "v", 0, 0, 0, 0, 0, 0)
