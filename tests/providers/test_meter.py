"""StreamMeter relay contract: byte-exact relay however the stream is split, the usage chunk hidden only on request."""

from __future__ import annotations

import pytest

from tests.providers.transcripts import events_of, feedings, load, meter
from tollgate.providers import ENDPOINTS, StreamMeter
from tollgate.types import Usage

STREAMS = [
    ("openai_chat_stream.sse", "/v1/chat/completions"),
    ("openai_chat_stream_tools.sse", "/v1/chat/completions"),
    ("openai_compat_chat_stream.sse", "/v1/chat/completions"),
    ("openai_completions_stream.sse", "/v1/completions"),
    ("openai_responses_stream.sse", "/v1/responses"),
    ("openai_responses_failed_stream.sse", "/v1/responses"),
    ("anthropic_messages_stream.sse", "/v1/messages"),
    ("anthropic_messages_stream_error.sse", "/v1/messages"),
]


def snapshot(stream_meter: StreamMeter) -> tuple[Usage, bool, int, bool, str | None]:
    return (
        stream_meter.usage,
        stream_meter.provider_reported,
        stream_meter.output_chars,
        stream_meter.finished,
        stream_meter.upstream_error,
    )


@pytest.mark.parametrize(("name", "path"), STREAMS)
def test_relays_every_byte_and_meters_the_same_however_split(name: str, path: str) -> None:
    stream = load(name)
    _, reference = meter(path, [stream])
    for way, chunks in feedings(stream).items():
        relayed, stream_meter = meter(path, chunks)
        assert relayed == stream, way
        assert snapshot(stream_meter) == snapshot(reference), way


@pytest.mark.parametrize(("name", "path"), STREAMS)
def test_crlf_framing_relays_unchanged_and_meters_like_lf(name: str, path: str) -> None:
    stream = load(name)
    crlf = stream.replace(b"\n", b"\r\n")
    _, reference = meter(path, [stream])
    for way, chunks in feedings(crlf).items():
        relayed, stream_meter = meter(path, chunks)
        assert relayed == crlf, way
        assert snapshot(stream_meter) == snapshot(reference), way


# (transcript, path, number of the event the gateway hides when it asked for usage on its own)
HIDDEN = [
    ("openai_chat_stream.sse", "/v1/chat/completions", 11),
    ("openai_chat_stream_tools.sse", "/v1/chat/completions", 8),
    ("openai_completions_stream.sse", "/v1/completions", 7),
]


@pytest.mark.parametrize(("name", "path", "index"), HIDDEN)
def test_hide_usage_drops_exactly_the_usage_chunk(name: str, path: str, index: int) -> None:
    stream = load(name)
    events = events_of(stream)
    assert b'"choices":[]' in events[index]
    assert b'"usage":{"prompt_tokens"' in events[index]
    expected = b"".join(events[:index] + events[index + 1 :])
    for way, chunks in feedings(stream).items():
        relayed, stream_meter = meter(path, chunks, hide_usage=True)
        assert relayed == expected, way
        assert stream_meter.provider_reported, way
        assert stream_meter.usage.input_tokens > 0, way


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("openai_compat_chat_stream.sse", "/v1/chat/completions"),  # usage rides on content chunks: nothing hidden
        ("openai_responses_stream.sse", "/v1/responses"),
        ("anthropic_messages_stream.sse", "/v1/messages"),
    ],
)
def test_hide_usage_drops_nothing_without_a_usage_only_chunk(name: str, path: str) -> None:
    stream = load(name)
    relayed, _ = meter(path, [stream], hide_usage=True)
    assert relayed == stream


def test_partial_event_is_held_until_complete_and_close_relays_the_tail() -> None:
    stream = load("openai_chat_stream.sse")
    cut = len(stream) - len(b"data: [DONE]\n\n") + len(b"data: [DO")
    stream_meter = StreamMeter(ENDPOINTS["/v1/chat/completions"], False)
    assert stream_meter.feed(stream[:cut]) == stream[: cut - len(b"data: [DO")]
    assert stream_meter.feed(b"NE]") == b""
    assert not stream_meter.finished
    assert stream_meter.close() == b"data: [DONE]"
    assert stream_meter.finished
    assert stream_meter.close() == b""


def test_close_with_nothing_buffered_relays_nothing() -> None:
    stream_meter = StreamMeter(ENDPOINTS["/v1/messages"], False)
    assert stream_meter.feed(b"event: ping\n") == b""
    assert stream_meter.feed(b'data: {"type":"ping"}\n\n') == b'event: ping\ndata: {"type":"ping"}\n\n'
    assert stream_meter.close() == b""


def test_non_json_and_unknown_events_are_relayed_untouched() -> None:
    stream = b"data: not json\n\nevent: something_new\ndata: {}\n\n: comment\n\nretry: 10\n\n"
    for path in ("/v1/chat/completions", "/v1/responses", "/v1/messages"):
        relayed, stream_meter = meter(path, [stream], hide_usage=True)
        assert relayed == stream
        assert snapshot(stream_meter) == (Usage(), False, 0, False, None)


def test_a_meter_for_an_endpoint_that_cannot_stream_relays_and_reads_nothing() -> None:
    stream = load("openai_chat_stream.sse")
    relayed, stream_meter = meter("/v1/embeddings", [stream], hide_usage=True)
    assert relayed == stream
    assert snapshot(stream_meter) == (Usage(), False, 0, False, None)
