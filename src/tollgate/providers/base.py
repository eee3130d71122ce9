"""What every provider translator shares: the endpoint table, the prepared request, the stream state (pure).

The dialect modules (``openai``, ``anthropic``) build on these; ``translate`` and ``meter`` pick the dialect module
for an endpoint. Nothing here does I/O or reads a clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import orjson

from tollgate.sse import SseEvent
from tollgate.types import Dialect, Usage


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One caller-facing POST route and what the gateway does with it."""

    path: str  # "/v1/chat/completions", ...
    dialect: Dialect
    kind: str  # "chat" | "completions" | "embeddings" | "responses" | "messages" | "count_tokens"
    can_stream: bool
    metered: bool  # False for count_tokens (costs nothing)


def _table(*endpoints: Endpoint) -> Mapping[str, Endpoint]:
    return MappingProxyType({e.path: e for e in endpoints})


# The six proxied POST endpoints, by path (read-only).
ENDPOINTS: Mapping[str, Endpoint] = _table(
    Endpoint("/v1/chat/completions", Dialect.OPENAI, "chat", can_stream=True, metered=True),
    Endpoint("/v1/completions", Dialect.OPENAI, "completions", can_stream=True, metered=True),
    Endpoint("/v1/embeddings", Dialect.OPENAI, "embeddings", can_stream=False, metered=True),
    Endpoint("/v1/responses", Dialect.OPENAI, "responses", can_stream=True, metered=True),
    Endpoint("/v1/messages", Dialect.ANTHROPIC, "messages", can_stream=True, metered=True),
    Endpoint("/v1/messages/count_tokens", Dialect.ANTHROPIC, "count_tokens", can_stream=False, metered=False),
)


@dataclass(frozen=True, slots=True)
class PreparedRequest:
    """The body to send upstream and what the relay must know about it."""

    body: bytes  # what goes upstream (orjson-encoded)
    stream: bool  # the caller asked for a stream
    hide_usage: bool  # the gateway added stream_options.include_usage; the usage-only chunk must not reach the caller


def requested_stream(body: Mapping[str, Any]) -> bool:
    """The caller asked for a stream: ``"stream": true`` exactly (a truthy non-boolean is not a request)."""
    return body.get("stream") is True


@dataclass(slots=True)
class StreamState:
    """What a stream reader has learned so far; ``StreamMeter`` exposes it (see its docstring for each field)."""

    usage: Usage = field(default_factory=Usage)
    provider_reported: bool = False
    output_chars: int = 0
    finished: bool = False
    upstream_error: str | None = None


class EventReader:
    """Reads one event at a time into a ``StreamState``; the base class reads nothing and relays everything.

    ``accept`` returns False for an event the caller must not see (only OpenAI's usage chunk that the gateway
    asked for). Readers never change an event: the relay sends its ``raw`` bytes or drops it.
    """

    __slots__ = ("hide_usage", "state")

    def __init__(self, state: StreamState, hide_usage: bool) -> None:
        self.state = state
        self.hide_usage = hide_usage

    def accept(self, event: SseEvent) -> bool:
        return True


# -- reading wire JSON ----------------------------------------------------------------------------------------------
# Provider JSON is read defensively: a field of the wrong type counts as absent, never as an exception, because a
# malformed usage object must not break a relay that is already under way.

NO_FIELDS: Mapping[str, Any] = MappingProxyType({})


def parse_object(data: bytes) -> dict[str, Any] | None:
    """The JSON object in ``data``, or None if it is not one."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def count(obj: Mapping[str, Any], key: str) -> int:
    """A non-negative integer field; 0 when absent, null or not an integer."""
    value = obj.get(key)
    return value if type(value) is int and value > 0 else 0


def member(obj: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """A nested object field; an empty mapping when absent or not an object."""
    value = obj.get(key)
    return value if isinstance(value, dict) else NO_FIELDS


def text_length(obj: Mapping[str, Any], key: str) -> int:
    """Characters in a string field; 0 when absent or not a string."""
    value = obj.get(key)
    return len(value) if isinstance(value, str) else 0
