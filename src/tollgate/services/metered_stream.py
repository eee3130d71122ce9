"""A streamed upstream response, relayed event by event and settled exactly once in its close path.

The stream settles as soon as the provider's terminating event (``[DONE]``, ``message_stop``, a terminal error
event) has been read, BEFORE that event is relayed: a client that stops reading there (the synchronous openai SDK
does) never holds an answer whose settle has not left the process. Otherwise ``aclose()`` settles: it is reached on
normal end, on an upstream failure and on client disconnect alike (the HTTP edge calls it in a ``finally``); it closes
the upstream response and hands the usage seen so far to the ``finish`` callback. It returns what ``finish``
returned (what is left to do once the answer is out; the edge awaits it).
Usage is cumulative (the provider's latest numbers overwrite earlier ones). When the provider's own count never
arrived, the output is counted from the relayed text and the input is the provider's figure if it sent one, else the
gateway's estimate.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Generic, TypeVar

from tollgate.errors import UpstreamError, UpstreamUnavailable
from tollgate.providers import StreamMeter
from tollgate.tokens import tokens_for_text_chars
from tollgate.types import Usage
from tollgate.upstream.client import UpstreamResponse

_After = TypeVar("_After")

# finish(usage, usage_source, outcome, ttft_ms) -> what the edge awaits after the last byte is sent
StreamFinish = Callable[[Usage, str, str, "float | None"], Awaitable[_After]]


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


class MeteredStream(Generic[_After]):
    """Async iterator of the bytes to relay; settles once, at the terminating event or in ``aclose()``."""

    def __init__(
        self,
        response: UpstreamResponse,
        meter: StreamMeter,
        *,
        input_estimate: int,
        started: float,
        finish: StreamFinish[_After],
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
        self._settling: asyncio.Future[_After] | None = None
        self.upstream_error: UpstreamError | None = None

    def __aiter__(self) -> MeteredStream[_After]:
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
            if relay and self._ttft_ms is None:
                self._ttft_ms = (time.perf_counter() - self._started) * 1000
            if meter.finished and self._settling is None:
                # Before the terminating event goes out; shielded: a client leaving now must not cut the settle.
                self._settling = asyncio.ensure_future(self._settle())
                await asyncio.shield(self._settling)
            if relay:
                return relay

    async def aclose(self, *, disconnected: bool = False) -> _After:
        """Close the upstream response and settle unless the terminating event did already; returns what ``finish``
        returned."""
        if not self._closed:
            self._closed = True
            if disconnected and self._outcome == "ok":
                self._outcome = "client_disconnect"
            self._response.close()
        if self._settling is None:
            self._settling = asyncio.ensure_future(self._settle())
        return await self._settling

    async def _settle(self) -> _After:
        if self._meter.upstream_error is not None and self._outcome == "ok":
            self._outcome = "upstream_error"
        usage, source = counted_usage(self._meter, self._input_estimate)
        return await self._finish(usage, source, self._outcome, self._ttft_ms)
