"""The budget model, compiled from settings, and the values a counter store trades in.

A ``Budget`` is one configured budget made cheap to evaluate. A ``Claim`` is what one request asks of one counter
(one budget, one scope value, one window); the counter store admits or refuses a set of claims atomically with the
rule in ``Claim.admits``, which the Redis Lua script mirrors line for line.

Money is integer micro-dollars everywhere (docs/decisions/0012).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from tollgate.settings import BudgetSettings, Limit

HARD = "hard"
SOFT = "soft"
SHADOW = "shadow"
RESERVE = "reserve"
POST = "post"
DEFAULT_MODE = RESERVE


@dataclass(frozen=True, slots=True)
class Budget:
    """One configured budget, with its match filter turned into sets."""

    name: str
    scope: str
    window: str
    limit: Limit
    enforce: str
    match: tuple[tuple[str, frozenset[str]], ...]
    mode: str | None
    allowance: float
    overrides: Mapping[str, Limit]
    alerts: tuple[float, ...]

    @classmethod
    def from_settings(cls, spec: BudgetSettings) -> Budget:
        return cls(
            name=spec.name,
            scope=spec.scope,
            window=spec.window,
            limit=spec.limit,
            enforce=spec.enforce,
            match=tuple((dim, frozenset(values)) for dim, values in spec.match.items()),
            mode=spec.mode,
            allowance=spec.allowance,
            overrides=dict(spec.overrides),
            alerts=spec.alerts,
        )

    def limit_for(self, scope_value: str) -> Limit:
        """The limit of one scope value: its override when it has one (the override replaces the whole limit)."""
        return self.overrides.get(scope_value, self.limit)


def post_ceiling(limit: int, allowance: float) -> int:
    """The smallest integer ``c`` such that ``used < limit × (1 + allowance)`` ⇔ ``used < c`` for integer ``used``.

    The product is rounded to 6 places first so that float noise (2e6 × 0.1 = 200000.00000000003) does not add one.
    """
    return limit + math.ceil(round(limit * allowance, 6))


@dataclass(frozen=True, slots=True)
class CounterKey:
    """Names one counter: a budget, one value of its scope, one window (by its start, unix seconds)."""

    budget: str
    scope_value: str
    window_start: int


@dataclass(frozen=True, slots=True)
class CounterState:
    """A counter as read from the store, after its expired reservations were purged."""

    budget: str
    scope_value: str
    window_start: int
    used_tokens: int = 0
    used_micros: int = 0
    reserved_tokens: int = 0
    reserved_micros: int = 0
    blocked: int = 0  # requests a soft or shadow budget would have refused

    @property
    def held_tokens(self) -> int:
        return self.used_tokens + self.reserved_tokens

    @property
    def held_micros(self) -> int:
        return self.used_micros + self.reserved_micros


@dataclass(frozen=True, slots=True)
class Claim:
    """What one request asks of one counter.

    ``cap_tokens``/``cap_micros`` are the numbers the store compares with (None: that unit is not limited): the
    limit itself in ``reserve`` mode, ``post_ceiling(limit, allowance)`` in ``post`` mode. ``reserve`` says whether
    the request's estimate is held on this counter until settled. ``expires_at`` is when the store may drop the
    counter (the window's end plus a margin).
    """

    counter: CounterKey
    expires_at: int
    cap_tokens: int | None
    cap_micros: int | None
    reserve: bool
    enforce: str

    @property
    def blocking(self) -> bool:
        return self.enforce == HARD

    def admits(self, state: CounterState, tokens: int, micros: int) -> bool:
        """Whether this counter has room: what is held (used + reserved) is under the cap and, in reserve mode,
        the estimate fits under it too. Mirrored by ``stores/lua/reserve.lua``."""
        return _fits(state.held_tokens, tokens if self.reserve else 0, self.cap_tokens) and _fits(
            state.held_micros, micros if self.reserve else 0, self.cap_micros
        )


def _fits(held: int, amount: int, cap: int | None) -> bool:
    return cap is None or (held < cap and held + amount <= cap)


@dataclass(frozen=True, slots=True)
class Reservation:
    """The hold one request places on every reserve-mode counter it matched; gone by itself after ``deadline``."""

    id: str
    tokens: int
    micros: int
    deadline: float  # unix seconds


@dataclass(frozen=True, slots=True)
class ReserveOutcome:
    """The store's answer to a reserve: ``refused`` is the index of the first hard claim without room (then
    nothing was reserved), else None. ``states`` holds every claim's counter, after the reservation when admitted."""

    refused: int | None
    states: tuple[CounterState, ...]


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One ledger entry waiting in the store's outbox; ``id`` is what ``ack_outbox`` takes."""

    id: str
    payload: bytes
