"""Request ids: ``req_`` + 12 hex digits of Unix milliseconds + 20 random hex digits (decision 0055)."""

from __future__ import annotations

import re
import time

from tollgate.api.gateway import new_request_id

ID = re.compile(r"req_([0-9a-f]{12})([0-9a-f]{20})")


def test_an_id_carries_the_time_in_milliseconds_then_80_random_bits() -> None:
    before = time.time_ns() // 1_000_000
    request_id = new_request_id()
    after = time.time_ns() // 1_000_000
    match = ID.fullmatch(request_id)
    assert match is not None, request_id
    assert before <= int(match.group(1), 16) <= after


def test_ids_sort_in_the_order_they_were_taken_across_milliseconds() -> None:
    taken = []
    for _ in range(5):
        taken.append(new_request_id())
        time.sleep(0.002)
    assert sorted(taken) == taken


def test_ids_taken_within_one_millisecond_still_differ() -> None:
    ids = [new_request_id() for _ in range(100_000)]
    assert len(set(ids)) == len(ids)
    assert len({ID.fullmatch(i).group(2) for i in ids}) == len(ids)  # type: ignore[union-attr]
