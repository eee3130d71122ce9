"""FOCUS export rows: the grain, every column of one row, and how costs and tags are printed."""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Any

import pytest

from tests.ledger.support import Kit, dataset, record
from tollgate.errors import BadRequest
from tollgate.ledger import Ledger
from tollgate.ledger.focus import (
    FOCUS_COLUMNS,
    csv_values,
    focus_query,
    focus_rows,
    json_values,
    parse_attribution,
    provider_names,
)
from tollgate.ledger.reports import make_period, make_report
from tollgate.settings import ProviderSettings
from tollgate.types import Usage

NOVEMBER = make_period(dt.date(2026, 11, 1), dt.date(2026, 11, 30), "Europe/Berlin")
PROVIDERS = {"openai": "OpenAI", "anthropic": "Anthropic"}


def export(kit: Kit) -> list[dict[str, Any]]:
    query = focus_query(NOVEMBER)

    async def scenario(ledger: Ledger) -> list[dict[str, Any]]:
        await ledger.migrate()
        await ledger.insert(dataset())
        rows = make_report(query, query.by, await ledger.summarize(query)).rows
        return focus_rows(rows, timezone="Europe/Berlin", providers=PROVIDERS)

    return kit.run(scenario)


def test_one_row_per_day_provider_model_and_attribution(kit: Kit) -> None:
    rows = export(kit)
    assert [(row["x_ChargeDate"], row["ResourceId"], row["SubAccountId"], row["Tags"]) for row in rows] == [
        (
            "2026-11-01",
            "anthropic/claude-haiku-4-5",
            "search",
            {"team": "search", "developer": "carol", "repo": "api", "env": "dev"},
        ),
        (
            "2026-11-01",
            "openai/gpt-4o-mini",
            "payments",
            {"team": "payments", "developer": "alice", "repo": "web", "env": "dev"},
        ),
        ("2026-11-02", "openai/gpt-4o-mini", "payments", {"team": "payments", "repo": "web", "env": "ci"}),
        ("2026-11-30", "openai/gpt-4o-mini", None, {"env": "prod"}),
    ]  # the rejected request (r5) bought nothing and is not exported


def test_every_column_of_a_row(kit: Kit) -> None:
    assert export(kit)[0] == {
        "BilledCost": 2_000_001,
        "BillingAccountId": "anthropic",
        "BillingAccountName": "Anthropic",
        "BillingCurrency": "USD",
        "BillingPeriodEnd": "2026-11-30T23:00:00Z",
        "BillingPeriodStart": "2026-10-31T23:00:00Z",
        "ChargeCategory": "Usage",
        "ChargeClass": None,
        "ChargeDescription": "claude-haiku-4-5 tokens via tollgate for team search",
        "ChargeFrequency": "Usage-Based",
        "ChargePeriodEnd": "2026-11-01T23:00:00Z",
        "ChargePeriodStart": "2026-10-31T23:00:00Z",
        "ConsumedQuantity": 340,
        "ConsumedUnit": "Tokens",
        "ContractedCost": 2_000_001,
        "EffectiveCost": 2_000_001,
        "InvoiceIssuerName": "Anthropic",
        "ListCost": 2_000_001,
        "PricingCategory": "Standard",
        "PricingQuantity": 340,
        "PricingUnit": "Tokens",
        "ProviderName": "Anthropic",
        "PublisherName": "Anthropic",
        "ResourceId": "anthropic/claude-haiku-4-5",
        "ResourceName": "claude-haiku-4-5",
        "ResourceType": "Model",
        "ServiceCategory": "AI and Machine Learning",
        "ServiceName": "Anthropic API",
        "SubAccountId": "search",
        "SubAccountName": "search",
        "Tags": {"team": "search", "developer": "carol", "repo": "api", "env": "dev"},
        "x_ChargeDate": "2026-11-01",
        "x_Requests": 1,
        "x_InputTokens": 300,
        "x_CachedInputTokens": 0,
        "x_CacheWriteTokens": 100,
        "x_OutputTokens": 40,
        "x_ReasoningTokens": 0,
    }
    assert list(export(kit)[0]) == list(FOCUS_COLUMNS)


def test_csv_and_json_cells(kit: Kit) -> None:
    last = export(kit)[-1]
    text = io.StringIO()
    csv.writer(text).writerow(csv_values(last))
    cells = dict(zip(FOCUS_COLUMNS, next(csv.reader(io.StringIO(text.getvalue()))), strict=True))
    assert (
        cells["BilledCost"],
        cells["EffectiveCost"],
        cells["SubAccountId"],
        cells["ChargeClass"],
        cells["Tags"],
        cells["ConsumedQuantity"],
    ) == ("0.000007", "0.000007", "", "", '{"env":"prod"}', "15")
    values = json_values(last)
    assert (values["BilledCost"], values["ListCost"], values["SubAccountId"], values["Tags"]) == (
        7e-6,
        7e-6,
        None,
        {"env": "prod"},
    )


def test_provider_company_names() -> None:
    providers = {
        "openai": ProviderSettings(name="openai", type="openai", base_url="https://api.openai.com/v1", api_key=None),
        "claude": ProviderSettings(name="claude", type="anthropic", base_url="https://api.anthropic.com", api_key=None),
        "vllm": ProviderSettings(name="vllm", type="openai-compatible", base_url="http://vllm:8000/v1", api_key=None),
    }
    assert provider_names(providers) == {"openai": "OpenAI", "claude": "Anthropic", "vllm": "vllm"}


def test_a_narrower_attribution_grain_merges_rows(kit: Kit) -> None:
    query = focus_query(NOVEMBER, ("team",))
    extra = record("x1", "2026-11-01T12:00:00", developer="bob", usage=Usage(1, 1), cost_micros=3)

    async def scenario(ledger: Ledger) -> list[dict[str, Any]]:
        await ledger.migrate()
        await ledger.insert([*dataset(), extra])
        rows = await ledger.summarize(query)
        return focus_rows(rows, timezone="Europe/Berlin", providers=PROVIDERS, attribution=("team",))

    assert [
        (row["x_ChargeDate"], row["ResourceId"], row["Tags"], row["x_Requests"], row["BilledCost"])
        for row in kit.run(scenario)
    ] == [
        ("2026-11-01", "anthropic/claude-haiku-4-5", {"team": "search"}, 1, 2_000_001),
        ("2026-11-01", "openai/gpt-4o-mini", {"team": "payments"}, 2, 12_348),
        ("2026-11-02", "openai/gpt-4o-mini", {"team": "payments"}, 1, 999_999),
        ("2026-11-30", "openai/gpt-4o-mini", {}, 1, 7),
    ]


def test_attribution_names() -> None:
    assert parse_attribution(None) == ("team", "developer", "repo", "env")
    assert parse_attribution(["env,team"]) == ("team", "env")
    with pytest.raises(BadRequest, match="cannot tag FOCUS rows by model; choose from team, developer, repo, env"):
        parse_attribution(["team,model"])
