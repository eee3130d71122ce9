"""Which budgets a request is charged to: every matching one at once, scope values from the caller."""

from __future__ import annotations

import pytest

from tollgate.budgets.matching import BudgetMatcher
from tollgate.budgets.model import Budget
from tollgate.settings import BudgetSettings, Limit
from tollgate.types import Caller


def budget(name: str, scope: str, **match: tuple[str, ...]) -> Budget:
    return Budget.from_settings(
        BudgetSettings(name=name, scope=scope, window="daily", limit=Limit(tokens=1000), match=match)
    )


BUDGETS = [
    budget("dev-daily", "developer", env=("dev",)),
    budget("ci-repo-daily", "repo", env=("ci",)),
    budget("team-monthly", "team"),
    budget("prod-monthly", "team", env=("prod",)),
    budget("everyone", "global"),
    budget("per-key", "key"),
    budget("per-env", "env"),
    budget("big-models", "model", model=("gpt-4o", "claude-opus-4")),
    budget("payments-devs", "developer", team=("payments",), env=("dev", "staging")),
    budget("web-repo", "repo", repo=("web",), team=("payments", "search")),
]

ALICE = Caller(key_name="alice-laptop", developer="alice", team="payments", repo="web", env="dev", priority=0)
TEAM_KEY = Caller(key_name="payments-shared", developer=None, team="payments", repo=None, env="dev", priority=0)
CI = Caller(key_name="ci-payments", developer=None, team="payments", repo="api", env="ci", priority=0)
PROD = Caller(key_name="checkout", developer=None, team="payments", repo="web", env="prod", priority=0)
LONER = Caller(key_name="loner", developer="dan", team=None, repo=None, env=None, priority=0)


@pytest.mark.parametrize(
    ("caller", "model", "expected"),
    [
        (
            ALICE,
            "gpt-4o-mini",
            [
                ("dev-daily", "alice"),
                ("team-monthly", "payments"),
                ("everyone", "*"),
                ("per-key", "alice-laptop"),
                ("per-env", "dev"),
                ("payments-devs", "alice"),
                ("web-repo", "web"),
            ],
        ),
        (
            ALICE,
            "gpt-4o",
            [
                ("dev-daily", "alice"),
                ("team-monthly", "payments"),
                ("everyone", "*"),
                ("per-key", "alice-laptop"),
                ("per-env", "dev"),
                ("big-models", "gpt-4o"),
                ("payments-devs", "alice"),
                ("web-repo", "web"),
            ],
        ),
        # A team key has no developer: developer budgets cannot charge it, every other matching budget does.
        (
            TEAM_KEY,
            "gpt-4o-mini",
            [("team-monthly", "payments"), ("everyone", "*"), ("per-key", "payments-shared"), ("per-env", "dev")],
        ),
        (
            CI,
            "claude-opus-4",
            [
                ("ci-repo-daily", "api"),
                ("team-monthly", "payments"),
                ("everyone", "*"),
                ("per-key", "ci-payments"),
                ("per-env", "ci"),
                ("big-models", "claude-opus-4"),
            ],
        ),
        (
            PROD,
            "gpt-4o-mini",
            [
                ("team-monthly", "payments"),
                ("prod-monthly", "payments"),
                ("everyone", "*"),
                ("per-key", "checkout"),
                ("per-env", "prod"),
                ("web-repo", "web"),
            ],
        ),
        (LONER, "gpt-4o-mini", [("everyone", "*"), ("per-key", "loner")]),
    ],
)
def test_every_matching_budget_applies(caller: Caller, model: str, expected: list[tuple[str, str]]) -> None:
    matcher = BudgetMatcher(BUDGETS)
    assert [(m.budget.name, m.scope_value) for m in matcher.matches(caller, model)] == expected
    assert matcher.any_match(caller, model) is True


def test_no_budget_matches() -> None:
    matcher = BudgetMatcher([budget("dev-daily", "developer", env=("dev",))])
    assert matcher.matches(CI, "gpt-4o") == []
    assert matcher.any_match(CI, "gpt-4o") is False
    assert BudgetMatcher([]).any_match(ALICE, "gpt-4o") is False
