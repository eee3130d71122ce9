"""Anthropic bodies and streams as bytes."""

from __future__ import annotations

from tollgate.simulator import anthropic_wire
from tollgate.simulator.content import Reply

REPLY = Reply(
    words=("alpha", "bravo"), truncated=False, prompt_tokens=3, cached_tokens=100, cache_write_tokens=7,
    reasoning_tokens=0,
)  # fmt: skip


def test_message_stream_transcript() -> None:
    plan = anthropic_wire.message_stream("c", REPLY, "msg_1")
    assert plan.head == [
        b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","type":"message",'
        b'"role":"assistant","model":"c","content":[],"stop_reason":null,"stop_sequence":null,"usage":'
        b'{"input_tokens":3,"cache_creation_input_tokens":7,"cache_read_input_tokens":100,"output_tokens":1}}}\n\n',
        b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
        b'"content_block":{"type":"text","text":""}}\n\n',
        b'event: ping\ndata: {"type":"ping"}\n\n',
    ]
    assert plan.content == [
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
        b'"delta":{"type":"text_delta","text":"alpha"}}\n\n',
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
        b'"delta":{"type":"text_delta","text":" bravo"}}\n\n',
    ]
    assert plan.tail == [
        b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n',
        b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn",'
        b'"stop_sequence":null},"usage":{"input_tokens":3,"cache_creation_input_tokens":7,'
        b'"cache_read_input_tokens":100,"output_tokens":2}}\n\n',
        b'event: message_stop\ndata: {"type":"message_stop"}\n\n',
    ]


def test_message_body() -> None:
    assert anthropic_wire.message("c", REPLY, "msg_1") == {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "c",
        "content": [{"type": "text", "text": "alpha bravo"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 3,
            "cache_creation_input_tokens": 7,
            "cache_read_input_tokens": 100,
            "output_tokens": 2,
        },
    }


def test_error_bodies_by_status() -> None:
    assert anthropic_wire.error_body(429, "slow") == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "slow"},
    }
    assert anthropic_wire.error_body(529, "x")["error"]["type"] == "overloaded_error"
    assert anthropic_wire.error_body(503, "x")["error"]["type"] == "api_error"
    assert anthropic_wire.error_body(401, "x")["error"]["type"] == "authentication_error"
    assert anthropic_wire.error_body(422, "x")["error"]["type"] == "invalid_request_error"
