"""tollgate.tokens: the text weights, every body shape, the fixed figures, output bounds, and the measured bound
against the real tokenizer on the committed corpus (tests/data/token_corpus)."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest
from bench.token_estimate_error import measure_corpus

from tollgate.tokens import (
    estimate_input_tokens,
    estimate_text_tokens,
    output_bound,
    tokens_for_text_chars,
)

# Weights in 1/40 token: consonant 17, vowel 1, digit 41, space 3, newline 17, punctuation 23 (8 in compact JSON);
# a CJK ideograph 68, a Latin-1 letter (é) 127, an emoji 120. Each string is rounded up on its own.
# Fixed figures: message 4, name 1, reply priming 3, tool call 4, tool definition 8 (+ its JSON), Anthropic tool
# system prompt 346, built-in tool 750, OpenAI image 85 (low) / 1,536, Anthropic image 1,600, PDF 4,600 per 50 KB.


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("", 0),
        ("hello", 2),  # 3 consonants x 17 + 2 vowels = 53 units
        ("Hello, world!", 5),  # 7 x 17 + 3 + 2 punctuation x 23 + 1 space x 3 = 171 units
        ("line one\nline two", 4),  # 7 x 17 + 7 + 2 x 3 + 17 = 149 units
        ("2026", 5),  # 4 digits x 41 = 164 units
        ("你好", 4),  # 2 ideographs x 68 = 136 units
        ("🎉", 3),  # 120 units
        ("a" * 5000, 125),
        ("b" * 5000, 2125),  # 85,000 units: summed in several chunks
        ("é" * 1000, 3175),  # 127,000 units, non-ASCII chunks
        ("\ud800", 2),  # a lone surrogate does not raise (3 bytes, lead byte 0xED: 52 units)
    ],
)
def test_text_weights(text: str, tokens: int) -> None:
    assert estimate_text_tokens(text) == tokens


def chat(*messages: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o", "messages": list(messages), **extra}


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def test_chat_message_overheads() -> None:
    assert estimate_input_tokens(chat(user("hello"))) == 4 + 2 + 3
    assert estimate_input_tokens(chat({"role": "system", "content": "Be brief."}, user("hello"))) == 7 + 6 + 3
    assert estimate_input_tokens(chat({"role": "user", "name": "bob", "content": "hello"})) == 4 + 2 + 1 + 1 + 3


def test_chat_content_parts_and_images() -> None:
    def image(**fields: Any) -> dict[str, Any]:
        return {"type": "image_url", "image_url": {"url": "https://images.example.com/a.png", **fields}}

    text = {"type": "text", "text": "hello"}
    assert estimate_input_tokens(chat(user([text, text]))) == 4 + 4 + 3
    assert estimate_input_tokens(chat(user([text, image(detail="low")]))) == 4 + 2 + 85 + 3
    assert estimate_input_tokens(chat(user([text, image(detail="high")]))) == 4 + 2 + 1536 + 3
    assert estimate_input_tokens(chat(user([text, image()]))) == 4 + 2 + 1536 + 3


def test_base64_image_data_is_not_counted_as_text() -> None:
    data_url = "data:image/png;base64," + "iVBORw0KGgo" * 20_000
    body = chat(user([{"type": "image_url", "image_url": {"url": data_url, "detail": "auto"}}]))
    assert estimate_input_tokens(body) == 4 + 1536 + 3


def test_chat_tool_calls_and_tool_results() -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    assistant = {"role": "assistant", "content": None, "tool_calls": [call]}
    tool = {"role": "tool", "tool_call_id": "call_1", "content": "42"}
    # assistant: 4 + tool call 4 + name 1 + arguments 2; tool: 4 + "42" 3
    assert estimate_input_tokens(chat(assistant, tool)) == 11 + 7 + 3
    legacy = {"role": "assistant", "content": None, "function_call": {"name": "f", "arguments": "{}"}}
    assert estimate_input_tokens(chat(legacy)) == 11 + 3


def test_tool_definitions_count_their_json() -> None:
    function = {"name": "f", "description": "hello", "parameters": {"type": "object"}}
    # {"name":"f","description":"hello","parameters":{"type":"object"}}: 26 consonants x 17 + 15 vowels + 24 marks x 8
    # = 649 units: 17 tokens
    base = estimate_input_tokens(chat(user("hello")))
    with_tool = estimate_input_tokens(chat(user("hello"), tools=[{"type": "function", "function": function}]))
    assert with_tool - base == 8 + 17
    assert estimate_input_tokens(chat(user("hello"), functions=[function])) - base == 8 + 17


def test_structured_output_schema_is_counted() -> None:
    schema = {"type": "json_schema", "json_schema": {"name": "s", "schema": {"type": "object"}}}
    base = estimate_input_tokens(chat(user("hello")))
    assert estimate_input_tokens(chat(user("hello"), response_format=schema)) - base == 8 + 20
    assert estimate_input_tokens(chat(user("hello"), response_format={"type": "json_object"})) == base


def test_completions_prompt_shapes() -> None:
    model = "gpt-3.5-turbo-instruct"
    assert estimate_input_tokens({"model": model, "prompt": "hello"}) == 2
    assert estimate_input_tokens({"model": model, "prompt": ["hello", "hello"]}) == 4
    assert estimate_input_tokens({"model": model, "prompt": [1, 2, 3]}) == 3
    assert estimate_input_tokens({"model": model, "prompt": [[1, 2], [3]]}) == 3
    assert estimate_input_tokens({"model": model, "prompt": "hello", "suffix": "hello"}) == 4


def test_embeddings_input_shapes() -> None:
    model = "text-embedding-3-small"
    assert estimate_input_tokens({"model": model, "input": "hello"}) == 2
    assert estimate_input_tokens({"model": model, "input": ["hello", "Hello, world!"]}) == 7
    assert estimate_input_tokens({"model": model, "input": [15339, 1917]}) == 2
    assert estimate_input_tokens({"model": model, "input": [[15339, 1917], [0]]}) == 3


def test_responses_input_shapes() -> None:
    assert estimate_input_tokens({"model": "gpt-5", "input": "hello"}) == 4 + 2 + 3
    assert estimate_input_tokens({"model": "gpt-5", "instructions": "Be brief.", "input": "hello"}) == 7 + 6 + 3
    items = [
        {"role": "user", "content": [{"type": "input_text", "text": "hello"}]},
        {"role": "user", "content": [{"type": "input_image", "image_url": "https://x/y", "detail": "high"}]},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "42"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "hello"}]},
    ]
    # 6 + (4 + 1536) + (4 + 1 + 2) + (4 + 3) + 6, primed
    assert estimate_input_tokens({"model": "gpt-5", "input": items}) == 6 + 1540 + 7 + 7 + 6 + 3


def test_responses_tools_and_text_format() -> None:
    body = {"model": "gpt-5", "input": "hello", "tools": [{"type": "web_search"}]}
    assert estimate_input_tokens(body) == 9 + 750
    text_format = {"format": {"type": "json_schema", "name": "s", "schema": {"type": "object"}}}
    assert estimate_input_tokens({"model": "gpt-5", "input": "hello", "text": text_format}) == 9 + 8 + 16


def anthropic(*content: Any, **extra: Any) -> dict[str, Any]:
    return {"model": "claude-haiku-4-5", "max_tokens": 100, "messages": [user(list(content))], **extra}


def test_anthropic_system_prompt_as_string_or_blocks() -> None:
    body = {"model": "claude-haiku-4-5", "system": "Be brief.", "messages": [user("hello")]}
    assert estimate_input_tokens(body) == 7 + 6 + 3
    body["system"] = [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}]
    assert estimate_input_tokens(body) == 7 + 6 + 3


def test_anthropic_blocks() -> None:
    text = {"type": "text", "text": "hello"}
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo" * 9000}}
    assert estimate_input_tokens(anthropic(image, text)) == 4 + 1600 + 2 + 3
    tool_use = {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}
    tool_result = {"type": "tool_result", "tool_use_id": "toolu_1", "content": [text]}
    assert estimate_input_tokens(anthropic(tool_use, tool_result)) == 4 + (4 + 1 + 1) + (4 + 2) + 3
    thinking = {"type": "thinking", "thinking": "hello", "signature": "EuYBCkQYAiJA" * 50}
    redacted = {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix" * 50}
    assert estimate_input_tokens(anthropic(thinking, redacted, text)) == 4 + 2 + 0 + 2 + 3


def test_anthropic_documents() -> None:
    plain = {
        "type": "document",
        "title": "hello",
        "source": {"type": "text", "media_type": "text/plain", "data": "hello"},
    }
    assert estimate_input_tokens(anthropic(plain)) == 4 + 2 + 2 + 3
    pdf = {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "J" * 100_000}}
    assert estimate_input_tokens(anthropic(pdf)) == 4 + 2 * 4600 + 3  # 75,000 bytes: two started 50 KB chunks
    by_url = {"type": "document", "source": {"type": "url", "url": "https://example.com/report.pdf"}}
    assert estimate_input_tokens(anthropic(by_url)) == 4 + 4600 + 3


def test_anthropic_tools_add_the_tool_system_prompt() -> None:
    tool = {"name": "f", "description": "hello", "input_schema": {"type": "object"}}
    base = estimate_input_tokens(anthropic({"type": "text", "text": "hello"}))
    with_tool = estimate_input_tokens(anthropic({"type": "text", "text": "hello"}, tools=[tool]))
    assert with_tool - base == 8 + 17 + 346
    bash = {"type": "bash_20250124", "name": "bash"}
    assert estimate_input_tokens(anthropic({"type": "text", "text": "hello"}, tools=[bash])) - base == 750 + 346


def test_openai_file_and_audio_parts() -> None:
    pdf = {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64," + "J" * 80_000}}
    assert estimate_input_tokens(chat(user([pdf]))) == 4 + 2 + 2 * 4600 + 3  # "a.pdf" 2, 60,000 bytes: 2 chunks
    audio = {"type": "input_audio", "input_audio": {"data": "U" * 4000, "format": "wav"}}
    assert estimate_input_tokens(chat(user([audio]))) == 4 + 3 + 3  # 3,000 bytes: three started kilobytes


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"messages": "hello"},
        {"messages": [None, 3, "hello", ["hello"]]},
        {"messages": [{"role": "user", "content": {"unexpected": ["hello", 1, None, True]}}]},
        {"messages": [{"role": "assistant", "tool_calls": [None, {"function": "x"}], "function_call": "x"}]},
        {"input": {"a": 1}, "prompt": 7, "tools": 5, "functions": [None, 3], "text": "x", "response_format": "x"},
        {"system": 12, "instructions": ["x"], "tools": [{"type": "function", "function": {"n": 10**30}}]},
        {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "https://x"}]}]},
        {"messages": [{"role": "user", "content": [{"type": "document", "source": "x"}]}]},
    ],
)
def test_unexpected_shapes_do_not_raise(body: dict[str, Any]) -> None:
    assert estimate_input_tokens(body) >= 0


def test_pathologically_nested_body_is_counted_without_recursion() -> None:
    body = orjson.loads(
        '{"model":"m","messages":[{"role":"user","content":' + "[" * 900 + '"hello"' + "]" * 900 + "}]}"
    )
    # the flat walk: reply priming 3 + "m" 1 + "user" 1 + "hello" 2
    assert estimate_input_tokens(body) == 7


def test_estimate_does_not_change_the_body() -> None:
    body = anthropic({"type": "text", "text": "hello"}, tools=[{"name": "f", "input_schema": {"type": "object"}}])
    before = copy.deepcopy(body)
    estimate_input_tokens(body)
    assert body == before


@pytest.mark.parametrize(
    ("body", "bound"),
    [
        ({}, 4096),
        ({"max_tokens": 100}, 100),
        ({"max_completion_tokens": 50, "max_tokens": 100}, 50),
        ({"max_output_tokens": 70}, 70),
        ({"max_tokens": 100, "max_output_tokens": 70}, 100),
        ({"max_completion_tokens": None, "max_tokens": 100}, 100),
        ({"max_tokens": 0}, 0),
        ({"max_tokens": -1}, 4096),
        ({"max_tokens": "100"}, 4096),
        ({"max_tokens": 100.0}, 4096),
        ({"max_tokens": True}, 4096),
        ({"max_completion_tokens": "x", "max_tokens": 100}, 4096),
    ],
)
def test_output_bound(body: dict[str, Any], bound: int) -> None:
    assert output_bound(body, 4096) == bound


@pytest.mark.parametrize(("chars", "tokens"), [(-5, 0), (0, 0), (1, 1), (3, 1), (4, 2), (300, 100), (301, 101)])
def test_tokens_for_text_chars_rounds_up(chars: int, tokens: int) -> None:
    assert tokens_for_text_chars(chars) == tokens


def test_corpus_estimates_stay_within_the_documented_bound() -> None:
    """docs/estimation.md: text-only bodies within [0.95, 1.6] x real; bodies with images within [1.0, 3.0] x real
    (images are charged their upper figure); at most 5 % of all bodies under the real count."""
    results = measure_corpus()
    assert len(results) >= 36
    text_only = [m for m in results if not m.has_images]
    with_images = [m for m in results if m.has_images]
    assert len(with_images) >= 4
    assert [m.name for m in text_only if not 0.95 <= m.ratio <= 1.6] == []
    assert [m.name for m in with_images if not 1.0 <= m.ratio <= 3.0] == []
    assert sum(m.estimate < m.real for m in results) <= 0.05 * len(results)
