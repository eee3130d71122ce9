"""OpenAI wire format: response bodies, stream events and error bodies (pure builders, no I/O, no clock).

Shapes follow the OpenAI API reference: ``chat.completion`` / ``chat.completion.chunk``, ``text_completion``,
the embeddings ``list``, the Responses API ``response`` object and its semantic stream events, ``/v1/models``.
Ids and the ``created`` time are passed in by the caller.
"""

from __future__ import annotations

import base64
import itertools
import struct
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

from tollgate.simulator.content import Reply
from tollgate.simulator.sse import DONE, StreamPlan, data_event, named_event

FINGERPRINT = "fp_tollgate_sim"
EMBEDDING_DIMENSIONS = 8
MAX_EMBEDDING_DIMENSIONS = 4096
OWNER = "tollgate-simulator"

# status → (error type, error code) as OpenAI answers them.
_ERRORS: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", None),
    404: ("invalid_request_error", "not_found"),
    429: ("requests", "rate_limit_exceeded"),
}


def error_body(status: int, message: str, param: str | None = None) -> dict[str, Any]:
    """``{"error": {"message", "type", "param", "code"}}``; 5xx are ``server_error``."""
    kind, code = _ERRORS.get(status, ("server_error" if status >= 500 else "invalid_request_error", None))
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _finish_reason(reply: Reply) -> str:
    return "length" if reply.truncated else "stop"


def usage(reply: Reply) -> dict[str, Any]:
    """Chat and completions usage: ``prompt_tokens`` includes the cached and cache-write tokens."""
    prompt_details: dict[str, int] = {"cached_tokens": reply.cached_tokens, "audio_tokens": 0}
    if reply.cache_write_tokens:
        prompt_details["cache_write_tokens"] = reply.cache_write_tokens
    return {
        "prompt_tokens": reply.input_tokens,
        "completion_tokens": reply.output_tokens,
        "total_tokens": reply.input_tokens + reply.output_tokens,
        "prompt_tokens_details": prompt_details,
        "completion_tokens_details": {
            "reasoning_tokens": reply.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


# -- /v1/chat/completions -----------------------------------------------------------------------------------------


def chat_completion(model: str, reply: Reply, rid: str, created: int) -> dict[str, Any]:
    return {
        "id": rid,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply.text, "refusal": None, "annotations": []},
                "logprobs": None,
                "finish_reason": _finish_reason(reply),
            }
        ],
        "usage": usage(reply),
        "service_tier": "default",
        "system_fingerprint": FINGERPRINT,
    }


def chat_stream(model: str, reply: Reply, rid: str, created: int, include_usage: bool) -> StreamPlan:
    """A role chunk, one chunk per word, a finish chunk, the usage chunk if asked for, ``[DONE]``."""

    def chunk(choices: list[dict[str, Any]]) -> bytes:
        payload: dict[str, Any] = {
            "id": rid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": FINGERPRINT,
            "choices": choices,
        }
        if include_usage:
            payload["usage"] = None
        return data_event(payload)

    def choice(delta: dict[str, Any], finish: str | None = None) -> list[dict[str, Any]]:
        return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]

    tail = [chunk(choice({}, _finish_reason(reply)))]
    if include_usage:
        final = {
            "id": rid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": FINGERPRINT,
            "choices": [],
            "usage": usage(reply),
        }
        tail.append(data_event(final))
    tail.append(DONE)
    return StreamPlan(
        head=[chunk(choice({"role": "assistant", "content": "", "refusal": None}))],
        content=[chunk(choice({"content": text})) for text in reply.chunks()],
        tail=tail,
    )


# -- /v1/completions ----------------------------------------------------------------------------------------------


def text_completion(model: str, reply: Reply, rid: str, created: int) -> dict[str, Any]:
    return {
        "id": rid,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [{"text": reply.text, "index": 0, "logprobs": None, "finish_reason": _finish_reason(reply)}],
        "usage": usage(reply),
        "system_fingerprint": FINGERPRINT,
    }


def completion_stream(model: str, reply: Reply, rid: str, created: int, include_usage: bool) -> StreamPlan:
    """One chunk per word, a finish chunk with empty text, the usage chunk if asked for, ``[DONE]``."""

    def chunk(text: str, finish: str | None = None) -> bytes:
        payload: dict[str, Any] = {
            "id": rid,
            "object": "text_completion",
            "created": created,
            "model": model,
            "system_fingerprint": FINGERPRINT,
            "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish}],
        }
        if include_usage:
            payload["usage"] = None
        return data_event(payload)

    tail = [chunk("", _finish_reason(reply))]
    if include_usage:
        final = {
            "id": rid,
            "object": "text_completion",
            "created": created,
            "model": model,
            "system_fingerprint": FINGERPRINT,
            "choices": [],
            "usage": usage(reply),
        }
        tail.append(data_event(final))
    tail.append(DONE)
    return StreamPlan(head=[], content=[chunk(text) for text in reply.chunks()], tail=tail)


# -- /v1/embeddings -----------------------------------------------------------------------------------------------


def embedding_vector(text: str, dimensions: int) -> list[float]:
    """A small deterministic unit-range vector derived from the text's CRC-32."""
    seed = zlib.crc32(text.encode())
    return [((seed * (i + 1) * 2654435761) % 10007) / 10007.0 for i in range(dimensions)]


def _encode(vector: list[float], encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":  # little-endian float32, as the OpenAI SDK decodes it
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    return vector


def embeddings(
    model: str, inputs: Sequence[str], dimensions: int, encoding_format: str, prompt_tokens: int
) -> dict[str, Any]:
    data = [
        {"object": "embedding", "index": i, "embedding": _encode(embedding_vector(text, dimensions), encoding_format)}
        for i, text in enumerate(inputs)
    ]
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }


# -- /v1/responses ------------------------------------------------------------------------------------------------


def responses_usage(reply: Reply) -> dict[str, Any]:
    return {
        "input_tokens": reply.input_tokens,
        "input_tokens_details": {"cached_tokens": reply.cached_tokens},
        "output_tokens": reply.output_tokens,
        "output_tokens_details": {"reasoning_tokens": reply.reasoning_tokens},
        "total_tokens": reply.input_tokens + reply.output_tokens,
    }


def _output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _message_item(item_id: str, text: str | None) -> dict[str, Any]:
    """The output message; ``text=None`` is the empty in-progress item a stream starts with."""
    return {
        "id": item_id,
        "type": "message",
        "status": "in_progress" if text is None else "completed",
        "role": "assistant",
        "content": [] if text is None else [_output_text(text)],
    }


def response_object(
    model: str, reply: Reply, rid: str, created: int, request: Mapping[str, Any], done: bool
) -> dict[str, Any]:
    """The ``response`` object: complete with output and usage when ``done``, else ``in_progress`` and empty."""
    return {
        "id": rid,
        "object": "response",
        "created_at": created,
        "status": "completed" if done else "in_progress",
        "completed_at": created if done else None,
        "error": None,
        "incomplete_details": None,
        "instructions": request.get("instructions"),
        "max_output_tokens": request.get("max_output_tokens"),
        "model": model,
        "output": [_message_item("msg_" + rid.removeprefix("resp_"), reply.text)] if done else [],
        "parallel_tool_calls": True,
        "previous_response_id": request.get("previous_response_id"),
        "reasoning": {"effort": None, "summary": None},
        "store": bool(request.get("store", True)),
        "temperature": request.get("temperature", 1.0),
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": request.get("top_p", 1.0),
        "truncation": "disabled",
        "usage": responses_usage(reply) if done else None,
        "user": None,
        "metadata": request.get("metadata") or {},
    }


def responses_stream(model: str, reply: Reply, rid: str, created: int, request: Mapping[str, Any]) -> StreamPlan:
    """created, in_progress, item and part added, a text delta per word, the done events, completed."""
    item_id = "msg_" + rid.removeprefix("resp_")
    sequence = itertools.count()

    def event(kind: str, **fields: Any) -> bytes:
        return named_event(kind, {"type": kind, "sequence_number": next(sequence), **fields})

    where = {"item_id": item_id, "output_index": 0, "content_index": 0}
    starting = response_object(model, reply, rid, created, request, done=False)
    head = [
        event("response.created", response=starting),
        event("response.in_progress", response=starting),
        event("response.output_item.added", output_index=0, item=_message_item(item_id, None)),
        event("response.content_part.added", **where, part=_output_text("")),
    ]
    content = [event("response.output_text.delta", **where, delta=text, logprobs=[]) for text in reply.chunks()]
    tail = [
        event("response.output_text.done", **where, text=reply.text, logprobs=[]),
        event("response.content_part.done", **where, part=_output_text(reply.text)),
        event("response.output_item.done", output_index=0, item=_message_item(item_id, reply.text)),
        event("response.completed", response=response_object(model, reply, rid, created, request, done=True)),
    ]
    return StreamPlan(head=head, content=content, tail=tail)


# -- /v1/models ---------------------------------------------------------------------------------------------------


def models_list(models: Sequence[str]) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [{"id": name, "object": "model", "created": 0, "owned_by": OWNER} for name in models],
    }
