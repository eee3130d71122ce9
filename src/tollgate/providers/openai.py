"""OpenAI dialect: chat completions, completions, embeddings and the Responses API (pure).

Usage shapes read here:

- chat / completions / embeddings: ``usage.prompt_tokens`` (includes cached and cache-write tokens),
  ``completion_tokens``, ``prompt_tokens_details.{cached_tokens, cache_write_tokens}``,
  ``completion_tokens_details.reasoning_tokens`` (a part of ``completion_tokens``).
- Responses: ``usage.input_tokens`` (includes cached), ``output_tokens``,
  ``input_tokens_details.{cached_tokens, cache_write_tokens}``, ``output_tokens_details.reasoning_tokens``.

Chat and completions streams report usage only when asked (``stream_options.include_usage``): one extra chunk
with ``"choices": []`` and the usage, just before ``data: [DONE]``. Responses streams always carry it, in the
``response`` object of the terminal ``response.completed`` / ``response.incomplete`` / ``response.failed`` event.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tollgate.providers.base import EventReader, StreamState, count, member, parse_object, text_length
from tollgate.providers.error_bodies import stream_error_message
from tollgate.sse import SseEvent
from tollgate.types import Usage

_DONE = b"[DONE]"


def ask_for_usage(body: dict[str, Any]) -> bool:
    """Make a chat or completions stream end with its usage chunk; True if the caller had not asked for it.

    Sets ``stream_options.include_usage`` in ``body`` (a fresh ``stream_options`` object, keeping the caller's
    other options) unless the caller already set it to true. A ``stream_options`` that is not an object is left
    alone: the provider rejects it, and the caller should see that rejection, not one of ours.
    """
    options = body.get("stream_options")
    if options is None:
        options = {}
    elif not isinstance(options, dict):
        return False
    if options.get("include_usage") is True:
        return False
    body["stream_options"] = {**options, "include_usage": True}
    return True


def chat_usage(usage: Mapping[str, Any]) -> Usage:
    """A chat or completions ``usage`` object."""
    prompt = member(usage, "prompt_tokens_details")
    return Usage(
        input_tokens=count(usage, "prompt_tokens"),
        output_tokens=count(usage, "completion_tokens"),
        cached_input_tokens=count(prompt, "cached_tokens"),
        cache_write_tokens=count(prompt, "cache_write_tokens"),
        reasoning_tokens=count(member(usage, "completion_tokens_details"), "reasoning_tokens"),
    )


def embeddings_usage(usage: Mapping[str, Any]) -> Usage:
    """An embeddings ``usage`` object: prompt tokens only; embeddings generate no output."""
    return Usage(input_tokens=count(usage, "prompt_tokens"))


def responses_usage(usage: Mapping[str, Any]) -> Usage:
    """A Responses API ``usage`` object."""
    details = member(usage, "input_tokens_details")
    return Usage(
        input_tokens=count(usage, "input_tokens"),
        output_tokens=count(usage, "output_tokens"),
        cached_input_tokens=count(details, "cached_tokens"),
        cache_write_tokens=count(details, "cache_write_tokens"),
        reasoning_tokens=count(member(usage, "output_tokens_details"), "reasoning_tokens"),
    )


class ChatReader(EventReader):
    """Chat completions and completions streams: unnamed ``data:`` chunks ending with ``data: [DONE]``.

    ``provider_reported`` is set by the usage-only chunk, or at ``[DONE]`` when usage came in some other chunk
    (OpenAI-compatible servers that put it on the last content chunk): either way the last usage seen is final.
    An ``{"error": ...}`` chunk (or ``event: error``) ends the stream as far as metering goes.
    """

    __slots__ = ("_usage_seen",)

    def __init__(self, state: StreamState, hide_usage: bool) -> None:
        super().__init__(state, hide_usage)
        self._usage_seen = False

    def accept(self, event: SseEvent) -> bool:
        data = event.data
        if not data:
            return True
        state = self.state
        if data == _DONE:
            state.finished = True
            state.provider_reported = state.provider_reported or self._usage_seen
            return True
        chunk = parse_object(data)
        if chunk is None:
            return True
        error = chunk.get("error")
        if error or event.event == "error":
            state.upstream_error = stream_error_message(error)
            state.finished = True
            return True
        choices = chunk.get("choices")
        if choices and isinstance(choices, list):
            state.output_chars += _choices_chars(choices)
        usage = chunk.get("usage")
        if not isinstance(usage, dict):
            return True
        state.usage = chat_usage(usage)
        self._usage_seen = True
        if choices:
            return True
        # The usage-only chunk: final numbers, and the one chunk the gateway may have asked for on its own.
        state.provider_reported = True
        return not self.hide_usage


def _choices_chars(choices: list[Any]) -> int:
    chars = 0
    for choice in choices:
        if not isinstance(choice, dict):
            continue
        delta = choice.get("delta")
        if isinstance(delta, dict):
            chars += _delta_chars(delta)
        else:  # completions: {"text": ...}
            chars += text_length(choice, "text")
    return chars


def _delta_chars(delta: Mapping[str, Any]) -> int:
    """Generated characters in a chat delta: text, refusal, reasoning (compatible servers), tool calls."""
    chars = text_length(delta, "content") + text_length(delta, "refusal")
    # Compatible servers stream reasoning as ``reasoning_content`` (vLLM, DeepSeek) or ``reasoning``; some send
    # both with the same text, so count one.
    chars += text_length(delta, "reasoning_content") or text_length(delta, "reasoning")
    calls = delta.get("tool_calls")
    if isinstance(calls, list):
        for call in calls:
            if isinstance(call, dict):
                chars += _function_chars(call.get("function"))
    return chars + _function_chars(delta.get("function_call"))  # the deprecated single function call


def _function_chars(function: Any) -> int:
    if not isinstance(function, dict):
        return 0
    return text_length(function, "name") + text_length(function, "arguments")


# Responses events whose ``delta`` string is generated output.
_OUTPUT_DELTAS = frozenset(
    {
        "response.output_text.delta",
        "response.refusal.delta",
        "response.function_call_arguments.delta",
        "response.custom_tool_call_input.delta",
        "response.mcp_call_arguments.delta",
        "response.code_interpreter_call_code.delta",
        "response.reasoning_text.delta",
        "response.reasoning_summary_text.delta",
    }
)
_TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})
_READ = _OUTPUT_DELTAS | _TERMINAL | {"error"}


class ResponsesReader(EventReader):
    """Responses API streams: named semantic events, no ``[DONE]`` (some compatible servers add one anyway).

    Only the events named in ``_READ`` are parsed; the many others (``response.created``, item and part events, the
    ``.done`` events repeating the full text) are relayed unread. An event without an ``event:`` line is parsed to
    find its ``type``. A terminal event sets ``provider_reported`` only if its ``response.usage`` is an object: a
    failed response without usage is counted like a cut stream.
    """

    __slots__ = ()

    def accept(self, event: SseEvent) -> bool:
        data = event.data
        name = event.event
        if not data or (name is not None and name not in _READ):
            return True
        if data == _DONE:
            self.state.finished = True
            return True
        payload = parse_object(data)
        if payload is None:
            return True
        kind = payload.get("type") if name is None else name
        if kind in _OUTPUT_DELTAS:
            self.state.output_chars += text_length(payload, "delta")
        elif kind in _TERMINAL:
            self._terminal(member(payload, "response"), failed=kind == "response.failed")
        elif kind == "error":
            # {"type": "error", "code", "message", "param"}; some servers nest it as {"error": {...}}.
            nested = payload.get("error")
            error = nested if nested else {"code": payload.get("code"), "message": payload.get("message")}
            self.state.upstream_error = stream_error_message(error)
            self.state.finished = True
        return True

    def _terminal(self, response: Mapping[str, Any], *, failed: bool) -> None:
        state = self.state
        state.finished = True
        usage = response.get("usage")
        if isinstance(usage, dict):
            state.usage = responses_usage(usage)
            state.provider_reported = True
        if failed:
            state.upstream_error = stream_error_message(response.get("error") or "the response failed")
