"""Admission: reserve a request's estimate on every budget it matches before it is forwarded; settle it after.

``admit`` finds the matching budgets in memory, builds one ``Claim`` per budget (its counter in the current window,
its cap, its mode) and makes ONE atomic store call that reserves on all of them or on none. A hard budget without
room raises ``BudgetExceeded``; soft and shadow budgets never refuse (the store counts the requests they would have
refused). ``settle`` makes ONE store call that swaps the reservation for the actual usage and writes the request's
ledger entry to the store's outbox in the same atomic step. A request that matched nothing costs no store call on
admission and one (the outbox entry) on settlement.

The store behind it is any ``CounterStore``: ``stores/sqlite_counters.py`` or ``stores/redis_counters.py``.
"""

from __future__ import annotations

import time
import zoneinfo
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import orjson

from tollgate.budgets.matching import BudgetMatcher, Match
from tollgate.budgets.model import (
    DEFAULT_MODE,
    HARD,
    RESERVE,
    Budget,
    Claim,
    CounterKey,
    CounterState,
    OutboxItem,
    Reservation,
    ReserveOutcome,
    post_ceiling,
)
from tollgate.budgets.windows import Window, WindowCalendar, window_at
from tollgate.errors import BudgetExceeded, StoreUnavailable
from tollgate.settings import Limit, Settings
from tollgate.types import Caller, UsageRecord

__all__ = ["Admission", "BudgetStatus", "CounterStore", "OutboxItem", "Ticket"]

# How long a counter outlives its window (beyond the reservation TTL), so status and late settles still find it.
COUNTER_EXPIRY_MARGIN_S = 86_400
# Resolved plans kept per (caller, model); a CI key's repo header makes callers open-ended, so the cache is bounded.
PLAN_CACHE_SIZE = 4096

# observe(operation, seconds, ok): each store call of the request path ("reserve", "settle", "outbox"), timed until
# the store answered (a settle handed off is timed to its confirmation).
StoreObserver = Callable[[str, float, bool], None]


def _ignore(operation: str, seconds: float, ok: bool) -> None:
    return None


class CounterStore(Protocol):
    """Budget counters plus the ledger outbox; every method raises ``StoreUnavailable`` when the store fails."""

    async def reserve(self, claims: Sequence[Claim], reservation: Reservation, now: float) -> ReserveOutcome:
        """Atomically: purge the claims' expired reservations; if every hard claim admits, hold ``reservation``
        on each reserve-mode claim and count soft/shadow claims without room; else change nothing."""
        ...

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
        """Atomically: drop ``reservation`` from each claim's counter if it is still held, add the actual usage,
        and append ``payload`` to the outbox. A reservation already expired is not subtracted twice."""
        ...

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
        """``settle``, with the command written to the store's connection before this returns; the store's answer
        is the returned awaitable. None (and nothing done) when the store cannot do that: call ``settle`` then."""
        ...

    async def append_outbox(self, request_id: str, payload: bytes) -> None: ...

    async def read_outbox(self, max_items: int) -> list[OutboxItem]:
        """The oldest entries, oldest first; they stay until acknowledged."""
        ...

    async def ack_outbox(self, ids: Sequence[str]) -> None: ...

    async def snapshot(self, windows: Sequence[tuple[str, int]], now: float) -> list[CounterState]:
        """Every counter of each ``(budget, window_start)``, expired reservations purged first."""
        ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


@dataclass(slots=True)
class Ticket:
    """What ``admit`` hands the proxy; only the two ``remaining_*`` fields are meant to be read by it.

    ``remaining_tokens``/``remaining_usd`` belong to the tightest matching hard budget after this reservation
    (None when no hard budget limits that unit).
    """

    remaining_tokens: int | None
    remaining_usd: float | None
    request_id: str
    claims: tuple[Claim, ...] = ()
    reservation: Reservation | None = None
    settled: bool = False


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    """One budget and scope value in its current window, for ``tollgate budgets status``."""

    budget: str
    scope: str
    scope_value: str | None  # None: no counter yet in this window
    window: str
    window_start: str
    reset_at: str
    enforce: str
    mode: str | None  # None: by the caller's env
    limit_tokens: int | None
    limit_micros: int | None
    used_tokens: int
    used_micros: int
    reserved_tokens: int
    reserved_micros: int
    blocked: int

    @property
    def percent(self) -> float | None:
        """Used over limit, in percent, of the tighter unit (a zero limit is 100% spent)."""
        shares = [
            100.0 * used / limit if limit > 0 else 100.0
            for used, limit in ((self.used_tokens, self.limit_tokens), (self.used_micros, self.limit_micros))
            if limit is not None
        ]
        return max(shares) if shares else None


@dataclass(frozen=True, slots=True)
class _Plan:
    """One matching budget, resolved for one request at one moment."""

    budget: Budget
    scope_value: str
    window: Window
    limit: Limit
    claim: Claim


@dataclass(frozen=True, slots=True)
class _Plans:
    """Every matching budget for one (caller, model), valid for ``valid_from <= now < valid_until``."""

    plans: tuple[_Plan, ...]
    claims: tuple[Claim, ...]
    valid_from: int
    valid_until: int


class Admission:
    def __init__(
        self,
        settings: Settings,
        store: CounterStore,
        clock: Callable[[], float] = time.time,
        observe_store: StoreObserver = _ignore,
    ) -> None:
        self._budgets = tuple(Budget.from_settings(spec) for spec in settings.budgets)
        self._matcher = BudgetMatcher(self._budgets)
        self._zone = zoneinfo.ZoneInfo(settings.timezone)
        self._calendar = WindowCalendar(self._zone)
        self._modes: Mapping[str, str] = dict(settings.admission)
        self._ttl_s = settings.reservation_ttl_s
        self._store = store
        self._clock = clock
        self._plans: dict[tuple[Caller, str], _Plans] = {}
        self._observe = observe_store

    def applies(self, caller: Caller, model: str) -> bool:
        """Whether any budget matches this caller and model (in memory)."""
        return self._matcher.any_match(caller, model)

    def _plans_for(self, caller: Caller, model: str, now: float) -> _Plans:
        """The matching budgets resolved at ``now``; reused while ``now`` stays inside every one of their windows."""
        key = (caller, model)
        cached = self._plans.get(key)
        if cached is not None and cached.valid_from <= now < cached.valid_until:
            return cached
        plans = tuple(self._plan(match, caller, now) for match in self._matcher.matches(caller, model))
        resolved = _Plans(
            plans,
            tuple(plan.claim for plan in plans),
            max((plan.window.start for plan in plans), default=0),
            min((plan.window.end for plan in plans), default=0),
        )
        if not plans:
            return resolved
        if len(self._plans) >= PLAN_CACHE_SIZE:
            self._plans.clear()
        self._plans[key] = resolved
        return resolved

    async def admit(
        self, caller: Caller, model: str, *, estimate_tokens: int, estimate_micros: int, request_id: str
    ) -> Ticket:
        """Reserve on every matching budget at once, or raise ``BudgetExceeded`` naming the hard one that refused."""
        now = self._clock()
        resolved = self._plans_for(caller, model, now)
        if not resolved.plans:
            return Ticket(None, None, request_id)
        plans, claims = resolved.plans, resolved.claims
        reservation = Reservation(request_id, max(0, estimate_tokens), max(0, estimate_micros), now + self._ttl_s)
        began = time.perf_counter()
        try:
            outcome = await self._store.reserve(claims, reservation, now)
        except StoreUnavailable:
            self._observe("reserve", time.perf_counter() - began, False)
            raise
        self._observe("reserve", time.perf_counter() - began, True)
        if outcome.refused is not None:
            raise _refusal(plans[outcome.refused], outcome.states[outcome.refused], now)
        tokens, micros = _remaining(plans, outcome.states)
        return Ticket(
            remaining_tokens=tokens,
            remaining_usd=None if micros is None else micros / 1_000_000,
            request_id=request_id,
            claims=claims,
            reservation=reservation,
        )

    async def settle(self, ticket: Ticket, record: UsageRecord) -> None:
        """Charge the actual usage (zero usage releases the hold) and write the ledger entry, in one store call.

        A ticket settles once; a second call does nothing.
        """
        confirmation = await self.hand_off(ticket, record)
        if confirmation is not None:
            await confirmation

    async def hand_off(self, ticket: Ticket, record: UsageRecord) -> Awaitable[None] | None:
        """``settle``, returning as soon as the settle has left this process so the answer can go out while the store
        confirms: a store with ``settle_now`` has written the command to its connection when this returns, and the
        confirmation to await is returned; any other store is awaited here in full (None is returned)."""
        if ticket.settled:
            return None
        ticket.settled = True
        tokens, micros = max(0, record.usage.total_tokens), max(0, record.cost_micros)
        now, payload = self._clock(), orjson.dumps(record)
        claims, reservation, request_id = ticket.claims, ticket.reservation, record.request_id
        began = time.perf_counter()
        try:
            confirmation = self._store.settle_now(
                claims, reservation, tokens=tokens, micros=micros, now=now, request_id=request_id, payload=payload
            )
            if confirmation is None:
                await self._store.settle(
                    claims, reservation, tokens=tokens, micros=micros, now=now, request_id=request_id, payload=payload
                )
                self._observe("settle", time.perf_counter() - began, True)
                return None
        except StoreUnavailable:
            self._observe("settle", time.perf_counter() - began, False)
            raise
        return self._timed("settle", began, confirmation)

    async def _timed(self, operation: str, began: float, confirmation: Awaitable[None]) -> None:
        try:
            await confirmation
        except StoreUnavailable:
            self._observe(operation, time.perf_counter() - began, False)
            raise
        self._observe(operation, time.perf_counter() - began, True)

    async def record_rejection(self, record: UsageRecord) -> None:
        """Write a refused request's ledger entry to the outbox."""
        began = time.perf_counter()
        try:
            await self._store.append_outbox(record.request_id, orjson.dumps(record))
        except StoreUnavailable:
            self._observe("outbox", time.perf_counter() - began, False)
            raise
        self._observe("outbox", time.perf_counter() - began, True)

    async def status(self, now: float | None = None) -> list[BudgetStatus]:
        """Every budget and scope value in the current window (one row with no scope value for an unused budget)."""
        at = self._clock() if now is None else now
        windows = {budget.name: window_at(budget.window, at, self._zone) for budget in self._budgets}
        states = await self._store.snapshot([(name, w.start) for name, w in windows.items()], at)
        by_budget: dict[str, list[CounterState]] = {}
        for state in states:
            by_budget.setdefault(state.budget, []).append(state)
        rows = []
        for budget in self._budgets:
            window = windows[budget.name]
            found = sorted(by_budget.get(budget.name, []), key=lambda s: s.scope_value)
            if not found:
                rows.append(_status(budget, window, None, CounterState(budget.name, "", window.start)))
            rows.extend(_status(budget, window, state.scope_value, state) for state in found)
        return rows

    def _plan(self, match: Match, caller: Caller, now: float) -> _Plan:
        budget = match.budget
        window = self._calendar.window(budget.window, now)
        limit = budget.limit_for(match.scope_value)
        mode = budget.mode or self._modes.get(caller.env or "", DEFAULT_MODE)
        reserve = mode == RESERVE
        claim = Claim(
            counter=CounterKey(budget.name, match.scope_value, window.start),
            expires_at=window.end + self._ttl_s + COUNTER_EXPIRY_MARGIN_S,
            cap_tokens=_cap(limit.tokens, reserve, budget.allowance),
            cap_micros=_cap(limit.usd_micros, reserve, budget.allowance),
            reserve=reserve,
            enforce=budget.enforce,
        )
        return _Plan(budget, match.scope_value, window, limit, claim)


def _cap(limit: int | None, reserve: bool, allowance: float) -> int | None:
    if limit is None or reserve:
        return limit
    return post_ceiling(limit, allowance)


def _refusal(plan: _Plan, state: CounterState, now: float) -> BudgetExceeded:
    return BudgetExceeded(
        budget=plan.budget.name,
        scope=plan.budget.scope,
        scope_value=plan.scope_value,
        window=plan.budget.window,
        limit_tokens=plan.limit.tokens,
        used_tokens=state.held_tokens,
        limit_usd=None if plan.limit.usd_micros is None else plan.limit.usd_micros / 1_000_000,
        used_usd=state.held_micros / 1_000_000,
        reset_at=plan.window.reset_at,
        retry_after_s=plan.window.seconds_left(now),
    )


def _remaining(plans: Sequence[_Plan], states: Sequence[CounterState]) -> tuple[int | None, int | None]:
    """The smallest room left (tokens, micro-dollars) over the hard budgets, after this request's reservation."""
    tokens: int | None = None
    micros: int | None = None
    for plan, state in zip(plans, states, strict=True):
        if plan.budget.enforce != HARD:
            continue
        if plan.limit.tokens is not None:
            room = max(0, plan.limit.tokens - state.held_tokens)
            tokens = room if tokens is None else min(tokens, room)
        if plan.limit.usd_micros is not None:
            room = max(0, plan.limit.usd_micros - state.held_micros)
            micros = room if micros is None else min(micros, room)
    return tokens, micros


def _status(budget: Budget, window: Window, scope_value: str | None, state: CounterState) -> BudgetStatus:
    limit = budget.limit if scope_value is None else budget.limit_for(scope_value)
    return BudgetStatus(
        budget=budget.name,
        scope=budget.scope,
        scope_value=scope_value,
        window=budget.window,
        window_start=window.starts_at,
        reset_at=window.reset_at,
        enforce=budget.enforce,
        mode=budget.mode,
        limit_tokens=limit.tokens,
        limit_micros=limit.usd_micros,
        used_tokens=state.used_tokens,
        used_micros=state.used_micros,
        reserved_tokens=state.reserved_tokens,
        reserved_micros=state.reserved_micros,
        blocked=state.blocked,
    )
