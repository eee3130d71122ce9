"""``StreamMeter``: relay an upstream event stream byte for byte while reading its usage on the side (pure)."""

from __future__ import annotations

from tollgate.providers.anthropic import MessagesReader
from tollgate.providers.base import Endpoint, EventReader, StreamState
from tollgate.providers.openai import ChatReader, ResponsesReader
from tollgate.sse import SseDecoder, SseEvent
from tollgate.types import Usage

_READERS: dict[str, type[EventReader]] = {
    "chat": ChatReader,
    "completions": ChatReader,
    "responses": ResponsesReader,
    "messages": MessagesReader,
}


class StreamMeter:
    """Feed raw upstream bytes; relay what ``feed`` returns; read the metering fields at any time.

    Relay contract: ``feed`` returns every event its chunk completes, byte for byte, in order; an unfinished event
    stays buffered until its blank line arrives (or ``close``). Nothing is ever re-encoded. The one event that
    may be dropped is OpenAI's usage-only chunk when ``hide_usage`` (the gateway asked for it, the caller did
    not).

    Metering fields:

    - ``usage``: cumulative; each usage-bearing event overwrites it, nothing is added up chunk by chunk.
    - ``provider_reported``: the provider's final numbers arrived (OpenAI: the usage chunk; Responses: a terminal
      event with usage; Anthropic: ``message_delta``). Before that, ``usage`` may hold partial numbers (Anthropic's
      input from ``message_start``).
    - ``output_chars``: characters of generated output relayed so far (text, tool-call arguments, reasoning and
      thinking deltas), to count output when the stream is cut before the provider's count.
    - ``finished``: the provider's terminal event was seen (``[DONE]``, ``message_stop``, ``response.completed``
      and the like, or an in-stream error, after which the provider sends nothing more).
    - ``upstream_error``: the (redacted, loggable) message of an in-stream error event, if any.
    """

    __slots__ = ("_decoder", "_reader", "_state")

    def __init__(self, endpoint: Endpoint, hide_usage: bool) -> None:
        self._state = StreamState()
        self._decoder = SseDecoder()
        self._reader = _READERS.get(endpoint.kind, EventReader)(self._state, hide_usage)

    def feed(self, chunk: bytes) -> bytes:
        """The bytes to relay to the caller now."""
        return self._relay(self._decoder.feed(chunk))

    def close(self) -> bytes:
        """End of the upstream stream: the trailing partial event, if any (else b"")."""
        return self._relay(self._decoder.flush())

    def _relay(self, events: list[SseEvent]) -> bytes:
        if not events:
            return b""
        accept = self._reader.accept
        kept = [event.raw for event in events if accept(event)]
        return kept[0] if len(kept) == 1 else b"".join(kept)

    @property
    def usage(self) -> Usage:
        return self._state.usage

    @property
    def provider_reported(self) -> bool:
        return self._state.provider_reported

    @property
    def output_chars(self) -> int:
        return self._state.output_chars

    @property
    def finished(self) -> bool:
        return self._state.finished

    @property
    def upstream_error(self) -> str | None:
        return self._state.upstream_error
