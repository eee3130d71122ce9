"""``tollgate report``, the chargeback CSV and the FOCUS export, rendered from a real ledger (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Iterator

import orjson
import pytest

from tests.ledger.support import Kit, dataset, ledger_kit
from tollgate import cli_ledger
from tollgate.ledger import open_ledger
from tollgate.settings import ProviderSettings, Settings

PROVIDERS = {
    "openai": ProviderSettings(name="openai", type="openai", base_url="https://api.openai.com/v1", api_key=None),
    "anthropic": ProviderSettings(
        name="anthropic", type="anthropic", base_url="https://api.anthropic.com", api_key=None
    ),
}


@pytest.fixture(params=["sqlite", "postgres"])
def settings(request: pytest.FixtureRequest, tmp_path: object) -> Iterator[Settings]:
    """Settings whose ledger holds the fixed data set; time zone Europe/Berlin."""
    dsn = request.getfixturevalue("postgres_dsn") if request.param == "postgres" else None
    with ledger_kit(request.param, tmp_path, dsn) as kit:
        fill(kit)
        yield Settings(config_path="tollgate.yaml", timezone="Europe/Berlin", ledger=kit.url, providers=PROVIDERS)


def fill(kit: Kit) -> None:
    async def main() -> None:
        ledger = open_ledger(kit.url)
        try:
            await ledger.migrate()
            await ledger.insert(dataset())
        finally:
            await ledger.close()

    asyncio.run(main())


def run_report(
    settings: Settings,
    fmt: str,
    by: list[str],
    *,
    daily: bool = False,
    period: str | None = "2026-11",
    date_from: str | None = None,
    date_to: str | None = None,
) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli_ledger.report(
        settings, by=by, period=period, date_from=date_from, date_to=date_to, daily=daily, fmt=fmt, out=out, err=err
    )
    return code, out.getvalue(), err.getvalue()


def test_table(settings: Settings) -> None:
    assert run_report(settings, "table", ["team"]) == (
        0,
        """\
usage 2026-11-01..2026-11-30 (Europe/Berlin) by team
TEAM      REQUESTS  REJECTED  INPUT  CACHED  CACHE_WRITE  OUTPUT  REASONING  TOTAL_TOKENS  COST_USD
payments         3         1  1,500       0            0     700        100         2,200  1.012344
search           1         0    300       0          100      40          0           340  2.000001
(none)           1         0     10       0            0       5          0            15  0.000007
TOTAL            5         1  1,810       0          100     745        100         2,555  3.012352
""",
        "",
    )


def test_daily_table_by_two_columns(settings: Settings) -> None:
    code, out, _ = run_report(settings, "table", ["team,model"], daily=True)
    assert code == 0
    assert out.splitlines()[1:] == [
        "DAY         TEAM      MODEL             REQUESTS  REJECTED  INPUT  CACHED  CACHE_WRITE  OUTPUT  REASONING"
        "  TOTAL_TOKENS  COST_USD",
        "2026-11-01  payments  gpt-4o-mini              1         0  1,000       0            0     200          0"
        "         1,200  0.012345",
        "2026-11-01  search    claude-haiku-4-5         1         0    300       0          100      40          0"
        "           340  2.000001",
        "2026-11-02  payments  fast                     1         0    500       0            0     500        100"
        "         1,000  0.999999",
        "2026-11-02  payments  gpt-4o-mini              1         1      0       0            0       0          0"
        "             0  0.000000",
        "2026-11-30  (none)    gpt-4o-mini              1         0     10       0            0       5          0"
        "            15  0.000007",
        "TOTAL                                          5         1  1,810       0          100     745        100"
        "         2,555  3.012352",
    ]


def test_table_without_groups_is_the_total(settings: Settings) -> None:
    code, out, _ = run_report(settings, "table", [])
    assert (code, out.splitlines()[1:]) == (
        0,
        [
            "       REQUESTS  REJECTED  INPUT  CACHED  CACHE_WRITE  OUTPUT  REASONING  TOTAL_TOKENS  COST_USD",
            "TOTAL         5         1  1,810       0          100     745        100         2,555  3.012352",
        ],
    )


def test_csv(settings: Settings) -> None:
    assert run_report(settings, "csv", ["team"]) == (
        0,
        """\
team,requests,rejections,input_tokens,cached_input_tokens,cache_write_tokens,output_tokens,reasoning_tokens,\
total_tokens,cost_usd
payments,3,1,1500,0,0,700,100,2200,1.012344
search,1,0,300,0,100,40,0,340,2.000001
,1,0,10,0,0,5,0,15,0.000007
""",
        "",
    )


def test_daily_csv_across_the_end_of_summer_time(settings: Settings) -> None:
    code, out, _ = run_report(
        settings, "csv", ["developer"], daily=True, period=None, date_from="2026-10-24", date_to="2026-10-26"
    )
    assert (code, out.splitlines()[1:]) == (
        0,
        [
            "2026-10-25,carol,2,0,3,0,0,0,0,3,0.000003",
            "2026-10-26,carol,1,0,4,0,0,0,0,4,0.000004",
        ],
    )


def test_json(settings: Settings) -> None:
    code, out, _ = run_report(settings, "json", ["team"])
    document = orjson.loads(out)
    assert code == 0
    assert document["period"] == {
        "from": "2026-11-01",
        "to": "2026-11-30",
        "timezone": "Europe/Berlin",
        "start": "2026-10-31T23:00:00Z",
        "end": "2026-11-30T23:00:00Z",
    }
    assert (document["by"], document["daily"]) == (["team"], False)
    assert document["rows"][2] == {
        "team": None,
        "requests": 1,
        "rejections": 0,
        "input_tokens": 10,
        "cached_input_tokens": 0,
        "cache_write_tokens": 0,
        "output_tokens": 5,
        "reasoning_tokens": 0,
        "total_tokens": 15,
        "cost_micros": 7,
        "cost_usd": 0.000007,
    }
    assert [row["team"] for row in document["rows"]] == ["payments", "search", None]
    assert (document["total"]["cost_micros"], document["total"]["cost_usd"]) == (3_012_352, 3.012352)
    assert '"cost_usd": 3.012352\n' in out  # the number's text is the exact amount


def test_chargeback(settings: Settings) -> None:
    out = io.StringIO()
    assert cli_ledger.chargeback(settings, period="2026-11", date_from=None, date_to=None, out=out) == 0
    assert (
        out.getvalue()
        == """\
period_start,period_end,team,requests,input_tokens,cached_input_tokens,cache_write_tokens,output_tokens,\
reasoning_tokens,total_tokens,cost_usd
2026-11-01,2026-11-30,payments,3,1500,0,0,700,100,2200,1.012344
2026-11-01,2026-11-30,search,1,300,0,100,40,0,340,2.000001
2026-11-01,2026-11-30,(unattributed),1,10,0,0,5,0,15,0.000007
"""
    )


def test_chargeback_for_one_team(settings: Settings) -> None:
    out = io.StringIO()
    code = cli_ledger.chargeback(
        settings, period=None, date_from="2026-11-01", date_to="2026-11-30", team="search", out=out
    )
    assert (code, out.getvalue().splitlines()[1:]) == (
        0,
        ["2026-11-01,2026-11-30,search,1,300,0,100,40,0,340,2.000001"],
    )


def test_focus_csv(settings: Settings) -> None:
    out = io.StringIO()
    assert cli_ledger.focus_export(settings, period="2026-11", date_from=None, date_to=None, fmt="csv", out=out) == 0
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("BilledCost,BillingAccountId,BillingAccountName,BillingCurrency,BillingPeriodEnd,")
    assert lines[0].endswith(
        ",Tags,x_ChargeDate,x_Requests,x_InputTokens,x_CachedInputTokens,x_CacheWriteTokens,"
        "x_OutputTokens,x_ReasoningTokens"
    )
    assert lines[4] == (
        "0.000007,openai,OpenAI,USD,2026-11-30T23:00:00Z,2026-10-31T23:00:00Z,Usage,,gpt-4o-mini tokens via tollgate,"
        "Usage-Based,2026-11-30T23:00:00Z,2026-11-29T23:00:00Z,15,Tokens,0.000007,0.000007,OpenAI,0.000007,Standard,"
        "15,Tokens,OpenAI,OpenAI,openai/gpt-4o-mini,gpt-4o-mini,Model,AI and Machine Learning,OpenAI API,,,"
        '"{""env"":""prod""}",2026-11-30,1,10,0,0,5,0'
    )
    assert len(lines) == 5


def test_focus_json(settings: Settings) -> None:
    out = io.StringIO()
    assert cli_ledger.focus_export(settings, period="2026-11", date_from=None, date_to=None, fmt="json", out=out) == 0
    rows = orjson.loads(out.getvalue())
    assert [(row["x_ChargeDate"], row["BilledCost"], row["ProviderName"]) for row in rows] == [
        ("2026-11-01", 2.000001, "Anthropic"),
        ("2026-11-01", 0.012345, "OpenAI"),
        ("2026-11-02", 0.999999, "OpenAI"),
        ("2026-11-30", 0.000007, "OpenAI"),
    ]


@pytest.mark.parametrize(
    ("by", "fmt", "period", "message"),
    [
        (
            ["colour"],
            "table",
            "2026-11",
            "tollgate: cannot group by 'colour'; choose from team, developer, repo, "
            "model, env, key, provider, upstream_model, endpoint\n",
        ),
        (["team"], "xml", "2026-11", "tollgate: --format must be one of table, csv, json\n"),
        (
            ["team"],
            "csv",
            "November",
            "tollgate: --period 'November' is not a year (2026), a month (2026-11) or a day (2026-11-05)\n",
        ),
    ],
)
def test_bad_options_exit_2(tmp_path: object, by: list[str], fmt: str, period: str, message: str) -> None:
    settings = Settings(config_path="tollgate.yaml", ledger=f"sqlite:///{tmp_path}/ledger.db")
    assert run_report(settings, fmt, by, period=period) == (2, "", message)


def test_unreadable_ledger_exits_1() -> None:
    settings = Settings(config_path="tollgate.yaml", ledger="sqlite:////nonexistent-dir/ledger.db")
    assert run_report(settings, "table", ["team"]) == (1, "", "tollgate: the ledger store did not answer\n")
    err = io.StringIO()
    assert (
        cli_ledger.focus_export(
            settings, period="2026-11", date_from=None, date_to=None, fmt="csv", out=io.StringIO(), err=err
        )
        == 1
    )
    assert (
        cli_ledger.focus_export(
            settings, period="2026-11", date_from=None, date_to=None, fmt="table", out=io.StringIO(), err=err
        )
        == 2
    )
    assert err.getvalue().splitlines() == [
        "tollgate: the ledger store did not answer",
        "tollgate: --format must be one of csv, json",
    ]


def test_focus_tagged_by_team_only(settings: Settings) -> None:
    out, err = io.StringIO(), io.StringIO()
    code = cli_ledger.focus_export(
        settings, period="2026-11", date_from=None, date_to=None, fmt="csv", out=out, by=["team"], err=err
    )
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert (code, [(row["x_ChargeDate"], row["Tags"], row["x_Requests"]) for row in rows]) == (
        0,
        [
            ("2026-11-01", '{"team":"search"}', "1"),
            ("2026-11-01", '{"team":"payments"}', "1"),
            ("2026-11-02", '{"team":"payments"}', "1"),
            ("2026-11-30", "{}", "1"),
        ],
    )
    assert (
        cli_ledger.focus_export(
            settings,
            period="2026-11",
            date_from=None,
            date_to=None,
            fmt="csv",
            out=io.StringIO(),
            by=["model"],
            err=err,
        )
        == 2
    )
    assert err.getvalue() == "tollgate: cannot tag FOCUS rows by model; choose from team, developer, repo, env\n"
