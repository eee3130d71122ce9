"""Anthropic dialect: the Messages API and its stream (pure).

Anthropic splits the prompt: ``usage.input_tokens`` is only the uncached part, beside ``cache_read_input_tokens``
and ``cache_creation_input_tokens``. ``Usage.input_tokens`` counts every prompt token, so the three are added;
``cached_input_tokens`` is the cache reads and ``cache_write_tokens`` the cache creation.
``output_tokens_details.thinking_tokens`` (a part of ``output_tokens``) becomes ``reasoning_tokens``.

A stream is ``message_start`` (the message with its input usage and a first small ``output_tokens``), then per
content block ``content_block_start`` / ``content_block_delta``… / ``content_block_stop``, any number of ``ping``,
then ``message_delta`` (stop reason and the cumulative usage: its fields replace the earlier ones) and
``message_stop``. An ``error`` event (``overloaded_error`` and the like) may end it instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tollgate.providers.base import EventReader, StreamState, count, member, parse_object, text_length
from tollgate.providers.error_bodies import stream_error_message
from tollgate.sse import SseEvent
from tollgate.types import Usage

_INPUT = "input_tokens"
_CACHE_READ = "cache_read_input_tokens"
_CACHE_WRITE = "cache_creation_input_tokens"

# content_block_delta types whose text is generated output, and the field holding it. ``signature_delta``
# (an opaque signature of the thinking) and ``citations_delta`` are not.
_DELTA_TEXT: Mapping[str, str] = {
    "text_delta": "text",
    "input_json_delta": "partial_json",
    "thinking_delta": "thinking",
}
# Events relayed without a parse: nothing in them is metered.
_UNREAD = frozenset({"ping", "content_block_start", "content_block_stop"})


def messages_usage(usage: Mapping[str, Any]) -> Usage:
    """A Messages ``usage`` object (of a message body or ``message_start``), normalised."""
    cache_read = count(usage, _CACHE_READ)
    cache_write = count(usage, _CACHE_WRITE)
    return Usage(
        input_tokens=count(usage, _INPUT) + cache_read + cache_write,
        output_tokens=count(usage, "output_tokens"),
        cached_input_tokens=cache_read,
        cache_write_tokens=cache_write,
        reasoning_tokens=count(member(usage, "output_tokens_details"), "thinking_tokens"),
    )


class MessagesReader(EventReader):
    """Messages streams. ``provider_reported`` is set only by ``message_delta``'s usage: ``message_start`` gives the
    input side, but its ``output_tokens`` is a placeholder, so a stream cut before ``message_delta`` keeps the
    input from ``message_start`` and has its output counted from ``output_chars``."""

    __slots__ = ("_raw",)

    def __init__(self, state: StreamState, hide_usage: bool) -> None:
        super().__init__(state, hide_usage)
        # Anthropic's own numbers, by field name: message_delta may repeat only some of them.
        self._raw: dict[str, Any] = {}

    def accept(self, event: SseEvent) -> bool:
        name = event.event
        if name in _UNREAD or not event.data:
            return True
        payload = parse_object(event.data)
        if payload is None:
            return True
        if name is None:
            name = payload.get("type")
        if name == "content_block_delta":
            delta = member(payload, "delta")
            field = _DELTA_TEXT.get(delta.get("type", ""))
            if field is not None:
                self.state.output_chars += text_length(delta, field)
        elif name == "message_start":
            self._take_usage(member(member(payload, "message"), "usage"))
        elif name == "message_delta":
            usage = payload.get("usage")
            if isinstance(usage, dict):
                self._take_usage(usage)
                self.state.provider_reported = True
        elif name == "message_stop":
            self.state.finished = True
        elif name == "error":
            self.state.upstream_error = stream_error_message(payload.get("error"))
            self.state.finished = True
        return True

    def _take_usage(self, usage: Mapping[str, Any]) -> None:
        """Overwrite every field the event carries (cumulative numbers), keep the others."""
        raw = self._raw
        for key, value in usage.items():
            if value is not None:
                raw[key] = value
        self.state.usage = messages_usage(raw)
