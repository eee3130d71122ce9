"""The compiled budget, per-value overrides, the post-mode ceiling and the admission rule of one counter."""

from __future__ import annotations

import pytest

from tollgate.budgets.model import Budget, Claim, CounterKey, CounterState, post_ceiling
from tollgate.settings import BudgetSettings, Limit


def test_from_settings_and_overrides() -> None:
    spec = BudgetSettings(
        name="dev-daily",
        scope="developer",
        window="daily",
        limit=Limit(tokens=2_000_000),
        match={"env": ("dev", "staging")},
        overrides={"bob": Limit(tokens=5_000_000, usd_micros=10_000_000)},
        alerts=(0.5, 0.8),
    )
    budget = Budget.from_settings(spec)
    assert budget.match == (("env", frozenset({"dev", "staging"})),)
    assert budget.enforce == "hard" and budget.mode is None and budget.alerts == (0.5, 0.8)
    assert budget.limit_for("alice") == Limit(tokens=2_000_000)
    assert budget.limit_for("bob") == Limit(tokens=5_000_000, usd_micros=10_000_000)


@pytest.mark.parametrize(
    ("limit", "allowance", "ceiling"),
    [
        (100, 0.0, 100),
        (100, 0.1, 110),
        (2_000_000, 0.1, 2_200_000),
        (5_000_000_000, 0.05, 5_250_000_000),
        (3, 0.5, 5),
        (7, 0.15, 9),
        (0, 0.5, 0),
    ],
)
def test_post_ceiling(limit: int, allowance: float, ceiling: int) -> None:
    assert post_ceiling(limit, allowance) == ceiling


def _claim(cap_tokens: int | None, cap_micros: int | None = None, reserve: bool = True) -> Claim:
    return Claim(CounterKey("b", "v", 0), 0, cap_tokens, cap_micros, reserve, "hard")


def _state(used: int = 0, reserved: int = 0, used_micros: int = 0, reserved_micros: int = 0) -> CounterState:
    return CounterState("b", "v", 0, used, used_micros, reserved, reserved_micros)


@pytest.mark.parametrize(
    ("claim", "state", "tokens", "micros", "admitted"),
    [
        (_claim(100), _state(), 100, 0, True),
        (_claim(100), _state(), 101, 0, False),
        (_claim(100), _state(40, 20), 40, 0, True),
        (_claim(100), _state(40, 20), 41, 0, False),
        (_claim(100), _state(100), 0, 0, False),  # spent: even a zero estimate waits for the next window
        (_claim(0), _state(), 0, 0, False),  # a zero limit blocks everything
        (_claim(None), _state(10**12), 10**6, 0, True),
        (_claim(None, 1000), _state(used_micros=500), 10**6, 500, True),
        (_claim(None, 1000), _state(used_micros=500, reserved_micros=1), 0, 500, False),
        (_claim(100, 1000), _state(50, 0, 999), 10, 2, False),
        # post mode: only what is held counts, the estimate does not
        (_claim(110, reserve=False), _state(109), 500, 0, True),
        (_claim(110, reserve=False), _state(100, 10), 1, 0, False),
    ],
)
def test_claim_admits(claim: Claim, state: CounterState, tokens: int, micros: int, admitted: bool) -> None:
    assert claim.admits(state, tokens, micros) is admitted
