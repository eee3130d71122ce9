"""FOCUS export rows: the grain, every column of one row, and how costs and tags are printed."""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Any

import orjson
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
    write_csv,
    write_json,
)
from tollgate.ledger.reports import ReportRow, make_period, make_report
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


# Values csv and JSON must escape, a provider company with a comma and quotes, missing values, and days across the
# end of summer time.
TRICKY = [None, "", "a,b", 'say "hi"', "two\nlines", "cr\rx", "Ärger", "emoji 😀", "back\\slash", "tab\tx", "plain"]
TRICKY_PROVIDERS = {**PROVIDERS, "we,ird": 'Co "x"'}


def tricky_rows(attribution: tuple[str, ...]) -> list[tuple[Any, ...]]:
    rows = []
    for index, value in enumerate(TRICKY):
        day = dt.date(2026, 10, 24) + dt.timedelta(days=index // 3)
        provider = ["openai", "anthropic", None, "we,ird"][index % 4]
        attributes = [TRICKY[(index + offset) % len(TRICKY)] for offset in range(len(attribution))]
        cost = [0, 7, 1_234_567_890, -1_500_001][index % 4]  # negative: only ever by hand, but usd() prints it
        measures = (index + 1, 0, 10**index, index, 2 * index, 3 * index, index // 2, cost)
        rows.append((day, provider, value, *attributes, *measures))
    return rows


@pytest.mark.parametrize("attribution", [("team", "developer", "repo", "env"), ("team",), ("env",), ()])
@pytest.mark.parametrize("timezone", ["Europe/Berlin", "UTC", "Asia/Kathmandu"])
def test_write_csv_and_write_json_print_what_csv_values_and_json_values_print(
    attribution: tuple[str, ...], timezone: str
) -> None:
    rows = tricky_rows(attribution)
    width = 2 + len(attribution)
    report = [ReportRow(row[0], row[1 : width + 1], *row[width + 1 :]) for row in rows]
    values = focus_rows(report, timezone=timezone, providers=TRICKY_PROVIDERS, attribution=attribution)
    expected_csv = io.StringIO()
    csv.writer(expected_csv, lineterminator="\n").writerows([FOCUS_COLUMNS, *(csv_values(row) for row in values)])
    expected_json = orjson.dumps([json_values(row) for row in values], option=orjson.OPT_INDENT_2).decode() + "\n"
    written_csv, written_json = io.StringIO(), io.StringIO()
    shape = {"timezone": timezone, "providers": TRICKY_PROVIDERS, "attribution": attribution}
    assert write_csv(rows, written_csv, **shape) == len(rows)
    assert write_json(rows, written_json, **shape) == len(rows)
    assert written_csv.getvalue() == expected_csv.getvalue()
    assert written_json.getvalue() == expected_json


def test_writing_no_rows() -> None:
    written_csv, written_json = io.StringIO(), io.StringIO()
    assert write_csv([], written_csv, timezone="UTC", providers={}) == 0
    assert write_json([], written_json, timezone="UTC", providers={}) == 0
    assert written_csv.getvalue() == ",".join(FOCUS_COLUMNS) + "\n"
    assert written_json.getvalue() == "[]\n"
