"""The counter-store contract: the same cases against SQLite (a temp file) and Redis (db 15)."""

from __future__ import annotations

import asyncio
import multiprocessing
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest
import redis

from tollgate.budgets.model import Claim, CounterKey, CounterState, Reservation
from tollgate.errors import ConfigError, StoreUnavailable
from tollgate.stores import open_counter_store
from tollgate.stores.redis_counters import RedisCounterStore
from tollgate.stores.sqlite_counters import SqliteCounterStore

NOW = 1_900_000_000.0  # 2030-03-17T17:46:40Z: in the future, so Redis keeps keys that expire "after the window"
DAY = 1_899_936_000  # 2030-03-17T00:00:00Z, the window start the claims use
NEXT_DAY = DAY + 86_400
EXPIRES = NEXT_DAY + 900 + 86_400
TTL = 900.0

Store = SqliteCounterStore | RedisCounterStore
Scenario = Callable[[Store], Awaitable[None]]


@dataclass
class Kit:
    """One store under test: its URL and a way to make its outbox refuse writes (a real fault, not a mock)."""

    kind: str
    url: str

    def run(self, scenario: Scenario) -> None:
        async def main() -> None:
            store = open_counter_store(self.url)
            try:
                await scenario(store)
            finally:
                await store.close()

        asyncio.run(main())

    def break_outbox(self) -> None:
        if self.kind == "sqlite":
            db = sqlite3.connect(self.url.removeprefix("sqlite:///"))
            db.execute("CREATE TRIGGER outbox_refuses BEFORE INSERT ON outbox BEGIN SELECT RAISE(ABORT, 'no'); END")
            db.commit()
            db.close()
        else:
            client = redis.Redis.from_url(self.url)
            client.set("{tg}:ledger", "not a stream")
            client.close()


@pytest.fixture(params=["sqlite", "redis"])
def kit(request: pytest.FixtureRequest, tmp_path: object) -> Kit:
    if request.param == "sqlite":
        return Kit("sqlite", f"sqlite:///{tmp_path}/counters.db")
    return Kit("redis", request.getfixturevalue("redis_url"))


def claim(
    cap_tokens: int | None = 100,
    cap_micros: int | None = None,
    *,
    budget: str = "dev-daily",
    value: str = "alice",
    start: int = DAY,
    reserve: bool = True,
    enforce: str = "hard",
) -> Claim:
    return Claim(CounterKey(budget, value, start), EXPIRES, cap_tokens, cap_micros, reserve, enforce)


def hold(rid: str, tokens: int, micros: int = 0, *, at: float = NOW) -> Reservation:
    return Reservation(rid, tokens, micros, at + TTL)


def state(
    used_tokens: int = 0,
    used_micros: int = 0,
    reserved_tokens: int = 0,
    reserved_micros: int = 0,
    blocked: int = 0,
    *,
    budget: str = "dev-daily",
    value: str = "alice",
    start: int = DAY,
) -> CounterState:
    return CounterState(budget, value, start, used_tokens, used_micros, reserved_tokens, reserved_micros, blocked)


async def settle(
    store: Store, claims: list[Claim], reservation: Reservation | None, tokens: int, micros: int = 0, *, at: float = NOW
) -> None:
    rid = reservation.id if reservation else "none"
    await store.settle(
        claims,
        reservation,
        tokens=tokens,
        micros=micros,
        now=at,
        request_id=rid,
        payload=b'{"request_id":"' + rid.encode() + b'"}',
    )


async def read(store: Store, *, at: float = NOW, budget: str = "dev-daily", start: int = DAY) -> list[CounterState]:
    return await store.snapshot([(budget, start)], at)


def test_reserve_holds_the_estimate_until_the_limit(kit: Kit) -> None:
    async def scenario(store: Store) -> None:
        first = await store.reserve([claim(100)], hold("r1", 60), NOW)
        assert first.refused is None
        assert first.states == (state(reserved_tokens=60),)
        second = await store.reserve([claim(100)], hold("r2", 60), NOW)
        assert second.refused == 0
        assert second.states == (state(reserved_tokens=60),)
        third = await store.reserve([claim(100)], hold("r3", 40), NOW)  # exactly fills the limit
        assert third.refused is None
        assert third.states == (state(reserved_tokens=100),)
        assert (await store.reserve([claim(100)], hold("r4", 0), NOW)).refused == 0  # spent: even zero is refused
        assert await read(store) == [state(reserved_tokens=100)]

    kit.run(scenario)


def test_reserve_is_all_or_nothing(kit: Kit) -> None:
    async def scenario(store: Store) -> None:
        claims = [
            claim(1000),
            claim(50, budget="team-monthly", value="payments"),
            claim(1000, budget="repo-daily", value="web"),
        ]
        outcome = await store.reserve(claims, hold("r1", 60), NOW)
        assert outcome.refused == 1
        assert outcome.states == (
            state(),
            state(budget="team-monthly", value="payments"),
            state(budget="repo-daily", value="web"),
        )
        assert await read(store) == []
        assert await read(store, budget="team-monthly") == []
        assert await read(store, budget="repo-daily") == []

    kit.run(scenario)


def test_refusal_names_the_first_hard_claim_without_room(kit: Kit) -> None:
    async def scenario(store: Store) -> None:
        claims = [
            claim(10, budget="shadow-cap", enforce="shadow"),
            claim(1000, budget="roomy"),
            claim(10, budget="tight-a"),
            claim(10, budget="tight-b"),
        ]
        outcome = await store.reserve(claims, hold("r1", 60), NOW)
        assert outcome.refused == 2
        assert await read(store, budget="shadow-cap") == []  # a refused request is not counted by shadow budgets

    kit.run(scenario)


def test_usd_limits_in_micros(kit: Kit) -> None:
    async def scenario(store: Store) -> None:
        cap = claim(None, 1_000_000)
        assert (await store.reserve([cap], hold("r1", 5000, 600_000), NOW)).refused is None
        refused = await store.reserve([cap], hold("r2", 1, 400_001), NOW)
        assert refused.refused == 0
        assert refused.states == (state(reserved_tokens=5000, reserved_micros=600_000),)
        assert (await store.reserve([cap], hold("r3", 1, 400_000), NOW)).refused is None

    kit.run(scenario)


def test_both_units_must_fit(kit: Kit) -> None:
    async def scenario(store: Store) -> None:
        both = claim(100, 1000)
        assert (await store.reserve([both], hold("r1", 10, 990), NOW)).refused is None
        assert (await store.reserve([both], hold("r2", 10, 11), NOW)).refused == 0
        assert (await store.reserve([both], hold("r3", 91, 10), NOW)).refused == 0
        assert (await store.reserve([both], hold("r4", 90, 10), NOW)).refused is None

    kit.run(scenario)


def test_post_mode_admits_while_under_the_cap_and_holds_nothing(kit: Kit) -> None:
    async def scenario(store: Store) -> None:
        post = claim(110, reserve=False)  # e.g. limit 100 with allowance 0.1
        admitted = await store.reserve([post], hold("r1", 500), NOW)  # the estimate does not matter in post mode
        assert admitted.refused is None
        assert admitted.states == (state(),)
        await settle(store, [post], hold("r1", 500), 109)
        assert (await store.reserve([post], hold("r2", 500), NOW)).refused is None  # 109 < 110
        await settle(store, [post], hold("r2", 500), 30)
        refused = await store.reserve([post], hold("r3", 1), NOW)
        assert refused.refused == 0
        assert refused.states == (state(used_tokens=139),)

    kit.run(scenario)


@pytest.mark.parametrize("enforce", ["soft", "shadow"])
def test_soft_and_shadow_never_block_and_count_would_have_blocked(kit: Kit, enforce: str) -> None:
    async def scenario(store: Store) -> None:
        budget = claim(100, enforce=enforce)
        outcomes = [await store.reserve([budget], hold(f"r{i}", 60), NOW) for i in range(3)]
        assert [o.refused for o in outcomes] == [None, None, None]
        assert outcomes[-1].states == (state(reserved_tokens=180, blocked=2),)
        post = claim(10, reserve=False, enforce=enforce, value="bob")
        await settle(store, [post], None, 10)
        assert (await store.reserve([post], hold("p1", 1), NOW)).refused is None
        assert await read(store) == [
            state(reserved_tokens=180, blocked=2),
            state(used_tokens=10, blocked=1, value="bob"),
        ]

    kit.run(scenario)


def test_settle_replaces_the_reservation_with_actual_usage(kit: Kit) -> None:
    async def scenario(store: Store) -> None:
        claims = [claim(1000, 10_000_000), claim(None, 5_000_000, budget="team-monthly", value="payments")]
        reservation = hold("r1", 600, 4_000_000)
        assert (await store.reserve(claims, reservation, NOW)).refused is None
        await settle(store, claims, reservation, 250, 1_250_000)
        assert await read(store) == [state(250, 1_250_000)]
        assert await read(store, budget="team-monthly") == [
            state(250, 1_250_000, budget="team-monthly", value="payments")
        ]

    kit.run(scenario)


def test_settle_with_zero_usage_releases(kit: Kit) -> None:
    async def scenario(store: Store) -> None:
        reservation = hold("r1", 100)
        assert (await store.reserve([claim(100)], reservation, NOW)).refused is None
        await settle(store, [claim(100)], reservation, 0)
        assert await read(store) == [state()]
        assert (await store.reserve([claim(100)], hold("r2", 100), NOW)).refused is None

    kit.run(scenario)


def test_an_expired_reservation_frees_its_budget(kit: Kit) -> None:
    async def scenario(store: Store) -> None:
        assert (await store.reserve([claim(100)], hold("lost", 80), NOW)).refused is None  # its process dies
        assert (await store.reserve([claim(100)], hold("r2", 80), NOW + TTL - 1)).refused == 0
        later = await store.reserve([claim(100)], hold("r3", 80, at=NOW + TTL), NOW + TTL)
        assert later.refused is None
        assert later.states == (state(reserved_tokens=80),)

    kit.run(scenario)


def test_status_purges_expired_reservations(kit: Kit) -> None:
    async def scenario(store: Store) -> None:
        await store.reserve([claim(100)], hold("lost", 80), NOW)
        assert await read(store, at=NOW + TTL - 1) == [state(reserved_tokens=80)]
        assert await read(store, at=NOW + TTL) == [state()]
        assert await read(store, at=NOW + TTL) == [state()]  # the give-back was kept, not only reported

    kit.run(scenario)


def test_a_purge_by_a_refused_reserve_is_kept(kit: Kit) -> None:
    async def scenario(store: Store) -> None:
        await store.reserve([claim(100)], hold("lost", 80), NOW)
        # Purges "lost", then finds no room for 150: refused, but the purge stands.
        assert (await store.reserve([claim(100)], hold("big", 150, at=NOW + TTL), NOW + TTL)).refused == 0
        assert await read(store, at=NOW + TTL) == [state()]

    kit.run(scenario)


def test_settling_an_expired_reservation_does_not_subtract_twice(kit: Kit) -> None:
    async def scenario(store: Store) -> None:
        slow = hold("slow", 60)
        assert (await store.reserve([claim(100)], slow, NOW)).refused is None
        # Another request purges the expired hold and reserves its own; then the slow one settles.
        assert (await store.reserve([claim(100)], hold("next", 30, at=NOW + TTL), NOW + TTL)).refused is None
        await settle(store, [claim(100)], slow, 50, at=NOW + TTL + 5)
        assert await read(store, at=NOW + TTL + 5) == [state(used_tokens=50, reserved_tokens=30)]

    kit.run(scenario)


def test_settle_purges_before_it_looks_for_its_reservation(kit: Kit) -> None:
    async def scenario(store: Store) -> None:
        slow = hold("slow", 60)
        assert (await store.reserve([claim(100)], slow, NOW)).refused is None
        await settle(store, [claim(100)], slow, 50, at=NOW + TTL + 1)
        assert await read(store, at=NOW + TTL + 1) == [state(used_tokens=50)]

    kit.run(scenario)


def test_a_new_window_starts_at_zero(kit: Kit) -> None:
    async def scenario(store: Store) -> None:
        reservation = hold("r1", 100)
        assert (await store.reserve([claim(100)], reservation, NOW)).refused is None
        await settle(store, [claim(100)], reservation, 100)
        assert (await store.reserve([claim(100)], hold("r2", 1), NOW)).refused == 0
        tomorrow = claim(100, start=NEXT_DAY)
        fresh = await store.reserve([tomorrow], hold("r3", 100, at=NEXT_DAY + 1), NEXT_DAY + 1)
        assert fresh.refused is None
        assert fresh.states == (state(reserved_tokens=100, start=NEXT_DAY),)
        assert await read(store) == [state(used_tokens=100)]

    kit.run(scenario)


def test_settle_writes_the_outbox_entry(kit: Kit) -> None:
    async def scenario(store: Store) -> None:
        reservation = hold("r1", 10)
        await store.reserve([claim(100)], reservation, NOW)
        await settle(store, [claim(100)], reservation, 7)
        await settle(store, [], None, 0)  # a request that matched no budget still leaves its ledger entry
        await store.append_outbox("rejected-1", b'{"request_id":"rejected-1"}')
        items = await store.read_outbox(10)
        assert [item.payload for item in items] == [
            b'{"request_id":"r1"}',
            b'{"request_id":"none"}',
            b'{"request_id":"rejected-1"}',
        ]
        assert [item.payload for item in await store.read_outbox(2)] == [
            b'{"request_id":"r1"}',
            b'{"request_id":"none"}',
        ]
        await store.ack_outbox([items[0].id, items[2].id])
        assert [item.payload for item in await store.read_outbox(10)] == [b'{"request_id":"none"}']
        await store.ack_outbox([])

    kit.run(scenario)


def test_settle_and_outbox_fail_together(kit: Kit) -> None:
    reservation = hold("r1", 10)

    async def reserve(store: Store) -> None:
        await store.reserve([claim(100)], reservation, NOW)

    async def fail_to_settle(store: Store) -> None:
        with pytest.raises(StoreUnavailable):
            await settle(store, [claim(100)], reservation, 7)
        assert await read(store) == [state(reserved_tokens=10)]

    kit.run(reserve)
    kit.break_outbox()
    kit.run(fail_to_settle)


def test_concurrent_reserves_never_exceed_the_limit(kit: Kit) -> None:
    async def scenario(store: Store) -> None:
        outcomes = await asyncio.gather(*(store.reserve([claim(1000)], hold(f"r{i}", 10), NOW) for i in range(250)))
        assert sum(o.refused is None for o in outcomes) == 100
        assert await read(store) == [state(reserved_tokens=1000)]

    kit.run(scenario)


def _reserve_many(url: str, worker: int, count: int) -> int:
    """One OS process making ``count`` reserves of 10 tokens on a 1000-token counter; returns how many it got."""

    async def main() -> int:
        store = open_counter_store(url)
        try:
            outcomes = await asyncio.gather(
                *(store.reserve([claim(1000)], hold(f"w{worker}-{i}", 10), NOW) for i in range(count))
            )
        finally:
            await store.close()
        return sum(o.refused is None for o in outcomes)

    return asyncio.run(main())


@pytest.mark.slow
def test_reserves_from_several_processes_never_exceed_the_limit(kit: Kit) -> None:
    context = multiprocessing.get_context("spawn")
    with context.Pool(4) as pool:
        admitted = pool.starmap(_reserve_many, [(kit.url, worker, 60) for worker in range(4)])
    assert sum(admitted) == 100

    async def check(store: Store) -> None:
        assert await read(store) == [state(reserved_tokens=1000)]

    kit.run(check)


def test_ping(kit: Kit) -> None:
    async def scenario(store: Store) -> None:
        await store.ping()

    kit.run(scenario)


@pytest.mark.parametrize("url", ["sqlite:////nonexistent-dir/tollgate/counters.db", "redis://127.0.0.1:1/0"])
def test_an_unreachable_store_is_unavailable(url: str) -> None:
    async def main() -> None:
        store = open_counter_store(url)
        try:
            with pytest.raises(StoreUnavailable) as caught:
                await store.ping()
            assert caught.value.status == 503
            assert caught.value.__cause__ is not None
            with pytest.raises(StoreUnavailable):
                await store.reserve([claim(100)], hold("r1", 1), NOW)
        finally:
            await store.close()

    asyncio.run(main())


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("sqlite:///./tollgate.db", SqliteCounterStore),
        ("redis://127.0.0.1:6379/0", RedisCounterStore),
        ("rediss://cache.internal:6380/1", RedisCounterStore),
    ],
)
def test_open_counter_store_by_scheme(url: str, kind: type) -> None:
    async def main() -> None:
        store = open_counter_store(url)  # connects on first use only
        try:
            assert isinstance(store, kind)
        finally:
            await store.close()

    asyncio.run(main())


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite://relative.db", "store: not a sqlite:/// URL: 'sqlite://relative.db'"),
        ("memcached://x:1", "store: unsupported counter store URL scheme 'memcached'"),
    ],
)
def test_open_counter_store_refuses(url: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        open_counter_store(url)
    assert caught.value.message == message
