"""OpenAI dialect: stream metering of chat, completions and Responses transcripts; the usage option; usage shapes."""

from __future__ import annotations

from typing import Any

import pytest

from tests.providers.transcripts import events_of, load, meter
from tollgate.providers.openai import ask_for_usage, chat_usage, embeddings_usage, responses_usage
from tollgate.types import Usage

SERVER_ERROR = "server_error: The server had an error while processing your request. Sorry about that!"

# transcript, path, usage, provider_reported, finished, output_chars, upstream_error
STREAMS = [
    ("openai_chat_stream.sse", "/v1/chat/completions", Usage(1543, 10, 1280, 0, 0), True, True, 32, None),
    ("openai_chat_stream_tools.sse", "/v1/chat/completions", Usage(82, 210, 0, 0, 192), True, True, 39, None),
    ("openai_compat_chat_stream.sse", "/v1/chat/completions", Usage(21, 7), True, True, 25, None),
    ("openai_completions_stream.sse", "/v1/completions", Usage(5, 7), True, True, 17, None),
    ("openai_responses_stream.sse", "/v1/responses", Usage(36, 87, 0, 0, 64), True, True, 46, None),
    ("openai_responses_failed_stream.sse", "/v1/responses", Usage(), False, True, 7, SERVER_ERROR),
]


@pytest.mark.parametrize(("name", "path", "usage", "reported", "finished", "chars", "error"), STREAMS)
def test_stream_metering(
    name: str, path: str, usage: Usage, reported: bool, finished: bool, chars: int, error: str | None
) -> None:
    _, stream_meter = meter(path, [load(name)])
    assert stream_meter.usage == usage
    assert stream_meter.provider_reported is reported
    assert stream_meter.finished is finished
    assert stream_meter.output_chars == chars
    assert stream_meter.upstream_error == error


# transcript, path, events kept, usage, output_chars
CUT_STREAMS = [
    ("openai_chat_stream.sse", "/v1/chat/completions", 6, Usage(), 16),
    ("openai_chat_stream_tools.sse", "/v1/chat/completions", 4, Usage(), 24),
    ("openai_compat_chat_stream.sse", "/v1/chat/completions", 5, Usage(21, 4), 18),
    ("openai_responses_stream.sse", "/v1/responses", 12, Usage(), 23),
]


@pytest.mark.parametrize(("name", "path", "kept", "usage", "chars"), CUT_STREAMS)
def test_cut_stream_is_not_provider_reported_and_counts_output(
    name: str, path: str, kept: int, usage: Usage, chars: int
) -> None:
    stream = b"".join(events_of(load(name))[:kept])
    relayed, stream_meter = meter(path, [stream])
    assert relayed == stream
    assert stream_meter.provider_reported is False
    assert stream_meter.finished is False
    assert stream_meter.usage == usage
    assert stream_meter.output_chars == chars


def test_usage_on_every_chunk_overwrites_rather_than_adds() -> None:
    # The compatible transcript repeats cumulative usage on each chunk: 0, 3, 4, 6, 7 completion tokens.
    _, stream_meter = meter("/v1/chat/completions", [load("openai_compat_chat_stream.sse")])
    assert stream_meter.usage.output_tokens == 7
    assert stream_meter.usage.input_tokens == 21


@pytest.mark.parametrize(
    ("stream", "error"),
    [
        pytest.param(
            b'data: {"error":{"message":"The server had an error processing your request.","type":"server_error",'
            b'"param":null,"code":null}}\n\n',
            "server_error: The server had an error processing your request.",
            id="error-chunk",
        ),
        pytest.param(
            b'event: error\ndata: {"error":{"message":"bad key Bearer sk-live-0123456789abcdef","type":null}}\n\n',
            "bad key Bearer [redacted]",
            id="error-event",
        ),
        pytest.param(b'data: {"error":"model overloaded"}\n\n', "model overloaded", id="error-string"),
    ],
)
def test_in_stream_errors_end_the_chat_stream(stream: bytes, error: str) -> None:
    head = events_of(load("openai_chat_stream.sse"))[:3]
    whole = b"".join(head) + stream
    relayed, stream_meter = meter("/v1/chat/completions", [whole], hide_usage=True)
    assert relayed == whole
    assert stream_meter.upstream_error == error
    assert stream_meter.finished is True
    assert stream_meter.provider_reported is False
    assert stream_meter.output_chars == 6


@pytest.mark.parametrize(
    ("stream", "error"),
    [
        pytest.param(
            b'event: error\ndata: {"type":"error","sequence_number":3,"code":"rate_limit_exceeded",'
            b'"message":"Rate limit reached for requests","param":null}\n\n',
            "rate_limit_exceeded: Rate limit reached for requests",
            id="flat",
        ),
        pytest.param(
            b'event: error\ndata: {"type":"error","sequence_number":3,"error":{"type":"invalid_request_error",'
            b'"code":"context_length_exceeded","message":"Your input exceeds the context window."}}\n\n',
            "invalid_request_error: Your input exceeds the context window.",
            id="nested",
        ),
    ],
)
def test_responses_error_event(stream: bytes, error: str) -> None:
    _, stream_meter = meter("/v1/responses", [stream])
    assert stream_meter.upstream_error == error
    assert stream_meter.finished is True
    assert stream_meter.provider_reported is False


def test_responses_incomplete_is_terminal_and_reported() -> None:
    stream = (
        b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","sequence_number":4,'
        b'"item_id":"msg_1","output_index":0,"content_index":0,"delta":"Once"}\n\n'
        b'event: response.incomplete\ndata: {"type":"response.incomplete","sequence_number":5,"response":{'
        b'"id":"resp_1","object":"response","status":"incomplete","incomplete_details":{"reason":"max_output_tokens"},'
        b'"usage":{"input_tokens":11,"input_tokens_details":{"cached_tokens":0},"output_tokens":16,'
        b'"output_tokens_details":{"reasoning_tokens":0},"total_tokens":27}}}\n\n'
    )
    _, stream_meter = meter("/v1/responses", [stream])
    assert stream_meter.usage == Usage(11, 16)
    assert (stream_meter.provider_reported, stream_meter.finished, stream_meter.output_chars) == (True, True, 4)
    assert stream_meter.upstream_error is None


def test_responses_events_without_event_lines_are_read_by_their_type() -> None:
    named = load("openai_responses_stream.sse")
    unnamed = b"".join(e.split(b"\n", 1)[1] for e in events_of(named))
    assert b"event:" not in unnamed
    relayed, stream_meter = meter("/v1/responses", [unnamed + b"data: [DONE]\n\n"])
    assert relayed == unnamed + b"data: [DONE]\n\n"
    assert stream_meter.usage == Usage(36, 87, 0, 0, 64)
    assert (stream_meter.provider_reported, stream_meter.finished, stream_meter.output_chars) == (True, True, 46)


# caller's body → (body after, hidden)
USAGE_OPTION = [
    ({}, {"stream_options": {"include_usage": True}}, True),
    ({"stream_options": None}, {"stream_options": {"include_usage": True}}, True),
    ({"stream_options": {"include_usage": False}}, {"stream_options": {"include_usage": True}}, True),
    ({"stream_options": {"include_usage": True}}, {"stream_options": {"include_usage": True}}, False),
    (
        {"stream_options": {"include_obfuscation": False}},
        {"stream_options": {"include_obfuscation": False, "include_usage": True}},
        True,
    ),
    ({"stream_options": "yes"}, {"stream_options": "yes"}, False),
]


@pytest.mark.parametrize(("body", "after", "hidden"), USAGE_OPTION)
def test_ask_for_usage(body: dict[str, Any], after: dict[str, Any], hidden: bool) -> None:
    original_options = body.get("stream_options")
    snapshot = repr(original_options)
    assert ask_for_usage(body) is hidden
    assert body == after
    assert repr(original_options) == snapshot  # the caller's stream_options object itself is never changed


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        ({"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}, Usage(10, 3)),
        ({"prompt_tokens": 10, "completion_tokens": None, "prompt_tokens_details": None}, Usage(10, 0)),
        (
            {
                "prompt_tokens": 900,
                "completion_tokens": 50,
                "prompt_tokens_details": {"cached_tokens": 512, "cache_write_tokens": 300},
                "completion_tokens_details": {"reasoning_tokens": 20},
            },
            Usage(900, 50, 512, 300, 20),
        ),
        ({"prompt_tokens": "10", "completion_tokens": -1, "prompt_tokens_details": []}, Usage()),
        ({"prompt_tokens": True, "completion_tokens": 2.5}, Usage()),
    ],
)
def test_chat_usage(usage: dict[str, Any], expected: Usage) -> None:
    assert chat_usage(usage) == expected


def test_embeddings_usage_has_no_output() -> None:
    assert embeddings_usage({"prompt_tokens": 8, "total_tokens": 8, "completion_tokens": 3}) == Usage(8, 0)


def test_responses_usage_reads_cache_writes() -> None:
    usage = {
        "input_tokens": 5000,
        "input_tokens_details": {"cached_tokens": 4096, "cache_write_tokens": 800},
        "output_tokens": 120,
        "output_tokens_details": {"reasoning_tokens": 64},
        "total_tokens": 5120,
    }
    assert responses_usage(usage) == Usage(5000, 120, 4096, 800, 64)
