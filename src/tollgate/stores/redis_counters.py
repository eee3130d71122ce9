"""Budget counters and the ledger outbox in Redis, shared by any number of gateway replicas.

One Lua script reserves (``lua/reserve.lua``), one settles and appends the ledger entry (``lua/settle.lua``), one
reads for status (``lua/snapshot.lua``); each runs atomically. Scripts are called by SHA (EVALSHA) and loaded again
when the server answers NOSCRIPT (after a restart or SCRIPT FLUSH). Commands go through the own pipelined client
``resp.RespClient`` (one connection per process; decision 0015); the parts of a command that depend only on a claim
are encoded once and cached.

Key layout (docs/decisions/0010); every key carries the one hash tag ``{tg}`` so all keys of a request live in one
Redis Cluster slot:

    {tg}:c:<budget>:<scope value>:<window start>   hash: ut, um (used), rt, rm (reserved), b (would-have-blocked)
    {tg}:r:<budget>:<scope value>:<window start>   sorted set: "<reservation id>|<tokens>|<micros>" by deadline
    {tg}:i:<budget>:<window start>                 set: the scope values with a counter in that window (for status)
    {tg}:ledger                                    stream: the outbox (fields request_id, payload)
    {tg}:ledger-drainer                            string: the id of the store that drains the outbox (a lease)

One store of all those sharing a Redis drains the outbox: the one holding the drain lease (``lua/drain_lease.lua``,
renewed every fifth of its time to live while it drains, lapsing ``DRAIN_LEASE_MS`` after its holder stops), so the
replicas of a fleet do not all read and insert the same entries; the others' ``read_outbox`` returns nothing.

Budget names and scope values are percent-encoded in keys. Counter, reservation and index keys expire at the
claim's ``expires_at``; the stream never expires (entries leave when acknowledged).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Awaitable, Iterator, Sequence
from contextlib import contextmanager
from importlib import resources
from typing import Any
from urllib.parse import quote

from tollgate.budgets.model import Claim, CounterKey, CounterState, OutboxItem, Reservation, ReserveOutcome
from tollgate.errors import StoreUnavailable
from tollgate.stores.resp import Command, RespClient, RespError, encode

DEFAULT_PREFIX = "tg"
_FIELDS = 5  # integers per counter in a script's answer
_CACHED_CLAIMS = 4096  # encoded claims kept; the cache starts again when full (new windows bring new claims)
DRAIN_LEASE_MS = 5000  # how long the drain lease outlives its holder's last renewal


@contextmanager
def translate_errors() -> Iterator[None]:
    """Turn every Redis or socket failure into ``StoreUnavailable`` (the one place that does)."""
    try:
        yield
    except (RespError, OSError) as exc:  # the client's connection errors are OSErrors (resp.RespConnectionError)
        raise StoreUnavailable("the budget counter store did not answer") from exc


class LuaScript:
    """A script called by SHA; loaded on first use and again whenever the server answers NOSCRIPT."""

    def __init__(self, name: str) -> None:
        self.source = resources.files("tollgate.stores").joinpath("lua", name).read_text(encoding="utf-8")
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()
        self.evalsha = Command("EVALSHA", self.sha)

    async def __call__(self, client: RespClient, packed: bytes) -> Any:
        """Run ``packed`` (made by ``self.evalsha``)."""
        try:
            return await client.submit(packed)
        except RespError as exc:
            if not exc.message.startswith("NOSCRIPT"):
                raise
        return await self.reload_and_run(client, packed)

    async def reload_and_run(self, client: RespClient, packed: bytes) -> Any:
        await client.execute("SCRIPT", "LOAD", self.source)
        return await client.submit(packed)


class CounterKeys:
    """Names the keys of one store (``prefix`` is the hash tag; tests give each store its own)."""

    def __init__(self, prefix: str = DEFAULT_PREFIX) -> None:
        self.tag = "{" + prefix + "}"
        self.ledger = f"{self.tag}:ledger"
        self.drainer = f"{self.tag}:ledger-drainer"

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


class EncodedClaims:
    """The parts of the reserve and settle commands that depend on a claim only, encoded once per claim.

    Per claim: its 3 keys, its 6 reserve arguments and its 3 settle arguments (see the scripts' headers).
    """

    def __init__(self, keys: CounterKeys) -> None:
        self._keys = keys
        self._cache: dict[Claim, tuple[bytes, bytes, bytes]] = {}

    def __call__(self, claim: Claim) -> tuple[bytes, bytes, bytes]:
        parts = self._cache.get(claim)
        if parts is None:
            if len(self._cache) >= _CACHED_CLAIMS:
                self._cache.clear()
            parts = self._cache[claim] = self._encode(claim)
        return parts

    def _encode(self, claim: Claim) -> tuple[bytes, bytes, bytes]:
        value, expires = encode(claim.counter.scope_value), encode(claim.expires_at)
        keys = b"".join(map(encode, self._keys.of_claim(claim)))
        caps = encode(_cap(claim.cap_tokens)) + encode(_cap(claim.cap_micros))
        reserve, blocking = encode(int(claim.reserve)), encode(int(claim.blocking))
        return keys, value + expires + caps + reserve + blocking, value + expires + reserve


class RedisCounterStore:
    def __init__(
        self, client: RespClient, prefix: str = DEFAULT_PREFIX, *, drain_lease_ms: int = DRAIN_LEASE_MS
    ) -> None:
        self._client = client
        self.keys = CounterKeys(prefix)
        self._claims = EncodedClaims(self.keys)
        self._reserve = LuaScript("reserve.lua")
        self._settle = LuaScript("settle.lua")
        self._snapshot = LuaScript("snapshot.lua")
        self._lease = LuaScript("drain_lease.lua")
        self._lease_ms = drain_lease_ms
        self._renew_s = drain_lease_ms / 5000  # how often the lease is checked (taken or renewed) while reading
        self._holder = os.urandom(8).hex()  # this store's id as the outbox's drainer
        self._lease_checked: float | None = None  # time.monotonic() of the last check
        self._lease_held = False
        self._ledger = encode(self.keys.ledger)
        self._xadd = Command("XADD", self.keys.ledger, "*", "request_id")

    @classmethod
    def from_url(cls, url: str, prefix: str = DEFAULT_PREFIX) -> RedisCounterStore:
        """Raises ValueError for a URL the client cannot use (``resp.parse_redis_url``); connects on first use."""
        return cls(RespClient.from_url(url), prefix)

    async def reserve(self, claims: Sequence[Claim], reservation: Reservation, now: float) -> ReserveOutcome:
        keys: list[bytes] = [encode(3 * len(claims))]
        args: list[bytes] = [
            encode(repr(now)),
            encode(_member(reservation)),
            encode(reservation.tokens),
            encode(reservation.micros),
            encode(repr(reservation.deadline)),
        ]
        for claim in claims:
            claim_keys, claim_args, _ = self._claims(claim)
            keys.append(claim_keys)
            args.append(claim_args)
        packed = self._reserve.evalsha.pack_encoded(6 + 9 * len(claims), keys + args)
        with translate_errors():
            answer = await self._reserve(self._client, packed)
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
        packed = self._pack_settle(claims, reservation, tokens, micros, now, request_id, payload)
        with translate_errors():
            await self._settle(self._client, packed)

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
    ) -> Awaitable[None] | None:
        """The settle's EVALSHA is on the connection when this returns (decision 0018); None when no connection is
        open yet (the caller awaits ``settle``, which opens one)."""
        if self._client.connection is None:
            return None
        packed = self._pack_settle(claims, reservation, tokens, micros, now, request_id, payload)
        with translate_errors():
            sent = self._client.send_now(packed)
        return None if sent is None else self._confirm_settle(sent, packed)

    async def _confirm_settle(self, sent: Awaitable[Any], packed: bytes) -> None:
        with translate_errors():
            try:
                await sent
            except RespError as exc:
                if not exc.message.startswith("NOSCRIPT"):
                    raise
                await self._settle.reload_and_run(self._client, packed)  # NOSCRIPT: nothing was applied

    def _pack_settle(
        self,
        claims: Sequence[Claim],
        reservation: Reservation | None,
        tokens: int,
        micros: int,
        now: float,
        request_id: str,
        payload: bytes,
    ) -> bytes:
        keys: list[bytes] = [encode(3 * len(claims) + 1)]
        args: list[bytes] = [
            encode(repr(now)),
            encode("" if reservation is None else _member(reservation)),
            encode(0 if reservation is None else reservation.tokens),
            encode(0 if reservation is None else reservation.micros),
            encode(tokens),
            encode(micros),
            encode(request_id),
            encode(payload),
        ]
        for claim in claims:
            claim_keys, _, claim_args = self._claims(claim)
            keys.append(claim_keys)
            args.append(claim_args)
        keys.append(self._ledger)
        return self._settle.evalsha.pack_encoded(10 + 6 * len(claims), keys + args)

    async def append_outbox(self, request_id: str, payload: bytes) -> None:
        with translate_errors():
            await self._client.submit(self._xadd.pack(request_id, "payload", payload))

    async def read_outbox(self, max_items: int) -> list[OutboxItem]:
        """The oldest entries; none while another store holds the drain lease."""
        if not await self._holds_drain_lease():
            return []
        with translate_errors():
            entries: Any = await self._client.execute("XRANGE", self.keys.ledger, "-", "+", "COUNT", max_items)
        items = []
        for entry_id, fields in entries:
            by_name = dict(zip(fields[::2], fields[1::2], strict=True))
            items.append(OutboxItem(_text(entry_id), bytes(by_name[b"payload"])))
        return items

    async def ack_outbox(self, ids: Sequence[str]) -> None:
        if ids:
            with translate_errors():
                await self._client.execute("XDEL", self.keys.ledger, *ids)

    async def snapshot(self, windows: Sequence[tuple[str, int]], now: float) -> list[CounterState]:
        counters: list[CounterKey] = []
        with translate_errors():
            for budget, start in windows:
                values = await self._client.execute("SMEMBERS", self.keys.index(budget, start))
                counters.extend(CounterKey(budget, value, start) for value in sorted(map(_text, values)))
            if not counters:
                return []
            keys = [name for key in counters for name in (self.keys.counter(key), self.keys.holds(key))]
            packed = self._snapshot.evalsha.pack(len(keys), *keys, repr(now))
            answer = await self._snapshot(self._client, packed)
        return list(_states(counters, answer))

    async def ping(self) -> None:
        with translate_errors():
            await self._client.execute("PING")

    async def close(self) -> None:
        try:
            if self._lease_held:  # let another store take over now rather than when the lease lapses
                self._lease_held = False
                with contextlib.suppress(StoreUnavailable):
                    await self._call_lease("0")
        finally:
            await self._client.close()

    async def _holds_drain_lease(self) -> bool:
        now = time.monotonic()
        if self._lease_checked is None or now - self._lease_checked >= self._renew_s:
            self._lease_held = await self._call_lease("1")
            self._lease_checked = now
        return self._lease_held

    async def _call_lease(self, take: str) -> bool:
        """``take`` "1": take or renew the lease, "0": give it up; whether this store holds it afterwards."""
        packed = self._lease.evalsha.pack(1, self.keys.drainer, self._holder, self._lease_ms, take)
        with translate_errors():
            return int(await self._lease(self._client, packed)) == 1


def _member(reservation: Reservation) -> str:
    return f"{reservation.id}|{reservation.tokens}|{reservation.micros}"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _cap(cap: int | None) -> int:
    return -1 if cap is None else cap


def _states(counters: Sequence[CounterKey], numbers: Sequence[Any]) -> tuple[CounterState, ...]:
    # Spelled out rather than unpacking a generator per counter: this runs on every reserve (hot path).
    return tuple(
        CounterState(
            key.budget,
            key.scope_value,
            key.window_start,
            int(numbers[i]),
            int(numbers[i + 1]),
            int(numbers[i + 2]),
            int(numbers[i + 3]),
            int(numbers[i + 4]),
        )
        for key, i in zip(counters, range(0, len(numbers), _FIELDS), strict=True)
    )
