"""FOCUS export: ledger usage shaped as FinOps Foundation FOCUS (1.0 column names) cost-and-usage rows.

Grain: one row per local day × provider × served model × the attribution columns chosen (by default team,
developer, repo and env; ``attribution`` may narrow that to, say, team only), over requests that reached a provider
(rejected requests bought nothing). Tags is a JSON object holding the attribution values of the row. Costs are what
tollgate priced (``cost_micros``); with no discounts known to the gateway, BilledCost = EffectiveCost = ListCost =
ContractedCost. Quantities are tokens (input plus output). Times are UTC (``2026-11-01T00:00:00Z``); the day and the
billing month are calendar periods in the configured time zone. Columns FOCUS does not define are prefixed ``x_``,
as the specification asks. The column-by-column mapping is in docs/ledger.md.

Pure: the rows come from ``Ledger.summarize(focus_query(period))``. Two ways to shape them: ``focus_rows`` (one dict
per row, for callers that want values) and ``write_csv`` / ``write_json`` (the export as text, from the plain tuples of
``Ledger.summary_tuples``). The writers print exactly what ``csv.writer`` over ``csv_values`` and ``orjson`` over
``json_values`` print, but build each line from cells rendered once per day and once per group: most of the 38
columns depend only on the day or on the (provider, model, attribution) group, and a full-grain export has hundreds
of thousands of rows (bench/results-ledger.md).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import zoneinfo
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TextIO

import orjson

from tollgate.budgets.windows import local_midnight
from tollgate.errors import BadRequest
from tollgate.ledger.reports import MICROS_PER_USD, Period, ReportQuery, ReportRow, SummaryTuple, usd, usd_number
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
    shapes = _Shapes(timezone, providers, attribution)
    return [shapes.row(row) for row in rows]


def csv_values(row: Mapping[str, Any]) -> list[Any]:
    """A FOCUS row as cells for ``csv.writer`` (which prints None as empty and numbers as ``str`` does): costs as
    exact six-place decimals, Tags as a JSON object."""
    cells = list(row.values())
    for index in _COST_INDEXES:
        cells[index] = usd(cells[index])
    cells[_TAGS_INDEX] = _tags_text(cells[_TAGS_INDEX])
    return cells


def json_values(row: Mapping[str, Any]) -> dict[str, Any]:
    """A FOCUS row for JSON: costs as numbers in USD (exact to the micro-dollar), Tags as an object."""
    values = dict(row)
    for name in COST_COLUMNS:
        values[name] = usd_number(row[name])
    return values


# -- the export as text -------------------------------------------------------------------------------------------
#
# A line is cut into pieces by what its cells depend on: the measures of the row, the day (``_DAY_PIECES``), the
# group (``_GROUP_PIECES``) or nothing (``_CONSTANT_PIECES``). The pieces are rendered once per day and per group
# by the same csv / orjson calls ``csv_values`` / ``json_values`` go through; the f-strings in ``write_csv`` and
# ``_json_object`` put them in ``FOCUS_COLUMNS`` order (tests/ledger/test_focus.py checks the text is identical).

WRITE_CHUNK_ROWS = 10_000  # lines joined and written at once
_Render = Callable[[Sequence[str], Mapping[str, Any]], str]
_DAY_PIECES: tuple[tuple[str, ...], ...] = (
    ("BillingCurrency", "BillingPeriodEnd", "BillingPeriodStart", "ChargeCategory", "ChargeClass"),
    ("ChargeFrequency", "ChargePeriodEnd", "ChargePeriodStart"),
    ("x_ChargeDate",),
)
_GROUP_PIECES: tuple[tuple[str, ...], ...] = (
    ("BillingAccountId", "BillingAccountName"),
    ("ChargeDescription",),
    ("InvoiceIssuerName",),
    (
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
    ),
)
_CONSTANTS: dict[str, Any] = {
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


def write_csv(
    rows: Iterable[SummaryTuple],
    out: TextIO,
    *,
    timezone: str,
    providers: Mapping[str, str],
    attribution: Sequence[str] = ATTRIBUTION,
) -> int:
    """The FOCUS CSV of the summary tuples of ``focus_query`` (``Ledger.summary_tuples``), in their order: the same
    text as ``csv.writer(out, lineterminator="\\n")`` writing ``FOCUS_COLUMNS`` and then ``csv_values`` of every
    ``focus_rows`` row. Returns how many rows were written."""
    shapes = _Shapes(timezone, providers, attribution)
    measures = 1 + len(RESOURCE_GRAIN) + len(attribution)  # where the measures start: after day and group
    render = _CsvPieces()
    unit, category = (render((name,), _CONSTANTS) for name in ("ConsumedUnit", "PricingCategory"))
    days: dict[dt.date, tuple[str, ...]] = {}
    groups: dict[tuple[Any, ...], tuple[str, ...]] = {}
    out.write(_csv_cells(FOCUS_COLUMNS) + "\n")
    lines: list[str] = []
    count = 0
    for row in rows:
        count += 1
        d0, d1, d2 = days.get(row[0]) or days.setdefault(row[0], shapes.day_pieces(row[0], render))
        key = row[1:measures]
        g0, g1, g2, g3 = groups.get(key) or groups.setdefault(key, shapes.group_pieces(key, render))
        requests, _, input_tokens, cached, cache_write, output_tokens, reasoning, micros = row[measures:]
        # ``usd`` inlined for the usual non-negative amount: a call per row costs a tenth of the line.
        cost = f"{micros // MICROS_PER_USD}.{micros % MICROS_PER_USD:06d}" if micros >= 0 else usd(micros)
        tokens = input_tokens + output_tokens
        lines.append(
            f"{cost},{g0},{d0},{g1},{d1},{tokens},{unit},{cost},{cost},{g2},{cost},{category},{tokens},{g3},{d2},"
            f"{requests},{input_tokens},{cached},{cache_write},{output_tokens},{reasoning}\n"
        )
        if len(lines) == WRITE_CHUNK_ROWS:
            out.write("".join(lines))
            lines.clear()
    out.write("".join(lines))
    return count


def write_json(
    rows: Iterable[SummaryTuple],
    out: TextIO,
    *,
    timezone: str,
    providers: Mapping[str, str],
    attribution: Sequence[str] = ATTRIBUTION,
) -> int:
    """The FOCUS rows as a JSON array, the same text as ``orjson.dumps([json_values(row) for row in focus_rows(…)],
    option=orjson.OPT_INDENT_2)`` and a newline, written in pieces. Returns how many rows were written."""
    shapes = _Shapes(timezone, providers, attribution)
    measures = 1 + len(RESOURCE_GRAIN) + len(attribution)
    constants = tuple(_json_piece((name,), _CONSTANTS) for name in ("ConsumedUnit", "PricingCategory"))
    days: dict[dt.date, tuple[str, ...]] = {}
    groups: dict[tuple[Any, ...], tuple[str, ...]] = {}
    out.write("[")
    parts: list[str] = []
    count = 0
    for count, row in enumerate(rows, start=1):
        day = days.get(row[0]) or days.setdefault(row[0], shapes.day_pieces(row[0], _json_piece))
        key = row[1:measures]
        group = groups.get(key) or groups.setdefault(key, shapes.group_pieces(key, _json_piece))
        parts.append(",\n" if count > 1 else "\n")
        parts.append(_json_object(row[measures:], day, group, constants))
        if len(parts) >= 2 * WRITE_CHUNK_ROWS:
            out.write("".join(parts))
            parts.clear()
    out.write("".join(parts))
    out.write("\n]\n" if count else "]\n")
    return count


def _json_object(
    measures: SummaryTuple, day: tuple[str, ...], group: tuple[str, ...], constants: tuple[str, ...]
) -> str:
    requests, _, input_tokens, cached, cache_write, output_tokens, reasoning, micros = measures
    cost = orjson.dumps(usd_number(micros)).decode()
    tokens = input_tokens + output_tokens
    d0, d1, d2 = day
    g0, g1, g2, g3 = group
    unit, category = constants
    return (
        f'  {{\n    "BilledCost": {cost},\n{g0},\n{d0},\n{g1},\n{d1},\n    "ConsumedQuantity": {tokens},\n'
        f'{unit},\n    "ContractedCost": {cost},\n    "EffectiveCost": {cost},\n{g2},\n'
        f'    "ListCost": {cost},\n{category},\n    "PricingQuantity": {tokens},\n{g3},\n'
        f'{d2},\n    "x_Requests": {requests},\n    "x_InputTokens": {input_tokens},\n'
        f'    "x_CachedInputTokens": {cached},\n    "x_CacheWriteTokens": {cache_write},\n'
        f'    "x_OutputTokens": {output_tokens},\n    "x_ReasoningTokens": {reasoning}\n  }}'
    )


def _csv_cells(values: Iterable[Any]) -> str:
    """``values`` as ``csv.writer`` prints them inside a line (a trailing empty cell keeps a lone empty value from
    being quoted, as it is not alone in a real line)."""
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerow([*values, ""])
    return text.getvalue()[: -len(",\n")]


class _CsvPieces:
    """Renders the cells of columns as ``csv_values`` and ``csv.writer`` print them, each distinct value once
    (``csv.writer`` decides quoting cell by cell, so cells rendered apart join into the same line)."""

    def __init__(self) -> None:
        self._cells: dict[str | None, str] = {}

    def __call__(self, names: Sequence[str], values: Mapping[str, Any]) -> str:
        return ",".join(self._cell(_tags_text(values[name]) if name == "Tags" else values[name]) for name in names)

    def _cell(self, value: str | None) -> str:
        text = self._cells.get(value)
        if text is None:
            text = self._cells[value] = _csv_cells([value])
        return text


def _json_piece(names: Sequence[str], values: Mapping[str, Any]) -> str:
    """The ``"name": value`` lines of columns ``names`` as ``orjson`` indents them in an object of the array."""
    text = orjson.dumps([{name: values[name] for name in names}], option=orjson.OPT_INDENT_2).decode()
    return text[len("[\n  {\n") : -len("\n  }\n]")]


def _tags_text(tags: Mapping[str, str]) -> str:
    return orjson.dumps(tags, option=orjson.OPT_SORT_KEYS).decode()


class _Shapes:
    """The FOCUS values of one export: per row, and the rendered pieces per day and per group."""

    def __init__(self, timezone: str, providers: Mapping[str, str], attribution: Sequence[str]) -> None:
        self._calendar = _Calendar(zoneinfo.ZoneInfo(timezone))
        self._providers = providers
        self._attribution = tuple(attribution)

    def row(self, row: ReportRow) -> dict[str, Any]:
        tokens = row.input_tokens + row.output_tokens
        values = {
            **_CONSTANTS,
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

    def day_pieces(self, day: dt.date | None, render: _Render) -> tuple[str, ...]:
        values = {**_CONSTANTS, **self.day_values(day)}
        return tuple(render(names, values) for names in _DAY_PIECES)

    def group_pieces(self, group: Sequence[str | None], render: _Render) -> tuple[str, ...]:
        values = {**_CONSTANTS, **self.group_values(group)}
        return tuple(render(names, values) for names in _GROUP_PIECES)


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
