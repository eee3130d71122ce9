"""prepare_request changes only model and stream_options; usage_from_body normalises every endpoint's usage."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest

from tests.providers.transcripts import load
from tollgate.providers import ENDPOINTS, prepare_request, usage_from_body
from tollgate.types import Usage

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "h\u00e9llo \U0001f600"}]
INCLUDE = {"include_usage": True}

# path, caller's body, upstream body, stream, hide_usage
PREPARE = [
    pytest.param(
        "/v1/chat/completions",
        {"model": "fast", "messages": MESSAGES, "temperature": 0.7, "max_tokens": 64},
        {"model": "gpt-4o-mini", "messages": MESSAGES, "temperature": 0.7, "max_tokens": 64},
        False,
        False,
        id="chat",
    ),
    pytest.param(
        "/v1/chat/completions",
        {"model": "fast", "messages": MESSAGES, "stream": True},
        {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True, "stream_options": INCLUDE},
        True,
        True,
        id="chat-stream",
    ),
    pytest.param(
        "/v1/chat/completions",
        {"model": "fast", "messages": MESSAGES, "stream": True, "stream_options": INCLUDE},
        {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True, "stream_options": INCLUDE},
        True,
        False,
        id="chat-stream-caller-asked-for-usage",
    ),
    pytest.param(
        "/v1/chat/completions",
        {"model": "fast", "messages": MESSAGES, "stream": True, "stream_options": {"include_obfuscation": False}},
        {
            "model": "gpt-4o-mini",
            "messages": MESSAGES,
            "stream": True,
            "stream_options": {"include_obfuscation": False, "include_usage": True},
        },
        True,
        True,
        id="chat-stream-other-options-kept",
    ),
    pytest.param(
        "/v1/chat/completions",
        {"model": "fast", "messages": MESSAGES, "stream": "true"},
        {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": "true"},
        False,
        False,
        id="chat-stream-not-a-boolean",
    ),
    pytest.param(
        "/v1/chat/completions",
        {"model": "fast", "messages": MESSAGES, "stream": False, "stream_options": None},
        {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": False, "stream_options": None},
        False,
        False,
        id="chat-stream-false",
    ),
    pytest.param(
        "/v1/completions",
        {"model": "fast", "prompt": "Say this is a test", "stream": True, "logprobs": None},
        {
            "model": "gpt-4o-mini",
            "prompt": "Say this is a test",
            "stream": True,
            "logprobs": None,
            "stream_options": INCLUDE,
        },
        True,
        True,
        id="completions-stream",
    ),
    pytest.param(
        "/v1/responses",
        {"model": "fast", "input": "Tell me a story", "stream": True, "reasoning": {"effort": "low"}},
        {"model": "gpt-4o-mini", "input": "Tell me a story", "stream": True, "reasoning": {"effort": "low"}},
        True,
        False,
        id="responses-stream",
    ),
    pytest.param(
        "/v1/embeddings",
        {"model": "fast", "input": ["a", "b"], "encoding_format": "base64", "stream": True},
        {"model": "gpt-4o-mini", "input": ["a", "b"], "encoding_format": "base64", "stream": True},
        False,
        False,
        id="embeddings-cannot-stream",
    ),
    pytest.param(
        "/v1/messages",
        {"model": "fast", "max_tokens": 1024, "messages": MESSAGES[1:], "system": "Be brief.", "stream": True},
        {"model": "gpt-4o-mini", "max_tokens": 1024, "messages": MESSAGES[1:], "system": "Be brief.", "stream": True},
        True,
        False,
        id="messages-stream",
    ),
    pytest.param(
        "/v1/messages/count_tokens",
        {"model": "fast", "messages": MESSAGES[1:], "tools": [{"name": "t", "input_schema": {"type": "object"}}]},
        {
            "model": "gpt-4o-mini",
            "messages": MESSAGES[1:],
            "tools": [{"name": "t", "input_schema": {"type": "object"}}],
        },
        False,
        False,
        id="count_tokens",
    ),
]


@pytest.mark.parametrize(("path", "body", "upstream", "stream", "hide_usage"), PREPARE)
def test_prepare_request(
    path: str, body: dict[str, Any], upstream: dict[str, Any], stream: bool, hide_usage: bool
) -> None:
    before = copy.deepcopy(body)
    prepared = prepare_request(ENDPOINTS[path], body, "gpt-4o-mini")
    assert orjson.loads(prepared.body) == upstream
    assert list(orjson.loads(prepared.body)) == list(upstream)  # key order kept, new keys last
    assert (prepared.stream, prepared.hide_usage) == (stream, hide_usage)
    assert body == before  # the caller's dict is not mutated


def test_prepare_request_encodes_compactly_with_orjson() -> None:
    body = {"model": "fast", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    prepared = prepare_request(ENDPOINTS["/v1/chat/completions"], body, "gpt-4o-mini")
    assert prepared.body == (
        b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"stream":true,'
        b'"stream_options":{"include_usage":true}}'
    )


def test_preparing_twice_for_a_fallback_gives_the_same_request() -> None:
    body = {"model": "fast", "prompt": "x", "stream": True}
    endpoint = ENDPOINTS["/v1/completions"]
    assert prepare_request(endpoint, body, "a") == prepare_request(endpoint, body, "a")
    assert prepare_request(endpoint, body, "b").hide_usage is True


# path, response body, usage
BODIES = [
    ("/v1/chat/completions", load("openai_chat.json"), Usage(2006, 300, 1920, 0, 256)),
    ("/v1/completions", load("openai_completions.json"), Usage(5, 7)),
    ("/v1/embeddings", load("openai_embeddings.json"), Usage(8, 0)),
    ("/v1/responses", load("openai_responses.json"), Usage(328, 52, 256, 0, 0)),
    ("/v1/messages", load("anthropic_messages.json"), Usage(4512, 98, 3000, 1500, 0)),
    ("/v1/messages/count_tokens", load("anthropic_count_tokens.json"), None),
    ("/v1/messages/count_tokens", b'{"input_tokens":10,"usage":{"input_tokens":10}}', None),
    ("/v1/chat/completions", b'{"id":"chatcmpl-1","choices":[]}', None),
    ("/v1/chat/completions", b'{"usage":null}', None),
    ("/v1/chat/completions", b"[1, 2]", None),
    ("/v1/chat/completions", b"<html>oops</html>", None),
    ("/v1/messages", b"", None),
]


@pytest.mark.parametrize(("path", "body", "usage"), BODIES)
def test_usage_from_body(path: str, body: bytes, usage: Usage | None) -> None:
    assert usage_from_body(ENDPOINTS[path], body) == usage
