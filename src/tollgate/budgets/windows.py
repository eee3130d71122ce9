"""Calendar windows: daily, weekly (from Monday) and monthly periods in a configured time zone.

A window runs from local midnight of its first day to local midnight of the day after its last, converted to unix
seconds with ``zoneinfo``, so a daily window on a DST day is 23 or 25 hours long. When local midnight does not exist
(a zone that springs forward at 00:00), the window starts at the first instant of that day. Time is passed in.
"""

from __future__ import annotations

import datetime as dt
import math
import zoneinfo
from dataclasses import dataclass

DAILY = "daily"
WEEKLY = "weekly"
MONTHLY = "monthly"


@dataclass(frozen=True, slots=True)
class Window:
    """One calendar period: ``[start, end)`` in unix seconds; ``starts_at`` and ``reset_at`` (the end) are the same
    instants in ISO 8601 with the zone's offset in force at each."""

    kind: str
    start: int
    end: int
    starts_at: str
    reset_at: str

    def contains(self, at: float) -> bool:
        return self.start <= at < self.end

    def seconds_left(self, at: float) -> int:
        """Whole seconds from ``at`` to the reset, at least 1 (what ``Retry-After`` says)."""
        return max(1, math.ceil(self.end - at))


def first_day(kind: str, day: dt.date) -> dt.date:
    """The local date a window of ``kind`` that contains ``day`` starts on."""
    if kind == DAILY:
        return day
    if kind == WEEKLY:
        return day - dt.timedelta(days=day.weekday())
    if kind == MONTHLY:
        return day.replace(day=1)
    raise ValueError(f"unknown window kind {kind!r}")


def next_first_day(kind: str, first: dt.date) -> dt.date:
    """The local date the window after the one starting on ``first`` starts on."""
    if kind == DAILY:
        return first + dt.timedelta(days=1)
    if kind == WEEKLY:
        return first + dt.timedelta(days=7)
    if kind == MONTHLY:
        return dt.date(first.year + first.month // 12, first.month % 12 + 1, 1)
    raise ValueError(f"unknown window kind {kind!r}")


def local_midnight(day: dt.date, zone: zoneinfo.ZoneInfo) -> dt.datetime:
    """The first instant of ``day`` in ``zone`` (fold=0 maps a skipped midnight to the moment of the jump)."""
    return dt.datetime(day.year, day.month, day.day, tzinfo=zone)


def window_at(kind: str, at: float | dt.datetime, zone: zoneinfo.ZoneInfo) -> Window:
    """The window of ``kind`` that contains ``at`` (unix seconds or an aware datetime) in ``zone``."""
    if isinstance(at, dt.datetime):
        if at.tzinfo is None:
            raise ValueError("window_at needs an aware datetime")
        local = at.astimezone(zone)
    else:
        local = dt.datetime.fromtimestamp(at, zone)
    first = first_day(kind, local.date())
    start = local_midnight(first, zone)
    end = local_midnight(next_first_day(kind, first), zone)
    return Window(
        kind=kind,
        start=int(start.timestamp()),
        end=int(end.timestamp()),
        starts_at=_iso(start, zone),
        reset_at=_iso(end, zone),
    )


def _iso(moment: dt.datetime, zone: zoneinfo.ZoneInfo) -> str:
    # Round-trip through a timestamp so a skipped local midnight prints as the real instant with the new offset.
    return dt.datetime.fromtimestamp(moment.timestamp(), zone).isoformat()


class WindowCalendar:
    """Remembers the current window of each kind so the hot path computes one only when a window ends."""

    def __init__(self, zone: zoneinfo.ZoneInfo) -> None:
        self.zone = zone
        self._current: dict[str, Window] = {}

    def window(self, kind: str, at: float) -> Window:
        window = self._current.get(kind)
        if window is None or not window.contains(at):
            window = window_at(kind, at, self.zone)
            self._current[kind] = window
        return window
