"""OpenAI bodies and streams as bytes: the exact transcript a provider parser would see."""

from __future__ import annotations

import base64
import struct

import orjson

from tollgate.simulator import openai_wire
from tollgate.simulator.content import Reply

TWO_WORDS = Reply(
    words=("alpha", "bravo"), truncated=True, prompt_tokens=3, cached_tokens=0, cache_write_tokens=0,
    reasoning_tokens=0,
)  # fmt: skip
HEAD = b'data: {"id":"c1","object":"chat.completion.chunk","created":1700000000,"model":"m",'
HEAD += b'"system_fingerprint":"fp_tollgate_sim","choices":'
USAGE = (
    b'{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5,"prompt_tokens_details":{"cached_tokens":0,'
    b'"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,'
    b'"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}'
)


def test_chat_stream_with_include_usage() -> None:
    plan = openai_wire.chat_stream("m", TWO_WORDS, "c1", 1700000000, include_usage=True)
    choice = b'[{"index":0,"delta":%s,"logprobs":null,"finish_reason":%s}],"usage":null}\n\n'
    assert plan.head == [HEAD + choice % (b'{"role":"assistant","content":"","refusal":null}', b"null")]
    assert plan.content == [
        HEAD + choice % (b'{"content":"alpha"}', b"null"),
        HEAD + choice % (b'{"content":" bravo"}', b"null"),
    ]
    assert plan.tail == [
        HEAD + choice % (b"{}", b'"length"'),
        HEAD + b'[],"usage":' + USAGE + b"}\n\n",
        b"data: [DONE]\n\n",
    ]


def test_chat_stream_without_include_usage_has_no_usage_at_all() -> None:
    plan = openai_wire.chat_stream("m", TWO_WORDS, "c1", 1700000000, include_usage=False)
    events = plan.head + plan.content + plan.tail
    assert not any(b"usage" in event for event in events)
    assert len(events) == 5 and events[-1] == b"data: [DONE]\n\n"


def test_completion_stream_usage_chunk_has_no_choices() -> None:
    plan = openai_wire.completion_stream("m", TWO_WORDS, "cmpl-1", 1700000000, include_usage=True)
    assert plan.head == []
    assert [orjson.loads(e[6:])["choices"][0]["text"] for e in plan.content] == ["alpha", " bravo"]
    final = orjson.loads(plan.tail[1][6:])
    assert final["object"] == "text_completion" and final["choices"] == [] and final["usage"]["total_tokens"] == 5
    assert plan.tail[2] == b"data: [DONE]\n\n"


def test_usage_counts_cached_and_cache_write_inside_prompt_tokens() -> None:
    reply = Reply(
        words=("alpha",), truncated=False, prompt_tokens=2, cached_tokens=100, cache_write_tokens=7,
        reasoning_tokens=9,
    )  # fmt: skip
    assert openai_wire.usage(reply) == {
        "prompt_tokens": 109,
        "completion_tokens": 10,
        "total_tokens": 119,
        "prompt_tokens_details": {"cached_tokens": 100, "audio_tokens": 0, "cache_write_tokens": 7},
        "completion_tokens_details": {
            "reasoning_tokens": 9,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }
    assert openai_wire.responses_usage(reply) == {
        "input_tokens": 109,
        "input_tokens_details": {"cached_tokens": 100},
        "output_tokens": 10,
        "output_tokens_details": {"reasoning_tokens": 9},
        "total_tokens": 119,
    }


def test_responses_stream_events_in_order_with_sequence_numbers() -> None:
    plan = openai_wire.responses_stream("m", TWO_WORDS, "resp_1", 1700000000, {"input": "x"})
    events = plan.head + plan.content + plan.tail
    names = [event.split(b"\n", 1)[0] for event in events]
    assert names == [
        b"event: response.created",
        b"event: response.in_progress",
        b"event: response.output_item.added",
        b"event: response.content_part.added",
        b"event: response.output_text.delta",
        b"event: response.output_text.delta",
        b"event: response.output_text.done",
        b"event: response.content_part.done",
        b"event: response.output_item.done",
        b"event: response.completed",
    ]
    payloads = [orjson.loads(event.split(b"\ndata: ", 1)[1]) for event in events]
    assert [p["sequence_number"] for p in payloads] == list(range(10))
    assert payloads[0]["response"]["status"] == "in_progress" and payloads[0]["response"]["usage"] is None
    assert [p["delta"] for p in payloads[4:6]] == ["alpha", " bravo"]
    completed = payloads[-1]["response"]
    assert completed["status"] == "completed"
    assert completed["output"][0]["content"][0]["text"] == "alpha bravo"
    assert completed["usage"]["input_tokens"] == 3 and completed["usage"]["output_tokens"] == 2


def test_embeddings_base64_is_little_endian_float32_of_the_float_vector() -> None:
    floats = openai_wire.embeddings("e", ["abc"], 4, "float", 1)
    packed = openai_wire.embeddings("e", ["abc"], 4, "base64", 1)
    vector = floats["data"][0]["embedding"]
    assert len(vector) == 4
    decoded = struct.unpack("<4f", base64.b64decode(packed["data"][0]["embedding"]))
    assert [round(x, 5) for x in decoded] == [round(x, 5) for x in vector]
    assert floats["usage"] == {"prompt_tokens": 1, "total_tokens": 1}
    assert openai_wire.embedding_vector("abc", 4) == vector  # deterministic
    assert openai_wire.embedding_vector("abd", 4) != vector


def test_error_bodies_by_status() -> None:
    assert openai_wire.error_body(429, "slow down") == {
        "error": {"message": "slow down", "type": "requests", "param": None, "code": "rate_limit_exceeded"}
    }
    assert openai_wire.error_body(500, "boom")["error"]["type"] == "server_error"
    assert openai_wire.error_body(503, "boom")["error"]["type"] == "server_error"
    assert openai_wire.error_body(401, "who")["error"]["code"] == "invalid_api_key"
    assert openai_wire.error_body(418, "tea")["error"]["type"] == "invalid_request_error"
