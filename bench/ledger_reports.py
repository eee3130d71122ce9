"""Benchmark: ledger reports over a generated ledger of one million rows, on SQLite and on PostgreSQL.

Usage: ``.venv/bin/python bench/ledger_reports.py [--rows 1000000] [--runs 5] [--backends sqlite,postgres]
[--postgres postgresql://postgres@127.0.0.1:5432/test] [--keep]``. Not a test: timings depend on the machine;
the numbers of record are in ``bench/results-ledger.md``.

The ledger is generated for one month (2026-11, Europe/Berlin) with a fixed seed: 20 teams, 200 developers, 60
repositories, 8 models, 3 environments, 4 % rejections. Rows go in through the database's bulk path (one
``executemany`` transaction in SQLite, ``COPY`` in PostgreSQL) into a schema created by the ledger's own migrations,
so every report index is in place. Each report is timed as the CLI runs it: ``Ledger.summarize`` (one aggregating
SQL statement) plus ``make_report`` (the total), or for the FOCUS export the FOCUS shaping and the CSV rendering
too, on an open connection; the median of
``--runs`` runs is printed as a Markdown table. The end-to-end CLI (``cli_ledger.report``: open, migrate check,
query, render, close) is timed once per backend too.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
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
from tollgate.ledger.focus import FOCUS_COLUMNS, RESOURCE_GRAIN, csv_values, focus_query, focus_rows
from tollgate.ledger.reports import ReportQuery, ReportRow, make_period, make_report, report_query
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
    focus: bool = False  # time the FOCUS shaping and CSV rendering too


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
    Report("FOCUS CSV, grain day x model x team", focus_query(PERIOD, ("team",)), focus=True),
    Report("FOCUS CSV, grain day x model x team x developer x repo x env", focus_query(PERIOD), focus=True),
]


def shape(report: Report, rows: list[ReportRow]) -> int:
    """What the CLI does with the rows before printing; returns how many rows come out."""
    if not report.focus:
        return len(make_report(report.query, report.query.by, rows).rows)
    attribution = report.query.by[len(RESOURCE_GRAIN) :]
    focus = focus_rows(rows, timezone=TIMEZONE, providers={"openai": "OpenAI"}, attribution=attribution)
    writer = csv.writer(io.StringIO(), lineterminator="\n")
    writer.writerow(FOCUS_COLUMNS)
    writer.writerows(csv_values(row) for row in focus)
    return len(focus)


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


async def time_reports(url: str, runs: int) -> list[tuple[str, float, int]]:
    ledger: Ledger = open_ledger(url)
    results = []
    try:
        await ledger.migrate()
        await ledger.summarize(REPORTS[0].query)  # connect and warm the cache once
        for report in REPORTS:
            timings = []
            for _ in range(runs):
                started = time.perf_counter()
                count = shape(report, await ledger.summarize(report.query))
                timings.append(time.perf_counter() - started)
            results.append((report.name, statistics.median(timings), count))
    finally:
        await ledger.close()
    return results


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


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument(
        "--postgres", default=os.environ.get("TOLLGATE_BENCH_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
    )
    parser.add_argument("--keep", action="store_true", help="keep the generated SQLite file / PostgreSQL schema")
    args = parser.parse_args()

    for backend in args.backends.split(","):
        url, cleanup = prepare(backend, args)
        try:
            results = asyncio.run(time_reports(url, args.runs))
            print(f"\n{backend}: median of {args.runs} runs, {args.rows:,} rows\n")
            print("| report | median | rows out |")
            print("|---|---:|---:|")
            for name, seconds, count in results:
                print(f"| {name} | {seconds * 1000:.0f} ms | {count:,} |")
            print(
                "| end to end: `cli_ledger.report --by team --daily` (open, migrate check, query, render) |"
                f" {time_cli(url) * 1000:.0f} ms | |\n"
            )
        finally:
            if args.keep:
                print(f"kept: {url}")
            else:
                cleanup()


async def _execute(dsn: str, statement: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


if __name__ == "__main__":
    main()
