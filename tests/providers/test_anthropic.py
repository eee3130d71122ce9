"""Anthropic dialect: Messages stream metering (whole, cut, ended by an error) and usage normalisation."""

from __future__ import annotations

from typing import Any

import pytest

from tests.providers.transcripts import events_of, load, meter
from tollgate.providers.anthropic import messages_usage
from tollgate.types import Usage

PATH = "/v1/messages"

# transcript, usage, provider_reported, finished, output_chars, upstream_error
STREAMS = [
    ("anthropic_messages_stream.sse", Usage(2520, 148, 2048, 0, 0), True, True, 114, None),
    (
        "anthropic_messages_stream_error.sse",
        Usage(1225, 1, 0, 1200, 0),
        False,
        True,
        16,
        "overloaded_error: Overloaded",
    ),
]


@pytest.mark.parametrize(("name", "usage", "reported", "finished", "chars", "error"), STREAMS)
def test_stream_metering(
    name: str, usage: Usage, reported: bool, finished: bool, chars: int, error: str | None
) -> None:
    relayed, stream_meter = meter(PATH, [load(name)], hide_usage=True)
    assert relayed == load(name)
    assert stream_meter.usage == usage
    assert stream_meter.provider_reported is reported
    assert stream_meter.finished is finished
    assert stream_meter.output_chars == chars
    assert stream_meter.upstream_error == error


# events kept from anthropic_messages_stream.sse → output_chars; the input side always comes from message_start
CUTS = [
    pytest.param(1, 0, id="after-message_start"),
    pytest.param(5, 60, id="mid-thinking"),
    pytest.param(10, 85, id="after-text"),
    pytest.param(14, 98, id="mid-tool-input"),
    pytest.param(16, 114, id="before-message_delta"),
]


@pytest.mark.parametrize(("kept", "chars"), CUTS)
def test_cut_stream_keeps_input_from_message_start_and_counts_output(kept: int, chars: int) -> None:
    stream = b"".join(events_of(load("anthropic_messages_stream.sse"))[:kept])
    relayed, stream_meter = meter(PATH, [stream])
    assert relayed == stream
    assert stream_meter.provider_reported is False
    assert stream_meter.finished is False
    assert stream_meter.usage == Usage(2520, 4, 2048, 0, 0)  # output 4 is message_start's placeholder
    assert stream_meter.output_chars == chars
    assert stream_meter.upstream_error is None


def test_stream_cut_inside_an_event_relays_the_partial_bytes_on_close() -> None:
    events = events_of(load("anthropic_messages_stream.sse"))
    stream = b"".join(events[:9]) + events[9][:40]
    relayed, stream_meter = meter(PATH, [stream])
    assert relayed == stream
    assert stream_meter.output_chars == 72  # the unfinished " the weather." delta is not counted
    assert stream_meter.provider_reported is False


def event(name: str, payload: bytes) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + payload + b"\n\n"


START = event(
    "message_start",
    b'{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],'
    b'"usage":{"input_tokens":100,"cache_creation_input_tokens":null,"cache_read_input_tokens":50,"output_tokens":1}}}',
)


def test_message_delta_overwrites_only_the_fields_it_carries() -> None:
    first = event(
        "message_delta", b'{"type":"message_delta","delta":{"stop_reason":null},"usage":{"output_tokens":30}}'
    )
    _, stream_meter = meter(PATH, [START + first])
    assert stream_meter.usage == Usage(150, 30, 50, 0, 0)
    assert stream_meter.provider_reported is True
    second = event(
        "message_delta",
        b'{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"input_tokens":120,"output_tokens":45,'
        b'"output_tokens_details":{"thinking_tokens":12}}}',
    )
    _, stream_meter = meter(PATH, [START + first + second])
    assert stream_meter.usage == Usage(170, 45, 50, 0, 12)  # 45, not 30 + 45: usage is cumulative


def test_events_without_event_lines_are_read_by_their_type() -> None:
    named = load("anthropic_messages_stream.sse")
    unnamed = b"".join(e.split(b"\n", 1)[1] for e in events_of(named))
    assert b"event:" not in unnamed
    _, stream_meter = meter(PATH, [unnamed])
    assert stream_meter.usage == Usage(2520, 148, 2048, 0, 0)
    assert (stream_meter.provider_reported, stream_meter.finished, stream_meter.output_chars) == (True, True, 114)


def test_error_event_message_is_redacted() -> None:
    error = event(
        "error",
        b'{"type":"error","error":{"type":"api_error","message":"upstream said x-api-key sk-ant-api03-AbCdEf012345'
        b'6789 is invalid"}}',
    )
    _, stream_meter = meter(PATH, [START + error])
    assert stream_meter.upstream_error == "api_error: upstream said x-api-key [redacted] is invalid"
    assert stream_meter.finished is True


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        ({"input_tokens": 12, "output_tokens": 98}, Usage(12, 98)),
        (
            {
                "input_tokens": 12,
                "cache_creation_input_tokens": 1500,
                "cache_read_input_tokens": 3000,
                "output_tokens": 98,
            },
            Usage(4512, 98, 3000, 1500, 0),
        ),
        (
            {
                "input_tokens": 40,
                "cache_creation_input_tokens": None,
                "cache_read_input_tokens": None,
                "output_tokens": 700,
                "output_tokens_details": {"thinking_tokens": 512},
            },
            Usage(40, 700, 0, 0, 512),
        ),
        ({"input_tokens": None, "output_tokens": "3"}, Usage()),
    ],
)
def test_messages_usage(usage: dict[str, Any], expected: Usage) -> None:
    assert messages_usage(usage) == expected
