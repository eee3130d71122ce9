"""Redis specifics: one hash tag, key expiry, NOSCRIPT reload, and a total mapping of the client's errors."""

from __future__ import annotations

import asyncio

import pytest
import redis

from tollgate.budgets.model import Claim, CounterKey, Reservation
from tollgate.errors import StoreUnavailable
from tollgate.stores.redis_counters import RedisCounterStore, translate_errors
from tollgate.stores.resp import RespClient, RespConnectionError, RespError

NOW = 1_900_000_000.0
DAY = 1_899_936_000
EXPIRES = DAY + 2 * 86_400 + 900


def _claims() -> list[Claim]:
    return [
        Claim(CounterKey("dev-daily", "alice", DAY), EXPIRES, 1000, None, True, "hard"),
        Claim(CounterKey("team:monthly", "pay ments", DAY), EXPIRES + 5, None, 10_000, True, "hard"),
        Claim(CounterKey("by-model", "openai/gpt-4o", DAY), EXPIRES + 7, 1000, None, False, "shadow"),
    ]


def test_every_key_carries_one_hash_tag_and_expires_after_its_window(redis_url: str) -> None:
    async def main() -> None:
        store = RedisCounterStore.from_url(redis_url)
        try:
            reservation = Reservation("r1", 10, 20, NOW + 900)
            assert (await store.reserve(_claims(), reservation, NOW)).refused is None
            await store.settle(_claims(), reservation, tokens=5, micros=6, now=NOW, request_id="r1", payload=b"{}")
        finally:
            await store.close()

    asyncio.run(main())
    client = redis.Redis.from_url(redis_url)
    try:
        keys = sorted(k.decode() for k in client.keys("*"))
        assert keys == [
            f"{{tg}}:c:by-model:openai%2Fgpt-4o:{DAY}",
            f"{{tg}}:c:dev-daily:alice:{DAY}",
            f"{{tg}}:c:team%3Amonthly:pay%20ments:{DAY}",
            f"{{tg}}:i:by-model:{DAY}",
            f"{{tg}}:i:dev-daily:{DAY}",
            f"{{tg}}:i:team%3Amonthly:{DAY}",
            "{tg}:ledger",
        ]  # the reservation sets were emptied by settle, so Redis dropped them
        assert client.expiretime(f"{{tg}}:c:dev-daily:alice:{DAY}") == EXPIRES
        assert client.expiretime(f"{{tg}}:i:dev-daily:{DAY}") == EXPIRES
        assert client.expiretime(f"{{tg}}:c:team%3Amonthly:pay%20ments:{DAY}") == EXPIRES + 5
        assert client.expiretime(f"{{tg}}:c:by-model:openai%2Fgpt-4o:{DAY}") == EXPIRES + 7
        assert client.expiretime("{tg}:ledger") == -1  # the outbox is emptied by acknowledgement, never by expiry
        assert client.hgetall(f"{{tg}}:c:dev-daily:alice:{DAY}") == {b"ut": b"5", b"um": b"6", b"rt": b"0", b"rm": b"0"}
    finally:
        client.close()


def test_a_held_reservation_set_expires_with_its_counter(redis_url: str) -> None:
    async def main() -> None:
        store = RedisCounterStore.from_url(redis_url)
        try:
            await store.reserve(_claims()[:1], Reservation("r1", 10, 0, NOW + 900), NOW)
        finally:
            await store.close()

    asyncio.run(main())
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.zrange(f"{{tg}}:r:dev-daily:alice:{DAY}", 0, -1, withscores=True) == [(b"r1|10|0", NOW + 900)]
        assert client.expiretime(f"{{tg}}:r:dev-daily:alice:{DAY}") == EXPIRES
    finally:
        client.close()


def test_scripts_are_loaded_again_after_noscript(redis_url: str) -> None:
    async def main() -> None:
        store = RedisCounterStore.from_url(redis_url)
        try:
            claim = _claims()[:1]
            assert (await store.reserve(claim, Reservation("r1", 10, 0, NOW + 900), NOW)).refused is None
            flusher = redis.Redis.from_url(redis_url)
            flusher.script_flush()
            flusher.close()
            assert (await store.reserve(claim, Reservation("r2", 10, 0, NOW + 900), NOW)).refused is None
            states = await store.snapshot([("dev-daily", DAY)], NOW)
            assert [s.reserved_tokens for s in states] == [20]
        finally:
            await store.close()

    asyncio.run(main())


def test_settle_now_hands_off_on_an_open_connection_and_reloads_after_noscript(redis_url: str) -> None:
    async def main() -> None:
        store = RedisCounterStore.from_url(redis_url)
        try:
            claims, reservation = _claims()[:1], Reservation("r1", 10, 0, NOW + 900)
            settle = {"tokens": 4, "micros": 0, "now": NOW, "request_id": "r1", "payload": b"{}"}
            assert store.settle_now(claims, reservation, **settle) is None  # no connection yet: await settle instead
            assert (await store.reserve(claims, reservation, NOW)).refused is None
            flusher = redis.Redis.from_url(redis_url)
            flusher.script_flush()
            flusher.close()
            confirmation = store.settle_now(claims, reservation, **settle)
            assert confirmation is not None
            await confirmation
            states = await store.snapshot([("dev-daily", DAY)], NOW)
            assert [(s.used_tokens, s.reserved_tokens) for s in states] == [(4, 0)]
            assert [item.payload for item in await store.read_outbox(10)] == [b"{}"]
        finally:
            await store.close()

    asyncio.run(main())


def _all_subclasses(cls: type[BaseException]) -> list[type[BaseException]]:
    found = []
    for sub in cls.__subclasses__():
        found.append(sub)
        found.extend(_all_subclasses(sub))
    return found


@pytest.mark.parametrize(
    "exception_class",
    [RespError, *_all_subclasses(RespError), RespConnectionError, *_all_subclasses(RespConnectionError), OSError],
    ids=lambda cls: cls.__name__,
)
def test_every_redis_error_becomes_store_unavailable(exception_class: type[BaseException]) -> None:
    error = exception_class("boom")
    with pytest.raises(StoreUnavailable) as caught, translate_errors():
        raise error
    assert caught.value.__cause__ is error
    assert caught.value.message == "the budget counter store did not answer"


@pytest.mark.parametrize("kind", ["counter", "holds", "index", "outbox"])
def test_a_key_of_the_wrong_type_fails_a_script_before_it_writes_anything(redis_url: str, kind: str) -> None:
    """Redis does not roll back a script that fails midway: the scripts read every key before the first write."""
    claims = _claims()
    counter, holds, index = (
        f"{{tg}}:c:team%3Amonthly:pay%20ments:{DAY}",
        f"{{tg}}:r:team%3Amonthly:pay%20ments:{DAY}",
        f"{{tg}}:i:team%3Amonthly:{DAY}",
    )
    wrong = {"counter": counter, "holds": holds, "index": index, "outbox": "{tg}:ledger"}[kind]
    client = redis.Redis.from_url(redis_url)
    client.set(wrong, "not mine")

    async def main() -> None:
        store = RedisCounterStore.from_url(redis_url)
        try:
            reservation = Reservation("r1", 10, 20, NOW + 900)
            if kind != "outbox":
                with pytest.raises(StoreUnavailable):
                    await store.reserve(claims, reservation, NOW)
            with pytest.raises(StoreUnavailable):
                await store.settle(claims, reservation, tokens=5, micros=6, now=NOW, request_id="r1", payload=b"{}")
        finally:
            await store.close()

    try:
        asyncio.run(main())
        assert [k.decode() for k in client.keys("*")] == [wrong]  # the other claims' keys were never written
    finally:
        client.close()


def test_one_store_drains_the_outbox_while_it_holds_the_lease(redis_url: str) -> None:
    """Replicas share one outbox; the holder of the drain lease reads it, the others read nothing until it gives the
    lease up (close) or stops renewing it (a crash: the lease lapses)."""

    async def main() -> None:
        first = RedisCounterStore(RespClient.from_url(redis_url), drain_lease_ms=300)
        second = RedisCounterStore(RespClient.from_url(redis_url), drain_lease_ms=300)
        third = RedisCounterStore(RespClient.from_url(redis_url), drain_lease_ms=300)
        try:
            await first.append_outbox("r1", b'{"request_id":"r1"}')
            assert [item.payload for item in await first.read_outbox(10)] == [b'{"request_id":"r1"}']
            assert await second.read_outbox(10) == []  # the first holds the lease
            await first.close()  # gives it up
            assert [item.payload for item in await third.read_outbox(10)] == [b'{"request_id":"r1"}']
            await asyncio.sleep(0.5)  # the third stops renewing (as if it died): its lease lapses after 300 ms
            assert [item.payload for item in await second.read_outbox(10)] == [b'{"request_id":"r1"}']
        finally:
            for store in (first, second, third):
                await store.close()

    asyncio.run(main())
