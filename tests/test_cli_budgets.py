"""``tollgate budgets status``: the table for people and the JSON for scripts, read from a real store."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
from pathlib import Path

import orjson
import pytest

from tollgate.cli import main
from tollgate.cli_budgets import budgets_status
from tollgate.services.admission import Admission
from tollgate.settings import Settings, load_settings
from tollgate.stores import open_counter_store
from tollgate.types import Caller, Usage, UsageRecord

NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC).timestamp()
ALICE = Caller(key_name="alice", developer="alice", team="payments", repo=None, env="dev", priority=0)
BOB = Caller(key_name="bob", developer="bob", team="payments", repo=None, env="dev", priority=0)

CONFIG = """
timezone: Europe/Berlin
store: sqlite:///{tmp}/counters.db
budgets:
  - {{name: dev-daily, scope: developer, match: {{env: dev}}, window: daily, limit: {{tokens: 2000}},
     overrides: {{bob: {{tokens: 5000}}}}}}
  - {{name: team-monthly, scope: team, window: monthly, limit: {{usd: 5, tokens: 100000}}}}
  - {{name: ci-repo, scope: repo, match: {{env: ci}}, window: weekly, limit: {{tokens: 10}}}}
  - {{name: shadow-dev, scope: developer, window: daily, limit: {{tokens: 100}}, enforce: shadow}}
"""

TABLE = """\
BUDGET        SCOPE      VALUE     WINDOW   ENFORCE  USED             RESERVED         LIMIT                USED%   RUNS OUT                   RESETS AT                  BLOCKED
dev-daily     developer  alice     daily    hard     500 tok          0 tok            2,000 tok            25.0%   -                          2026-11-29T00:00:00+01:00  -
dev-daily     developer  bob       daily    hard     0 tok            300 tok          5,000 tok            0.0%    -                          2026-11-29T00:00:00+01:00  -
team-monthly  team       payments  monthly  hard     500 tok / $1.25  300 tok / $0.01  100,000 tok / $5.00  25.0%   -                          2026-12-01T00:00:00+01:00  -
ci-repo       repo       -         weekly   hard     0 tok            0 tok            10 tok               0.0%    -                          2026-11-30T00:00:00+01:00  -
shadow-dev    developer  alice     daily    shadow   500 tok          0 tok            100 tok              500.0%  2026-11-28T02:36:12+01:00  2026-11-29T00:00:00+01:00  1
shadow-dev    developer  bob       daily    shadow   0 tok            300 tok          100 tok              0.0%    -                          2026-11-29T00:00:00+01:00  1
"""  # noqa: E501


def _settings(tmp_path: Path) -> Settings:
    path = tmp_path / "tollgate.yaml"
    path.write_text(CONFIG.format(tmp=tmp_path))
    return load_settings(path)


def _spend(settings: Settings) -> None:
    async def main() -> None:
        store = open_counter_store(settings.store)
        try:
            admission = Admission(settings, store, clock=lambda: NOW)
            done = await admission.admit(ALICE, "m", estimate_tokens=900, estimate_micros=400_000, request_id="a1")
            record = UsageRecord(
                request_id="a1",
                started_at=NOW,
                key_name="alice",
                developer="alice",
                team="payments",
                repo=None,
                env="dev",
                endpoint="/v1/chat/completions",
                model="m",
                usage=Usage(input_tokens=300, output_tokens=200),
                cost_micros=1_250_000,
            )
            await admission.settle(done, record)
            await admission.admit(BOB, "m", estimate_tokens=300, estimate_micros=10_000, request_id="b1")
        finally:
            await store.close()

    asyncio.run(main())


def test_the_table(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    _spend(settings)
    out = io.StringIO()
    assert budgets_status(settings, as_json=False, out=out, now=NOW + 60) == 0
    assert out.getvalue() == TABLE


def test_the_json(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    _spend(settings)
    out = io.StringIO()
    assert budgets_status(settings, as_json=True, out=out, now=NOW + 60) == 0
    document = orjson.loads(out.getvalue())
    assert document["timezone"] == "Europe/Berlin"
    assert [(b["budget"], b["scope_value"]) for b in document["budgets"]] == [
        ("dev-daily", "alice"),
        ("dev-daily", "bob"),
        ("team-monthly", "payments"),
        ("ci-repo", None),
        ("shadow-dev", "alice"),
        ("shadow-dev", "bob"),
    ]
    assert document["budgets"][2] == {
        "budget": "team-monthly",
        "scope": "team",
        "scope_value": "payments",
        "window": "monthly",
        "window_start": "2026-11-01T00:00:00+01:00",
        "reset_at": "2026-12-01T00:00:00+01:00",
        "enforce": "hard",
        "mode": None,
        "limit": {"tokens": 100_000, "usd": 5.0},
        "used": {"tokens": 500, "usd": 1.25},
        "reserved": {"tokens": 300, "usd": 0.01},
        "percent": 25.0,
        "runs_out_at": None,
        "would_have_blocked": 0,
    }
    assert document["budgets"][1]["limit"] == {"tokens": 5000, "usd": None}
    assert document["budgets"][5]["would_have_blocked"] == 1
    assert document["budgets"][4]["runs_out_at"] == "2026-11-28T02:36:12+01:00"  # 500 of 100 in 13h01m


def test_the_forecast_at_a_faster_rate_falls_within_the_window(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    _spend(settings)
    out = io.StringIO()
    # 500 of 2,000 tokens by 13:01 Berlin runs out 52 h in: past the reset. By 01:00, 500 in 1 h: out at 04:00.
    early = dt.datetime(2026, 11, 28, 0, 0, tzinfo=dt.UTC).timestamp()
    assert budgets_status(settings, as_json=True, out=out, now=early) == 0
    document = orjson.loads(out.getvalue())
    assert document["budgets"][0]["runs_out_at"] == "2026-11-28T04:00:00+01:00"


def test_reservations_past_their_deadline_do_not_show(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    _spend(settings)
    out = io.StringIO()
    assert budgets_status(settings, as_json=True, out=out, now=NOW + settings.reservation_ttl_s) == 0
    bob = orjson.loads(out.getvalue())["budgets"][1]
    assert (bob["scope_value"], bob["reserved"]) == ("bob", {"tokens": 0, "usd": 0.0})


def test_no_budgets(tmp_path: Path) -> None:
    settings = Settings(config_path="x.yaml", store=f"sqlite:///{tmp_path}/c.db")
    out = io.StringIO()
    assert budgets_status(settings, as_json=False, out=out, now=NOW) == 0
    assert out.getvalue() == "no budgets configured\n"


def test_an_unreachable_store_exits_1(tmp_path: Path) -> None:
    settings = Settings(config_path="x.yaml", store="redis://127.0.0.1:1/0", budgets=_settings(tmp_path).budgets)
    out, err = io.StringIO(), io.StringIO()
    assert budgets_status(settings, as_json=False, out=out, err=err, now=NOW) == 1
    assert out.getvalue() == ""
    assert err.getvalue() == "tollgate: the budget counter store did not answer (redis)\n"


def test_through_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = _settings(tmp_path)
    assert main(["budgets", "status", "--config", settings.config_path, "--json"]) == 0
    document = orjson.loads(capsys.readouterr().out)
    assert [b["budget"] for b in document["budgets"]] == ["dev-daily", "team-monthly", "ci-repo", "shadow-dev"]
