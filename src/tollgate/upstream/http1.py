"""A small asyncio HTTP/1.1 client on httptools: pooled keep-alive connections, streamed bodies (decision 0016).

The client is three modules: this one (``Http1Client``, its per-origin ``Pool``, the ``Connection`` protocol),
``http1_response`` (``Response``: one exchange being read, with flow control) and ``http1_wire`` (the pure pieces:
the ``HttpError`` tree, URL parsing, the request head, ``Headers``).

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
- A client belongs to the event loop of its first request (asyncio or uvloop).

Errors raised: the ``HttpError`` tree drawn in ``http1_wire`` (``upstream/client.py`` translates them, once), and
``ValueError`` before anything is sent for a header with CR, LF or NUL or one the client sets itself (``encode_head``).
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Mapping
from typing import Final, cast

from tollgate.upstream.http1_response import Response
from tollgate.upstream.http1_wire import (
    ClosedBeforeResponse,
    ConnectError,
    ConnectTimeout,
    Origin,
    Target,
    encode_head,
    parse_url,
)

# A server closing an idle connection as our request crosses it answers within a round trip; a close that comes later
# may follow work the provider began (and bills), so it is not retried.
RACE_WINDOW_S: Final = 0.5
_TARGET_CACHE: Final = 1024  # parsed URLs kept per client (the gateway has one per deployment and endpoint)


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
        self._targets: dict[str, Target] = {}

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

    def _remember(self, url: str) -> Target:
        if len(self._targets) >= _TARGET_CACHE:
            self._targets.clear()
        target = self._targets[url] = parse_url(url)
        return target

    def _pool(self, origin: Origin) -> Pool:
        if self.closed:
            raise RuntimeError("the client is closed")
        pool = self._pools[origin] = Pool(self, origin, asyncio.get_running_loop())
        return pool
