"""The gateway's ASGI application: routing, body reading, response writing, stream relay.

A plain ASGI callable rather than a web framework: the proxy routes are few and fixed, and every microsecond here
is paid by every request (docs/decisions/0001-raw-asgi-edge-on-uvicorn.md). Handlers raise; ``render_error`` answers.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson

from tollgate.api.errors import render_error, stream_error_event
from tollgate.errors import NotFound, PayloadTooLarge, TollgateError
from tollgate.logs import request_id_var
from tollgate.providers import ENDPOINTS, Endpoint
from tollgate.services.authenticator import Authenticator
from tollgate.services.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from tollgate.services.metrics import MetricsRegistry
from tollgate.services.proxy import FullResponse, ProxyService, StreamingResponse
from tollgate.services.router import ModelRouter
from tollgate.types import Dialect

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_log = logging.getLogger("tollgate.api")
_JSON = b"application/json"


def new_request_id() -> str:
    """``req_``, the Unix time in milliseconds (12 hex digits) and 80 random bits (20 hex digits).

    Time first, so ids sort by when the requests arrived and the ledger's unique index on ``request_id`` grows at its
    right-hand end instead of at a random page per row (decision 0055). The random part comes from ``random`` (seeded
    from the OS at start, reseeded in a forked child), not ``os.urandom``: the ids need to be unique, not secret, and
    a system call here lets the store's thread take the GIL in the middle of every request (bench/results.md)."""
    return f"req_{time.time_ns() // 1_000_000:012x}{random.getrandbits(80):020x}"


def _dialect_for(path: str, headers: Mapping[str, str]) -> Dialect:
    if path.startswith("/v1/messages") or "anthropic-version" in headers:
        return Dialect.ANTHROPIC
    return Dialect.OPENAI


class GatewayApp:
    """ASGI 3 application. ``startup``/``shutdown`` run in the lifespan; ``ready`` answers ``/readyz``; ``metrics``
    answers ``GET /metrics`` (no key needed, like the health checks: keep the port off the public internet or
    filter the path in front of it)."""

    def __init__(
        self,
        *,
        proxy: ProxyService,
        authenticator: Authenticator,
        router: ModelRouter,
        max_body_bytes: int,
        startup: Callable[[], Awaitable[None]],
        shutdown: Callable[[], Awaitable[None]],
        ready: Callable[[], Awaitable[None]],
        metrics: MetricsRegistry | None = None,
    ) -> None:
        self._proxy = proxy
        self._authenticator = authenticator
        self._router = router
        self._max_body = max_body_bytes
        self._startup = startup
        self._shutdown = shutdown
        self._ready = ready
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self._startup()
                except Exception as exc:
                    _log.error("startup failed: %s", exc)
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = new_request_id()
        request_id_var.set(request_id)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        path: str = scope["path"]
        method: str = scope["method"]
        dialect = _dialect_for(path, headers)
        try:
            endpoint = ENDPOINTS.get(path)
            if endpoint is not None and method == "POST":
                await self._proxy_route(endpoint, headers, receive, send, request_id)
            elif method == "GET" and path == "/v1/models":
                await self._models(headers, send, request_id, dialect)
            elif method == "GET" and path == "/healthz":
                await _send_json(send, 200, b'{"status":"ok"}', request_id)
            elif method == "GET" and path == "/readyz":
                await self._ready()
                await _send_json(send, 200, b'{"status":"ready"}', request_id)
            elif method == "GET" and path == "/metrics" and self._metrics is not None:
                body = self._metrics.render().encode()
                await _send_json(send, 200, body, request_id, content_type=METRICS_CONTENT_TYPE.encode())
            else:
                raise NotFound(f"no route for {method} {path}")
        except Exception as exc:
            status, extra, body = render_error(exc, dialect, request_id)
            await _send_json(send, status, body, request_id, extra)

    async def _proxy_route(
        self, endpoint: Endpoint, headers: Mapping[str, str], receive: Receive, send: Send, request_id: str
    ) -> None:
        body = await self._read_body(headers, receive)
        response = await self._proxy.handle(endpoint, headers, body, request_id)
        if isinstance(response, FullResponse):
            try:
                await _send_json(
                    send, response.status, response.body, request_id, response.headers, response.content_type.encode()
                )
            finally:
                await response.after()  # the store's confirmation and the usage line, once the answer is out
        else:
            await _relay(response, endpoint.dialect, receive, send, request_id)

    async def _read_body(self, headers: Mapping[str, str], receive: Receive) -> bytes:
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self._max_body:
            raise PayloadTooLarge(f"the request body is over the limit of {self._max_body} bytes")
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise TollgateError("the client went away before sending its request")
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > self._max_body:
                raise PayloadTooLarge(f"the request body is over the limit of {self._max_body} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _models(self, headers: Mapping[str, str], send: Send, request_id: str, dialect: Dialect) -> None:
        key = self._authenticator.authenticate(headers)
        names = [name for name in self._router.model_names if key.may_use(name)]
        if dialect is Dialect.ANTHROPIC:
            data: list[dict[str, object]] = [
                {"type": "model", "id": n, "display_name": n, "created_at": "1970-01-01T00:00:00Z"} for n in names
            ]
            payload: dict[str, object] = {
                "data": data,
                "has_more": False,
                "first_id": names[0] if names else None,
                "last_id": names[-1] if names else None,
            }
        else:
            payload = {
                "object": "list",
                "data": [{"id": n, "object": "model", "created": 0, "owned_by": "tollgate"} for n in names],
            }
        await _send_json(send, 200, orjson.dumps(payload), request_id)


async def _send_json(
    send: Send,
    status: int,
    body: bytes,
    request_id: str,
    extra: Mapping[str, str] | None = None,
    content_type: bytes = _JSON,
) -> None:
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", request_id.encode()),
    ]
    if extra:
        headers.extend((k.encode(), v.encode()) for k, v in extra.items())
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _relay(response: StreamingResponse, dialect: Dialect, receive: Receive, send: Send, request_id: str) -> None:
    """Relay the stream as it arrives; settle in every case (end, upstream failure, client disconnect)."""
    headers = [
        (b"content-type", response.content_type.encode()),
        (b"cache-control", b"no-cache"),
        (b"x-request-id", request_id.encode()),
        *((k.encode(), v.encode()) for k, v in response.headers.items()),
    ]
    stream = response.stream
    disconnected = False
    try:
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        pump = asyncio.ensure_future(_pump(stream, send))
        watch = asyncio.ensure_future(_wait_disconnect(receive))
        done, _ = await asyncio.wait((pump, watch), return_when=asyncio.FIRST_COMPLETED)
        if pump in done:
            watch.cancel()
            pump.result()
        else:
            disconnected = True
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)
    except OSError:
        disconnected = True  # the server reports a send to a closed connection this way
    except Exception as exc:
        # The stream has started: end it with an error event rather than a new response.
        await send(
            {"type": "http.response.body", "body": stream_error_event(exc, dialect, request_id), "more_body": True}
        )
    finally:
        after = await stream.aclose(disconnected=disconnected)
    try:
        if not disconnected:
            await send({"type": "http.response.body", "body": b""})
    finally:
        await after()


async def _pump(stream: Any, send: Send) -> None:
    async for chunk in stream:
        await send({"type": "http.response.body", "body": chunk, "more_body": True})


async def _wait_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
