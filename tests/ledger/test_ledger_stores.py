"""The ledger-store contract: the same cases against SQLite (a temp file) and PostgreSQL (a fresh schema)."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from tests.ledger.support import Kit, dataset, record
from tollgate.errors import StoreUnavailable
from tollgate.ledger import Ledger, open_ledger
from tollgate.ledger.reports import ReportQuery, ReportRow, make_period, make_report, report_query
from tollgate.types import Usage

BERLIN = "Europe/Berlin"
NOVEMBER_BERLIN = make_period(dt.date(2026, 11, 1), dt.date(2026, 11, 30), BERLIN)
NOVEMBER_UTC = make_period(dt.date(2026, 11, 1), dt.date(2026, 11, 30), "UTC")
D = dt.date


def summary(kit: Kit, query: ReportQuery) -> list[ReportRow]:
    async def scenario(ledger: Ledger) -> list[ReportRow]:
        await ledger.migrate()
        await ledger.insert(dataset())
        return list(make_report(query, query.by, await ledger.summarize(query)).rows)

    return kit.run(scenario)


def test_migrations_apply_once(kit: Kit) -> None:
    async def scenario(ledger: Ledger) -> tuple[int, int]:
        return await ledger.migrate(), await ledger.migrate()

    assert kit.run(scenario) == (2, 0)
    assert kit.run(lambda ledger: ledger.migrate()) == 0  # a new connection finds the schema current
    assert kit.fetch("SELECT component, version, name FROM schema_migrations ORDER BY version") == [
        ("ledger", 1, "create usage_ledger"),
        ("ledger", 2, "create usage_rollup"),
    ]


def test_concurrent_workers_migrate_exactly_once(kit: Kit) -> None:
    async def main() -> list[int]:
        ledgers = [open_ledger(kit.url) for _ in range(6)]
        try:
            return list(await asyncio.gather(*(ledger.migrate() for ledger in ledgers)))
        finally:
            for ledger in ledgers:
                await ledger.close()

    assert sorted(asyncio.run(main())) == [0, 0, 0, 0, 0, 2]
    assert kit.fetch("SELECT count(*) FROM schema_migrations") == [(2,)]


def test_report_indexes_exist(kit: Kit) -> None:
    kit.run(lambda ledger: ledger.migrate())
    if kit.kind == "sqlite":
        rows = kit.fetch(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'usage_ledger'"
            " AND name LIKE 'usage_ledger_%' ORDER BY name"
        )
    else:
        rows = kit.fetch(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'usage_ledger'"
            " AND schemaname = current_schema() AND indexname LIKE '%started_at' ORDER BY indexname"
        )
    assert [name for (name,) in rows] == [
        "usage_ledger_developer_started_at",
        "usage_ledger_env_started_at",
        "usage_ledger_model_started_at",
        "usage_ledger_repo_started_at",
        "usage_ledger_started_at",
        "usage_ledger_team_started_at",
    ]


def test_insert_is_idempotent_by_request_id(kit: Kit) -> None:
    first = [record("a", "2026-11-01T10:00:00", cost_micros=1), record("b", "2026-11-01T10:00:01", cost_micros=2)]
    again = [
        record("a", "2026-11-01T10:00:00", cost_micros=999),  # same id, different content: the first one stays
        record("c", "2026-11-01T10:00:02", cost_micros=3),
        record("c", "2026-11-01T10:00:02", cost_micros=3),  # twice in one batch
    ]

    async def scenario(ledger: Ledger) -> tuple[int, int, int, int]:
        await ledger.migrate()
        return await ledger.insert(first), await ledger.insert(again), await ledger.insert([]), await ledger.count()

    assert kit.run(scenario) == (2, 1, 0, 3)
    assert kit.fetch("SELECT request_id, cost_micros FROM usage_ledger ORDER BY request_id") == [
        ("a", 1),
        ("b", 2),
        ("c", 3),
    ]


def test_insert_stores_every_column(kit: Kit) -> None:
    item = record(
        "full",
        "2026-11-01T10:00:00.250000",
        usage=Usage(11, 22, 3, 4, 5),
        cost_micros=2**40,
        estimate_tokens=77,
        rejected_by=None,
    )
    item.streamed = True
    item.ttft_ms = 8.25

    async def scenario(ledger: Ledger) -> int:
        await ledger.migrate()
        return await ledger.insert([item])

    assert kit.run(scenario) == 1
    started = "started_at" if kit.kind == "sqlite" else "extract(epoch from started_at)::float8"
    rows = kit.fetch(
        f"SELECT request_id, {started}, key_name, developer, team, repo, env, endpoint, model, upstream_model,"
        " provider, deployment, input_tokens, cached_input_tokens, cache_write_tokens, output_tokens,"
        " reasoning_tokens, cost_micros, estimate_tokens, status, outcome, rejected_by, streamed, usage_source,"
        " latency_ms, ttft_ms FROM usage_ledger"
    )
    streamed = 1 if kit.kind == "sqlite" else True
    assert rows == [
        (
            "full",
            1793527200.25,
            "alice-laptop",
            "alice",
            "payments",
            "web",
            "dev",
            "/v1/chat/completions",
            "gpt-4o-mini",
            "gpt-4o-mini",
            "openai",
            "openai/gpt-4o-mini",
            11,
            3,
            4,
            22,
            5,
            2**40,
            77,
            200,
            "ok",
            None,
            streamed,
            "provider",
            12.5,
            8.25,
        )
    ]


def test_report_by_team_in_the_configured_time_zone(kit: Kit) -> None:
    assert summary(kit, report_query(NOVEMBER_BERLIN, ["team"], daily=False)) == [
        ReportRow(None, ("payments",), 3, 1, 1500, 0, 0, 700, 100, 1_012_344),
        ReportRow(None, ("search",), 1, 0, 300, 0, 100, 40, 0, 2_000_001),
        ReportRow(None, (None,), 1, 0, 10, 0, 0, 5, 0, 7),
    ]


def test_report_period_boundaries_follow_the_time_zone(kit: Kit) -> None:
    # In UTC, r2 (2026-10-31T23:30Z) is October and r7 (2026-11-30T23:00Z) is November: the reverse of Berlin.
    assert summary(kit, report_query(NOVEMBER_UTC, ["team"], daily=False)) == [
        ReportRow(None, ("payments",), 2, 1, 500, 0, 0, 500, 100, 999_999),
        ReportRow(None, ("search",), 2, 0, 301, 0, 100, 41, 0, 3_000_001),
        ReportRow(None, (None,), 1, 0, 10, 0, 0, 5, 0, 7),
    ]


def test_daily_report_splits_by_local_day(kit: Kit) -> None:
    assert summary(kit, report_query(NOVEMBER_BERLIN, ["team"], daily=True)) == [
        ReportRow(D(2026, 11, 1), ("payments",), 1, 0, 1000, 0, 0, 200, 0, 12_345),
        ReportRow(D(2026, 11, 1), ("search",), 1, 0, 300, 0, 100, 40, 0, 2_000_001),
        ReportRow(D(2026, 11, 2), ("payments",), 2, 1, 500, 0, 0, 500, 100, 999_999),
        ReportRow(D(2026, 11, 30), (None,), 1, 0, 10, 0, 0, 5, 0, 7),
    ]


@pytest.mark.parametrize(
    ("timezone", "expected"),
    [
        # Summer time ends 2026-10-25 01:00Z: 22:30Z is 00:30 on the 25th before it and 23:30 on the 25th after.
        (
            BERLIN,
            [
                ReportRow(D(2026, 10, 25), (), 2, 0, 3, 0, 0, 0, 0, 3),
                ReportRow(D(2026, 10, 26), (), 1, 0, 4, 0, 0, 0, 0, 4),
            ],
        ),
        (
            "UTC",
            [
                ReportRow(D(2026, 10, 24), (), 1, 0, 1, 0, 0, 0, 0, 1),
                ReportRow(D(2026, 10, 25), (), 2, 0, 6, 0, 0, 0, 0, 6),
            ],
        ),
    ],
)
def test_daily_report_across_a_daylight_saving_change(kit: Kit, timezone: str, expected: list[ReportRow]) -> None:
    period = make_period(D(2026, 10, 24), D(2026, 10, 26), timezone)
    assert summary(kit, report_query(period, [], daily=True)) == expected


def test_report_by_several_columns(kit: Kit) -> None:
    assert summary(kit, report_query(NOVEMBER_BERLIN, ["model", "env"], daily=False)) == [
        ReportRow(None, ("claude-haiku-4-5", "dev"), 1, 0, 300, 0, 100, 40, 0, 2_000_001),
        ReportRow(None, ("fast", "ci"), 1, 0, 500, 0, 0, 500, 100, 999_999),
        ReportRow(None, ("gpt-4o-mini", "dev"), 2, 1, 1000, 0, 0, 200, 0, 12_345),
        ReportRow(None, ("gpt-4o-mini", "prod"), 1, 0, 10, 0, 0, 5, 0, 7),
    ]


def test_report_filtered_to_one_team(kit: Kit) -> None:
    query = report_query(NOVEMBER_BERLIN, ["developer"], daily=False, filters={"team": ["payments"]})
    assert summary(kit, query) == [
        ReportRow(None, ("alice",), 2, 1, 1000, 0, 0, 200, 0, 12_345),
        ReportRow(None, (None,), 1, 0, 500, 0, 0, 500, 100, 999_999),
    ]


def test_report_without_groups_is_one_row(kit: Kit) -> None:
    assert summary(kit, report_query(NOVEMBER_BERLIN, [], daily=False)) == [
        ReportRow(None, (), 5, 1, 1810, 0, 100, 745, 100, 3_012_352),
    ]


def test_rows_are_ordered_by_day_then_code_point_with_missing_values_last(kit: Kit) -> None:
    # Code-point order puts "Zeta" before "alpha" and "beta" before "beta-2"; a locale collation would not.
    items = [
        record("o1", "2026-11-02T10:00:00", team="alpha"),
        record("o2", "2026-11-02T10:00:00", team=None),
        record("o3", "2026-11-02T10:00:00", team="Zeta"),
        record("o4", "2026-11-01T10:00:00", team="beta-2"),
        record("o5", "2026-11-01T10:00:00", team="beta"),
        record("o6", "2026-11-01T10:00:00", team="Ärger"),
    ]
    query = report_query(NOVEMBER_UTC, ["team"], daily=True)

    async def scenario(ledger: Ledger) -> list[tuple[dt.date | None, tuple[str | None, ...]]]:
        await ledger.migrate()
        await ledger.insert(items)
        return [(row.day, row.group) for row in await ledger.summarize(query)]

    assert kit.run(scenario) == [
        (D(2026, 11, 1), ("beta",)),
        (D(2026, 11, 1), ("beta-2",)),
        (D(2026, 11, 1), ("Ärger",)),
        (D(2026, 11, 2), ("Zeta",)),
        (D(2026, 11, 2), ("alpha",)),
        (D(2026, 11, 2), (None,)),
    ]


def test_report_of_an_empty_period_has_no_rows(kit: Kit) -> None:
    empty = make_period(D(2025, 1, 1), D(2025, 1, 31), BERLIN)
    assert summary(kit, report_query(empty, [], daily=False)) == []
    assert summary(kit, report_query(empty, ["team"], daily=True)) == []


def test_dispatched_only_leaves_out_rejections(kit: Kit) -> None:
    query = ReportQuery(NOVEMBER_BERLIN, by=("provider",), dispatched_only=True)
    assert summary(kit, query) == [
        ReportRow(None, ("anthropic",), 1, 0, 300, 0, 100, 40, 0, 2_000_001),
        ReportRow(None, ("openai",), 3, 0, 1510, 0, 0, 705, 100, 1_012_351),
    ]


def test_unreachable_store_raises_store_unavailable(kit: Kit) -> None:
    url = "sqlite:////nonexistent-dir/ledger.db" if kit.kind == "sqlite" else "postgresql://postgres@127.0.0.1:1/x"

    async def main() -> None:
        ledger = open_ledger(url)
        try:
            await ledger.migrate()
        finally:
            await ledger.close()

    with pytest.raises(StoreUnavailable, match="the ledger store did not answer"):
        asyncio.run(main())
