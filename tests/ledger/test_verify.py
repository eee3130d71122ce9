"""The pure part of ``ledger verify``: which counter each ledger group charges, and the comparison."""

from __future__ import annotations

import datetime as dt
import zoneinfo

from tollgate.budgets.model import Budget, CounterState
from tollgate.budgets.windows import window_at
from tollgate.ledger.reports import ReportRow
from tollgate.ledger.verify import GROUP_COLUMNS, CounterCheck, compare, expected_counters, verify_query
from tollgate.settings import BudgetSettings, Limit

ZONE = "Europe/Berlin"
NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC).timestamp()
DAY = window_at("daily", NOW, zoneinfo.ZoneInfo(ZONE))
DEV = Budget.from_settings(
    BudgetSettings(name="dev", scope="developer", window="daily", limit=Limit(tokens=100), match={"env": ("dev",)})
)
MODEL = Budget.from_settings(BudgetSettings(name="per-model", scope="model", window="daily", limit=Limit(tokens=100)))


def row(
    key: str | None, developer: str | None, env: str | None, model: str | None, tokens: int, micros: int
) -> ReportRow:
    return ReportRow(
        day=None,
        group=(key, developer, "payments", None, env, model),
        requests=1,
        input_tokens=tokens,
        cost_micros=micros,
    )


ROWS = [
    row("alice", "alice", "dev", "gpt-4o-mini", 100, 15),
    row("alice", "alice", "dev", "fast", 50, 5),
    row("ci", None, "ci", "gpt-4o-mini", 70, 7),  # no developer, env ci: not charged to "dev"
    row("carol", "carol", "prod", "fast", 30, 3),  # env prod: not charged to "dev"
    row(None, None, None, None, 0, 0),  # refused before authentication
]


def test_the_query_spans_the_window_and_groups_by_caller_and_model() -> None:
    query = verify_query(DAY, ZONE)
    assert (query.period.start, query.period.end) == (DAY.start, DAY.end)
    assert (query.period.first_day, query.period.last_day) == (dt.date(2026, 11, 28), dt.date(2026, 11, 28))
    assert query.by == GROUP_COLUMNS == ("key_name", "developer", "team", "repo", "env", "model")
    assert not query.daily


def test_expected_counters_follow_the_budget_matcher() -> None:
    assert expected_counters(DEV, ROWS) == {"alice": (150, 20)}
    assert expected_counters(MODEL, ROWS) == {"gpt-4o-mini": (170, 22), "fast": (80, 8)}


def test_compare_lists_counters_on_either_side() -> None:
    states = [
        CounterState("dev", "alice", DAY.start, used_tokens=150, used_micros=20, reserved_tokens=9),
        CounterState("dev", "bob", DAY.start, used_tokens=4),  # a counter the ledger knows nothing of
        CounterState("per-model", "gpt-4o-mini", DAY.start, used_tokens=170, used_micros=22),
        CounterState("dev", "alice", DAY.start - 86_400, used_tokens=1),  # yesterday: not compared
    ]
    checks = compare([DEV, MODEL], {"dev": DAY, "per-model": DAY}, states, {"dev": ROWS, "per-model": ROWS})
    start = "2026-11-28T00:00:00+01:00"
    assert checks == [
        CounterCheck("dev", "developer", "alice", "daily", start, 150, 20, 150, 20, 9, 0),
        CounterCheck("dev", "developer", "bob", "daily", start, 4, 0, 0, 0, 0, 0),
        CounterCheck("per-model", "model", "fast", "daily", start, 0, 0, 80, 8, 0, 0),  # the counter is missing
        CounterCheck("per-model", "model", "gpt-4o-mini", "daily", start, 170, 22, 170, 22, 0, 0),
    ]
    assert [check.agrees for check in checks] == [True, False, False, True]
