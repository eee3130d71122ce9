"""The simulator itself: a raw ASGI 3 app that answers the OpenAI and Anthropic APIs deterministically.

Per request: route by path → read the body → record it → check the provider key → parse JSON → apply the
model's ``sim-`` directives → wait the latency → answer (an error, a dropped connection, JSON, or a stream
paced chunk by chunk). The test control plane lives under ``/_sim/``: ``GET`` / ``DELETE /_sim/received``.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from tollgate.errors import BadRequest
from tollgate.simulator import anthropic_wire, endpoints, openai_wire
from tollgate.simulator.asgi import (
    SSE_HEADERS,
    Receive,
    Scope,
    Send,
    drop_connection,
    read_body,
    send_empty,
    send_json,
)
from tollgate.simulator.behaviour import DEFAULT_REPLY_WORDS, Behaviour, parse_behaviour
from tollgate.simulator.record import DEFAULT_MAX_RECORDS, RequestLog
from tollgate.simulator.sse import StreamPlan
from tollgate.types import Dialect

DEFAULT_MODELS: tuple[str, ...] = (
    "gpt-4o-mini",
    "gpt-4o",
    "text-embedding-3-small",
    "claude-haiku-4-5",
    "claude-sonnet-4-5",
)
RECEIVED_PATH = "/_sim/received"


@dataclass(frozen=True, slots=True)
class _Route:
    method: str
    dialect: Dialect
    endpoint: endpoints.Endpoint | None  # None: GET /v1/models, which takes no body


_ROUTES: dict[str, _Route] = {
    "/v1/chat/completions": _Route("POST", Dialect.OPENAI, endpoints.chat_completions),
    "/v1/completions": _Route("POST", Dialect.OPENAI, endpoints.completions),
    "/v1/embeddings": _Route("POST", Dialect.OPENAI, endpoints.embeddings),
    "/v1/responses": _Route("POST", Dialect.OPENAI, endpoints.responses),
    "/v1/models": _Route("GET", Dialect.OPENAI, None),
    "/v1/messages": _Route("POST", Dialect.ANTHROPIC, endpoints.messages),
    "/v1/messages/count_tokens": _Route("POST", Dialect.ANTHROPIC, endpoints.count_tokens),
}


def _error_body(dialect: Dialect, status: int, message: str) -> dict[str, Any]:
    if dialect is Dialect.ANTHROPIC:
        return anthropic_wire.error_body(status, message)
    return openai_wire.error_body(status, message)


def _dialect_of(path: str) -> Dialect:
    return Dialect.ANTHROPIC if path.startswith("/v1/messages") else Dialect.OPENAI


def _headers(scope: Scope) -> dict[str, str]:
    return {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}


class Simulator:
    """The ASGI app (the instance itself, or ``.app``). Keyword arguments set the default ``Behaviour``, which
    ``sim-`` directives in a request's model name override field by field; ``default`` may be reassigned."""

    def __init__(
        self,
        *,
        record: bool = True,
        require_key: str | None = None,
        max_records: int = DEFAULT_MAX_RECORDS,
        models: Sequence[str] = DEFAULT_MODELS,
        latency_ms: float = 0.0,
        chunk_delay_ms: float = 0.0,
        reply_words: int = DEFAULT_REPLY_WORDS,
        status: int | None = None,
        disconnect_after: int | None = None,
        cached_tokens: int = 0,
        cache_write_tokens: int = 0,
        reasoning_tokens: int = 0,
    ) -> None:
        self.record = record
        self._require_key = require_key
        self._accepted = (
            set()
            if require_key is None
            else {(b"authorization", b"Bearer " + require_key.encode()), (b"x-api-key", require_key.encode())}
        )
        self.models = tuple(models)
        self.default = Behaviour(
            status=status,
            latency_ms=latency_ms,
            chunk_delay_ms=chunk_delay_ms,
            disconnect_after=disconnect_after,
            cached_tokens=cached_tokens,
            cache_write_tokens=cache_write_tokens,
            reasoning_tokens=reasoning_tokens,
            reply_words=reply_words,
        )
        self._log = RequestLog(max_records)
        self._serial = itertools.count(1)

    @property
    def require_key(self) -> str | None:
        """The provider key every API request must carry (``None``: any or none is accepted)."""
        return self._require_key

    @property
    def app(self) -> Simulator:
        return self

    @property
    def received(self) -> list[dict[str, Any]]:
        """The recorded requests, oldest first (a copy)."""
        return self._log.snapshot()

    def clear_received(self) -> None:
        self._log.clear()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await _lifespan(receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        if path.startswith("/_sim/"):
            await self._control(scope, send)
            return
        raw = await read_body(receive)
        body = _parse_json(raw)
        if self.record:
            self._log.add(
                {"method": scope["method"], "path": path, "headers": _headers(scope), "body": body, "time": time.time()}
            )
        route = _ROUTES.get(path)
        dialect = route.dialect if route is not None else _dialect_of(path)
        if route is None:
            await self._error(send, dialect, 404, f"unknown path {path}")
        elif scope["method"] != route.method:
            await self._error(send, dialect, 405, f"method {scope['method']} not allowed on {path}")
        elif self._accepted and not self._authorized(scope):
            await self._error(send, dialect, 401, "invalid or missing API key")
        elif route.endpoint is None:
            await self._pause(self.default.latency_ms)
            await send_json(send, 200, openai_wire.models_list(self.models))
        elif not isinstance(body, dict):
            await self._error(send, dialect, 400, "the request body must be a JSON object")
        else:
            await self._call(route.endpoint, dialect, body, receive, send)

    async def _call(
        self, endpoint: endpoints.Endpoint, dialect: Dialect, body: dict[str, Any], receive: Receive, send: Send
    ) -> None:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            await self._error(send, dialect, 400, "'model' is required and must be a string")
            return
        try:
            behaviour = parse_behaviour(model, self.default)
        except ValueError as exc:
            await self._error(send, dialect, 400, str(exc))
            return
        call = endpoints.Call(model, body, behaviour, next(self._serial), int(time.time()))
        try:
            outcome = endpoint(call)
        except BadRequest as exc:
            await self._error(send, dialect, 400, exc.message)
            return
        await self._pause(behaviour.latency_ms)
        if behaviour.status is not None:
            await self._error(send, dialect, behaviour.status, f"simulated error (sim-status-{behaviour.status})")
        elif isinstance(outcome, StreamPlan):
            await _stream(outcome, behaviour, receive, send)
        elif behaviour.disconnect_after is not None:
            await drop_connection(send, receive)
        else:
            await send_json(send, 200, outcome)

    def _authorized(self, scope: Scope) -> bool:
        """``Authorization: Bearer <key>`` or ``x-api-key: <key>`` carries the required key."""
        return any((name.lower(), value) in self._accepted for name, value in scope["headers"])

    async def _control(self, scope: Scope, send: Send) -> None:
        path, method = scope["path"], scope["method"]
        if path == RECEIVED_PATH and method == "GET":
            await send_json(send, 200, self._log.snapshot())
        elif path == RECEIVED_PATH and method == "DELETE":
            self._log.clear()
            await send_empty(send, 204)
        else:
            await self._error(send, Dialect.OPENAI, 404, f"unknown control path {method} {path}")

    @staticmethod
    async def _error(send: Send, dialect: Dialect, status: int, message: str) -> None:
        headers = [(b"retry-after", b"1")] if status == 429 else None
        await send_json(send, status, _error_body(dialect, status, message), headers)

    @staticmethod
    async def _pause(milliseconds: float) -> None:
        if milliseconds > 0:
            await asyncio.sleep(milliseconds / 1000)


def _parse_json(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


async def _stream(plan: StreamPlan, behaviour: Behaviour, receive: Receive, send: Send) -> None:
    """Write the plan one event per ASGI message, pacing content; cut it short for ``sim-disconnect-after``."""
    await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
    for event in plan.head:
        await send({"type": "http.response.body", "body": event, "more_body": True})
    content = plan.content
    cut = behaviour.disconnect_after
    if cut is not None:
        content = content[:cut]
    delay = behaviour.chunk_delay_ms / 1000
    for index, event in enumerate(content):
        if delay > 0 and index > 0:
            await asyncio.sleep(delay)
        await send({"type": "http.response.body", "body": event, "more_body": True})
    if cut is not None:
        await drop_connection(send, receive)
        return
    for event in plan.tail:
        await send({"type": "http.response.body", "body": event, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _lifespan(receive: Receive, send: Send) -> None:
    """Nothing to start or stop; acknowledge both, for servers run with lifespan on."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
