"""``tollgate report`` with the budgets section: used against limit and the burn-rate forecast of the current windows,
read from a real SQLite counter store, next to usage from a real SQLite ledger; time passed in.

Requests are admitted and settled through ``Admission`` (the settle writes the ledger entry to the store's outbox) and
the outbox is drained into the ledger by a ``LedgerWriter``, as in the gateway. At NOW (2026-11-10 12:00 UTC):

- dev-daily (1,000 tokens a day): alice used 400 in 12 h → 1,000 at 30 h, after the reset: no forecast; bob used
  600 → 1,000 at 20 h: 2026-11-10T20:00:00+00:00.
- team-monthly ($10 a month): payments used $3 + $5 in 228 h → $10 at 285 h: 2026-11-12T21:00:00+00:00.
- ci-weekly matches nothing here: one row with no scope value.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
from pathlib import Path

import orjson
import pytest

from tollgate import cli_ledger
from tollgate.cli_budgets import budgets_status
from tollgate.ledger import open_ledger
from tollgate.ledger.writer import LedgerWriter
from tollgate.services.admission import Admission
from tollgate.settings import Settings, load_settings
from tollgate.stores import open_counter_store
from tollgate.types import Caller, Usage, UsageRecord


def at(text: str) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp()


NOW = at("2026-11-10T12:00:00")
ALICE = Caller(key_name="alice", developer="alice", team="payments", repo=None, env="dev", priority=0)
BOB = Caller(key_name="bob", developer="bob", team="payments", repo=None, env="dev", priority=0)

CONFIG = """
timezone: UTC
store: {store}
ledger: sqlite:///{tmp}/ledger.db
budgets:
  - {{name: dev-daily, scope: developer, window: daily, limit: {{tokens: 1000}}}}
  - {{name: team-monthly, scope: team, window: monthly, limit: {{usd: 10}}}}
  - {{name: ci-weekly, scope: repo, match: {{env: ci}}, window: weekly, limit: {{tokens: 500}}}}
"""

USAGE = """\
usage 2026-11-01..2026-11-30 (UTC) by developer
DEVELOPER  REQUESTS  REJECTED  INPUT  CACHED  CACHE_WRITE  OUTPUT  REASONING  TOTAL_TOKENS  COST_USD
alice             1         0    300       0            0     100          0           400  3.000000
bob               1         0    500       0            0     100          0           600  5.000000
TOTAL             2         0    800       0            0     200          0         1,000  8.000000
"""

BUDGETS = """
budgets in their current windows at 2026-11-10T12:00:00+00:00
BUDGET        SCOPE      VALUE     WINDOW   USED     LIMIT      USED%  RUNS OUT                   RESETS AT
dev-daily     developer  alice     daily    400 tok  1,000 tok  40.0%  -                          2026-11-11T00:00:00+00:00
dev-daily     developer  bob       daily    600 tok  1,000 tok  60.0%  2026-11-10T20:00:00+00:00  2026-11-11T00:00:00+00:00
team-monthly  team       payments  monthly  $8.00    $10.00     80.0%  2026-11-12T21:00:00+00:00  2026-12-01T00:00:00+00:00
ci-weekly     repo       -         weekly   0 tok    500 tok    0.0%   -                          2026-11-16T00:00:00+00:00
"""  # noqa: E501


def make_settings(tmp_path: Path, store: str | None = None) -> Settings:
    path = tmp_path / "tollgate.yaml"
    path.write_text(CONFIG.format(tmp=tmp_path, store=store or f"sqlite:///{tmp_path}/counters.db"))
    return load_settings(path)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Counters and ledger holding alice's and bob's requests of 2026-11-10."""
    settings = make_settings(tmp_path)

    async def spend() -> None:
        store = open_counter_store(settings.store)
        ledger = open_ledger(settings.ledger)
        try:
            for caller, when, usage, micros in (
                (ALICE, "2026-11-10T06:00:00", Usage(300, 100), 3_000_000),
                (BOB, "2026-11-10T09:00:00", Usage(500, 100), 5_000_000),
            ):
                admission = Admission(settings, store, clock=lambda when=when: at(when))
                rid = f"{caller.developer}-1"
                ticket = await admission.admit(
                    caller, "m", estimate_tokens=700, estimate_micros=6_000_000, request_id=rid
                )
                await admission.settle(ticket, _record(rid, caller, at(when), usage, micros))
            await ledger.migrate()
            await LedgerWriter(ledger, outbox=store).flush()
        finally:
            await store.close()
            await ledger.close()

    asyncio.run(spend())
    return settings


def _record(rid: str, caller: Caller, when: float, usage: Usage, micros: int) -> UsageRecord:
    return UsageRecord(
        request_id=rid,
        started_at=when,
        key_name=caller.key_name,
        developer=caller.developer,
        team=caller.team,
        repo=caller.repo,
        env=caller.env,
        endpoint="/v1/chat/completions",
        model="m",
        provider="sim",
        usage=usage,
        usage_source="provider",
        cost_micros=micros,
        status=200,
    )


def run(settings: Settings, fmt: str, period: str | None = "2026-11", now: float = NOW) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli_ledger.report(
        settings,
        by=["developer"],
        period=period,
        date_from=None,
        date_to=None,
        daily=False,
        fmt=fmt,
        out=out,
        err=err,
        now=now,
    )
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("period", ["2026-11", None, "2026", "2026-11-10"])
def test_a_period_containing_now_ends_with_the_budgets_and_their_forecast(settings: Settings, period: str) -> None:
    code, out, err = run(settings, "table", period)
    assert (code, err) == (0, "")
    assert out.endswith(BUDGETS)
    if period in ("2026-11", None):
        assert out == USAGE + BUDGETS


@pytest.mark.parametrize("period", ["2026-10", "2026-11-09", "2026-12"])
def test_a_period_without_now_has_no_budgets(settings: Settings, period: str) -> None:
    code, out, _ = run(settings, "table", period)
    assert code == 0
    assert "budgets" not in out and "RUNS OUT" not in out
    _, document, _ = run(settings, "json", period)
    assert "budgets" not in orjson.loads(document)


def test_json_budgets_are_the_objects_of_budgets_status(settings: Settings) -> None:
    code, out, _ = run(settings, "json")
    document = orjson.loads(out)
    assert code == 0
    assert document["total"]["total_tokens"] == 1000
    assert [(b["budget"], b["scope_value"], b["runs_out_at"]) for b in document["budgets"]] == [
        ("dev-daily", "alice", None),
        ("dev-daily", "bob", "2026-11-10T20:00:00+00:00"),
        ("team-monthly", "payments", "2026-11-12T21:00:00+00:00"),
        ("ci-weekly", None, None),
    ]
    assert document["budgets"][2] == {
        "budget": "team-monthly",
        "scope": "team",
        "scope_value": "payments",
        "window": "monthly",
        "window_start": "2026-11-01T00:00:00+00:00",
        "reset_at": "2026-12-01T00:00:00+00:00",
        "enforce": "hard",
        "mode": None,
        "limit": {"tokens": None, "usd": 10.0},
        "used": {"tokens": 1000, "usd": 8.0},
        "reserved": {"tokens": 0, "usd": 0.0},
        "percent": 80.0,
        "runs_out_at": "2026-11-12T21:00:00+00:00",
        "would_have_blocked": 0,
    }
    status = io.StringIO()
    assert budgets_status(settings, as_json=True, out=status, now=NOW) == 0
    assert document["budgets"] == orjson.loads(status.getvalue())["budgets"]


def test_csv_stays_one_table_of_usage_rows(settings: Settings) -> None:
    code, out, _ = run(settings, "csv")
    assert code == 0
    rows = list(csv.reader(io.StringIO(out)))
    assert [row[0] for row in rows] == ["developer", "alice", "bob"]
    assert {len(row) for row in rows} == {10}


def test_the_forecast_moves_with_now(settings: Settings) -> None:
    # At 18:00 bob's 600 tokens took 18 h: 1,000 at 30 h, after the reset; payments' $8 took 234 h: $10 at 292.5 h.
    _, out, _ = run(settings, "json", now=at("2026-11-10T18:00:00"))
    forecasts = {(b["budget"], b["scope_value"]): b["runs_out_at"] for b in orjson.loads(out)["budgets"]}
    assert forecasts[("dev-daily", "bob")] is None
    assert forecasts[("team-monthly", "payments")] == "2026-11-13T04:30:00+00:00"
    # The next day the daily counters are new and empty: one dev-daily row without a value.
    _, out, _ = run(settings, "json", now=at("2026-11-11T08:00:00"))
    rows = [(b["budget"], b["scope_value"], b["used"]["tokens"]) for b in orjson.loads(out)["budgets"]]
    assert rows == [("dev-daily", None, 0), ("team-monthly", "payments", 1000), ("ci-weekly", None, 0)]


def test_a_counter_store_that_does_not_answer_fails_a_current_report_only(tmp_path: Path) -> None:
    # Nothing listens on port 1: the store is down; the ledger (empty) is fine.
    settings = make_settings(tmp_path, store="redis://127.0.0.1:1/0")
    assert run(settings, "table") == (1, "", "tollgate: the budget counter store did not answer\n")
    code, out, err = run(settings, "table", period="2026-10")
    assert (code, err) == (0, "")
    assert out.startswith("usage 2026-10-01..2026-10-31 (UTC) by developer\n")
    # CSV never reads the store.
    assert run(settings, "csv")[0] == 0
