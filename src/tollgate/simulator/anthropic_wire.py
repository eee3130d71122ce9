"""Anthropic wire format: the Messages API body, its named stream events, count_tokens and errors (pure).

Usage follows Anthropic's split: ``input_tokens`` is the uncached prompt alone, beside
``cache_read_input_tokens`` and ``cache_creation_input_tokens``; ``output_tokens`` in ``message_delta`` is
cumulative (the whole reply so far), as is the rest of that event's usage.
"""

from __future__ import annotations

from typing import Any

from tollgate.simulator.content import Reply
from tollgate.simulator.sse import StreamPlan, named_event

# status → error type as Anthropic answers them.
_ERRORS: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def error_body(status: int, message: str) -> dict[str, Any]:
    """``{"type": "error", "error": {"type", "message"}}``."""
    kind = _ERRORS.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


def _stop_reason(reply: Reply) -> str:
    return "max_tokens" if reply.truncated else "end_turn"


def usage(reply: Reply, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": reply.prompt_tokens,
        "cache_creation_input_tokens": reply.cache_write_tokens,
        "cache_read_input_tokens": reply.cached_tokens,
        "output_tokens": output_tokens,
    }


def message(model: str, reply: Reply, mid: str) -> dict[str, Any]:
    return {
        "id": mid,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": reply.text}],
        "stop_reason": _stop_reason(reply),
        "stop_sequence": None,
        "usage": usage(reply, reply.output_tokens),
    }


def message_stream(model: str, reply: Reply, mid: str) -> StreamPlan:
    """message_start (input usage, output 1), block start, ping, a text delta per word, block stop,
    message_delta (stop reason, cumulative usage), message_stop."""
    start = {
        "type": "message_start",
        "message": {
            "id": mid,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage(reply, 1),
        },
    }
    block_start = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    head = [
        named_event("message_start", start),
        named_event("content_block_start", block_start),
        named_event("ping", {"type": "ping"}),
    ]
    content = [named_event("content_block_delta", _text_delta(text)) for text in reply.chunks()]
    delta = {
        "type": "message_delta",
        "delta": {"stop_reason": _stop_reason(reply), "stop_sequence": None},
        "usage": usage(reply, reply.output_tokens),
    }
    tail = [
        named_event("content_block_stop", {"type": "content_block_stop", "index": 0}),
        named_event("message_delta", delta),
        named_event("message_stop", {"type": "message_stop"}),
    ]
    return StreamPlan(head=head, content=content, tail=tail)


def _text_delta(text: str) -> dict[str, Any]:
    return {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}


def token_count(input_tokens: int) -> dict[str, Any]:
    return {"input_tokens": input_tokens}
