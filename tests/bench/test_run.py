"""The load benchmark's own arithmetic (``bench/run.py``): reading wrk's report, medians, core and process
accounting from /proc, and the profile breakdown. The benchmark itself is not a test (it needs two quiet cores and
minutes); these make sure the numbers it writes are read and summed right."""

from __future__ import annotations

import dataclasses
import math
import os
import subprocess
import sys
import time

import pytest
from bench.run import (
    HEADER,
    Row,
    WrkResult,
    breakdown,
    busy_percent,
    children_cpu_seconds,
    cpu_seconds,
    descendants,
    format_row,
    median_result,
    parse_wrk,
    peak_rss_mb,
    worker_pids,
)

# Captured from `wrk -t1 -c4 -d1s --latency -s bench/lua/openai_chat.lua http://127.0.0.1:18955 -- gpt-4o-mini 0 -`
# against `tollgate simulate` (wrk debian/4.1.0).
WRK_OUTPUT = """Running 1s test @ http://127.0.0.1:18955
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   263.01us  169.14us   3.15ms   93.41%
    Req/Sec    15.78k     1.03k   17.43k    54.55%
  Latency Distribution
     50%  216.00us
     75%  323.00us
     90%  396.00us
     99%  651.00us
  17230 requests in 1.10s, 12.93MB read
Requests/sec:  15668.75
Transfer/sec:     11.76MB
"""

WRK_WITH_ERRORS = """Running 4s test @ http://127.0.0.1:8080
  1 threads and 64 connections
  Latency Distribution
     50%   21.30ms
     75%   30.00ms
     90%  1.02s
     99%  1.50m
  9000 requests in 4.00s, 6.00MB read
  Socket errors: connect 1, read 2, write 3, timeout 4
  Non-2xx or 3xx responses: 17
Requests/sec:   2250.00
Transfer/sec:      1.50MB
"""


def result(rps: float, p50: float, requests: int = 100, errors: int = 0) -> WrkResult:
    return WrkResult(requests, rps, p50, p50 * 2, p50 * 4, errors, 0, "wrk …")


def test_parse_wrk_reads_rate_requests_and_percentiles_in_ms() -> None:
    parsed = parse_wrk(WRK_OUTPUT, "wrk …")
    assert parsed.requests == 17_230
    assert parsed.rps == pytest.approx(15_668.75)
    assert (parsed.p50_ms, parsed.p90_ms, parsed.p99_ms) == pytest.approx((0.216, 0.396, 0.651))
    assert (parsed.non2xx, parsed.socket_errors) == (0, 0)


def test_parse_wrk_converts_seconds_and_minutes_and_counts_every_error() -> None:
    parsed = parse_wrk(WRK_WITH_ERRORS, "wrk …")
    assert (parsed.p50_ms, parsed.p90_ms, parsed.p99_ms) == pytest.approx((21.3, 1_020.0, 90_000.0))
    assert parsed.non2xx == 17
    assert parsed.socket_errors == 1 + 2 + 3 + 4


def test_parse_wrk_without_a_latency_table_gives_nan_percentiles() -> None:
    text = WRK_OUTPUT.split("  Latency Distribution")[0] + "  17230 requests in 1.10s\nRequests/sec:  15668.75\n"
    parsed = parse_wrk(text, "wrk …")
    assert math.isnan(parsed.p50_ms) and parsed.rps == pytest.approx(15_668.75)


def test_parse_wrk_refuses_output_it_cannot_read() -> None:
    with pytest.raises(SystemExit, match="cannot read wrk output"):
        parse_wrk("unable to connect to 127.0.0.1:8080 Connection refused\n", "wrk …")
    with pytest.raises(ValueError, match="cannot read wrk latency"):
        parse_wrk(WRK_OUTPUT.replace("216.00us", "216.00ns"), "wrk …")


def test_median_result_takes_medians_and_sums_counts() -> None:
    runs = [result(1_000, 1.0, errors=1), result(3_000, 3.0, errors=2), result(2_000, 9.0)]
    merged = median_result(runs)
    assert (merged.rps, merged.p50_ms, merged.p90_ms) == (2_000, 3.0, 6.0)
    assert (merged.requests, merged.non2xx) == (300, 3)


def test_busy_percent_is_per_core_busy_over_elapsed_ticks() -> None:
    before = [(100, 1_000), (50, 1_000)]
    after = [(190, 1_100), (75, 1_100)]
    assert busy_percent(before, after) == (90, 25)


def test_format_row_subtracts_the_direct_p50_and_adds_every_error() -> None:
    row = Row(
        store="redis",
        endpoint="openai chat",
        connections=16,
        workers=1,
        direct=WrkResult(1, 15_000.0, 1.03, 1.5, 1.71, 1, 2, "d"),
        gateway=WrkResult(1, 3_677.4, 3.72, 7.37, 16.84, 3, 4, "g"),
        cpu_ms_per_request=0.2664,
        peak_rss_mb=50.2,
        cores_busy=(99, 68),
        beside_ms_per_request=0.1564,
    )
    cells = [cell.strip() for cell in format_row(row).strip("|").split("|")]
    assert cells[7] == "3,677" and cells[11] == "2.69" and cells[12] == "0.266" and cells[13] == "0.156"
    assert cells[15] == "10" and cells[16] == "99 / 68"
    assert len(cells) == HEADER.splitlines()[0].count("|") - 1  # one cell per column
    unmeasured = dataclasses.replace(row, beside_ms_per_request=None)
    assert [cell.strip() for cell in format_row(unmeasured).strip("|").split("|")][13] == "—"


def test_profile_breakdown_counts_self_inclusive_and_per_file_once_per_sample() -> None:
    collapsed = "\n".join(
        [
            "main (tollgate/cli.py:10);handle (/src/tollgate/proxy.py:5);handle (/src/tollgate/proxy.py:5) 3",
            "main (tollgate/cli.py:10);insert (site-packages/x/ledger.py:7) 1",
            "garbage line without a count",
        ]
    )
    text = breakdown(collapsed)
    assert text.startswith("4 samples.")
    assert "| `handle (tollgate/proxy.py)` | 75.0 |" in text  # self: 3 of 4
    assert "| `main (tollgate/cli.py)` | 100.0 |" in text  # inclusive, counted once per sample
    assert "| `tollgate/proxy.py` | 75.0 |" in text  # per file, once per sample although on the stack twice
    assert breakdown("") == "py-spy collected no samples.\n"


def test_process_accounting_reads_this_process_and_its_children_from_proc() -> None:
    started = cpu_seconds([os.getpid()])
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:
        pass
    assert cpu_seconds([os.getpid()]) - started >= 0.2
    assert peak_rss_mb([os.getpid()]) > 10
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert child.pid in descendants(os.getpid())
        assert worker_pids(os.getpid(), 1)[0] == os.getpid()
        assert os.getpid() not in worker_pids(os.getpid(), 2) and child.pid in worker_pids(os.getpid(), 2)
    finally:
        child.kill()
        child.wait()


def test_children_cpu_counts_a_child_once_it_has_ended() -> None:
    before = children_cpu_seconds()
    burn = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass"
    subprocess.run([sys.executable, "-c", burn], check=True)  # waited for, like wrk
    assert children_cpu_seconds() - before >= 0.25
