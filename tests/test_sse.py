"""SseDecoder: framing by the event-stream rules, byte-exact ``raw``, and the same result however input is split."""

from __future__ import annotations

import random

import pytest

from tollgate.sse import SseDecoder, SseEvent


def decode(chunks: list[bytes]) -> list[SseEvent]:
    decoder = SseDecoder()
    events: list[SseEvent] = []
    for chunk in chunks:
        events.extend(decoder.feed(chunk))
    events.extend(decoder.flush())
    return events


def splits(stream: bytes, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    chunks, pos = [], 0
    while pos < len(stream):
        size = rng.randint(1, 7)
        chunks.append(stream[pos : pos + size])
        pos += size
    return chunks


def feedings(stream: bytes) -> list[list[bytes]]:
    """Whole, one byte at a time, and a few seeded random splits."""
    one_by_one = [stream[i : i + 1] for i in range(len(stream))]
    return [[stream], one_by_one, *(splits(stream, seed) for seed in range(5))]


# (wire bytes, expected events as (raw, event, data))
CASES = [
    pytest.param(
        b'data: {"a":1}\n\ndata: [DONE]\n\n',
        [(b'data: {"a":1}\n\n', None, b'{"a":1}'), (b"data: [DONE]\n\n", None, b"[DONE]")],
        id="lf",
    ),
    pytest.param(
        b"event: ping\r\ndata: {}\r\n\r\nevent: message_stop\r\ndata: {}\r\n\r\n",
        [
            (b"event: ping\r\ndata: {}\r\n\r\n", "ping", b"{}"),
            (b"event: message_stop\r\ndata: {}\r\n\r\n", "message_stop", b"{}"),
        ],
        id="crlf",
    ),
    pytest.param(
        b"event: a\rdata: 1\r\rdata: 2\r\r",
        [(b"event: a\rdata: 1\r\r", "a", b"1"), (b"data: 2\r\r", None, b"2")],
        id="cr",
    ),
    pytest.param(
        b"event: a\r\ndata: 1\n\r\ndata: 2\r\n\n",
        [(b"event: a\r\ndata: 1\n\r\n", "a", b"1"), (b"data: 2\r\n\n", None, b"2")],
        id="mixed-endings",
    ),
    pytest.param(
        b"data: first\ndata: second\ndata:\ndata\n\n",
        [(b"data: first\ndata: second\ndata:\ndata\n\n", None, b"first\nsecond\n\n")],
        id="multi-line-data",
    ),
    pytest.param(
        b": ping\n\n: comment\ndata:x\ndata:  two spaces\n\n",
        [(b": ping\n\n", None, b""), (b": comment\ndata:x\ndata:  two spaces\n\n", None, b"x\n two spaces")],
        id="comments-and-spaces",
    ),
    pytest.param(
        b"id: 7\nretry: 3000\nevent: x\nfoo: bar\ndata: d\n\n",
        [(b"id: 7\nretry: 3000\nevent: x\nfoo: bar\ndata: d\n\n", "x", b"d")],
        id="ignored-fields",
    ),
    pytest.param(
        b"\n\ndata: a\n\n\n",
        [(b"\n", None, b""), (b"\n", None, b""), (b"data: a\n\n", None, b"a"), (b"\n", None, b"")],
        id="stray-blank-lines",
    ),
    pytest.param(
        b"data: a\n\ndata: [DONE]",
        [(b"data: a\n\n", None, b"a"), (b"data: [DONE]", None, b"[DONE]")],
        id="trailing-event-without-newline",
    ),
    pytest.param(
        b"event: e\ndata: tail\n",
        [(b"event: e\ndata: tail\n", "e", b"tail")],
        id="trailing-event-without-blank-line",
    ),
    pytest.param(
        b"data: a\r\n\r",
        [(b"data: a\r\n\r", None, b"a")],
        id="trailing-cr-at-end",
    ),
    pytest.param(
        "event: caf\u00e9\ndata: \u00e9t\u00e9\n\n".encode(),
        [("event: caf\u00e9\ndata: \u00e9t\u00e9\n\n".encode(), "caf\u00e9", "\u00e9t\u00e9".encode())],
        id="utf-8",
    ),
]


@pytest.mark.parametrize(("stream", "expected"), CASES)
def test_decodes_the_same_however_the_input_is_split(
    stream: bytes, expected: list[tuple[bytes, str | None, bytes]]
) -> None:
    for chunks in feedings(stream):
        events = decode(chunks)
        assert [(e.raw, e.event, e.data) for e in events] == expected
        assert b"".join(e.raw for e in events) == stream


def test_partial_event_stays_buffered_until_its_blank_line() -> None:
    decoder = SseDecoder()
    assert decoder.feed(b"event: message_delta\nda") == []
    assert decoder.feed(b'ta: {"x":1}\n') == []
    assert decoder.feed(b"\n") == [SseEvent(b'event: message_delta\ndata: {"x":1}\n\n', "message_delta", b'{"x":1}')]
    assert decoder.flush() == []


def test_cr_at_chunk_end_waits_for_the_next_byte() -> None:
    # "\r" then "\n" is one line ending: the event must include the "\n", not leave it as a stray blank line.
    decoder = SseDecoder()
    assert decoder.feed(b"data: a\r\n\r") == []
    assert decoder.feed(b"\ndata: b\r\n\r\n") == [
        SseEvent(b"data: a\r\n\r\n", None, b"a"),
        SseEvent(b"data: b\r\n\r\n", None, b"b"),
    ]


def test_lone_cr_endings_complete_an_event_when_the_next_byte_arrives() -> None:
    # A "\r" ending the buffer may be half of "\r\n", so the blank line it makes is only known one byte later.
    decoder = SseDecoder()
    assert decoder.feed(b"data: a\r\rdata: b") == [SseEvent(b"data: a\r\r", None, b"a")]
    assert decoder.feed(b"\r") == []
    assert decoder.feed(b"\r") == []
    assert decoder.feed(b"data: c\r\r") == [SseEvent(b"data: b\r\r", None, b"b")]
    assert decoder.flush() == [SseEvent(b"data: c\r\r", None, b"c")]


def test_flush_resets_the_decoder() -> None:
    decoder = SseDecoder()
    decoder.feed(b"event: x\ndata: 1")
    assert decoder.flush() == [SseEvent(b"event: x\ndata: 1", "x", b"1")]
    assert decoder.flush() == []
    assert decoder.feed(b"data: 2\n\n") == [SseEvent(b"data: 2\n\n", None, b"2")]


def test_empty_chunks_produce_nothing() -> None:
    decoder = SseDecoder()
    assert decoder.feed(b"") == []
    assert decoder.flush() == []


def test_large_event_in_many_chunks() -> None:
    payload = b"x" * 100_000
    stream = b"event: response.completed\ndata: " + payload + b"\n\n"
    decoder = SseDecoder()
    events: list[SseEvent] = []
    for i in range(0, len(stream), 4096):
        events.extend(decoder.feed(stream[i : i + 4096]))
    assert len(events) == 1
    assert events[0].raw == stream
    assert events[0].event == "response.completed"
    assert events[0].data == payload
