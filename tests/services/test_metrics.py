"""The metrics registry: what a few finished requests turn into, in the Prometheus text format, literally."""

from __future__ import annotations

import pytest

from tollgate.services.metrics import Histogram, MetricsRegistry
from tollgate.types import Usage, UsageRecord


def record(**overrides: object) -> UsageRecord:
    base: dict[str, object] = {
        "request_id": "r",
        "started_at": 0.0,
        "key_name": "alice",
        "developer": "alice",
        "team": "payments",
        "repo": None,
        "env": "dev",
        "endpoint": "/v1/chat/completions",
        "model": "gpt-4o-mini",
    }
    base.update(overrides)
    return UsageRecord(**base)  # type: ignore[arg-type]


OK = record(
    provider="sim",
    usage=Usage(input_tokens=100, cached_input_tokens=40, output_tokens=20),
    cost_micros=300_001,
    estimate_tokens=150,
    latency_ms=120.0,
    ttft_ms=30.0,
    streamed=True,
)
REJECTED = record(model="made-up-model", outcome="rejected", rejected_by="dev-daily", status=429)

EXPECTED = """\
# HELP tollgate_requests_total Requests finished, by caller, model and outcome.
# TYPE tollgate_requests_total counter
tollgate_requests_total{team="payments",env="dev",model="gpt-4o-mini",outcome="ok"} 2
tollgate_requests_total{team="payments",env="dev",model="other",outcome="rejected"} 1
# HELP tollgate_tokens_total Tokens used, by kind (cached, cache_write: part of input).
# TYPE tollgate_tokens_total counter
tollgate_tokens_total{team="payments",env="dev",model="gpt-4o-mini",kind="cached_input"} 80
tollgate_tokens_total{team="payments",env="dev",model="gpt-4o-mini",kind="input"} 200
tollgate_tokens_total{team="payments",env="dev",model="gpt-4o-mini",kind="output"} 40
# HELP tollgate_cost_usd_total Cost of the tokens used, in USD, at the configured prices.
# TYPE tollgate_cost_usd_total counter
tollgate_cost_usd_total{team="payments",env="dev",model="gpt-4o-mini"} 0.600002
# HELP tollgate_budget_rejections_total Requests refused with 429, by the budget.
# TYPE tollgate_budget_rejections_total counter
tollgate_budget_rejections_total{budget="dev-daily"} 1
"""


def test_counters_render_literally() -> None:
    metrics = MetricsRegistry(["gpt-4o-mini"])
    for item in (OK, OK, REJECTED):
        metrics.record(item)
    text = metrics.render()
    assert text.startswith(EXPECTED)
    assert 'tollgate_upstream_latency_seconds_bucket{model="gpt-4o-mini",provider="sim",le="0.1"} 0\n' in text
    assert 'tollgate_upstream_latency_seconds_bucket{model="gpt-4o-mini",provider="sim",le="0.25"} 2\n' in text
    assert 'tollgate_upstream_latency_seconds_bucket{model="gpt-4o-mini",provider="sim",le="+Inf"} 2\n' in text
    assert 'tollgate_upstream_latency_seconds_sum{model="gpt-4o-mini",provider="sim"} 0.24\n' in text
    assert 'tollgate_time_to_first_token_seconds_count{model="gpt-4o-mini"} 2\n' in text
    assert 'tollgate_estimate_ratio_bucket{model="gpt-4o-mini",le="1.25"} 2\n' in text  # 150 / 120
    assert 'tollgate_estimate_ratio_bucket{model="gpt-4o-mini",le="1.1"} 0\n' in text
    assert 'model="other",provider' not in text  # the rejected request never reached an upstream


def test_developer_and_repo_labels_only_when_opted_in() -> None:
    plain = MetricsRegistry(["gpt-4o-mini"])
    labelled = MetricsRegistry(["gpt-4o-mini"], developer_labels=True, repo_labels=True)
    for metrics in (plain, labelled):
        metrics.record(record(repo="org/api"))
    assert "developer=" not in plain.render() and "repo=" not in plain.render()
    assert (
        'tollgate_requests_total{team="payments",env="dev",model="gpt-4o-mini",developer="alice",repo="org/api",'
        'outcome="ok"} 1\n' in labelled.render()
    )


def test_label_values_are_escaped() -> None:
    metrics = MetricsRegistry([], repo_labels=True)
    metrics.record(record(repo='a"b\\c\nd', team=None))
    assert 'team="",env="dev",model="other",repo="a\\"b\\\\c\\nd",outcome="ok"} 1\n' in metrics.render()


@pytest.mark.parametrize(
    ("value", "bucket_counts"),
    [(0.5, [1, 1, 1]), (1.0, [0, 1, 1]), (1.5, [0, 0, 1]), (9.0, [0, 0, 1])],
)
def test_histogram_buckets_are_cumulative_and_inclusive(value: float, bucket_counts: list[int]) -> None:
    histogram = Histogram("h", "help", (0.5, 1.0))
    histogram.observe((), value)
    assert [line.rsplit(" ", 1)[1] for line in histogram.lines() if "_bucket" in line] == [
        str(count) for count in bucket_counts
    ]


def test_store_calls_render_as_a_histogram_and_an_error_counter() -> None:
    registry = MetricsRegistry(["m"])
    registry.observe_store("reserve", 0.0003, True)
    registry.observe_store("reserve", 0.02, False)
    lines = registry.render().splitlines()
    assert 'tollgate_store_seconds_bucket{operation="reserve",le="0.00025"} 0' in lines
    assert 'tollgate_store_seconds_bucket{operation="reserve",le="0.0005"} 1' in lines
    assert 'tollgate_store_seconds_bucket{operation="reserve",le="0.025"} 2' in lines
    assert 'tollgate_store_seconds_count{operation="reserve"} 2' in lines
    assert 'tollgate_store_errors_total{operation="reserve"} 1' in lines
