"""FOCUS export: ledger usage shaped as FinOps Foundation FOCUS (1.0 column names) cost-and-usage rows.

Grain: one row per local day × provider × served model × the attribution columns chosen (by default team,
developer, repo and env; ``attribution`` may narrow that to, say, team only), over requests that reached a provider
(rejected requests bought nothing). Tags is a JSON object holding the attribution values of the row. Costs are what
tollgate priced (``cost_micros``); with no discounts known to the gateway, BilledCost = EffectiveCost = ListCost =
ContractedCost. Quantities are tokens (input plus output). Times are UTC (``2026-11-01T00:00:00Z``); the day and the
billing month are calendar periods in the configured time zone. Columns FOCUS does not define are prefixed ``x_``,
as the specification asks. The column-by-column mapping is in docs/ledger.md.

Pure: the values of the rows, from ``Ledger.summarize(focus_query(period))``: ``focus_rows`` (one dict per row, in
``FOCUS_COLUMNS`` order), and ``csv_values`` / ``json_values`` (how the CSV and JSON exports print each cell). The
export itself is written by ``focus_writer.py`` from the rows ``Ledger.export_rows`` streams; it prints exactly
what ``csv.writer`` over ``csv_values`` and ``orjson`` over ``json_values`` print (tests/ledger/test_focus_writer.py).
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson

from tollgate.budgets.windows import local_midnight
from tollgate.errors import BadRequest
from tollgate.ledger.reports import Period, ReportQuery, ReportRow, usd, usd_number
from tollgate.settings import ProviderSettings

RESOURCE_GRAIN: tuple[str, ...] = ("provider", "upstream_model")
ATTRIBUTION: tuple[str, ...] = ("team", "developer", "repo", "env")
BILLING_CURRENCY = "USD"
SERVICE_CATEGORY = "AI and Machine Learning"
TOKEN_UNIT = "Tokens"
_DISPLAY_NAMES = {"openai": "OpenAI", "anthropic": "Anthropic"}

FOCUS_COLUMNS: tuple[str, ...] = (
    "BilledCost",
    "BillingAccountId",
    "BillingAccountName",
    "BillingCurrency",
    "BillingPeriodEnd",
    "BillingPeriodStart",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargeFrequency",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "ConsumedQuantity",
    "ConsumedUnit",
    "ContractedCost",
    "EffectiveCost",
    "InvoiceIssuerName",
    "ListCost",
    "PricingCategory",
    "PricingQuantity",
    "PricingUnit",
    "ProviderName",
    "PublisherName",
    "ResourceId",
    "ResourceName",
    "ResourceType",
    "ServiceCategory",
    "ServiceName",
    "SubAccountId",
    "SubAccountName",
    "Tags",
    "x_ChargeDate",
    "x_Requests",
    "x_InputTokens",
    "x_CachedInputTokens",
    "x_CacheWriteTokens",
    "x_OutputTokens",
    "x_ReasoningTokens",
)
COST_COLUMNS: tuple[str, ...] = ("BilledCost", "ContractedCost", "EffectiveCost", "ListCost")
_COST_INDEXES = tuple(FOCUS_COLUMNS.index(name) for name in COST_COLUMNS)
_TAGS_INDEX = FOCUS_COLUMNS.index("Tags")
# The columns whose value never changes.
CONSTANT_VALUES: Mapping[str, Any] = {
    "BillingCurrency": BILLING_CURRENCY,
    "ChargeCategory": "Usage",
    "ChargeClass": None,
    "ChargeFrequency": "Usage-Based",
    "ConsumedUnit": TOKEN_UNIT,
    "PricingCategory": "Standard",
    "PricingUnit": TOKEN_UNIT,
    "ResourceType": "Model",
    "ServiceCategory": SERVICE_CATEGORY,
}


def parse_attribution(names: Sequence[str] | None) -> tuple[str, ...]:
    """``None`` → every attribution column; else the names given (``["team,env"]`` works too), in the fixed order."""
    if names is None:
        return ATTRIBUTION
    chosen = {name.strip() for part in names for name in part.split(",") if name.strip()}
    unknown = sorted(chosen - set(ATTRIBUTION))
    if unknown:
        raise BadRequest(f"cannot tag FOCUS rows by {', '.join(unknown)}; choose from {', '.join(ATTRIBUTION)}")
    return tuple(name for name in ATTRIBUTION if name in chosen)


def focus_query(period: Period, attribution: Sequence[str] = ATTRIBUTION) -> ReportQuery:
    return ReportQuery(period=period, by=(*RESOURCE_GRAIN, *attribution), daily=True, dispatched_only=True)


def provider_names(providers: Mapping[str, ProviderSettings]) -> dict[str, str]:
    """Configured provider name → the company name FOCUS wants (``OpenAI``, ``Anthropic``; else the config name)."""
    return {name: _DISPLAY_NAMES.get(provider.type, name) for name, provider in providers.items()}


def focus_rows(
    rows: Iterable[ReportRow],
    *,
    timezone: str,
    providers: Mapping[str, str],
    attribution: Sequence[str] = ATTRIBUTION,
) -> list[dict[str, Any]]:
    """One FOCUS row (column → value, in ``FOCUS_COLUMNS`` order) per ledger group of ``focus_query``. Costs are
    micro-dollars here; ``csv_values`` and ``json_values`` print them."""
    values = FocusValues(timezone, providers, attribution)
    return [values.row(row) for row in rows]


def csv_values(row: Mapping[str, Any]) -> list[Any]:
    """A FOCUS row as cells for ``csv.writer`` (which prints None as empty and numbers as ``str`` does): costs as
    exact six-place decimals, Tags as a JSON object."""
    cells = list(row.values())
    for index in _COST_INDEXES:
        cells[index] = usd(cells[index])
    cells[_TAGS_INDEX] = tags_text(cells[_TAGS_INDEX])
    return cells


def json_values(row: Mapping[str, Any]) -> dict[str, Any]:
    """A FOCUS row for JSON: costs as numbers in USD (exact to the micro-dollar), Tags as an object."""
    values = dict(row)
    for name in COST_COLUMNS:
        values[name] = usd_number(row[name])
    return values


def tags_text(tags: Mapping[str, str]) -> str:
    """Tags as the CSV export prints them: a compact JSON object, keys sorted."""
    return orjson.dumps(tags, option=orjson.OPT_SORT_KEYS).decode()


class FocusValues:
    """The FOCUS values of one export: per row, per day and per group (the day's bounds worked out once)."""

    def __init__(self, timezone: str, providers: Mapping[str, str], attribution: Sequence[str]) -> None:
        self._calendar = _Calendar(zoneinfo.ZoneInfo(timezone))
        self._providers = providers
        self._attribution = tuple(attribution)

    def row(self, row: ReportRow) -> dict[str, Any]:
        tokens = row.input_tokens + row.output_tokens
        values = {
            **CONSTANT_VALUES,
            **self.day_values(row.day),
            **self.group_values(row.group),
            "BilledCost": row.cost_micros,
            "ConsumedQuantity": tokens,
            "ContractedCost": row.cost_micros,
            "EffectiveCost": row.cost_micros,
            "ListCost": row.cost_micros,
            "PricingQuantity": tokens,
            "x_Requests": row.requests,
            "x_InputTokens": row.input_tokens,
            "x_CachedInputTokens": row.cached_input_tokens,
            "x_CacheWriteTokens": row.cache_write_tokens,
            "x_OutputTokens": row.output_tokens,
            "x_ReasoningTokens": row.reasoning_tokens,
        }
        return {name: values[name] for name in FOCUS_COLUMNS}

    def day_values(self, day: dt.date | None) -> dict[str, Any]:
        if day is None:
            raise ValueError("FOCUS rows need daily groups")
        day_start, day_end, month_start, month_end = self._calendar.bounds(day)
        return {
            "BillingPeriodEnd": month_end,
            "BillingPeriodStart": month_start,
            "ChargePeriodEnd": day_end,
            "ChargePeriodStart": day_start,
            "x_ChargeDate": day.isoformat(),
        }

    def group_values(self, group: Sequence[str | None]) -> dict[str, Any]:
        """The columns of a (provider, served model, *attribution) group; Tags is a new dict every time."""
        provider = group[0] or "unknown"
        model = group[1] or "unknown"
        tags = {name: value for name, value in zip(self._attribution, group[2:], strict=True) if value is not None}
        team = tags.get("team")
        company = self._providers.get(provider, provider)
        return {
            "BillingAccountId": provider,
            "BillingAccountName": company,
            "ChargeDescription": f"{model} tokens via tollgate" + (f" for team {team}" if team else ""),
            "InvoiceIssuerName": company,
            "ProviderName": company,
            "PublisherName": company,
            "ResourceId": f"{provider}/{model}",
            "ResourceName": model,
            "ServiceName": f"{company} API",
            "SubAccountId": team,
            "SubAccountName": team,
            "Tags": tags,
        }


class _Calendar:
    """The UTC text of each local day's and month's bounds, worked out once per day of the export."""

    def __init__(self, zone: zoneinfo.ZoneInfo) -> None:
        self._zone = zone
        self._bounds: dict[dt.date, tuple[str, str, str, str]] = {}

    def bounds(self, day: dt.date) -> tuple[str, str, str, str]:
        """Charge period start and end (the local day), billing period start and end (the local month)."""
        known = self._bounds.get(day)
        if known is None:
            month = day.replace(day=1)
            next_month = dt.date(month.year + month.month // 12, month.month % 12 + 1, 1)
            known = (
                self._utc(day),
                self._utc(day + dt.timedelta(days=1)),
                self._utc(month),
                self._utc(next_month),
            )
            self._bounds[day] = known
        return known

    def _utc(self, day: dt.date) -> str:
        moment = dt.datetime.fromtimestamp(int(local_midnight(day, self._zone).timestamp()), dt.UTC)
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
