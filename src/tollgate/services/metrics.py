"""Prometheus metrics: counters and histograms fed by finished requests, rendered in the text exposition format.

``MetricsRegistry`` is a ``UsageRecorder`` (``services/recorder.py``): the fan-out recorder hands it every finished
request, and ``GET /metrics`` prints ``render()``. Hand-written (format 0.0.4) rather than a client library: a few
counters and histograms do not justify a dependency. Everything lives in this one object's memory, so each server
worker process reports only the requests it served — Prometheus sums them across scrape targets.

Label cardinality is bounded by the configuration: ``team`` and ``env`` come from configured keys, ``model`` is a
configured model name (anything else a caller sends is reported as ``other``), ``outcome`` is one of a handful of
words, ``budget`` a configured budget name. ``developer`` and ``repo`` (a CI key's repo comes from a request header:
unbounded) are added only when ``metrics.developer_labels`` / ``metrics.repo_labels`` are set.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field

from tollgate.types import UsageRecord

OTHER_MODEL = "other"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
TTFT_BUCKETS_S = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
STORE_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 10.0)
RATIO_BUCKETS = (0.25, 0.5, 0.75, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0)
TOKEN_KINDS = ("input", "cached_input", "cache_write", "output", "reasoning")

Labels = tuple[tuple[str, str], ...]


@dataclass(slots=True)
class _Series:
    """One histogram's counts for one label set: per bucket (not cumulative), then sum and count."""

    counts: list[int]
    total: float = 0.0
    count: int = 0


@dataclass
class Histogram:
    name: str
    help: str
    buckets: tuple[float, ...]
    series: dict[Labels, _Series] = field(default_factory=dict)

    def observe(self, labels: Labels, value: float) -> None:
        entry = self.series.get(labels)
        if entry is None:
            entry = self.series[labels] = _Series([0] * (len(self.buckets) + 1))
        entry.counts[bisect.bisect_left(self.buckets, value)] += 1  # le: a value equal to a bound falls in it
        entry.total += value
        entry.count += 1

    def lines(self) -> Iterator[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} histogram"
        for labels, entry in sorted(self.series.items()):
            running = 0
            for bound, count in zip((*self.buckets, math.inf), entry.counts, strict=True):
                running += count
                yield f"{self.name}_bucket{_labels((*labels, ('le', _number(bound))))} {running}"
            yield f"{self.name}_sum{_labels(labels)} {_number(entry.total)}"
            yield f"{self.name}_count{_labels(labels)} {entry.count}"


@dataclass
class Counter:
    """Integer amounts, printed divided by ``divisor`` (money is summed exactly in micro-dollars)."""

    name: str
    help: str
    divisor: int = 1
    values: dict[Labels, int] = field(default_factory=dict)

    def add(self, labels: Labels, amount: int = 1) -> None:
        self.values[labels] = self.values.get(labels, 0) + amount

    def lines(self) -> Iterator[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} counter"
        for labels, value in sorted(self.values.items()):
            yield f"{self.name}{_labels(labels)} {_number(value / self.divisor if self.divisor != 1 else value)}"


class MetricsRegistry:
    """The gateway's metrics; ``record`` is called once per finished request (on the event loop's thread)."""

    def __init__(self, models: Collection[str], *, developer_labels: bool = False, repo_labels: bool = False) -> None:
        self._models = frozenset(models)
        self._developer = developer_labels
        self._repo = repo_labels
        self.requests = Counter("tollgate_requests_total", "Requests finished, by caller, model and outcome.")
        self.tokens = Counter("tollgate_tokens_total", "Tokens used, by kind (cached, cache_write: part of input).")
        self.cost = Counter(
            "tollgate_cost_usd_total", "Cost of the tokens used, in USD, at the configured prices.", 1_000_000
        )
        self.rejections = Counter("tollgate_budget_rejections_total", "Requests refused with 429, by the budget.")
        self.latency = Histogram(
            "tollgate_upstream_latency_seconds",
            "Time from request to the end of the upstream answer.",
            LATENCY_BUCKETS_S,
        )
        self.ttft = Histogram(
            "tollgate_time_to_first_token_seconds", "Time from request to the first streamed token.", TTFT_BUCKETS_S
        )
        self.estimate_ratio = Histogram(
            "tollgate_estimate_ratio", "Pre-dispatch token estimate divided by the tokens actually used.", RATIO_BUCKETS
        )
        self.store_latency = Histogram(
            "tollgate_store_seconds",
            "Budget counter store calls on the request path (reserve, settle, outbox), until the store answered.",
            STORE_BUCKETS_S,
        )
        self.store_errors = Counter("tollgate_store_errors_total", "Budget counter store calls that failed.")

    def observe_store(self, operation: str, seconds: float, ok: bool) -> None:
        """One counter store call of the request path (``Admission``'s ``StoreObserver``)."""
        labels = (("operation", operation),)
        self.store_latency.observe(labels, seconds)
        if not ok:
            self.store_errors.add(labels)

    def record(self, record: UsageRecord) -> None:
        model = self._model(record.model)
        caller = self._caller_labels(record, model)
        self.requests.add((*caller, ("outcome", record.outcome)))
        usage = record.usage
        amounts = (
            usage.input_tokens,
            usage.cached_input_tokens,
            usage.cache_write_tokens,
            usage.output_tokens,
            usage.reasoning_tokens,
        )
        for kind, amount in zip(TOKEN_KINDS, amounts, strict=True):
            if amount:
                self.tokens.add((*caller, ("kind", kind)), amount)
        if record.cost_micros:
            self.cost.add(caller, record.cost_micros)
        if record.rejected_by is not None:
            self.rejections.add((("budget", record.rejected_by),))
        if record.provider is not None:  # it reached an upstream
            self.latency.observe((("model", model), ("provider", record.provider)), record.latency_ms / 1000)
        if record.ttft_ms is not None:
            self.ttft.observe((("model", model),), record.ttft_ms / 1000)
        if record.outcome == "ok" and record.estimate_tokens and usage.total_tokens:
            self.estimate_ratio.observe((("model", model),), record.estimate_tokens / usage.total_tokens)

    def render(self) -> str:
        metrics: Sequence[Counter | Histogram] = (
            self.requests,
            self.tokens,
            self.cost,
            self.rejections,
            self.latency,
            self.ttft,
            self.estimate_ratio,
            self.store_latency,
            self.store_errors,
        )
        return "".join(line + "\n" for metric in metrics for line in metric.lines())

    def _model(self, model: str | None) -> str:
        if model is None:
            return ""
        return model if model in self._models else OTHER_MODEL

    def _caller_labels(self, record: UsageRecord, model: str) -> Labels:
        labels: list[tuple[str, str]] = [("team", record.team or ""), ("env", record.env or ""), ("model", model)]
        if self._developer:
            labels.append(("developer", record.developer or ""))
        if self._repo:
            labels.append(("repo", record.repo or ""))
        return tuple(labels)


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{name}="{_escape(value)}"' for name, value in labels) + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if value == math.inf:
        return "+Inf"
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))
