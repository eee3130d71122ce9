"""Start-up rule: a model that can fall under a USD budget must have a price — never silently free."""

from __future__ import annotations

from collections.abc import Callable

from tollgate.errors import ConfigError
from tollgate.settings import Price, Settings


def check_budget_prices(settings: Settings, price_for: Callable[..., Price | None]) -> None:
    """Raise ``ConfigError`` naming the first deployment with no price under a USD-limited budget."""
    usd_budgets = [
        b
        for b in settings.budgets
        if b.limit.usd_micros is not None or any(o.usd_micros is not None for o in b.overrides.values())
    ]
    for model in settings.models:
        budget = next((b for b in usd_budgets if "model" not in b.match or model.name in b.match["model"]), None)
        if budget is None:
            continue
        for deployment in model.deployments:
            if price_for(model.name, deployment.upstream_model) is None:
                raise ConfigError(
                    f"{settings.config_path}: models: {model.name!r} (served as {deployment.upstream_model!r}) has "
                    f"no price, but the USD budget {budget.name!r} can apply to it; add it under prices"
                )
