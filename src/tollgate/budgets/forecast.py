"""Burn-rate forecast: at the current window's rate, when a budget counter will run out.

The rate is what was used over the time the window has run so far (``used / (now - start)``); the counter runs out
when, at that rate, ``used`` reaches the limit: ``start + limit × (now - start) / used``. That instant is before
``now`` when the limit is already spent, and the forecast is None when it falls at or after the window's end (the
window resets first) or nothing was used yet. A counter limited in tokens and in USD runs out at the earlier of the
two. Pure: time is passed in.
"""

from __future__ import annotations

from collections.abc import Iterable


def runs_out_at(used: int, limit: int, start: float, end: float, now: float) -> float | None:
    """Unix seconds at which ``used`` reaches ``limit`` at the window's rate so far, or None if not within it."""
    if limit <= 0:
        return start  # a zero limit is spent from the start
    elapsed = now - start
    if used <= 0 or elapsed <= 0:
        return None
    at = start + limit * elapsed / used
    return at if at < end else None


def earliest(times: Iterable[float | None]) -> float | None:
    """The first of several forecasts (one per limited unit), None when none of them runs out."""
    known = [at for at in times if at is not None]
    return min(known) if known else None
