"""The burn-rate forecast: a table of used / limit / elapsed cases with literal expected instants."""

from __future__ import annotations

import pytest

from tollgate.budgets.forecast import earliest, runs_out_at

START = 1_000_000.0
END = START + 86_400.0  # a one-day window


@pytest.mark.parametrize(
    ("used", "limit", "now", "expected"),
    [
        (0, 1000, START + 3600, None),  # nothing used: never at this rate
        (100, 1000, START + 3600, START + 36_000),  # 10% in one hour: out after ten hours
        (500, 1000, START + 43_200, None),  # half in half the day: exactly at the reset, which comes first
        (501, 1000, START + 43_200, START + 1000 * 43_200 / 501),  # a little faster: just before the reset
        (2000, 1000, START + 7200, START + 3600),  # already spent: ran out an hour in
        (1000, 1000, START + 7200, START + 7200),  # spent exactly now
        (5, 0, START + 60, START),  # a zero limit is spent from the start
        (10, 1000, START, None),  # no time elapsed: no rate yet
        (1, 1000, START + 80_000, None),  # far too slow to run out within the window
    ],
)
def test_runs_out_at(used: int, limit: int, now: float, expected: float | None) -> None:
    assert runs_out_at(used, limit, START, END, now) == expected


@pytest.mark.parametrize(
    ("times", "expected"),
    [([None, None], None), ([5.0, None], 5.0), ([7.0, 3.0], 3.0), ([], None)],
)
def test_earliest(times: list[float | None], expected: float | None) -> None:
    assert earliest(times) == expected
