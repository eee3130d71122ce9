"""A streamed upstream response, relayed event by event and settled exactly once in its close path.

``aclose()`` is reached on normal end, on an upstream failure and on client disconnect alike (the HTTP edge calls
it in a ``finally``); it closes the upstream response and hands the usage seen so far to the ``finish`` callback.
Usage is cumulative (the provider's latest numbers overwrite earlier ones). When the provider's own count never
arrived, the output is counted from the relayed text and the input is the provider's figure if it sent one, else the
gateway's estimate.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable

from tollgate.errors import UpstreamError, UpstreamUnavailable
from tollgate.providers import StreamMeter
from tollgate.tokens import tokens_for_text_chars
from tollgate.types import Usage
from tollgate.upstream.client import UpstreamResponse

# finish(usage, usage_source, outcome, ttft_ms)
StreamFinish = Callable[[Usage, str, str, "float | None"], Awaitable[None]]


def counted_usage(meter: StreamMeter, input_estimate: int) -> tuple[Usage, str]:
    """The usage to charge for a stream: the provider's if it reported it, else what we can count."""
    if meter.provider_reported:
        return meter.usage, "provider"
    seen = meter.usage
    usage = Usage(
        input_tokens=seen.input_tokens or input_estimate,
        output_tokens=max(seen.output_tokens, tokens_for_text_chars(meter.output_chars)),
        cached_input_tokens=seen.cached_input_tokens,
        cache_write_tokens=seen.cache_write_tokens,
        reasoning_tokens=seen.reasoning_tokens,
    )
    return usage, "counted"


class MeteredStream:
    """Async iterator of the bytes to relay; ``aclose()`` settles (idempotent)."""

    def __init__(
        self,
        response: UpstreamResponse,
        meter: StreamMeter,
        *,
        input_estimate: int,
        started: float,
        finish: StreamFinish,
    ) -> None:
        self._response = response
        self._chunks: AsyncIterator[bytes] = response.chunks()
        self._meter = meter
        self._input_estimate = input_estimate
        self._started = started
        self._finish = finish
        self._ttft_ms: float | None = None
        self._outcome = "ok"
        self._closed = False
        self.upstream_error: UpstreamError | None = None

    def __aiter__(self) -> MeteredStream:
        return self

    async def __anext__(self) -> bytes:
        meter = self._meter
        while True:
            try:
                chunk = await self._chunks.__anext__()
            except StopAsyncIteration:
                tail = meter.close()
                if tail:
                    return tail
                if meter.finished:
                    raise
                self._outcome = "upstream_error"
                self.upstream_error = UpstreamUnavailable("the provider ended the stream early")
                raise self.upstream_error from None
            except UpstreamError as exc:
                self._outcome = "upstream_error"
                self.upstream_error = exc
                raise
            relay = meter.feed(chunk)
            if relay:
                if self._ttft_ms is None:
                    self._ttft_ms = (time.perf_counter() - self._started) * 1000
                return relay

    async def aclose(self, *, disconnected: bool = False) -> None:
        if self._closed:
            return
        self._closed = True
        if disconnected and self._outcome == "ok":
            self._outcome = "client_disconnect"
        if self._meter.upstream_error is not None and self._outcome == "ok":
            self._outcome = "upstream_error"
        self._response.close()
        usage, source = counted_usage(self._meter, self._input_estimate)
        await self._finish(usage, source, self._outcome, self._ttft_ms)
