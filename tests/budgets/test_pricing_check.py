"""A model under a USD budget without a price is a configuration error at start."""

from __future__ import annotations

from pathlib import Path

import pytest

from tollgate.budgets.pricing_check import check_budget_prices
from tollgate.errors import ConfigError
from tollgate.pricing import PriceTable
from tollgate.settings import load_settings

CONFIG = """
providers:
  p: {{type: openai-compatible, base_url: "http://127.0.0.1:1/v1"}}
models:
  - {{name: gpt-4o-mini, provider: p}}
  - {{name: house-llama, provider: p, upstream_model: llama-3-70b}}
budgets:
  - {{name: b, scope: team, window: monthly, limit: {limit}{match}}}
{prices}
"""


@pytest.mark.parametrize(
    ("limit", "match", "prices", "fails"),
    [
        ("{usd: 10}", "", "", True),
        ("{tokens: 10}", "", "", False),
        ("{usd: 10}", ", match: {model: gpt-4o-mini}", "", False),
        ("{usd: 10}", "", "prices:\n  llama-3-70b: {input: 1, output: 2}", False),
        ("{usd: 10}", "", "prices:\n  house-llama: {input: 1, output: 2}", False),
    ],
)
def test_unpriced_model_under_usd_budget(tmp_path: Path, limit: str, match: str, prices: str, fails: bool) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(CONFIG.format(limit=limit, match=match, prices=prices))
    settings = load_settings(path, environ={})
    table = PriceTable(settings.prices)
    if fails:
        with pytest.raises(ConfigError, match="'house-llama' \\(served as 'llama-3-70b'\\) has no price"):
            check_budget_prices(settings, table.price_for)
    else:
        check_budget_prices(settings, table.price_for)
