"""``tollgate ledger verify``, the pure part: what each budget counter should hold according to the ledger.

For every budget, the ledger rows of its CURRENT window are summed per distinct caller (key, developer, team, repo,
env) and model — one grouped query per window (``verify_query``, run by ``Ledger.summarize``). Each group is put
through the budgets' own matcher (``BudgetMatcher``, the code admission uses), so which counter a ledger row charges
is decided by exactly the rules that charged it; nothing here restates them. ``compare`` lines the expected sums
up with the counters the store holds and returns one ``CounterCheck`` per counter seen on either side.

What is compared: ``used`` tokens and micro-dollars. Reserved amounts are requests in flight: reported, never
compared. Rejected requests are in the ledger with zero usage and cost, so they charge nothing here either. A
request is counted in the window its ledger ``started_at`` falls in, while admission picks the window when it
reserves, a few milliseconds later: a request that straddles a window boundary shows up as a difference in both
windows until the older one expires. Pure: no I/O, no clock reads.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from tollgate.budgets.matching import BudgetMatcher
from tollgate.budgets.model import Budget, CounterState
from tollgate.budgets.windows import Window
from tollgate.ledger.reports import Period, ReportQuery, ReportRow
from tollgate.types import Caller

# Ledger columns that identify the caller and model, in the order ``verify_query`` groups by them.
GROUP_COLUMNS = ("key_name", "developer", "team", "repo", "env", "model")


@dataclass(frozen=True, slots=True)
class CounterCheck:
    """One counter (budget, scope value, current window): what the store holds and what the ledger says."""

    budget: str
    scope: str
    scope_value: str
    window: str
    window_start: str
    counter_tokens: int
    counter_micros: int
    ledger_tokens: int
    ledger_micros: int
    reserved_tokens: int
    reserved_micros: int

    @property
    def agrees(self) -> bool:
        return self.counter_tokens == self.ledger_tokens and self.counter_micros == self.ledger_micros


def verify_query(window: Window, timezone: str) -> ReportQuery:
    """The grouped sum over one window: ledger rows per (caller dimensions, model), no day split."""
    zone = zoneinfo.ZoneInfo(timezone)
    first = dt.datetime.fromtimestamp(window.start, zone).date()
    last = dt.datetime.fromtimestamp(window.end, zone).date() - dt.timedelta(days=1)
    period = Period(first_day=first, last_day=last, timezone=timezone, start=window.start, end=window.end)
    return ReportQuery(period=period, by=GROUP_COLUMNS)


def expected_counters(budget: Budget, rows: Iterable[ReportRow]) -> dict[str, tuple[int, int]]:
    """Scope value → (tokens, micro-dollars) that ``budget`` was charged by the ledger rows of its window."""
    matcher = BudgetMatcher([budget])
    sums: dict[str, tuple[int, int]] = {}
    for row in rows:
        key_name, developer, team, repo, env, model = row.group
        if key_name is None or model is None:
            continue  # refused before the caller or model was known: never reached admission
        caller = Caller(key_name=key_name, developer=developer, team=team, repo=repo, env=env, priority=0)
        for match in matcher.matches(caller, model):
            tokens, micros = sums.get(match.scope_value, (0, 0))
            sums[match.scope_value] = (tokens + row.total_tokens, micros + row.cost_micros)
    return sums


def compare(
    budgets: Sequence[Budget],
    windows: Mapping[str, Window],
    states: Sequence[CounterState],
    rows_by_budget: Mapping[str, Sequence[ReportRow]],
) -> list[CounterCheck]:
    """Every counter of every budget in its current window — in the store, in the ledger, or both — in budget
    order, then scope value order. ``windows`` is each budget's current window, ``states`` the store's snapshot
    of those windows, ``rows_by_budget`` the rows of ``verify_query`` for each budget's window."""
    checks: list[CounterCheck] = []
    for budget in budgets:
        window = windows[budget.name]
        counters = {s.scope_value: s for s in states if s.budget == budget.name and s.window_start == window.start}
        expected = expected_counters(budget, rows_by_budget.get(budget.name, ()))
        for value in sorted(counters.keys() | expected.keys()):
            state = counters.get(value, CounterState(budget.name, value, window.start))
            tokens, micros = expected.get(value, (0, 0))
            checks.append(
                CounterCheck(
                    budget=budget.name,
                    scope=budget.scope,
                    scope_value=value,
                    window=budget.window,
                    window_start=window.starts_at,
                    counter_tokens=state.used_tokens,
                    counter_micros=state.used_micros,
                    ledger_tokens=tokens,
                    ledger_micros=micros,
                    reserved_tokens=state.reserved_tokens,
                    reserved_micros=state.reserved_micros,
                )
            )
    return checks
