"""Raw ASGI 3 plumbing the simulator needs: types, reading a body, writing JSON, and dropping a connection."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON_TYPE = (b"content-type", b"application/json")
SSE_HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]
DROP_WAIT_SECONDS = 5.0


async def read_body(receive: Receive) -> bytes:
    """The whole request body (one message in the common case)."""
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        return body
    parts = [body]
    while message.get("more_body", False):
        message = await receive()
        parts.append(message.get("body", b""))
    return b"".join(parts)


async def send_json(send: Send, status: int, payload: Any, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = orjson.dumps(payload)
    response_headers = [JSON_TYPE, (b"content-length", str(len(body)).encode())]
    if headers:
        response_headers.extend(headers)
    await send({"type": "http.response.start", "status": status, "headers": response_headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def send_empty(send: Send, status: int) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def drop_connection(send: Send, receive: Receive) -> None:
    """Close the TCP connection now, leaving the response unfinished (a stream without its last chunk).

    ASGI has no message for this, so under uvicorn we close the connection's transport (``send`` is a method of
    uvicorn's request cycle, which holds it) and then wait for the server to report the disconnect, so that it
    does not also log "returned without completing response". Under any other server we simply return early,
    which makes it close the connection too (and log that line).
    """
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    close = getattr(transport, "close", None)  # duck-typed: uvloop's transports are not asyncio classes
    if not callable(close):
        return
    close()  # sends what is buffered, then FIN: the client sees a body cut short
    async with asyncio.timeout(DROP_WAIT_SECONDS):
        while (await receive())["type"] != "http.disconnect":
            pass
