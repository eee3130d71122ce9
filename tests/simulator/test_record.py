"""The bounded request log."""

from __future__ import annotations

from tollgate.simulator.record import RequestLog


def test_keeps_the_last_entries_up_to_its_limit() -> None:
    log = RequestLog(limit=2)
    for n in range(3):
        log.add({"n": n})
    assert log.snapshot() == [{"n": 1}, {"n": 2}]


def test_snapshot_is_a_copy_and_clear_counts() -> None:
    log = RequestLog()
    log.add({"n": 1})
    snapshot = log.snapshot()
    log.add({"n": 2})
    assert snapshot == [{"n": 1}]
    assert log.clear() == 2
    assert log.snapshot() == []
