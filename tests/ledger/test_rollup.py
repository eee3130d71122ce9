"""The daily rollup (SQLite and PostgreSQL): it gives the raw ledger's answers, counts each request once, is built
from existing rows by migration and ``migrate()``, and is left alone for a time zone it was not built for."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
from collections.abc import Sequence
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from tests.ledger.support import Kit, MemoryOutbox, dataset, payload, record
from tollgate import cli_ledger
from tollgate.budgets.windows import window_at
from tollgate.ledger import Ledger, open_ledger, rollup, schema
from tollgate.ledger.focus import FOCUS_COLUMNS, csv_values, focus_query, focus_rows, json_values
from tollgate.ledger.reports import ExportRow, Period, ReportQuery, day_number, make_period, report_query
from tollgate.ledger.verify import verify_query
from tollgate.ledger.writer import LedgerWriter
from tollgate.settings import Settings
from tollgate.types import Usage, UsageRecord

BERLIN = "Europe/Berlin"
D = dt.date
NOVEMBER = make_period(D(2026, 11, 1), D(2026, 11, 30), BERLIN)
SUMMER_ENDS = make_period(D(2026, 10, 24), D(2026, 10, 26), BERLIN)
YEAR = make_period(D(2026, 1, 1), D(2026, 12, 31), BERLIN)

# Every kind of query the rollup answers, and two it does not (by key; the verify query groups by key too).
QUERIES: list[ReportQuery] = [
    report_query(NOVEMBER, ["team"], daily=False),
    report_query(NOVEMBER, ["team", "model"], daily=True),
    report_query(NOVEMBER, [], daily=False),
    report_query(SUMMER_ENDS, [], daily=True),
    report_query(YEAR, ["env", "repo"], daily=True),
    report_query(NOVEMBER, ["developer"], daily=False, filters={"team": ["payments"]}),
    report_query(NOVEMBER, ["team"], daily=False, filters={"team": []}),
    report_query(make_period(D(2025, 1, 1), D(2025, 1, 31), BERLIN), ["team"], daily=True),
    ReportQuery(NOVEMBER, by=("provider",), dispatched_only=True),
    focus_query(NOVEMBER),
    focus_query(NOVEMBER, ("team",)),
    focus_query(YEAR),
    report_query(NOVEMBER, ["key"], daily=False),
]


def records() -> list[UsageRecord]:
    """The fixed data set, plus a request by alias (same served model and attribution as r2: one FOCUS row from
    two rollup rows) and one whose team is the empty string (not the same group as no team)."""
    return [
        *dataset(),
        record("x1", "2026-11-01T12:00:00", model="fast", usage=Usage(7, 3), cost_micros=11),
        record("x2", "2026-11-03T12:00:00", team="", usage=Usage(5, 5), cost_micros=13),
    ]


def answers(kit: Kit, queries: list[ReportQuery], timezone: str | None) -> list[list[Any]]:
    async def scenario(ledger: Ledger) -> list[list[Any]]:
        await ledger.migrate()
        return [await ledger.summary_tuples(query) for query in queries]

    return kit.run(scenario, timezone=timezone)


def fill(kit: Kit, items: list[UsageRecord], timezone: str | None = None) -> int:
    async def scenario(ledger: Ledger) -> int:
        await ledger.migrate()
        return await ledger.insert(items)

    return kit.run(scenario, timezone=timezone)


def state(kit: Kit) -> tuple[object, ...]:
    (row,) = kit.fetch("SELECT timezone, built_through >= build_target FROM usage_rollup_state")
    return (row[0], bool(row[1]))


def rollup_totals(kit: Kit) -> tuple[int, ...]:
    (row,) = kit.fetch(f"SELECT {', '.join(f'sum({name})' for name in schema.ROLLUP_MEASURES)} FROM usage_rollup")
    return tuple(int(value) for value in row)


def ledger_totals(kit: Kit) -> tuple[int, ...]:
    sums = ", ".join(["count(*)", "sum(CASE WHEN outcome = 'rejected' THEN 1 ELSE 0 END)"])
    sums += "".join(f", sum({name})" for name in schema.ROLLUP_MEASURES[2:])
    (row,) = kit.fetch(f"SELECT {sums} FROM usage_ledger")
    return tuple(int(value) for value in row)


def test_the_rollup_gives_the_raw_ledgers_answers(kit: Kit) -> None:
    fill(kit, records())
    raw = answers(kit, QUERIES, timezone=None)
    assert state(kit) == (None, True)  # opened without a time zone: nothing built
    rolled = answers(kit, QUERIES, timezone=BERLIN)
    assert state(kit) == (BERLIN, True)
    assert rolled == raw
    assert sum(len(rows) for rows in raw) > 40  # the queries do find rows


def test_reports_read_the_rollup_only_when_it_answers(kit: Kit) -> None:
    fill(kit, records(), timezone=BERLIN)
    by_team = report_query(NOVEMBER, ["team"], daily=False)
    utc = report_query(make_period(D(2026, 11, 1), D(2026, 11, 30), "UTC"), ["team"], daily=False)
    by_key = report_query(NOVEMBER, ["key"], daily=False)
    shifted = ReportQuery(
        Period(NOVEMBER.first_day, NOVEMBER.last_day, BERLIN, NOVEMBER.start + 1, NOVEMBER.end), by=("team",)
    )
    queries = [by_team, utc, by_key, shifted]
    before = answers(kit, queries, timezone=None)
    kit.execute("UPDATE usage_rollup SET requests = requests + 1000")  # a mark only reads of the rollup see
    after = answers(kit, queries, timezone=None)
    assert [row[2] - old[2] >= 1000 for row, old in zip(after[0], before[0], strict=True)] == [True] * 4
    assert after[1:] == before[1:]  # another zone, a grouping by key, a period not of whole days: the raw ledger


def test_reinserted_requests_are_counted_once(kit: Kit) -> None:
    first = records()
    again = [*first[:4], record("y1", "2026-11-05T10:00:00", usage=Usage(1, 1), cost_micros=5), first[0]]
    assert fill(kit, first, timezone=BERLIN) == len(first)
    assert fill(kit, again, timezone=BERLIN) == 1  # only y1 is new; r1 twice in one batch
    assert rollup_totals(kit) == ledger_totals(kit)
    assert rollup_totals(kit)[0] == len(first) + 1


def test_the_writer_counts_an_outbox_replayed_after_a_crash_once(kit: Kit) -> None:
    outbox = MemoryOutbox()
    for item in records():
        outbox.append(payload(item))
    outbox.fail_acks = 1  # the first pass commits, then cannot acknowledge: the next pass inserts it all again

    async def scenario(ledger: Ledger) -> int:
        await ledger.migrate()
        writer = LedgerWriter(ledger, outbox=outbox, batch_size=5)
        with pytest.raises(Exception, match="the outbox did not answer"):
            await writer.flush()
        return await writer.flush() + writer.duplicates

    assert kit.run(scenario, timezone=BERLIN) == len(records())  # new ones + duplicates: every entry seen once
    assert outbox.items == []
    assert rollup_totals(kit) == ledger_totals(kit)


def test_migrate_builds_the_rollup_of_a_ledger_written_before_it(kit: Kit) -> None:
    # A database at version 1, as an older tollgate left it: the table, its rows, one migration recorded.
    kit.execute(schema.create_migrations_table(kit.kind), *schema.MIGRATIONS[0].statements(kit.kind))
    applied = ("component, version, name, applied_at", "'ledger', 1, 'create usage_ledger', 0")
    if kit.kind == "postgres":
        applied = ("component, version, name", "'ledger', 1, 'create usage_ledger'")
    kit.execute(f"INSERT INTO schema_migrations ({applied[0]}) VALUES ({applied[1]})")
    assert kit.run(lambda ledger: ledger.insert(records())) == len(records())

    assert kit.run(lambda ledger: ledger.migrate(), timezone=BERLIN) == 1  # migration 2, then the build
    assert state(kit) == (BERLIN, True)
    assert rollup_totals(kit) == ledger_totals(kit)
    rolled = answers(kit, QUERIES, timezone=None)
    kit.execute("UPDATE usage_rollup_state SET timezone = NULL")  # now every report reads the raw ledger
    assert answers(kit, QUERIES, timezone=None) == rolled


def test_sqlite_builds_in_chunks_and_resumes_an_interrupted_build(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    kit = Kit("sqlite", f"sqlite:///{tmp_path}/ledger.db")
    fill(kit, records())
    expected = answers(kit, QUERIES, timezone=None)
    monkeypatch.setattr(rollup, "BUILD_CHUNK_ROWS", 3)
    assert answers(kit, QUERIES, timezone=BERLIN) == expected
    # A build that stopped after its restart: reports read the raw ledger until the next migrate() finishes it.
    kit.execute("DELETE FROM usage_rollup", "UPDATE usage_rollup_state SET built_through = 0")
    assert state(kit) == (BERLIN, False)
    assert answers(kit, QUERIES, timezone=None) == expected
    assert answers(kit, QUERIES, timezone=BERLIN) == expected
    assert state(kit) == (BERLIN, True)
    assert rollup_totals(kit) == ledger_totals(kit)


def test_another_time_zone_reads_the_raw_ledger_until_the_rollup_is_rebuilt_for_it(kit: Kit) -> None:
    fill(kit, records(), timezone=BERLIN)
    utc_november = make_period(D(2026, 11, 1), D(2026, 11, 30), "UTC")
    utc = [report_query(utc_november, ["team"], daily=True), focus_query(utc_november)]
    berlin = answers(kit, QUERIES, timezone=None)
    in_utc = answers(kit, utc, timezone=None)
    assert state(kit) == (BERLIN, True)
    assert answers(kit, utc, timezone="UTC") == in_utc  # rebuilt for UTC, same answers
    assert state(kit) == ("UTC", True)
    assert answers(kit, QUERIES, timezone=None) == berlin  # Berlin now reads the raw ledger
    kit.execute("UPDATE usage_rollup SET requests = requests + 1000")
    assert answers(kit, utc, timezone=None) != in_utc  # and UTC the rollup
    assert answers(kit, QUERIES, timezone=None) == berlin


def test_rows_inserted_after_the_build_are_added_in_the_local_day(kit: Kit) -> None:
    fill(kit, dataset(), timezone=BERLIN)
    late = [
        record("late-1", "2026-11-15T22:59:59", cost_micros=777_001),  # 23:59:59 on the 15th in Berlin
        record("late-2", "2026-11-15T23:00:00", cost_micros=777_002),  # 00:00 on the 16th
    ]
    fill(kit, late)  # a ledger opened without a time zone: the trigger still adds to the rollup
    days = kit.fetch("SELECT day, requests FROM usage_rollup WHERE cost_micros IN (777001, 777002)")
    expected = [(D(2026, 11, 15), 1), (D(2026, 11, 16), 1)]
    if kit.kind == "sqlite":
        expected = [(day_number(day), count) for day, count in expected]
    assert sorted(days) == expected


def test_the_verify_query_reads_the_raw_ledger(kit: Kit) -> None:
    fill(kit, records(), timezone=BERLIN)
    query = verify_query(window_at("monthly", dt.datetime(2026, 11, 10, tzinfo=dt.UTC), ZoneInfo(BERLIN)), BERLIN)
    assert not rollup.answers(query, rollup.RollupState(BERLIN, complete=True))
    before = answers(kit, [query], timezone=None)
    kit.execute("UPDATE usage_rollup SET requests = requests + 1000")
    assert answers(kit, [query], timezone=None) == before


def test_concurrent_workers_build_once(kit: Kit) -> None:
    fill(kit, records())

    async def main() -> list[int]:
        ledgers = [open_ledger(kit.url, timezone=BERLIN) for _ in range(4)]
        try:
            return list(await asyncio.gather(*(ledger.migrate() for ledger in ledgers)))
        finally:
            for ledger in ledgers:
                await ledger.close()

    assert asyncio.run(main()) == [0, 0, 0, 0]
    assert state(kit) == (BERLIN, True)
    assert rollup_totals(kit) == ledger_totals(kit)


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_the_focus_export_is_the_same_text_from_the_rollup(kit: Kit, fmt: str) -> None:
    settings = Settings(config_path="tollgate.yaml", timezone=BERLIN, ledger=kit.url)

    def export() -> str:
        out = io.StringIO()
        assert cli_ledger.focus_export(settings, period="2026-11", date_from=None, date_to=None, fmt=fmt, out=out) == 0
        return out.getvalue()

    fill(kit, records())
    raw = export()
    fill(kit, [], timezone=BERLIN)  # a gateway start: builds the rollup
    assert state(kit) == (BERLIN, True)
    assert export() == raw
    assert raw.count("gpt-4o-mini tokens via tollgate for team payments") == 2  # r2 and x1 in one row; r4


# Attribution values the export must quote (CSV) or escape (JSON, and PostgreSQL's COPY on the way out).
TRICKY = ["", "a,b", 'say "hi"', "two\nlines", "cr\rx", "Ärger 😀", "back\\slash", "tab\tx", "\\N", "\b\x01\x7f"]


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_the_focus_export_from_the_rollup_prints_what_csv_and_orjson_print(kit: Kit, fmt: str) -> None:
    settings = Settings(config_path="tollgate.yaml", timezone=BERLIN, ledger=kit.url)
    items = [
        record(
            f"t{index}",
            f"2026-11-{1 + index % 3:02d}T12:00:00",
            team=value,
            developer=TRICKY[(index + 1) % len(TRICKY)] if index % 4 else None,
            repo=TRICKY[(index + 2) % len(TRICKY)],
            env=TRICKY[(index + 3) % len(TRICKY)],
            provider="we,ird\\" if index % 2 else "openai",
            model=model,
            usage=Usage(10 + index, 5),
            cost_micros=1_000_001 * index,
        )
        for index, value in enumerate(TRICKY)
        for model in ("gpt-4o-mini", "fast")  # two requested models served as one: one FOCUS row from two
    ]
    fill(kit, items, timezone=BERLIN)
    query = focus_query(NOVEMBER)

    async def reference(ledger: Ledger) -> list[dict[str, Any]]:
        rows = await ledger.summarize(query)
        assert len(rows) == len(TRICKY)
        return focus_rows(rows, timezone=BERLIN, providers={})

    values = kit.run(reference)
    expected = io.StringIO()
    csv.writer(expected, lineterminator="\n").writerows([FOCUS_COLUMNS, *(csv_values(row) for row in values)])
    document = orjson.dumps([json_values(row) for row in values], option=orjson.OPT_INDENT_2).decode() + "\n"
    out = io.StringIO()
    assert cli_ledger.focus_export(settings, period="2026-11", date_from=None, date_to=None, fmt=fmt, out=out) == 0
    assert out.getvalue() == (document if fmt == "json" else expected.getvalue())


def test_a_failing_export_sink_gets_no_more_rows_and_its_error_reaches_the_caller(kit: Kit) -> None:
    developers = [f"dev-{index:04d}" for index in range(1_500)]  # more rollup rows than SQLite reads at once
    fill(kit, [record(name, "2026-11-01T12:00:00", developer=name) for name in developers], timezone=BERLIN)
    query = focus_query(NOVEMBER)
    batches: list[int] = []

    def sink(rows: Sequence[ExportRow]) -> None:
        batches.append(len(rows))
        raise BrokenPipeError("the reader of the export went away")  # an OSError: not the database's failure

    async def scenario(ledger: Ledger) -> list[Any]:
        with pytest.raises(BrokenPipeError, match="went away"):
            await ledger.export_rows(query, sink)
        return await ledger.summary_tuples(query)  # the ledger still answers

    assert len(kit.run(scenario)) == len(developers)
    assert len(batches) == 1
