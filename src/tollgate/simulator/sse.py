"""Server-sent-event framing and the three-part shape of every simulated stream."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

DONE = b"data: [DONE]\n\n"


@dataclass(frozen=True, slots=True)
class StreamPlan:
    """A whole stream, as separately written events: the app paces ``content`` and may cut it short."""

    head: list[bytes]  # events before the first content chunk
    content: list[bytes]  # one event per content chunk (one word each)
    tail: list[bytes]  # closing events: finish, usage, stop, ``[DONE]``


def data_event(payload: Any) -> bytes:
    """An unnamed event (OpenAI chat and completions): ``data: {...}``."""
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def named_event(name: str, payload: Any) -> bytes:
    """A named event (Anthropic messages, OpenAI responses): ``event: name`` then ``data: {...}``."""
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"
