"""One exchange of the HTTP/1.1 client (``upstream/http1.py``) being read: ``Response``, fed by its ``Connection``.

The parser's callbacks fill it (informational heads such as 100 and 103 are skipped); the caller waits for the head,
then takes the body as it arrives. ``read_s`` is the longest wait for the head and between two arrivals of body bytes.
Flow control: reading pauses while more than 256 KiB of body is buffered unread and resumes when it is taken.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Final

import httptools

from tollgate.upstream.http1_wire import (
    ClosedBeforeResponse,
    Headers,
    HttpError,
    ProtocolError,
    ReadError,
    ReadTimeout,
)

if TYPE_CHECKING:
    from tollgate.upstream.http1 import Connection

HIGH_WATER: Final = 256 * 1024  # unread body bytes above which reading pauses


class Response:
    """One exchange on one connection: the parser's callbacks fill it, the caller reads it; always ``close()`` it."""

    def __init__(self, connection: Connection, read_s: float) -> None:
        self._connection = connection
        self._loop = connection.loop
        self._read_s = read_s
        self._parser = httptools.HttpResponseParser(self)
        self._raw: list[tuple[bytes, bytes]] = []
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._waiter: asyncio.Future[None] | None = None
        self._error: HttpError | None = None
        self._informational = False
        self._head_done = False
        self._complete = False
        self._keep_alive = False
        self._paused = False
        self._done = False
        self.received = False  # any byte of the response arrived
        self.status = 0
        self.headers = Headers(self._raw)

    # -- the caller's side

    async def wait_head(self) -> None:
        while not self._head_done:
            if self._error is not None:
                raise self._error
            await self._wait()

    async def next_chunk(self) -> bytes:
        """Every body byte buffered so far, as one bytes (waiting for some); ``b""`` once the body has ended."""
        buffer = self._buffer
        while not buffer:
            if self._error is not None:
                raise self._error
            if self._complete:
                self._finish()
                return b""
            await self._wait()
        data = buffer[0] if len(buffer) == 1 else b"".join(buffer)
        buffer.clear()
        self._buffered = 0
        if self._paused:
            self._paused = False
            self._connection.resume_reading()
        return data

    async def read(self) -> bytes:
        parts = []
        while chunk := await self.next_chunk():
            parts.append(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def close(self) -> None:
        """Give the connection back if the response was received whole and is keep-alive, else close it."""
        if self._done:
            return
        if self._complete and self._error is None:
            self._finish()
            return
        self._done = True
        self._fail(ReadError("the response was closed before its end"))
        self._connection.abort()

    def _finish(self) -> None:
        if not self._done:
            self._done = True
            self._connection.release(reusable=self._keep_alive)

    async def _wait(self) -> None:
        waiter = self._loop.create_future()
        self._waiter = waiter
        timer = self._loop.call_later(self._read_s, self._expire)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def _expire(self) -> None:
        self._fail(ReadTimeout("no response byte arrived within the read timeout"))
        self._connection.abort()

    def _fail(self, error: HttpError) -> None:
        if self._error is None:
            self._error = error
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- the connection's side

    def feed(self, data: bytes) -> None:
        self.received = True
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            if self._complete:
                self._keep_alive = False  # bytes after the response: do not trust this connection again
            else:
                error = ProtocolError("the provider's response is not valid HTTP/1.1")
                error.__cause__ = exc
                self._fail(error)
                self._connection.abort()
        self._wake()

    def lost(self, exc: Exception | None) -> None:
        if self._complete or self._done:
            return
        if exc is None and self._head_done and self._eof_ends_body():
            self._complete = True
            self._keep_alive = False
        elif not self.received:
            self._fail(ClosedBeforeResponse("the connection was closed before the response began"))
        else:
            self._fail(ReadError("the connection was closed before the response ended"))
        self._wake()

    def _eof_ends_body(self) -> bool:
        for name, value in self._raw:
            lower = name.lower()
            if lower == b"content-length" or (lower == b"transfer-encoding" and b"chunked" in value.lower()):
                return False
        return True

    # -- httptools callbacks

    def on_message_begin(self) -> None:
        if self._complete:
            raise ProtocolError("a second response on one request")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._raw.append((name, value))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status < 200:
            self._informational = True  # 100 Continue, 103 Early Hints: the real head follows
            self._raw.clear()
            return
        self.status = status
        self._head_done = True

    def on_body(self, body: bytes) -> None:
        self._buffer.append(body)
        self._buffered += len(body)
        if self._buffered > HIGH_WATER and not self._paused:
            self._paused = True
            self._connection.pause_reading()

    def on_message_complete(self) -> None:
        if self._informational:
            self._informational = False
            return
        self._complete = True
        self._keep_alive = self._parser.should_keep_alive()
