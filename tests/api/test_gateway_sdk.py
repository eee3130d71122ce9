"""End to end: the official SDKs, unchanged, against the gateway in front of the simulator over real HTTP."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from tests.servers import RunningGateway, running_gateway, wait_for
from tollgate.simulator import Simulator, SimulatorServer

PROVIDER_KEY = "sk-sim-provider-secret"
ALICE = "tg-alice-" + "a" * 40
CAROL = "tg-carol-" + "c" * 40
CI = "tg-ci-" + "i" * 43
OLD = "tg-old-" + "o" * 42
GONE = "tg-gone-" + "g" * 41
ENVIRON = {
    "SIM_KEY": PROVIDER_KEY,
    "ALICE_KEY": ALICE,
    "CAROL_KEY": CAROL,
    "CI_KEY": CI,
    "OLD_KEY": OLD,
    "GONE_KEY": GONE,
}

CONFIG = """
store: sqlite:///{tmp}/counters.db
providers:
  sim-openai: {{type: openai-compatible, base_url: "{sim}/v1", api_key: env:SIM_KEY}}
  sim-anthropic: {{type: anthropic, base_url: "{sim}", api_key: env:SIM_KEY}}
  sim-slow: {{type: openai-compatible, base_url: "{sim}/v1", api_key: env:SIM_KEY, timeout: 0.3}}
  dead: {{type: openai-compatible, base_url: "http://127.0.0.1:9/v1", api_key: env:SIM_KEY, connect_timeout: 1}}
models:
  - {{name: gpt-4o-mini, provider: sim-openai}}
  - {{name: fast, provider: sim-openai, upstream_model: gpt-4o-mini}}
  - {{name: claude-haiku-4-5, provider: sim-anthropic}}
  - {{name: text-embedding-3-small, provider: sim-openai}}
  - {{name: broken, provider: sim-openai, upstream_model: "gpt-4o-mini+sim-status-500"}}
  - {{name: busy, provider: sim-openai, upstream_model: "gpt-4o-mini+sim-status-429"}}
  - {{name: claude-busy, provider: sim-anthropic, upstream_model: "claude-haiku-4-5+sim-status-429"}}
  - {{name: slow, provider: sim-slow, upstream_model: "gpt-4o-mini+sim-latency-2000"}}
  - {{name: unreachable, provider: dead}}
  - name: resilient
    deployments:
      - {{provider: dead, upstream_model: gpt-4o-mini}}
      - {{provider: sim-openai, upstream_model: "gpt-4o-mini+sim-status-500"}}
      - {{provider: sim-openai, upstream_model: "gpt-4o-mini+sim-cached-3"}}
  - {{name: cut, provider: sim-openai, upstream_model: "gpt-4o-mini+sim-disconnect-after-3"}}
  - {{name: claude-cut, provider: sim-anthropic, upstream_model: "claude-haiku-4-5+sim-disconnect-after-3"}}
  - {{name: dribble, provider: sim-openai, upstream_model: "gpt-4o-mini+sim-chunk-delay-200"}}
  - name: dropped
    deployments:
      - {{provider: sim-openai, upstream_model: "gpt-4o-mini+sim-disconnect-after-0"}}
      - {{provider: sim-openai, upstream_model: gpt-4o-mini}}
  - {{name: claude-dribble, provider: sim-anthropic, upstream_model: "claude-haiku-4-5+sim-chunk-delay-200"}}
keys:
  - {{name: alice, key: env:ALICE_KEY, developer: alice, team: payments, env: dev}}
  - {{name: carol, key: env:CAROL_KEY, developer: carol, team: search, env: dev, models: [fast]}}
  - {{name: ci, key: env:CI_KEY, team: payments, env: ci, repo_from_header: true}}
  - {{name: old, key: env:OLD_KEY, expires: 2020-01-01}}
  - {{name: gone, key: env:GONE_KEY, revoked: true}}
"""

MESSAGES = [{"role": "user", "content": "Say hello to the gateway."}]


@pytest.fixture
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer(Simulator(require_key=PROVIDER_KEY)) as server:
        yield server


@pytest.fixture
def gw(tmp_path: Path, sim: SimulatorServer) -> Iterator[RunningGateway]:
    with running_gateway(tmp_path, CONFIG.format(tmp=tmp_path, sim=sim.base_url), ENVIRON) as running:
        yield running


def oai(gw: RunningGateway, key: str = ALICE, **kw: object) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url + "/v1", api_key=key, max_retries=0, **kw)  # type: ignore[arg-type]


def ant(gw: RunningGateway, key: str = ALICE) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.base_url, api_key=key, max_retries=0)


def last_received(sim: SimulatorServer) -> dict[str, object]:
    received = sim.simulator.received
    assert received, "the provider received nothing"
    return received[-1]  # type: ignore[no-any-return]


def assert_credentials_swapped(request: dict[str, object], anthropic_style: bool = False) -> None:
    headers = request["headers"]
    assert isinstance(headers, dict)
    if anthropic_style:
        assert headers["x-api-key"] == PROVIDER_KEY
        assert "authorization" not in headers
    else:
        assert headers["authorization"] == f"Bearer {PROVIDER_KEY}"
        assert "x-api-key" not in headers
    assert not any("tg-" in str(v) for v in headers.values()), headers


# -- OpenAI ------------------------------------------------------------------------------------------------------


def test_chat_completion_alias_mapped_credentials_swapped_and_metered(gw: RunningGateway, sim: SimulatorServer) -> None:
    completion = oai(gw).chat.completions.create(model="fast", messages=MESSAGES, max_tokens=5)  # type: ignore[arg-type]
    assert completion.choices[0].message.content
    request = last_received(sim)
    assert request["path"] == "/v1/chat/completions"
    assert request["body"]["model"] == "gpt-4o-mini"  # type: ignore[index]
    assert request["body"]["messages"] == MESSAGES  # type: ignore[index]
    assert_credentials_swapped(request)
    wait_for(lambda: len(gw.records) == 1)
    record = gw.records[0]
    assert record.model == "fast" and record.upstream_model == "gpt-4o-mini"
    assert record.key_name == "alice" and record.developer == "alice" and record.team == "payments"
    assert completion.usage is not None
    assert record.usage.input_tokens == completion.usage.prompt_tokens
    assert record.usage.output_tokens == completion.usage.completion_tokens == 5
    assert record.usage_source == "provider" and record.status == 200 and record.outcome == "ok"
    assert record.streamed is False and record.deployment == "sim-openai/gpt-4o-mini"


def test_chat_stream_hides_the_usage_chunk_the_gateway_asked_for(gw: RunningGateway, sim: SimulatorServer) -> None:
    chunks = list(oai(gw).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=6, stream=True))  # type: ignore[call-overload]
    assert chunks and all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert len(text.split()) == 6
    body = last_received(sim)["body"]
    assert body["stream_options"] == {"include_usage": True}  # type: ignore[index]
    wait_for(lambda: len(gw.records) == 1)
    record = gw.records[0]
    assert record.streamed is True and record.usage_source == "provider"
    assert record.usage.output_tokens == 6 and record.usage.input_tokens > 0
    assert record.ttft_ms is not None and record.ttft_ms > 0


def test_chat_stream_keeps_the_usage_chunk_the_caller_asked_for(gw: RunningGateway) -> None:
    chunks = list(
        oai(gw).chat.completions.create(  # type: ignore[call-overload]
            model="gpt-4o-mini", messages=MESSAGES, max_tokens=3, stream=True, stream_options={"include_usage": True}
        )
    )
    usage = [c.usage for c in chunks if c.usage is not None]
    assert len(usage) == 1 and usage[0].completion_tokens == 3
    wait_for(lambda: len(gw.records) == 1)
    assert gw.records[0].usage.input_tokens == usage[0].prompt_tokens


def test_completions_embeddings_and_models(gw: RunningGateway, sim: SimulatorServer) -> None:
    client = oai(gw)
    completion = client.completions.create(model="gpt-4o-mini", prompt="Once upon a time", max_tokens=4)
    assert completion.usage is not None and completion.usage.completion_tokens == 4
    embedding = client.embeddings.create(model="text-embedding-3-small", input=["alpha", "beta"])
    assert len(embedding.data) == 2
    assert last_received(sim)["path"] == "/v1/embeddings"
    wait_for(lambda: len(gw.records) == 2)
    assert gw.records[1].usage.input_tokens == embedding.usage.prompt_tokens
    assert gw.records[1].usage.output_tokens == 0
    names = [m.id for m in client.models.list()]
    assert "gpt-4o-mini" in names and "claude-haiku-4-5" in names
    assert [m.id for m in oai(gw, CAROL).models.list()] == ["fast"]


def test_responses_api_stream_and_not(gw: RunningGateway) -> None:
    client = oai(gw)
    response = client.responses.create(model="gpt-4o-mini", input="Write a haiku", max_output_tokens=7)
    assert response.usage is not None and response.usage.output_tokens == 7
    events = list(client.responses.create(model="gpt-4o-mini", input="Write a haiku", max_output_tokens=5, stream=True))
    completed = [e for e in events if e.type == "response.completed"]
    assert len(completed) == 1
    wait_for(lambda: len(gw.records) == 2)
    assert gw.records[0].usage.output_tokens == 7
    assert gw.records[1].usage.output_tokens == 5 and gw.records[1].usage_source == "provider"


def test_repo_from_header_only_for_ci_keys(gw: RunningGateway) -> None:
    oai(gw, CI, default_headers={"X-Tollgate-Repo": "payments-api"}).chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        max_tokens=1,  # type: ignore[arg-type]
    )
    oai(gw, ALICE, default_headers={"X-Tollgate-Repo": "payments-api"}).chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        max_tokens=1,  # type: ignore[arg-type]
    )
    wait_for(lambda: len(gw.records) == 2)
    assert gw.records[0].repo == "payments-api" and gw.records[0].env == "ci"
    assert gw.records[1].repo is None


# -- Anthropic ---------------------------------------------------------------------------------------------------


def test_anthropic_messages_with_x_api_key(gw: RunningGateway, sim: SimulatorServer) -> None:
    message = ant(gw).messages.create(model="claude-haiku-4-5", max_tokens=8, messages=MESSAGES)  # type: ignore[arg-type]
    assert message.usage.output_tokens == 8
    request = last_received(sim)
    assert request["path"] == "/v1/messages"
    assert_credentials_swapped(request, anthropic_style=True)
    wait_for(lambda: len(gw.records) == 1)
    assert gw.records[0].usage.input_tokens == message.usage.input_tokens
    assert gw.records[0].usage.output_tokens == 8


def test_anthropic_stream_usage_from_message_start_and_delta(gw: RunningGateway) -> None:
    with ant(gw).messages.stream(model="claude-haiku-4-5", max_tokens=5, messages=MESSAGES) as stream:  # type: ignore[arg-type]
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert len(text.split()) == 5
    wait_for(lambda: len(gw.records) == 1)
    record = gw.records[0]
    assert record.streamed and record.usage_source == "provider"
    assert record.usage.output_tokens == final.usage.output_tokens == 5
    assert record.usage.input_tokens == final.usage.input_tokens


def test_anthropic_count_tokens_passes_through_unmetered(gw: RunningGateway) -> None:
    counted = ant(gw).messages.count_tokens(model="claude-haiku-4-5", messages=MESSAGES)  # type: ignore[arg-type]
    assert counted.input_tokens > 0
    wait_for(lambda: len(gw.records) == 1)
    assert gw.records[0].usage.total_tokens == 0


# -- errors as the SDKs' own exceptions --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "model", "exc"),
    [
        ("tg-unknown-" + "x" * 40, "gpt-4o-mini", openai.AuthenticationError),
        (OLD, "gpt-4o-mini", openai.AuthenticationError),
        (GONE, "gpt-4o-mini", openai.AuthenticationError),
        (CAROL, "gpt-4o-mini", openai.PermissionDeniedError),
        (ALICE, "no-such-model", openai.NotFoundError),
        (ALICE, "claude-haiku-4-5", openai.BadRequestError),
        (ALICE, "broken", openai.InternalServerError),
        (ALICE, "busy", openai.RateLimitError),
        (ALICE, "unreachable", openai.APIStatusError),
        (ALICE, "slow", openai.APIStatusError),
    ],
)
def test_openai_errors_surface_as_sdk_exceptions(
    gw: RunningGateway, sim: SimulatorServer, key: str, model: str, exc: type[Exception]
) -> None:
    with pytest.raises(exc) as info:
        oai(gw, key).chat.completions.create(model=model, messages=MESSAGES, max_tokens=2)  # type: ignore[arg-type]
    error = info.value
    assert isinstance(error, openai.APIStatusError)
    assert error.response.headers["x-request-id"].startswith("req_")
    text = error.response.text
    assert PROVIDER_KEY not in text and "127.0.0.1" not in text and "Traceback" not in text
    if model == "unreachable":
        assert error.status_code == 502
    if model == "slow":
        assert error.status_code == 504


@pytest.mark.parametrize(
    ("key", "model", "exc"),
    [
        ("tg-unknown-" + "x" * 40, "claude-haiku-4-5", anthropic.AuthenticationError),
        (CAROL, "claude-haiku-4-5", anthropic.PermissionDeniedError),
        (ALICE, "nope", anthropic.NotFoundError),
        (ALICE, "claude-busy", anthropic.RateLimitError),
    ],
)
def test_anthropic_errors_surface_as_sdk_exceptions(
    gw: RunningGateway, key: str, model: str, exc: type[Exception]
) -> None:
    with pytest.raises(exc) as info:
        ant(gw, key).messages.create(model=model, max_tokens=2, messages=MESSAGES)  # type: ignore[arg-type]
    error = info.value
    assert isinstance(error, anthropic.APIStatusError)
    body = error.response.json()
    assert body["type"] == "error" and body["error"]["type"]


def test_malformed_json_missing_model_and_oversized_body(gw: RunningGateway, tmp_path: Path) -> None:
    headers = {"authorization": f"Bearer {ALICE}", "content-type": "application/json"}
    url = gw.base_url + "/v1/chat/completions"
    bad = httpx.post(url, content=b"{not json", headers=headers)
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
    assert bad.headers["x-request-id"].startswith("req_")
    missing = httpx.post(url, json={"messages": MESSAGES}, headers=headers)
    assert missing.status_code == 400 and "model" in missing.json()["error"]["message"]
    anthropic_bad = httpx.post(gw.base_url + "/v1/messages", content=b"[]", headers=headers)
    assert anthropic_bad.status_code == 400 and anthropic_bad.json()["type"] == "error"
    big = httpx.post(url, content=b"x" * (16 * 1024 * 1024 + 1), headers=headers)
    assert big.status_code == 413
    assert httpx.get(gw.base_url + "/nowhere").status_code == 404
    assert httpx.get(gw.base_url + "/healthz").json() == {"status": "ok"}
    assert httpx.get(gw.base_url + "/readyz").status_code == 200


# -- routing, streams cut, streams relayed as they arrive --------------------------------------------------------


def test_fallback_to_next_deployment(gw: RunningGateway, sim: SimulatorServer) -> None:
    completion = oai(gw).chat.completions.create(model="resilient", messages=MESSAGES, max_tokens=2)  # type: ignore[arg-type]
    assert completion.choices[0].message.content
    wait_for(lambda: len(gw.records) == 1)
    record = gw.records[0]
    assert record.upstream_model == "gpt-4o-mini+sim-cached-3"
    assert record.usage.cached_input_tokens == 3
    assert [r["body"]["model"] for r in sim.simulator.received] == [  # type: ignore[index]
        "gpt-4o-mini+sim-status-500",
        "gpt-4o-mini+sim-cached-3",
    ]


def test_no_fallback_once_a_deployment_received_the_request(gw: RunningGateway, sim: SimulatorServer) -> None:
    # The first deployment takes the request and drops the connection without answering: it may be generating (and
    # billing), so trying the next deployment could buy the answer twice. The caller gets the error instead.
    with pytest.raises(openai.APIError):
        oai(gw).chat.completions.create(model="dropped", messages=MESSAGES, max_tokens=2)  # type: ignore[arg-type]
    wait_for(lambda: len(gw.records) == 1)
    assert gw.records[0].outcome == "upstream_error"
    assert [r["body"]["model"] for r in sim.simulator.received] == ["gpt-4o-mini+sim-disconnect-after-0"]  # type: ignore[index]


def test_upstream_cut_mid_stream_raises_in_sdk_and_counts_what_was_relayed(gw: RunningGateway) -> None:
    received: list[str] = []
    with pytest.raises(openai.APIError):
        for chunk in oai(gw).chat.completions.create(model="cut", messages=MESSAGES, max_tokens=10, stream=True):  # type: ignore[call-overload]
            if chunk.choices:
                received.append(chunk.choices[0].delta.content or "")
    assert len("".join(received).split()) == 3
    wait_for(lambda: len(gw.records) == 1)
    record = gw.records[0]
    assert record.outcome == "upstream_error" and record.usage_source == "counted"
    assert record.usage.output_tokens >= 3 and record.usage.input_tokens > 0


def test_anthropic_upstream_cut_mid_stream(gw: RunningGateway) -> None:
    with (
        pytest.raises(anthropic.APIError),
        ant(gw).messages.stream(
            model="claude-cut",
            max_tokens=10,
            messages=MESSAGES,  # type: ignore[arg-type]
        ) as stream,
    ):
        for _ in stream.text_stream:
            pass
    wait_for(lambda: len(gw.records) == 1)
    record = gw.records[0]
    assert record.outcome == "upstream_error" and record.usage_source == "counted"
    assert record.usage.output_tokens >= 3 and record.usage.input_tokens > 0


def test_stream_is_relayed_as_it_arrives_and_client_disconnect_settles(gw: RunningGateway) -> None:
    body = {"model": "dribble", "messages": MESSAGES, "max_tokens": 20, "stream": True}
    headers = {"authorization": f"Bearer {ALICE}"}
    with httpx.stream("POST", gw.base_url + "/v1/chat/completions", json=body, headers=headers) as response:
        lines = response.iter_lines()
        first = next(line for line in lines if line.startswith("data:"))
        assert '"content"' in first or '"role"' in first
        # 20 chunks 200 ms apart are still coming: nothing was buffered to the end, nothing settled yet.
        assert gw.records == []
    # Leaving the block closed the connection mid-stream.
    wait_for(lambda: len(gw.records) == 1)
    record = gw.records[0]
    assert record.outcome == "client_disconnect"
    assert record.usage_source == "counted" and record.usage.input_tokens > 0


def _settled(db: Path, request_id: str) -> bool:
    """The request's ledger entry is in the outbox or already moved on to the ledger (same SQLite file here)."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        found = conn.execute(
            "SELECT 1 FROM outbox WHERE request_id = ? UNION ALL SELECT 1 FROM usage_ledger WHERE request_id = ?",
            (request_id, request_id),
        ).fetchall()
    return bool(found)


@pytest.mark.parametrize(
    ("path", "model", "last_line"),
    [("/v1/chat/completions", "dribble", "data: [DONE]"), ("/v1/messages", "claude-dribble", "event: message_stop")],
)
def test_a_stream_is_settled_before_its_terminating_event_is_relayed(
    gw: RunningGateway, tmp_path: Path, path: str, model: str, last_line: str
) -> None:
    # A client may stop reading at the terminating event (the synchronous openai SDK does): by then the request must
    # already be charged, so a gateway dying right after sending it loses nothing. The test holds the store's write
    # lock from the first event on: the terminating event must not arrive before the lock is released.
    db = tmp_path / "counters.db"
    body = {"model": model, "messages": MESSAGES, "max_tokens": 3, "stream": True}
    headers = {"authorization": f"Bearer {ALICE}", "x-api-key": ALICE, "anthropic-version": "2023-06-01"}
    with httpx.stream("POST", gw.base_url + path, json=body, headers=headers, timeout=30) as response:
        request_id = response.headers["x-request-id"]
        lines = response.iter_lines()
        next(line for line in lines if line.startswith("data:"))
        lock = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
        lock.execute("BEGIN IMMEDIATE")
        released = threading.Event()

        def release() -> None:
            time.sleep(1.5)
            released.set()
            lock.execute("ROLLBACK")
            lock.close()

        releaser = threading.Thread(target=release)
        releaser.start()
        try:
            next(line for line in lines if line == last_line)
            assert released.is_set(), "the terminating event went out before the settle"
            assert _settled(db, request_id)
        finally:
            releaser.join()


def test_every_response_has_a_request_id(gw: RunningGateway) -> None:
    with contextlib.closing(httpx.Client()) as client:
        for path in ("/healthz", "/v1/models", "/nowhere"):
            assert client.get(gw.base_url + path).headers["x-request-id"].startswith("req_")
