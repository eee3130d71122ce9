"""Benchmark: ledger reports over a generated ledger of one million rows, on SQLite and on PostgreSQL.

Usage: ``.venv/bin/python bench/ledger_reports.py [--rows 1000000] [--runs 5] [--backends sqlite,postgres]
[--postgres postgresql://postgres@127.0.0.1:5432/test] [--raw] [--keep] [--reuse URL]``. Not a test: timings depend
on the machine; the numbers of record are in ``bench/results-ledger.md``.

The ledger is generated for one month (2026-11, Europe/Berlin) with a fixed seed: 20 teams, 200 developers, 60
repositories, 8 models, 3 environments, 4 % rejections. Rows go in through the database's bulk path (one
``executemany`` transaction in SQLite, ``COPY`` in PostgreSQL) into a schema created by the ledger's own migrations,
so every report index is in place; then the daily rollup is built for the bench's time zone the way a gateway
start builds it (``open_ledger(url, timezone=…).migrate()``, timed), unless ``--raw`` (every report then reads the
raw ledger, as before the rollup). Each report is timed as the CLI runs it: ``Ledger.summarize`` plus
``make_report`` (the total), or for the FOCUS export ``Ledger.export_rows`` streaming into a ``focus_writer``
``CsvWriter`` / ``JsonWriter`` on ``os.devnull`` (as to a file: a full-grain JSON export is 400 MB), on an open
connection; the median of ``--runs`` runs is printed as a Markdown table with the fastest and slowest run (the
machine is shared: the spread shows the noise, and a fixed pure-Python calibration loop is timed before and after).
End to end, the CLI is timed too: ``cli_ledger.report`` once, and ``cli_ledger.focus_export`` at full grain (open,
migrate check, read, write to ``os.devnull``, close) ``--runs`` times per format. ``--keep`` keeps the generated
database and ``--reuse URL`` times an earlier kept one instead of generating.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import io
import os
import random
import shutil
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import asyncpg  # type: ignore[import-untyped]

from tollgate import cli_ledger
from tollgate.ledger import Ledger, open_ledger, schema
from tollgate.ledger.focus import RESOURCE_GRAIN, focus_query
from tollgate.ledger.focus_writer import CsvWriter, JsonWriter
from tollgate.ledger.reports import ReportQuery, make_period, make_report, report_query
from tollgate.settings import Settings

TIMEZONE = "Europe/Berlin"
PERIOD = make_period(dt.date(2026, 11, 1), dt.date(2026, 11, 30), TIMEZONE)
MODELS = [
    ("gpt-4o-mini", "openai", 0.15, 0.60),
    ("gpt-4o", "openai", 2.50, 10.0),
    ("o3-mini", "openai", 1.10, 4.40),
    ("fast", "openai", 0.15, 0.60),
    ("claude-haiku-4-5", "anthropic", 1.0, 5.0),
    ("claude-sonnet-4-5", "anthropic", 3.0, 15.0),
    ("llama-3-70b", "vllm", 0.0, 0.0),
    ("text-embedding-3-small", "openai", 0.02, 0.0),
]
ENVS = ["dev", "ci", "prod"]


@dataclass(frozen=True)
class Report:
    name: str
    query: ReportQuery
    focus: str | None = None  # "csv" or "json": a FOCUS export, written in that format


REPORTS = [
    Report("--by team (month)", report_query(PERIOD, ["team"], daily=False)),
    Report("--by team,model --daily", report_query(PERIOD, ["team", "model"], daily=True)),
    Report("--by developer (month)", report_query(PERIOD, ["developer"], daily=False)),
    Report("--by repo,env --daily", report_query(PERIOD, ["repo", "env"], daily=True)),
    Report(
        "--by model --from 11-10 --to 11-12",
        report_query(make_period(dt.date(2026, 11, 10), dt.date(2026, 11, 12), TIMEZONE), ["model"], daily=False),
    ),
    Report("chargeback --team team-07", report_query(PERIOD, ["team"], daily=False, filters={"team": ["team-07"]})),
    Report("FOCUS CSV, grain day x model x team", focus_query(PERIOD, ("team",)), focus="csv"),
    Report("FOCUS CSV, grain day x model x team x developer x repo x env", focus_query(PERIOD), focus="csv"),
    Report("FOCUS JSON, the same full grain", focus_query(PERIOD), focus="json"),
]


async def run_report(ledger: Ledger, report: Report) -> int:
    """What the CLI does for the report, output to memory; returns how many rows come out."""
    if report.focus is None:
        rows = await ledger.summarize(report.query)
        return len(make_report(report.query, report.query.by, rows).rows)
    kind = JsonWriter if report.focus == "json" else CsvWriter
    attribution = report.query.by[len(RESOURCE_GRAIN) :]
    with open(os.devnull, "w", encoding="utf-8") as out:  # as the CLI writes to a file, not into memory
        writer = kind(out, timezone=TIMEZONE, providers={"openai": "OpenAI"}, attribution=attribution)
        await ledger.export_rows(report.query, writer.write)
        return writer.close()


def generate(count: int) -> Iterator[tuple[object, ...]]:
    """``count`` ledger rows (``schema.COLUMNS`` order, ``started_at`` as unix seconds) spread over the period."""
    rng = random.Random(20261101)
    span = PERIOD.end - PERIOD.start
    for index in range(count):
        team = rng.randrange(20)
        developer = team * 10 + rng.randrange(10)
        model, provider, price_in, price_out = MODELS[rng.randrange(len(MODELS))]
        env = ENVS[rng.randrange(3)]
        rejected = rng.random() < 0.04
        input_tokens = 0 if rejected else rng.randrange(50, 8000)
        output_tokens = 0 if rejected else rng.randrange(0, 2000)
        cost = int(input_tokens * price_in + output_tokens * price_out)  # µ$: USD per 1M tokens × tokens
        yield (
            f"bench-{index:08d}",
            PERIOD.start + span * index / count,
            f"key-{developer}",
            None if env == "ci" else f"dev-{developer:03d}",
            f"team-{team:02d}",
            f"repo-{team * 3 + rng.randrange(3):02d}",
            env,
            "/v1/chat/completions",
            model,
            None if rejected else model,
            None if rejected else provider,
            None if rejected else f"{provider}/{model}",
            input_tokens,
            input_tokens // 4,
            0,
            output_tokens,
            output_tokens // 5,
            cost,
            input_tokens + 1000,
            429 if rejected else 200,
            "rejected" if rejected else "ok",
            "team-daily" if rejected else None,
            rng.random() < 0.6,
            "none" if rejected else "provider",
            rng.uniform(100, 3000),
            None if rejected else rng.uniform(50, 500),
        )


async def fill_sqlite(url: str, count: int) -> None:
    ledger = open_ledger(url)
    await ledger.migrate()
    await ledger.close()
    db = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = OFF")
    columns = ", ".join(schema.COLUMN_NAMES)
    marks = ", ".join("?" for _ in schema.COLUMN_NAMES)
    db.execute("BEGIN")
    db.executemany(f"INSERT INTO {schema.TABLE} ({columns}) VALUES ({marks})", generate(count))
    db.execute("COMMIT")
    db.execute("ANALYZE")
    db.close()


async def fill_postgres(url: str, count: int) -> None:
    ledger = open_ledger(url)
    await ledger.migrate()
    await ledger.close()
    conn = await asyncpg.connect(url)
    try:
        rows = (
            (row[0], dt.datetime.fromtimestamp(row[1], dt.UTC), *row[2:])  # type: ignore[arg-type]
            for row in generate(count)
        )
        await conn.copy_records_to_table(schema.TABLE, records=rows, columns=list(schema.COLUMN_NAMES))
        await conn.execute(f"VACUUM ANALYZE {schema.TABLE}")
    finally:
        await conn.close()


async def time_reports(url: str, runs: int) -> list[tuple[str, list[float], int]]:
    ledger: Ledger = open_ledger(url)
    results = []
    try:
        await ledger.migrate()
        await ledger.summarize(REPORTS[0].query)  # connect and warm the cache once
        for report in REPORTS:
            timings = []
            for _ in range(runs):
                started = time.perf_counter()
                count = await run_report(ledger, report)
                timings.append(time.perf_counter() - started)
            results.append((report.name, timings, count))
    finally:
        await ledger.close()
    return results


async def build_rollup(url: str) -> None:
    ledger = open_ledger(url, timezone=TIMEZONE)
    try:
        await ledger.migrate()
    finally:
        await ledger.close()


def time_cli(url: str) -> float:
    settings = Settings(config_path="bench", timezone=TIMEZONE, ledger=url)
    started = time.perf_counter()
    code = cli_ledger.report(
        settings,
        by=["team"],
        period="2026-11",
        date_from=None,
        date_to=None,
        daily=True,
        fmt="table",
        out=io.StringIO(),
    )
    assert code == 0
    return time.perf_counter() - started


def time_focus_cli(url: str, fmt: str, runs: int) -> list[float]:
    """``cli_ledger.focus_export`` of the month at full grain to ``os.devnull``: open, migrate check, read, write."""
    settings = Settings(config_path="bench", timezone=TIMEZONE, ledger=url)
    timings = []
    for _ in range(runs):
        with open(os.devnull, "w", encoding="utf-8") as out:
            started = time.perf_counter()
            code = cli_ledger.focus_export(settings, period="2026-11", date_from=None, date_to=None, fmt=fmt, out=out)
            timings.append(time.perf_counter() - started)
        assert code == 0
    return timings


def prepare(backend: str, args: argparse.Namespace) -> tuple[str, Callable[[], None]]:
    """Generate the ledger; returns its URL and how to remove it."""
    started = time.perf_counter()
    if backend == "sqlite":
        directory = tempfile.mkdtemp(prefix="tollgate-bench-")
        url = f"sqlite:///{directory}/ledger.db"
        asyncio.run(fill_sqlite(url, args.rows))

        def cleanup() -> None:
            shutil.rmtree(directory)

    else:
        schema_name = f"bench_{uuid.uuid4().hex[:8]}"
        asyncio.run(_execute(args.postgres, f"CREATE SCHEMA {schema_name}"))
        url = f"{args.postgres}{'&' if '?' in args.postgres else '?'}search_path={schema_name}"
        asyncio.run(fill_postgres(url, args.rows))

        def cleanup() -> None:
            asyncio.run(_execute(args.postgres, f"DROP SCHEMA {schema_name} CASCADE"))

    print(f"{backend}: generated {args.rows:,} rows in {time.perf_counter() - started:.1f} s")
    return url, cleanup


def calibration_ms() -> float:
    """A fixed pure-Python workload (a million small tuples built and summed), to compare machine speed between
    runs: the machine is shared, and the reports' Python part scales with it."""
    started = time.perf_counter()
    sum(len((index, index, str(index))) for index in range(1_000_000))
    return (time.perf_counter() - started) * 1000


def build(url: str) -> None:
    started = time.perf_counter()
    asyncio.run(build_rollup(url))
    print(f"rollup built for {TIMEZONE} in {time.perf_counter() - started:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument(
        "--postgres", default=os.environ.get("TOLLGATE_BENCH_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
    )
    parser.add_argument("--keep", action="store_true", help="keep the generated SQLite file / PostgreSQL schema")
    parser.add_argument("--raw", action="store_true", help="do not build the rollup: every report reads the ledger")
    parser.add_argument("--reuse", default=None, help="time this kept ledger URL (one backend) instead of generating")
    args = parser.parse_args()

    for backend in args.backends.split(","):
        url, cleanup = (args.reuse, _leave_it) if args.reuse else prepare(backend, args)
        try:
            if not args.raw:
                build(url)
            before = calibration_ms()
            results = asyncio.run(time_reports(url, args.runs))
            calibration = f"calibration {before:.0f} ms before, {calibration_ms():.0f} ms after"
            print(f"\n{backend}: median of {args.runs} runs, {args.rows:,} rows ({calibration})\n")
            print("| report | median | min – max | rows out |")
            print("|---|---:|---:|---:|")
            for name, timings, count in results:
                spread = f"{min(timings) * 1000:.0f} – {max(timings) * 1000:.0f}"
                print(f"| {name} | {statistics.median(timings) * 1000:.0f} ms | {spread} | {count:,} |")
            print(
                "| end to end: `cli_ledger.report --by team --daily` (open, migrate check, query, render) |"
                f" {time_cli(url) * 1000:.0f} ms | | |"
            )
            for fmt in ("csv", "json"):
                timings = time_focus_cli(url, fmt, args.runs)
                spread = f"{min(timings) * 1000:.0f} – {max(timings) * 1000:.0f}"
                print(
                    f"| end to end: `cli_ledger.focus_export --format {fmt}` (full grain, to a file) |"
                    f" {statistics.median(timings) * 1000:.0f} ms | {spread} | |"
                )
            print()
        finally:
            if args.keep:
                print(f"kept: {url}")
            else:
                cleanup()


def _leave_it() -> None:
    """The cleanup of a reused ledger: nothing (the caller made it and removes it)."""


async def _execute(dsn: str, statement: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


if __name__ == "__main__":
    main()
