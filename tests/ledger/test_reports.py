"""Report options → calendar periods in a time zone; group names; offsets across DST; money printed exactly."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import orjson
import pytest

from tests.ledger.support import at
from tollgate.errors import BadRequest
from tollgate.ledger.reports import (
    OffsetPiece,
    ReportQuery,
    ReportRow,
    make_period,
    make_report,
    offset_pieces,
    parse_by,
    parse_period,
    report_query,
    total,
    usd,
    usd_number,
)

TODAY = dt.date(2026, 11, 28)
D = dt.date


@pytest.mark.parametrize(
    ("period", "date_from", "date_to", "first", "last"),
    [
        ("2026-11", None, None, D(2026, 11, 1), D(2026, 11, 30)),
        ("2024-02", None, None, D(2024, 2, 1), D(2024, 2, 29)),
        ("2026-12", None, None, D(2026, 12, 1), D(2026, 12, 31)),
        ("2026", None, None, D(2026, 1, 1), D(2026, 12, 31)),
        ("2026-11-05", None, None, D(2026, 11, 5), D(2026, 11, 5)),
        (None, "2026-10-24", "2026-10-26", D(2026, 10, 24), D(2026, 10, 26)),
        (None, "2026-11-20", None, D(2026, 11, 20), TODAY),
        (None, None, None, D(2026, 11, 1), D(2026, 11, 30)),
    ],
)
def test_period_options(
    period: str | None, date_from: str | None, date_to: str | None, first: dt.date, last: dt.date
) -> None:
    chosen = parse_period(period, date_from, date_to, timezone="UTC", today=TODAY)
    assert (chosen.first_day, chosen.last_day) == (first, last)


@pytest.mark.parametrize(
    ("period", "date_from", "date_to", "message"),
    [
        ("2026-13", None, None, "--period '2026-13' is not a year (2026), a month (2026-11) or a day (2026-11-05)"),
        ("Nov", None, None, "--period 'Nov' is not a year (2026), a month (2026-11) or a day (2026-11-05)"),
        ("2026-11", "2026-11-01", None, "give either --period or --from/--to, not both"),
        (None, None, "2026-11-01", "--to needs --from"),
        (None, "2026-11-02", "2026-11-01", "--to 2026-11-01 is before --from 2026-11-02"),
        (None, "11/02/2026", None, "--from '11/02/2026' is not a date (YYYY-MM-DD)"),
    ],
)
def test_bad_period_options(period: str | None, date_from: str | None, date_to: str | None, message: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_period(period, date_from, date_to, timezone="UTC", today=TODAY)
    assert caught.value.message == message


def test_period_runs_from_local_midnight_to_local_midnight() -> None:
    berlin = make_period(D(2026, 11, 1), D(2026, 11, 30), "Europe/Berlin")
    assert (berlin.start, berlin.end) == (at("2026-10-31T23:00:00"), at("2026-11-30T23:00:00"))
    october = make_period(D(2026, 10, 1), D(2026, 10, 31), "Europe/Berlin")  # 31 days and one hour long
    assert (october.start, october.end) == (at("2026-09-30T22:00:00"), at("2026-10-31T23:00:00"))
    assert berlin.label == "2026-11-01..2026-11-30 (Europe/Berlin)"


def test_group_names() -> None:
    assert parse_by(["team,model", "env", "team", ""]) == ("team", "model", "env")
    assert report_query(make_period(TODAY, TODAY, "UTC"), ["key", "model"], daily=False).by == ("key_name", "model")
    with pytest.raises(BadRequest, match="cannot group by 'colour'; choose from team, developer, repo"):
        parse_by(["team,colour"])


def test_a_query_refuses_columns_that_are_not_report_columns() -> None:
    with pytest.raises(ValueError, match="not a report column: 'cost_micros; drop table'"):
        ReportQuery(make_period(TODAY, TODAY, "UTC"), by=("cost_micros; drop table",))


def test_offsets_across_the_end_of_summer_time() -> None:
    period = make_period(D(2026, 10, 24), D(2026, 10, 26), "Europe/Berlin")
    assert offset_pieces(period) == (
        OffsetPiece(int(at("2026-10-25T01:00:00")), 7200),
        OffsetPiece(period.end, 3600),
    )


def test_offsets_when_the_clock_jumps_at_local_midnight() -> None:
    # Brazil's 2018 summer time began at 00:00 on 4 November: that local midnight never happened.
    period = make_period(D(2018, 11, 3), D(2018, 11, 5), "America/Sao_Paulo")
    assert offset_pieces(period) == (
        OffsetPiece(int(at("2018-11-04T03:00:00")), -10800),
        OffsetPiece(period.end, -7200),
    )


def test_offsets_without_a_change() -> None:
    period = make_period(D(2026, 11, 1), D(2026, 11, 30), "Asia/Kolkata")
    assert offset_pieces(period) == (OffsetPiece(period.end, 19800),)


def test_make_report_keeps_the_store_order_and_adds_the_total() -> None:
    period = make_period(TODAY, TODAY, "UTC")
    rows = [ReportRow(D(2026, 11, 2), ("b",), 1), ReportRow(D(2026, 11, 1), (None,), 3, cost_micros=5)]
    report = make_report(ReportQuery(period, by=("team",), daily=True), ["team"], rows)
    assert report.rows == tuple(rows)
    assert (report.by, report.total) == (("team",), ReportRow(None, (), 4, cost_micros=5))


def test_total_adds_every_measure() -> None:
    rows = [ReportRow(None, ("a",), 1, 2, 3, 4, 5, 6, 7, 8), ReportRow(None, ("b",), 10, 20, 30, 40, 50, 60, 70, 80)]
    assert total(rows) == ReportRow(None, (), 11, 22, 33, 44, 55, 66, 77, 88)
    assert total(rows).total_tokens == 33 + 66


@pytest.mark.parametrize(
    ("micros", "text"),
    [
        (0, "0.000000"),
        (7, "0.000007"),
        (1_000_000, "1.000000"),
        (3_012_352, "3.012352"),
        (123_456_789_012_345, "123456789.012345"),
        (-1_500_000, "-1.500000"),
    ],
)
def test_usd_is_exact(micros: int, text: str) -> None:
    assert usd(micros) == text


@pytest.mark.parametrize("micros", [1, 7, 10, 999_999, 1_012_344, 3_012_352, 999_999_999_999_999])
def test_usd_number_prints_the_exact_decimal(micros: int) -> None:
    # The JSON text of the number is the exact amount, not a neighbour of it.
    assert Decimal(orjson.dumps(usd_number(micros)).decode()) == Decimal(micros) / 1_000_000
