"""The endpoint table, the stream request test, and the defensive readers of wire JSON."""

from __future__ import annotations

from typing import Any

import pytest

from tollgate.providers import ENDPOINTS, Endpoint, requested_stream
from tollgate.providers.base import count, member, parse_object, text_length
from tollgate.types import Dialect


def test_endpoint_table() -> None:
    assert list(ENDPOINTS.values()) == [
        Endpoint("/v1/chat/completions", Dialect.OPENAI, "chat", can_stream=True, metered=True),
        Endpoint("/v1/completions", Dialect.OPENAI, "completions", can_stream=True, metered=True),
        Endpoint("/v1/embeddings", Dialect.OPENAI, "embeddings", can_stream=False, metered=True),
        Endpoint("/v1/responses", Dialect.OPENAI, "responses", can_stream=True, metered=True),
        Endpoint("/v1/messages", Dialect.ANTHROPIC, "messages", can_stream=True, metered=True),
        Endpoint("/v1/messages/count_tokens", Dialect.ANTHROPIC, "count_tokens", can_stream=False, metered=False),
    ]
    assert all(path == endpoint.path for path, endpoint in ENDPOINTS.items())


def test_endpoint_table_is_read_only() -> None:
    with pytest.raises(TypeError):
        ENDPOINTS["/v1/other"] = ENDPOINTS["/v1/messages"]  # type: ignore[index]


@pytest.mark.parametrize(
    ("body", "stream"),
    [
        ({"stream": True}, True),
        ({"stream": False}, False),
        ({}, False),
        ({"stream": "true"}, False),
        ({"stream": 1}, False),
        ({"stream": None}, False),
    ],
)
def test_requested_stream(body: dict[str, Any], stream: bool) -> None:
    assert requested_stream(body) is stream


@pytest.mark.parametrize(
    ("data", "parsed"),
    [(b'{"a":1}', {"a": 1}), (b"[1]", None), (b'"s"', None), (b"{", None), (b"", None), (b"[DONE]", None)],
)
def test_parse_object(data: bytes, parsed: dict[str, Any] | None) -> None:
    assert parse_object(data) == parsed


def test_field_readers_treat_wrong_types_as_absent() -> None:
    obj = {"n": 5, "zero": 0, "neg": -2, "flag": True, "float": 1.5, "s": "héllo", "nested": {"x": 1}, "list": []}
    assert [count(obj, k) for k in ("n", "zero", "neg", "flag", "float", "s", "missing")] == [5, 0, 0, 0, 0, 0, 0]
    assert member(obj, "nested") == {"x": 1}
    assert member(obj, "list") == {}
    assert member(obj, "missing") == {}
    assert [text_length(obj, k) for k in ("s", "n", "missing")] == [5, 0, 0]
