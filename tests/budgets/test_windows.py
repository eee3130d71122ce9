"""Calendar windows: DST days, month ends, leap years, Monday weeks, and the second after midnight."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest

from tollgate.budgets.windows import Window, WindowCalendar, window_at

UTC = zoneinfo.ZoneInfo("UTC")
BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
SANTIAGO = zoneinfo.ZoneInfo("America/Santiago")  # springs forward at local midnight: 00:00 does not exist
NEW_YORK = zoneinfo.ZoneInfo("America/New_York")


def at(text: str) -> float:
    return dt.datetime.fromisoformat(text).timestamp()


@pytest.mark.parametrize(
    ("kind", "zone", "moment", "starts_at", "reset_at", "hours"),
    [
        ("daily", UTC, "2026-11-28T13:53:09+00:00", "2026-11-28T00:00:00+00:00", "2026-11-29T00:00:00+00:00", 24),
        ("daily", UTC, "2026-11-28T00:00:00+00:00", "2026-11-28T00:00:00+00:00", "2026-11-29T00:00:00+00:00", 24),
        ("daily", UTC, "2026-11-28T23:59:59+00:00", "2026-11-28T00:00:00+00:00", "2026-11-29T00:00:00+00:00", 24),
        # Berlin: spring forward (23 hours) and fall back (25 hours).
        ("daily", BERLIN, "2026-03-29T12:00:00+02:00", "2026-03-29T00:00:00+01:00", "2026-03-30T00:00:00+02:00", 23),
        ("daily", BERLIN, "2026-10-25T12:00:00+01:00", "2026-10-25T00:00:00+02:00", "2026-10-26T00:00:00+01:00", 25),
        ("daily", BERLIN, "2026-10-25T02:30:00+01:00", "2026-10-25T00:00:00+02:00", "2026-10-26T00:00:00+01:00", 25),
        ("daily", NEW_YORK, "2026-03-08T03:30:00-04:00", "2026-03-08T00:00:00-05:00", "2026-03-09T00:00:00-04:00", 23),
        # Santiago: local midnight is skipped, the day starts at 01:00 and has 23 hours.
        ("daily", SANTIAGO, "2026-09-06T12:00:00-03:00", "2026-09-06T01:00:00-03:00", "2026-09-07T00:00:00-03:00", 23),
        ("daily", SANTIAGO, "2026-09-05T23:59:59-04:00", "2026-09-05T00:00:00-04:00", "2026-09-06T01:00:00-03:00", 24),
        # Weeks start on Monday.
        ("weekly", UTC, "2026-11-28T12:00:00+00:00", "2026-11-23T00:00:00+00:00", "2026-11-30T00:00:00+00:00", 168),
        ("weekly", UTC, "2026-11-29T23:59:59+00:00", "2026-11-23T00:00:00+00:00", "2026-11-30T00:00:00+00:00", 168),
        ("weekly", UTC, "2026-11-30T00:00:00+00:00", "2026-11-30T00:00:00+00:00", "2026-12-07T00:00:00+00:00", 168),
        ("weekly", UTC, "2026-12-31T12:00:00+00:00", "2026-12-28T00:00:00+00:00", "2027-01-04T00:00:00+00:00", 168),
        ("weekly", BERLIN, "2026-03-29T12:00:00+02:00", "2026-03-23T00:00:00+01:00", "2026-03-30T00:00:00+02:00", 167),
        # Month ends and leap years.
        ("monthly", UTC, "2026-01-31T23:59:59+00:00", "2026-01-01T00:00:00+00:00", "2026-02-01T00:00:00+00:00", 744),
        ("monthly", UTC, "2027-02-14T00:00:00+00:00", "2027-02-01T00:00:00+00:00", "2027-03-01T00:00:00+00:00", 672),
        ("monthly", UTC, "2028-02-29T12:00:00+00:00", "2028-02-01T00:00:00+00:00", "2028-03-01T00:00:00+00:00", 696),
        ("monthly", UTC, "2100-02-10T12:00:00+00:00", "2100-02-01T00:00:00+00:00", "2100-03-01T00:00:00+00:00", 672),
        ("monthly", UTC, "2026-12-31T23:59:59+00:00", "2026-12-01T00:00:00+00:00", "2027-01-01T00:00:00+00:00", 744),
        ("monthly", BERLIN, "2026-10-31T23:59:59+01:00", "2026-10-01T00:00:00+02:00", "2026-11-01T00:00:00+01:00", 745),
        ("monthly", BERLIN, "2026-03-01T00:00:00+01:00", "2026-03-01T00:00:00+01:00", "2026-04-01T00:00:00+02:00", 743),
    ],
)
def test_window_at(kind: str, zone: zoneinfo.ZoneInfo, moment: str, starts_at: str, reset_at: str, hours: int) -> None:
    window = window_at(kind, at(moment), zone)
    assert window == Window(kind, int(at(starts_at)), int(at(reset_at)), starts_at, reset_at)
    assert window.end - window.start == hours * 3600


@pytest.mark.parametrize(
    ("zone", "before", "after"),
    [
        (UTC, "2026-11-28T23:59:59+00:00", "2026-11-29T00:00:01+00:00"),
        (BERLIN, "2026-11-28T23:59:59+01:00", "2026-11-29T00:00:01+01:00"),
        (BERLIN, "2026-03-29T23:59:59+02:00", "2026-03-30T00:00:01+02:00"),
        (NEW_YORK, "2026-12-31T23:59:59-05:00", "2027-01-01T00:00:01-05:00"),
    ],
)
def test_one_second_after_local_midnight_is_a_new_window(zone: zoneinfo.ZoneInfo, before: str, after: str) -> None:
    old = window_at("daily", at(before), zone)
    new = window_at("daily", at(after), zone)
    assert new.start == old.end == int(at(after)) - 1
    assert old.contains(at(before)) and not old.contains(at(after)) and new.contains(at(after))


def test_an_aware_datetime_is_accepted_and_a_naive_one_refused() -> None:
    moment = dt.datetime(2026, 11, 28, 23, 30, tzinfo=UTC)  # already 29 November in Berlin
    assert window_at("daily", moment, BERLIN).starts_at == "2026-11-29T00:00:00+01:00"
    with pytest.raises(ValueError, match="aware"):
        window_at("daily", dt.datetime(2026, 11, 28), BERLIN)


def test_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown window kind 'yearly'"):
        window_at("yearly", 0.0, UTC)


@pytest.mark.parametrize(
    ("moment", "seconds"),
    [
        ("2026-11-28T00:00:00+00:00", 86_400),
        ("2026-11-28T23:59:59+00:00", 1),
        ("2026-11-28T23:59:59.5+00:00", 1),
        ("2026-11-28T23:59:58.5+00:00", 2),
    ],
)
def test_seconds_left(moment: str, seconds: int) -> None:
    assert window_at("daily", at(moment), UTC).seconds_left(at(moment)) == seconds


def test_calendar_moves_on_when_the_window_ends() -> None:
    calendar = WindowCalendar(BERLIN)
    first = calendar.window("daily", at("2026-11-28T12:00:00+01:00"))
    assert calendar.window("daily", at("2026-11-28T23:59:59+01:00")) is first
    second = calendar.window("daily", at("2026-11-29T00:00:00+01:00"))
    assert second.starts_at == "2026-11-29T00:00:00+01:00"
    assert calendar.window("monthly", at("2026-11-29T00:00:00+01:00")).starts_at == "2026-11-01T00:00:00+01:00"
