"""Request bodies in, response bodies read: the non-streaming half of the provider translators (pure).

Each function picks the dialect module by the endpoint; the proxy service calls them without knowing which
provider is behind a route.
"""

from __future__ import annotations

from typing import Any

import orjson

from tollgate.providers import anthropic, openai
from tollgate.providers.base import Endpoint, PreparedRequest, parse_object, requested_stream
from tollgate.types import Usage

# Streams whose usage must be asked for (stream_options.include_usage).
_USAGE_ON_REQUEST = frozenset({"chat", "completions"})


def prepare_request(endpoint: Endpoint, body: dict[str, Any], upstream_model: str) -> PreparedRequest:
    """The upstream request for a caller's parsed body.

    The caller's ``body`` is not mutated: the changes go into a shallow copy (nested values are shared, never
    changed), so preparing the same body for a fallback deployment gives the same result. Two changes, nothing
    else: ``model`` becomes ``upstream_model``; an OpenAI chat or completions stream gets
    ``stream_options.include_usage: true`` if the caller did not ask for it, with ``hide_usage`` set so the
    relay drops the usage chunk the caller did not ask for.
    """
    upstream = dict(body)
    upstream["model"] = upstream_model
    stream = endpoint.can_stream and requested_stream(body)
    hide_usage = stream and endpoint.kind in _USAGE_ON_REQUEST and openai.ask_for_usage(upstream)
    return PreparedRequest(orjson.dumps(upstream), stream, hide_usage)


def usage_from_body(endpoint: Endpoint, body: bytes) -> Usage | None:
    """The usage of a non-streamed response body; None when it has no usage object or is not metered."""
    if not endpoint.metered:
        return None
    response = parse_object(body)
    if response is None:
        return None
    usage = response.get("usage")
    if not isinstance(usage, dict):
        return None
    kind = endpoint.kind
    if kind == "messages":
        return anthropic.messages_usage(usage)
    if kind == "responses":
        return openai.responses_usage(usage)
    if kind == "embeddings":
        return openai.embeddings_usage(usage)
    return openai.chat_usage(usage)
