"""Budget counters and the ledger outbox in Redis, shared by any number of gateway replicas.

One Lua script reserves (``lua/reserve.lua``), one settles and appends the ledger entry (``lua/settle.lua``), one
reads for status (``lua/snapshot.lua``); each runs atomically. Scripts are called by SHA (EVALSHA) and loaded again
when the server answers NOSCRIPT (after a restart or SCRIPT FLUSH).

Key layout (docs/decisions/0010); every key carries the one hash tag ``{tg}`` so all keys of a request live in one
Redis Cluster slot:

    {tg}:c:<budget>:<scope value>:<window start>   hash: ut, um (used), rt, rm (reserved), b (would-have-blocked)
    {tg}:r:<budget>:<scope value>:<window start>   sorted set: "<reservation id>|<tokens>|<micros>" by deadline
    {tg}:i:<budget>:<window start>                 set: the scope values with a counter in that window (for status)
    {tg}:ledger                                    stream: the outbox (fields request_id, payload)

Budget names and scope values are percent-encoded in keys. Counter, reservation and index keys expire at the
claim's ``expires_at``; the stream never expires (entries leave when acknowledged).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib import resources
from typing import Any
from urllib.parse import quote

import redis.asyncio
from redis.exceptions import NoScriptError, RedisError

from tollgate.budgets.model import Claim, CounterKey, CounterState, OutboxItem, Reservation, ReserveOutcome
from tollgate.errors import StoreUnavailable

DEFAULT_PREFIX = "tg"
MAX_CONNECTIONS = 64  # per process; more concurrent requests wait for a free connection
CONNECTION_WAIT_S = 10.0  # then the store counts as unavailable
_FIELDS = 5  # integers per counter in a script's answer


@contextmanager
def translate_errors() -> Iterator[None]:
    """Turn every Redis or socket failure into ``StoreUnavailable`` (the one place that does)."""
    try:
        yield
    except (RedisError, OSError) as exc:
        raise StoreUnavailable("the budget counter store did not answer") from exc


class LuaScript:
    """A script called by SHA; loaded on first use and again whenever the server answers NOSCRIPT."""

    def __init__(self, name: str) -> None:
        self.source = resources.files("tollgate.stores").joinpath("lua", name).read_text(encoding="utf-8")
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()

    async def __call__(
        self, client: redis.asyncio.Redis, keys: Sequence[str], args: Sequence[str | int | bytes]
    ) -> Any:
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            await client.script_load(self.source)
            return await client.evalsha(self.sha, len(keys), *keys, *args)


class CounterKeys:
    """Names the keys of one store (``prefix`` is the hash tag; tests give each store its own)."""

    def __init__(self, prefix: str = DEFAULT_PREFIX) -> None:
        self.tag = "{" + prefix + "}"
        self.ledger = f"{self.tag}:ledger"

    def counter(self, key: CounterKey) -> str:
        return f"{self.tag}:c:{_part(key.budget)}:{_part(key.scope_value)}:{key.window_start}"

    def holds(self, key: CounterKey) -> str:
        return f"{self.tag}:r:{_part(key.budget)}:{_part(key.scope_value)}:{key.window_start}"

    def index(self, budget: str, window_start: int) -> str:
        return f"{self.tag}:i:{_part(budget)}:{window_start}"

    def of_claim(self, claim: Claim) -> tuple[str, str, str]:
        key = claim.counter
        return self.counter(key), self.holds(key), self.index(key.budget, key.window_start)


def _part(text: str) -> str:
    return quote(text, safe="")


class RedisCounterStore:
    def __init__(self, client: redis.asyncio.Redis, prefix: str = DEFAULT_PREFIX) -> None:
        self._client = client
        self.keys = CounterKeys(prefix)
        self._reserve = LuaScript("reserve.lua")
        self._settle = LuaScript("settle.lua")
        self._snapshot = LuaScript("snapshot.lua")

    @classmethod
    def from_url(cls, url: str, prefix: str = DEFAULT_PREFIX) -> RedisCounterStore:
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            url, max_connections=MAX_CONNECTIONS, timeout=CONNECTION_WAIT_S, decode_responses=False
        )
        return cls(redis.asyncio.Redis.from_pool(pool), prefix)

    async def reserve(self, claims: Sequence[Claim], reservation: Reservation, now: float) -> ReserveOutcome:
        keys: list[str] = []
        args: list[str | int | bytes] = [
            repr(now),
            _member(reservation),
            reservation.tokens,
            reservation.micros,
            repr(reservation.deadline),
        ]
        for claim in claims:
            keys.extend(self.keys.of_claim(claim))
            args.extend(
                (
                    claim.counter.scope_value,
                    claim.expires_at,
                    _cap(claim.cap_tokens),
                    _cap(claim.cap_micros),
                    int(claim.reserve),
                    int(claim.blocking),
                )
            )
        with translate_errors():
            answer = await self._reserve(self._client, keys, args)
        refused = int(answer[0])
        states = _states([claim.counter for claim in claims], answer[1:])
        return ReserveOutcome(None if refused == 0 else refused - 1, states)

    async def settle(
        self,
        claims: Sequence[Claim],
        reservation: Reservation | None,
        *,
        tokens: int,
        micros: int,
        now: float,
        request_id: str,
        payload: bytes,
    ) -> None:
        keys: list[str] = []
        args: list[str | int | bytes] = [
            repr(now),
            "" if reservation is None else _member(reservation),
            0 if reservation is None else reservation.tokens,
            0 if reservation is None else reservation.micros,
            tokens,
            micros,
            request_id,
            payload,
        ]
        for claim in claims:
            keys.extend(self.keys.of_claim(claim))
            args.extend((claim.counter.scope_value, claim.expires_at, int(claim.reserve)))
        keys.append(self.keys.ledger)
        with translate_errors():
            await self._settle(self._client, keys, args)

    def settle_now(
        self,
        claims: Sequence[Claim],
        reservation: Reservation | None,
        *,
        tokens: int,
        micros: int,
        now: float,
        request_id: str,
        payload: bytes,
    ) -> None:
        """Not possible here with redis-py's pool: the caller awaits ``settle``."""
        return None

    async def append_outbox(self, request_id: str, payload: bytes) -> None:
        with translate_errors():
            await self._client.xadd(self.keys.ledger, {"request_id": request_id, "payload": payload})

    async def read_outbox(self, max_items: int) -> list[OutboxItem]:
        with translate_errors():
            entries: Any = await self._client.xrange(self.keys.ledger, "-", "+", count=max_items)
        return [OutboxItem(_text(entry_id), bytes(fields[b"payload"])) for entry_id, fields in entries]

    async def ack_outbox(self, ids: Sequence[str]) -> None:
        if ids:
            with translate_errors():
                await self._client.xdel(self.keys.ledger, *ids)

    async def snapshot(self, windows: Sequence[tuple[str, int]], now: float) -> list[CounterState]:
        counters: list[CounterKey] = []
        with translate_errors():
            for budget, start in windows:
                values = await self._client.smembers(self.keys.index(budget, start))
                counters.extend(CounterKey(budget, value, start) for value in sorted(map(_text, values)))
            if not counters:
                return []
            keys = [name for key in counters for name in (self.keys.counter(key), self.keys.holds(key))]
            answer = await self._snapshot(self._client, keys, [repr(now)])
        return list(_states(counters, answer))

    async def ping(self) -> None:
        with translate_errors():
            await self._client.ping()

    async def close(self) -> None:
        await self._client.aclose()


def _member(reservation: Reservation) -> str:
    return f"{reservation.id}|{reservation.tokens}|{reservation.micros}"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _cap(cap: int | None) -> int:
    return -1 if cap is None else cap


def _states(counters: Sequence[CounterKey], numbers: Sequence[Any]) -> tuple[CounterState, ...]:
    return tuple(
        CounterState(key.budget, key.scope_value, key.window_start, *(int(x) for x in numbers[i : i + _FIELDS]))
        for key, i in zip(counters, range(0, len(numbers), _FIELDS), strict=True)
    )
