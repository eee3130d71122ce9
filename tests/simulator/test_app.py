"""The simulator over real HTTP, checked with the official OpenAI and Anthropic SDKs (and raw HTTP)."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import anthropic
import httpx2
import openai
import pytest

from tollgate.simulator import Simulator, SimulatorServer

KEY = "sk-sim-test"
HELLO = [{"role": "user", "content": "hello there"}]  # 11 characters: 3 prompt tokens
DEFAULT_TEXT = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa"


@pytest.fixture(scope="module")
def server() -> Iterator[SimulatorServer]:
    with SimulatorServer(Simulator(require_key=KEY)) as running:
        yield running


@pytest.fixture
def sim(server: SimulatorServer) -> Iterator[SimulatorServer]:
    server.simulator.clear_received()
    yield server


@pytest.fixture
def oai(sim: SimulatorServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=sim.base_url + "/v1", api_key=KEY, max_retries=0) as client:
        yield client


@pytest.fixture
def ant(sim: SimulatorServer) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=sim.base_url, api_key=KEY, max_retries=0) as client:
        yield client


def raw(
    base_url: str, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    url = urlsplit(base_url)
    connection = http.client.HTTPConnection(url.hostname or "", url.port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


# -- OpenAI ------------------------------------------------------------------------------------------------------


def test_chat_completion(oai: openai.OpenAI) -> None:
    completion = oai.chat.completions.create(model="gpt-4o-mini", messages=HELLO, max_tokens=5)
    assert completion.object == "chat.completion" and completion.model == "gpt-4o-mini"
    assert completion.choices[0].message.content == "alpha bravo charlie delta echo"
    assert completion.choices[0].finish_reason == "length"
    usage = completion.usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (3, 5, 8)
    assert usage.prompt_tokens_details is not None and usage.prompt_tokens_details.cached_tokens == 0
    assert usage.completion_tokens_details is not None and usage.completion_tokens_details.reasoning_tokens == 0


def test_chat_completion_default_length_and_max_completion_tokens(oai: openai.OpenAI) -> None:
    full = oai.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert full.choices[0].message.content == DEFAULT_TEXT and full.choices[0].finish_reason == "stop"
    short = oai.chat.completions.create(model="gpt-4o-mini", messages=HELLO, max_completion_tokens=2)
    assert short.choices[0].message.content == "alpha bravo"


def test_chat_stream_without_usage(oai: openai.OpenAI) -> None:
    chunks = list(oai.chat.completions.create(model="gpt-4o-mini", messages=HELLO, max_tokens=3, stream=True))
    assert [c.choices[0].delta.content for c in chunks] == ["", "alpha", " bravo", " charlie", None]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == "length"
    assert all(c.usage is None for c in chunks)


def test_chat_stream_with_include_usage(oai: openai.OpenAI) -> None:
    chunks = list(
        oai.chat.completions.create(
            model="gpt-4o-mini+sim-cached-100",
            messages=HELLO,
            max_tokens=3,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert len(chunks) == 6
    assert all(c.usage is None for c in chunks[:-1])
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens) == (103, 3, 106)
    assert last.usage.prompt_tokens_details is not None and last.usage.prompt_tokens_details.cached_tokens == 100


def test_chat_stream_raw_bytes_end_with_done(sim: SimulatorServer) -> None:
    body = {"model": "m", "messages": HELLO, "max_tokens": 1, "stream": True}
    status, data = raw(sim.base_url, "POST", "/v1/chat/completions", json.dumps(body).encode(),
                       {"authorization": f"Bearer {KEY}"})  # fmt: skip
    assert status == 200
    events = data.split(b"\n\n")
    assert events[-2:] == [b"data: [DONE]", b""]
    assert len(events) == 5  # role, one word, finish, [DONE], and the empty rest
    assert json.loads(events[1][6:])["choices"][0]["delta"] == {"content": "alpha"}


def test_completions_stream_and_not(oai: openai.OpenAI) -> None:
    completion = oai.completions.create(model="gpt-3.5-turbo-instruct", prompt="Once upon a time", max_tokens=4)
    assert completion.object == "text_completion"
    assert completion.choices[0].text == "alpha bravo charlie delta"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (4, 4)
    chunks = list(
        oai.completions.create(
            model="gpt-3.5-turbo-instruct", prompt=["ab", "cd"], max_tokens=2, stream=True,
            stream_options={"include_usage": True},
        )
    )  # fmt: skip
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "alpha bravo"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (1, 2)


def test_embeddings_string_list_base64_and_float(oai: openai.OpenAI, sim: SimulatorServer) -> None:
    one = oai.embeddings.create(model="text-embedding-3-small", input="hello world!")
    assert len(one.data) == 1 and len(one.data[0].embedding) == 8
    assert (one.usage.prompt_tokens, one.usage.total_tokens) == (3, 3)
    assert sim.simulator.received[-1]["body"]["encoding_format"] == "base64"  # the SDK's default
    many = oai.embeddings.create(
        model="text-embedding-3-small", input=["hello world!", "x"], encoding_format="float", dimensions=4
    )
    assert [d.index for d in many.data] == [0, 1] and [len(d.embedding) for d in many.data] == [4, 4]
    assert [round(x, 5) for x in many.data[0].embedding] == [round(x, 5) for x in one.data[0].embedding[:4]]
    assert many.data[0].embedding != many.data[1].embedding
    assert many.usage.prompt_tokens == 4


def test_responses_not_streamed(oai: openai.OpenAI) -> None:
    response = oai.responses.create(
        model="gpt-4o-mini+sim-cached-10+sim-reasoning-5", instructions="Be brief", input="Write", max_output_tokens=7
    )
    assert response.object == "response" and response.status == "completed"
    assert response.output_text == "alpha bravo charlie delta echo foxtrot golf"
    assert response.usage is not None
    # 8 + 5 characters of instructions and input: 4 tokens, plus 10 cached; 7 words plus 5 reasoning tokens
    assert (response.usage.input_tokens, response.usage.output_tokens, response.usage.total_tokens) == (14, 12, 26)
    assert response.usage.input_tokens_details.cached_tokens == 10
    assert response.usage.output_tokens_details.reasoning_tokens == 5


def test_responses_streamed(oai: openai.OpenAI) -> None:
    events = list(oai.responses.create(model="gpt-4o-mini", input="Write a haiku", max_output_tokens=3, stream=True))
    types = [e.type for e in events]
    assert types[0] == "response.created" and types[-1] == "response.completed"
    assert [e.delta for e in events if e.type == "response.output_text.delta"] == ["alpha", " bravo", " charlie"]
    completed = events[-1]
    assert completed.type == "response.completed"
    assert completed.response.output_text == "alpha bravo charlie"
    assert completed.response.usage is not None
    assert (completed.response.usage.input_tokens, completed.response.usage.output_tokens) == (4, 3)


def test_responses_stream_helper_accumulates(oai: openai.OpenAI) -> None:
    with oai.responses.stream(model="gpt-4o-mini", input=[{"role": "user", "content": "hi"}], max_output_tokens=2) as s:
        for _ in s:
            pass
        final = s.get_final_response()
    assert final.output_text == "alpha bravo"


def test_models(oai: openai.OpenAI) -> None:
    assert [m.id for m in oai.models.list()] == [
        "gpt-4o-mini", "gpt-4o", "text-embedding-3-small", "claude-haiku-4-5", "claude-sonnet-4-5",
    ]  # fmt: skip


# -- Anthropic ---------------------------------------------------------------------------------------------------


def test_anthropic_message(ant: anthropic.Anthropic) -> None:
    message = ant.messages.create(model="claude-haiku-4-5", max_tokens=4, system="Be kind", messages=HELLO)
    assert message.type == "message" and message.role == "assistant" and message.model == "claude-haiku-4-5"
    assert message.content[0].type == "text" and message.content[0].text == "alpha bravo charlie delta"
    assert message.stop_reason == "max_tokens"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (5, 4)  # 7 + 11 characters
    assert (message.usage.cache_read_input_tokens, message.usage.cache_creation_input_tokens) == (0, 0)


def test_anthropic_stream(ant: anthropic.Anthropic) -> None:
    model = "claude-haiku-4-5+sim-cached-100+sim-cache-write-7"
    with ant.messages.stream(model=model, max_tokens=100, messages=HELLO) as stream:
        events = [event.type for event in stream]
        final = stream.get_final_message()
    assert events[:3] == ["message_start", "content_block_start", "content_block_delta"]
    assert final.content[0].type == "text" and final.content[0].text == DEFAULT_TEXT
    assert final.stop_reason == "end_turn"
    usage = final.usage
    assert (usage.input_tokens, usage.output_tokens) == (3, 16)
    assert (usage.cache_read_input_tokens, usage.cache_creation_input_tokens) == (100, 7)


def test_anthropic_raw_stream_events(ant: anthropic.Anthropic) -> None:
    events = list(ant.messages.create(model="claude-haiku-4-5", max_tokens=2, messages=HELLO, stream=True))
    assert [e.type for e in events] == [
        "message_start", "content_block_start", "content_block_delta", "content_block_delta",
        "content_block_stop", "message_delta", "message_stop",
    ]  # fmt: skip
    start, delta = events[0], events[5]
    assert start.type == "message_start" and start.message.usage.input_tokens == 3
    assert start.message.usage.output_tokens == 1
    assert delta.type == "message_delta" and delta.usage.output_tokens == 2
    assert delta.delta.stop_reason == "max_tokens"


def test_anthropic_count_tokens(ant: anthropic.Anthropic) -> None:
    counted = ant.messages.count_tokens(model="claude-haiku-4-5", system="abcd", messages=HELLO)
    assert counted.input_tokens == 4  # 4 + 11 characters


# -- directives and errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("directive", "exc"),
    [
        ("sim-status-400", openai.BadRequestError),
        ("sim-status-429", openai.RateLimitError),
        ("sim-status-500", openai.InternalServerError),
        ("sim-status-503", openai.InternalServerError),
    ],
)
def test_openai_status_directive(oai: openai.OpenAI, directive: str, exc: type[openai.APIStatusError]) -> None:
    with pytest.raises(exc) as info:
        oai.chat.completions.create(model=f"gpt-4o-mini+{directive}", messages=HELLO)
    body = info.value.response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"] == f"simulated error ({directive})"


def test_openai_status_directive_on_a_stream(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as info:
        oai.chat.completions.create(model="gpt-4o-mini+sim-status-429", messages=HELLO, stream=True)
    assert info.value.response.headers["retry-after"] == "1"
    assert info.value.response.json()["error"]["code"] == "rate_limit_exceeded"


@pytest.mark.parametrize(
    ("status", "exc", "error_type"),
    [
        (429, anthropic.RateLimitError, "rate_limit_error"),
        (500, anthropic.InternalServerError, "api_error"),
        (529, anthropic.OverloadedError, "overloaded_error"),
    ],
)
def test_anthropic_status_directive(
    ant: anthropic.Anthropic, status: int, exc: type[anthropic.APIStatusError], error_type: str
) -> None:
    with pytest.raises(exc) as info:
        ant.messages.create(model=f"claude-haiku-4-5+sim-status-{status}", max_tokens=5, messages=HELLO)
    assert info.value.response.json() == {
        "type": "error",
        "error": {"type": error_type, "message": f"simulated error (sim-status-{status})"},
    }


def test_disconnect_directive_breaks_the_openai_stream_after_n_chunks(oai: openai.OpenAI) -> None:
    received: list[str] = []
    stream = oai.chat.completions.create(model="gpt-4o-mini+sim-disconnect-after-3", messages=HELLO, stream=True)
    with pytest.raises(openai.APIConnectionError):
        for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")
    assert received == ["", "alpha", " bravo", " charlie"]


def test_disconnect_directive_breaks_the_anthropic_stream(ant: anthropic.Anthropic) -> None:
    text: list[str] = []
    with pytest.raises(httpx2.RemoteProtocolError):  # noqa: SIM117  (the Anthropic SDK does not wrap it)
        with ant.messages.stream(model="claude-haiku-4-5+sim-disconnect-after-2", max_tokens=9, messages=HELLO) as s:
            text.extend(s.text_stream)
    assert text == ["alpha", " bravo"]


def test_disconnect_directive_on_a_non_stream_drops_before_any_response(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.APIConnectionError):
        oai.chat.completions.create(model="gpt-4o-mini+sim-disconnect-after-0", messages=HELLO)


def test_disconnect_is_an_unfinished_chunked_body_not_a_clean_end(sim: SimulatorServer) -> None:
    body = {"model": "m+sim-disconnect-after-1", "messages": HELLO, "stream": True}
    with pytest.raises(http.client.IncompleteRead) as info:
        raw(sim.base_url, "POST", "/v1/chat/completions", json.dumps(body).encode(), {"x-api-key": KEY})
    partial = info.value.partial
    assert partial.count(b"data: ") == 2 and b"[DONE]" not in partial


def test_latency_directive_delays_the_headers(sim: SimulatorServer) -> None:
    with (
        openai.OpenAI(base_url=sim.base_url + "/v1", api_key=KEY, max_retries=0, timeout=0.2) as client,
        pytest.raises(openai.APITimeoutError),
    ):
        client.chat.completions.create(model="gpt-4o-mini+sim-latency-1000", messages=HELLO)
    started = time.monotonic()
    with openai.OpenAI(base_url=sim.base_url + "/v1", api_key=KEY, max_retries=0) as client:
        client.chat.completions.create(model="gpt-4o-mini+sim-latency-250", messages=HELLO)
    assert time.monotonic() - started >= 0.24  # a lower bound only: sleeps never end early


def test_chunk_delay_directive_paces_the_stream(oai: openai.OpenAI) -> None:
    stream = oai.chat.completions.create(model="m+sim-chunk-delay-100", messages=HELLO, max_tokens=4, stream=True)
    arrivals = [time.monotonic() for chunk in stream if chunk.choices and chunk.choices[0].delta.content]
    assert len(arrivals) == 4
    assert arrivals[-1] - arrivals[0] >= 0.29  # three gaps of 100 ms, a lower bound only


def test_default_behaviour_is_settable(oai: openai.OpenAI, sim: SimulatorServer) -> None:
    simulator = sim.simulator
    original = simulator.default
    try:
        simulator.default = type(original)(reply_words=2, status=None)
        assert oai.chat.completions.create(model="m", messages=HELLO).choices[0].message.content == "alpha bravo"
        text = oai.chat.completions.create(model="m+sim-words-3", messages=HELLO).choices[0].message.content
        assert text == "alpha bravo charlie"
    finally:
        simulator.default = original


def test_unknown_directive_is_a_400(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        oai.chat.completions.create(model="gpt-4o-mini+sim-nonsense-1", messages=HELLO)
    assert info.value.response.json()["error"]["message"] == "unknown simulator directive 'sim-nonsense-1'"


def test_wrong_or_missing_key_is_a_401_in_each_dialect(sim: SimulatorServer) -> None:
    with (
        openai.OpenAI(base_url=sim.base_url + "/v1", api_key="sk-wrong", max_retries=0) as client,
        pytest.raises(openai.AuthenticationError),
    ):
        client.chat.completions.create(model="m", messages=HELLO)
    with (
        anthropic.Anthropic(base_url=sim.base_url, api_key="sk-wrong", max_retries=0) as ant_client,
        pytest.raises(anthropic.AuthenticationError) as info,
    ):
        ant_client.messages.create(model="c", max_tokens=1, messages=HELLO)
    assert info.value.response.json()["error"]["type"] == "authentication_error"
    status, body = raw(sim.base_url, "GET", "/v1/models")
    assert status == 401 and json.loads(body)["error"]["code"] == "invalid_api_key"


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/v1/chat/completions", b"{not json", 400, "the request body must be a JSON object"),
        ("/v1/chat/completions", b"", 400, "the request body must be a JSON object"),
        ("/v1/chat/completions", b'{"messages": []}', 400, "'model' is required and must be a string"),
        ("/v1/chat/completions", b'{"model": "m"}', 400, "'messages' is required and must be an array"),
        ("/v1/embeddings", b'{"model": "m", "input": [1, 2]}', 400,
         "'input' must be a string or a non-empty array of strings"),
        ("/v1/nowhere", b"{}", 404, "unknown path /v1/nowhere"),
    ],
)  # fmt: skip
def test_bad_openai_requests(sim: SimulatorServer, path: str, body: bytes, status: int, message: str) -> None:
    got, data = raw(sim.base_url, "POST", path, body, {"authorization": f"Bearer {KEY}"})
    assert got == status
    assert json.loads(data) == {"error": {"message": message, "type": "invalid_request_error", "param": None,
                                          "code": None if status == 400 else "not_found"}}  # fmt: skip


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[]", "the request body must be a JSON object"),
        (b'{"model": "c", "messages": []}', "max_tokens: field required (a positive integer)"),
        (b'{"model": "c", "max_tokens": 1}', "'messages' is required and must be an array"),
    ],
)
def test_bad_anthropic_requests(sim: SimulatorServer, body: bytes, message: str) -> None:
    status, data = raw(sim.base_url, "POST", "/v1/messages", body, {"x-api-key": KEY})
    assert status == 400
    assert json.loads(data) == {"type": "error", "error": {"type": "invalid_request_error", "message": message}}


# -- the record of what it received ------------------------------------------------------------------------------


def test_every_request_is_recorded(oai: openai.OpenAI, sim: SimulatorServer) -> None:
    before = time.time()
    oai.chat.completions.create(model="gpt-4o-mini", messages=HELLO, max_tokens=1)
    raw(sim.base_url, "POST", "/v1/messages", b"{broken", {"X-Api-Key": KEY, "X-Custom": "yes"})
    first, second = sim.simulator.received
    assert (first["method"], first["path"]) == ("POST", "/v1/chat/completions")
    assert first["body"] == {"model": "gpt-4o-mini", "messages": HELLO, "max_tokens": 1}
    assert first["headers"]["authorization"] == f"Bearer {KEY}"
    assert first["headers"]["content-type"] == "application/json"
    assert before <= first["time"] <= time.time()
    assert second["body"] is None
    assert second["headers"]["x-api-key"] == KEY and second["headers"]["x-custom"] == "yes"


def test_received_over_http(oai: openai.OpenAI, sim: SimulatorServer) -> None:
    oai.embeddings.create(model="e", input="abc")
    status, data = raw(sim.base_url, "GET", "/_sim/received")
    assert status == 200
    records: list[dict[str, Any]] = json.loads(data)
    assert [(r["method"], r["path"], r["body"]["input"]) for r in records] == [("POST", "/v1/embeddings", "abc")]
    assert records[0]["headers"]["authorization"] == f"Bearer {KEY}"
    assert raw(sim.base_url, "DELETE", "/_sim/received") == (204, b"")
    assert sim.simulator.received == []
    assert json.loads(raw(sim.base_url, "GET", "/_sim/received")[1]) == []


def test_recording_can_be_turned_off() -> None:
    with (
        SimulatorServer(Simulator(record=False)) as server,
        openai.OpenAI(base_url=server.base_url + "/v1", api_key="any", max_retries=0) as client,
    ):
        client.chat.completions.create(model="m", messages=HELLO)
        assert server.simulator.received == []
        assert json.loads(raw(server.base_url, "GET", "/_sim/received")[1]) == []


def test_no_key_required_by_default() -> None:
    with (
        SimulatorServer() as server,
        anthropic.Anthropic(base_url=server.base_url, api_key="anything", max_retries=0) as client,
    ):
        assert client.messages.create(model="c", max_tokens=1, messages=HELLO).usage.output_tokens == 1
