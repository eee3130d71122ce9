"""A small asyncio HTTP/1.1 client on httptools: pooled keep-alive connections, streamed bodies (decision 0016).

- ``Http1Client.request`` sends ``POST`` (``GET`` when the body is empty) as one ``transport.write`` and returns a
  ``Response`` once the status line and headers are parsed; the body then comes chunk by chunk as it arrives
  (``next_chunk``: everything buffered, joined) or whole (``read``). Content-length, chunked and close-delimited
  bodies; no decompression, no redirects, no proxies, no HTTP/2.
- One pool per origin (scheme, host, port). Idle keep-alive connections are reused last in, first out, and closed
  after ``keepalive_s`` idle, or as soon as the server closes them. ``pool_size`` caps the open connections of one
  origin (0: no cap); a request over the cap waits until one is released or closed.
- A connection goes back to its pool only once its response has been received whole and both sides keep it alive;
  closing an unfinished response closes the connection.
- The keep-alive race: when a reused connection is closed by the server before any byte of the response, within
  ``RACE_WINDOW_S`` of sending, the request is sent once more on a fresh connection. Never after a fresh connection
  fails, never once a response byte came, never after a longer silence (decision 0016 says why that is safe enough
  for POST).
- Timeouts: ``connect_s`` for the TCP connect plus the TLS handshake; ``read_s`` for the response head and as the
  longest wait between two arrivals of body bytes (a long stream that keeps moving is fine).
- Flow control: reading pauses while more than 256 KiB of body is buffered unread and resumes when it is taken.
- A client belongs to the event loop of its first request (asyncio or uvloop).

Errors raised (``upstream/client.py`` translates them, once)::

    HttpError                     the exchange failed; the connection it used is closed
    ├── ConnectError              no connection could be made (DNS, refused, TLS); nothing was sent
    │   └── ConnectTimeout        (also TimeoutError) connect plus TLS handshake took longer than ``connect_s``
    ├── ReadError                 the connection broke before the response was complete
    │   └── ClosedBeforeResponse  the server closed or reset it before sending any byte of the response
    ├── ReadTimeout               (also TimeoutError) nothing arrived for ``read_s``
    └── ProtocolError             the server's bytes are not an HTTP/1.1 response

A header name or value with CR, LF or NUL, or a header the client sets itself (host, content-length,
transfer-encoding, connection), raises ``ValueError`` before anything is sent.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Final, cast
from urllib.parse import urlsplit

import httptools

HIGH_WATER: Final = 256 * 1024  # unread body bytes above which reading pauses
# A server closing an idle connection as our request crosses it answers within a round trip; a close that comes later
# may follow work the provider began (and bills), so it is not retried.
RACE_WINDOW_S: Final = 0.5
_RESERVED: Final = frozenset({"host", "content-length", "transfer-encoding", "connection"})
_TARGET_CACHE: Final = 1024  # parsed URLs kept per client (the gateway has one per deployment and endpoint)


class HttpError(Exception):
    """The exchange failed; the connection it used is closed."""


class ConnectError(HttpError):
    """No connection could be made (DNS, refused, unreachable, TLS handshake or certificate); nothing was sent."""


class ConnectTimeout(ConnectError, TimeoutError):
    """The TCP connect plus the TLS handshake took longer than ``connect_s``; nothing was sent."""


class ReadError(HttpError):
    """The connection broke (closed, reset) after the request was sent and before the response was complete."""


class ClosedBeforeResponse(ReadError):
    """The server closed or reset the connection before sending any byte of the response."""


class ReadTimeout(HttpError, TimeoutError):
    """No byte of the response arrived for ``read_s`` (waiting for the head, or between two body arrivals)."""


class ProtocolError(HttpError):
    """The server sent bytes that are not a valid HTTP/1.1 response."""


@dataclass(frozen=True, slots=True)
class Origin:
    scheme: str
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class _Target:
    """A parsed URL: its origin and the request heads (request line and Host) for POST and GET."""

    origin: Origin
    post: str
    get: str


def parse_url(url: str) -> _Target:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("the upstream URL must be http:// or https:// with a host")
    default = 443 if parts.scheme == "https" else 80
    port = parts.port or default
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    authority = host if port == default else f"{host}:{port}"
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    tail = f" {path} HTTP/1.1\r\nhost: {authority}\r\n"
    return _Target(Origin(parts.scheme, parts.hostname, port), "POST" + tail, "GET" + tail)


def encode_head(start: str, headers: Mapping[str, str], body_size: int | None) -> bytes:
    """Request line, Host, the caller's headers and Content-Length, ending with the blank line; refuses injection."""
    lines = [start]
    for name, value in headers.items():
        if name.lower() in _RESERVED:
            raise ValueError(f"the client sets the {name.lower()} header itself")
        lines.append(f"{name}: {value}\r\n")
    if body_size is not None:
        lines.append(f"content-length: {body_size}\r\n")
    lines.append("\r\n")
    head = "".join(lines)
    # Every line ends in exactly one CR LF (``start`` holds two); any other CR or LF came from a name or value.
    ends = len(lines) + 1
    if head.count("\n") != ends or head.count("\r") != ends or "\0" in head:
        raise ValueError("a header name or value contains CR, LF or NUL")
    return head.encode("latin-1")


class Headers(Mapping[str, str]):
    """Response headers as received; lookups ignore case, repeated names are joined with ``, ``."""

    __slots__ = ("_folded", "raw")

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        self.raw = raw
        self._folded: dict[str, str] | None = None

    def _fold(self) -> dict[str, str]:
        folded: dict[str, str] = {}
        for name, value in self.raw:
            key = name.decode("latin-1").lower()
            text = value.decode("latin-1")
            folded[key] = f"{folded[key]}, {text}" if key in folded else text
        self._folded = folded
        return folded

    def __getitem__(self, name: str) -> str:
        return (self._folded or self._fold())[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in (self._folded or self._fold())

    def __iter__(self) -> Iterator[str]:
        return iter(self._folded or self._fold())

    def __len__(self) -> int:
        return len(self._folded or self._fold())


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


class Connection(asyncio.Protocol):
    """One HTTP/1.1 connection of a pool, serving one exchange at a time."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.loop = pool.loop
        self.reused = False  # it served an exchange before
        self.idle_since = 0.0
        self.counted = True  # holds one of its pool's open slots
        self._transport: asyncio.Transport | None = None
        self._response: Response | None = None

    def send(self, data: bytes, read_s: float) -> Response:
        response = self._response = Response(self, read_s)
        transport = self._transport
        if transport is None or transport.is_closing():
            response.lost(None)  # closed while idle, a moment ago
        else:
            transport.write(data)
        return response

    def release(self, *, reusable: bool) -> None:
        self._response = None
        transport = self._transport
        if reusable and transport is not None and not transport.is_closing():
            self.pool.put(self)
        else:
            self.abort()

    def is_usable(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def pause_reading(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.resume_reading()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio classes

    def data_received(self, data: bytes) -> None:
        response = self._response
        if response is None:
            self.abort()  # bytes on an idle connection: not a response to anything of ours
        else:
            response.feed(data)

    def connection_lost(self, exc: Exception | None) -> None:
        response = self._response
        if response is not None:
            response.lost(exc)
        self.pool.forget(self)


class Pool:
    """The connections to one origin: idle ones on a LIFO stack, a count of open ones against the cap."""

    def __init__(self, client: Http1Client, origin: Origin, loop: asyncio.AbstractEventLoop) -> None:
        self.client = client
        self.origin = origin
        self.loop = loop
        self.idle: list[Connection] = []  # oldest first, so the sweep looks at the bottom and reuse takes the top
        self.open = 0
        self._slot_waiters: deque[asyncio.Future[None]] = deque()
        self._sweep: asyncio.TimerHandle | None = None

    async def acquire(self, connect_s: float) -> Connection:
        while True:
            idle = self.idle
            while idle:
                connection = idle.pop()
                if connection.is_usable() and self.loop.time() - connection.idle_since < self.client.keepalive_s:
                    return connection
                connection.abort()
            cap = self.client.pool_size
            if not cap or self.open < cap:
                break
            waiter = self.loop.create_future()
            self._slot_waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()  # woken, then cancelled: pass the free slot on
                raise
        self.open += 1
        return await self.client.connect(self, connect_s)

    def put(self, connection: Connection) -> None:
        if self.client.closed:
            connection.abort()
            return
        connection.reused = True
        connection.idle_since = self.loop.time()
        self.idle.append(connection)
        if self._sweep is None:
            self._sweep = self.loop.call_later(self.client.keepalive_s, self._expire_idle)
        self._wake_one()

    def forget(self, connection: Connection) -> None:
        """The connection is closed (or never opened): it leaves the idle stack and gives its slot back."""
        if not connection.counted:
            return
        connection.counted = False
        self.open -= 1
        if connection in self.idle:
            self.idle.remove(connection)
        self._wake_one()

    def close(self) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for connection in self.idle:
            connection.abort()
        self.idle.clear()

    def _wake_one(self) -> None:
        while self._slot_waiters:
            waiter = self._slot_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _expire_idle(self) -> None:
        self._sweep = None
        idle = self.idle
        deadline = self.loop.time() - self.client.keepalive_s
        while idle and idle[0].idle_since <= deadline:
            idle.pop(0).abort()
        if idle:
            self._sweep = self.loop.call_at(idle[0].idle_since + self.client.keepalive_s, self._expire_idle)


class Http1Client:
    """Pools per origin, the request and its one retry; see the module docstring for the contract."""

    def __init__(
        self, *, pool_size: int = 0, keepalive_s: float = 30.0, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.pool_size = pool_size
        self.keepalive_s = keepalive_s
        self.closed = False
        self._ssl_context = ssl_context
        self._pools: dict[Origin, Pool] = {}
        self._targets: dict[str, _Target] = {}

    async def request(
        self, url: str, headers: Mapping[str, str], body: bytes, *, connect_s: float, read_s: float
    ) -> Response:
        """POST ``body`` (GET when it is empty); returns once the response head is in."""
        target = self._targets.get(url) or self._remember(url)
        data = encode_head(target.post if body else target.get, headers, len(body) if body else None) + body
        pool = self._pools.get(target.origin) or self._pool(target.origin)
        retried = False
        while True:
            connection = await pool.acquire(connect_s)
            sent_at = pool.loop.time()
            response = connection.send(data, read_s)
            try:
                await response.wait_head()
            except BaseException as exc:
                response.close()
                raced = pool.loop.time() - sent_at < RACE_WINDOW_S
                if isinstance(exc, ClosedBeforeResponse) and connection.reused and raced and not retried:
                    retried = True  # the keep-alive race: the server closed the idle connection as we sent
                    continue
                raise
            return response

    async def connect(self, pool: Pool, connect_s: float) -> Connection:
        """A new connection for ``pool``, which has already counted it as open."""
        origin = pool.origin
        connection = Connection(pool)
        context = None
        if origin.scheme == "https":
            context = self._ssl_context or self._default_ssl_context()
        try:
            async with asyncio.timeout(connect_s):
                await pool.loop.create_connection(
                    lambda: connection,
                    origin.host,
                    origin.port,
                    ssl=context,
                    server_hostname=origin.host if context is not None else None,
                )
        except TimeoutError as exc:
            pool.forget(connection)
            raise ConnectTimeout("connecting took longer than the connect timeout") from exc
        except OSError as exc:  # refused, unreachable, DNS (gaierror), TLS (SSLError, certificate)
            pool.forget(connection)
            raise ConnectError("no connection could be made") from exc
        except BaseException:
            pool.forget(connection)
            raise
        return connection

    def close(self) -> None:
        """Close every idle connection; connections in use close when their response is closed."""
        self.closed = True
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()

    def _default_ssl_context(self) -> ssl.SSLContext:
        self._ssl_context = ssl.create_default_context()
        return self._ssl_context

    def _remember(self, url: str) -> _Target:
        if len(self._targets) >= _TARGET_CACHE:
            self._targets.clear()
        target = self._targets[url] = parse_url(url)
        return target

    def _pool(self, origin: Origin) -> Pool:
        if self.closed:
            raise RuntimeError("the client is closed")
        pool = self._pools[origin] = Pool(self, origin, asyncio.get_running_loop())
        return pool
