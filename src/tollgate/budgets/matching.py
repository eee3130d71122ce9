"""Which budgets apply to a request, and which counter of each it is charged to.

Every budget whose ``match`` fits applies at once — a developer budget, a team budget, a repo budget and an env
budget are all charged by the same request; one never shadows another. A budget applies when every dimension its
``match`` lists has one of the listed values, and when the caller has a value for the budget's scope. A caller with
no value for a dimension (a CI key with no developer) matches no filter on it and is not charged by budgets scoped
on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tollgate.budgets.model import Budget
from tollgate.types import Caller


@dataclass(frozen=True, slots=True)
class Match:
    """One budget that applies to a request and the scope value whose counter is charged."""

    budget: Budget
    scope_value: str


class BudgetMatcher:
    """Evaluates compiled budgets against a caller and model: in memory, a few set look-ups per budget."""

    def __init__(self, budgets: Sequence[Budget]) -> None:
        self.budgets = tuple(budgets)

    def matches(self, caller: Caller, model: str) -> list[Match]:
        found = []
        for budget in self.budgets:
            value = self._scope_value(budget, caller, model)
            if value is not None:
                found.append(Match(budget, value))
        return found

    def any_match(self, caller: Caller, model: str) -> bool:
        return any(self._scope_value(budget, caller, model) is not None for budget in self.budgets)

    @staticmethod
    def _scope_value(budget: Budget, caller: Caller, model: str) -> str | None:
        for dimension, wanted in budget.match:
            if caller.dimension(dimension, model) not in wanted:
                return None
        return caller.dimension(budget.scope, model)
