"""One function per simulated endpoint: a validated request in, a JSON payload or a ``StreamPlan`` out (pure).

Each function reads only the fields it needs and raises ``BadRequest`` for a missing or malformed one, as the
real providers answer 400. Ids and the ``created`` time come in on the ``Call``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tollgate.errors import BadRequest
from tollgate.simulator import anthropic_wire, openai_wire
from tollgate.simulator.behaviour import Behaviour
from tollgate.simulator.content import plan_reply, prompt_chars, tokens_for_chars
from tollgate.simulator.sse import StreamPlan

Outcome = dict[str, Any] | StreamPlan


@dataclass(frozen=True, slots=True)
class Call:
    """One request to an endpoint, as the app hands it over."""

    model: str
    body: Mapping[str, Any]
    behaviour: Behaviour
    serial: int  # unique per request: makes the ids
    created: int  # unix seconds

    @property
    def stream(self) -> bool:
        return self.body.get("stream") is True

    def include_usage(self) -> bool:
        options = self.body.get("stream_options")
        return isinstance(options, Mapping) and options.get("include_usage") is True

    def id(self, prefix: str) -> str:
        return f"{prefix}sim{self.serial:010d}"


Endpoint = Callable[[Call], Outcome]


def _required_list(body: Mapping[str, Any], name: str) -> list[Any]:
    value = body.get(name)
    if not isinstance(value, list):
        raise BadRequest(f"'{name}' is required and must be an array")
    return value


def _text_or_list(body: Mapping[str, Any], name: str) -> str | list[Any]:
    value = body.get(name)
    if not isinstance(value, str | list):
        raise BadRequest(f"'{name}' is required and must be a string or an array")
    return value


# -- OpenAI -------------------------------------------------------------------------------------------------------


def chat_completions(call: Call) -> Outcome:
    reply = plan_reply(call.body, prompt_chars(_required_list(call.body, "messages")), call.behaviour)
    rid = call.id("chatcmpl-")
    if call.stream:
        return openai_wire.chat_stream(call.model, reply, rid, call.created, call.include_usage())
    return openai_wire.chat_completion(call.model, reply, rid, call.created)


def completions(call: Call) -> Outcome:
    reply = plan_reply(call.body, prompt_chars(_text_or_list(call.body, "prompt")), call.behaviour)
    rid = call.id("cmpl-")
    if call.stream:
        return openai_wire.completion_stream(call.model, reply, rid, call.created, call.include_usage())
    return openai_wire.text_completion(call.model, reply, rid, call.created)


def embeddings(call: Call) -> Outcome:
    raw = _text_or_list(call.body, "input")
    inputs = [raw] if isinstance(raw, str) else raw
    if not inputs or not all(isinstance(item, str) for item in inputs):
        raise BadRequest("'input' must be a string or a non-empty array of strings")
    encoding = call.body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise BadRequest("'encoding_format' must be 'float' or 'base64'")
    dimensions = call.body.get("dimensions", openai_wire.EMBEDDING_DIMENSIONS)
    if not isinstance(dimensions, int) or not 1 <= dimensions <= openai_wire.MAX_EMBEDDING_DIMENSIONS:
        raise BadRequest(f"'dimensions' must be an integer from 1 to {openai_wire.MAX_EMBEDDING_DIMENSIONS}")
    tokens = tokens_for_chars(prompt_chars(inputs))
    return openai_wire.embeddings(call.model, inputs, dimensions, encoding, tokens)


def responses(call: Call) -> Outcome:
    chars = prompt_chars(call.body.get("instructions")) + prompt_chars(_text_or_list(call.body, "input"))
    reply = plan_reply(call.body, chars, call.behaviour)
    rid = call.id("resp_")
    if call.stream:
        return openai_wire.responses_stream(call.model, reply, rid, call.created, call.body)
    return openai_wire.response_object(call.model, reply, rid, call.created, call.body, done=True)


# -- Anthropic ----------------------------------------------------------------------------------------------------


def _anthropic_prompt_chars(body: Mapping[str, Any]) -> int:
    return prompt_chars(body.get("system")) + prompt_chars(_required_list(body, "messages"))


def messages(call: Call) -> Outcome:
    max_tokens = call.body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise BadRequest("max_tokens: field required (a positive integer)")
    reply = plan_reply(call.body, _anthropic_prompt_chars(call.body), call.behaviour)
    mid = call.id("msg_")
    if call.stream:
        return anthropic_wire.message_stream(call.model, reply, mid)
    return anthropic_wire.message(call.model, reply, mid)


def count_tokens(call: Call) -> Outcome:
    return anthropic_wire.token_count(tokens_for_chars(_anthropic_prompt_chars(call.body)))
