"""A small asyncio Redis client: one connection, commands pipelined, replies parsed by hiredis (decision 0015).

- One TCP (``rediss://``: TLS) connection per client, opened by the first command; concurrent first commands share
  one connect. AUTH and SELECT come from the URL and run before any other command.
- Commands issued in one event-loop turn leave in one ``transport.write`` (the first one schedules the flush with
  ``call_soon``); ``send_now`` writes at once. Redis answers in order on a connection, so replies go to a FIFO of
  futures.
- A connection that fails (lost, unparsable reply, no reply within ``command_timeout``) fails every command still
  waiting on it and is dropped; the next command opens a new one. The timeout is kept by one watchdog per
  connection that checks, every quarter of the timeout, whether commands are waiting and no reply came for that long
  (Redis answers in order, so that is the oldest command's wait).
- One client belongs to the event loop it first connected on (asyncio or uvloop).

Errors raised::

    RespError                   the server answered the command with an error reply; the connection stays usable
    RespConnectionError         (a ConnectionError) no connection could be made or set up, it was lost or closed
    └── RespTimeout             (also a TimeoutError) no reply within ``command_timeout``; the connection is dropped
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias, cast
from urllib.parse import unquote, urlsplit

import hiredis

Arg: TypeAlias = bytes | str | int

DEFAULT_PORT: Final = 6379
COMMAND_TIMEOUT_S: Final = 10.0
CONNECT_TIMEOUT_S: Final = 5.0  # TCP (and TLS) connect plus AUTH/SELECT
CLOSE_WAIT_S: Final = 1.0  # close() waits this long at most for the transport to report it is closed
_HEADERS: Final = 1024  # RESP length headers below this are built once
_ARRAY: Final = tuple(b"*%d\r\n" % n for n in range(_HEADERS))
_BULK: Final = tuple(b"$%d\r\n" % n for n in range(_HEADERS))


class RespError(Exception):
    """The server answered a command with an error reply; ``message`` is its text (``NOSCRIPT No matching …``)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class RespConnectionError(ConnectionError):
    """No connection could be made or set up, or it was lost or closed before the reply came (the command may have
    run)."""


class RespTimeout(RespConnectionError, TimeoutError):
    """No reply came within the command timeout; the connection was dropped and the next command opens a new one."""


def encode(arg: Arg) -> bytes:
    """One argument as a RESP bulk string: bytes as they are, str as UTF-8, int in decimal."""
    if isinstance(arg, bytes):
        data = arg
    elif isinstance(arg, str):
        data = arg.encode()
    elif isinstance(arg, int):
        data = b"%d" % arg
    else:
        raise TypeError(f"a Redis argument must be bytes, str or int, not {type(arg).__name__}")
    size = len(data)
    return (_BULK[size] if size < _HEADERS else b"$%d\r\n" % size) + data + b"\r\n"


def array_header(count: int) -> bytes:
    return _ARRAY[count] if count < _HEADERS else b"*%d\r\n" % count


def pack(*args: Arg) -> bytes:
    """A command as the RESP array of bulk strings Redis reads."""
    return array_header(len(args)) + b"".join([encode(arg) for arg in args])


class Command:
    """A command whose first arguments never change (name, script SHA, key), encoded once."""

    __slots__ = ("_count", "_head")

    def __init__(self, *head: Arg) -> None:
        self._count = len(head)
        self._head = b"".join([encode(arg) for arg in head])

    def pack(self, *args: Arg) -> bytes:
        return array_header(self._count + len(args)) + self._head + b"".join([encode(arg) for arg in args])

    def pack_encoded(self, count: int, parts: Sequence[bytes]) -> bytes:
        """The command with ``count`` more arguments, already encoded (``encode``) and concatenated in ``parts``."""
        return b"".join([array_header(self._count + count), self._head, *parts])


@dataclass(frozen=True, slots=True)
class RedisAddress:
    """Where a Redis server is and how to log in to it."""

    host: str
    port: int = DEFAULT_PORT
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False


def parse_redis_url(url: str) -> RedisAddress:
    """``redis://[[user]:password@]host[:port][/db]`` or ``rediss://…`` (TLS); user and password percent-decoded.

    Raises ValueError for another scheme, a missing host, a bad port or db, a user without a password, or a query.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(f"not a redis:// or rediss:// URL: scheme {parts.scheme!r}")
    if not parts.hostname:
        raise ValueError("the Redis URL names no host")
    if parts.query or parts.fragment:
        raise ValueError("the Redis URL may not have query options or a fragment")
    port = parts.port  # raises ValueError itself for a port that is not a number in range
    path = parts.path.removeprefix("/")
    if path and not path.isdigit():
        raise ValueError(f"the Redis URL's database must be a number, not {path!r}")
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    if username is not None and password is None:
        raise ValueError("the Redis URL names a user but no password (redis://user:password@host)")
    return RedisAddress(
        host=parts.hostname,
        port=DEFAULT_PORT if port is None else port,
        db=int(path) if path else 0,
        username=username,
        password=password,
        tls=parts.scheme == "rediss",
    )


class RespConnection(asyncio.Protocol):
    """One connection: queues commands for one write per loop turn and hands the replies to their futures in order.

    ``writes`` counts ``transport.write`` calls (each carries every command queued since the last one).
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, command_timeout: float, on_lost: Callable[[RespConnection], None]
    ) -> None:
        self._loop = loop
        self._timeout = command_timeout
        self._on_lost = on_lost
        self._reader = hiredis.Reader()
        self._waiters: deque[asyncio.Future[Any]] = deque()
        self._pending: list[bytes] = []
        self._transport: asyncio.Transport | None = None
        self._progress = 0.0  # loop time of the last reply, or of the first command after an idle spell
        self._watchdog: asyncio.TimerHandle | None = None
        self.failure: RespConnectionError | None = None
        self.closed: asyncio.Future[None] = loop.create_future()
        self.writes = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._progress = self._loop.time()
        self._watchdog = self._loop.call_later(self._timeout / 4, self._check)

    def submit(self, packed: bytes) -> asyncio.Future[Any]:
        """Queue one packed command for this turn's write; the future gets its reply (or ``RespError``)."""
        waiter = self._queue(packed)
        if len(self._pending) == 1:
            self._loop.call_soon(self._flush)
        return waiter

    def send_now(self, packed: bytes) -> asyncio.Future[Any]:
        """Write one packed command (after whatever this turn queued) before returning."""
        waiter = self._queue(packed)
        self._flush()
        return waiter

    def _queue(self, packed: bytes) -> asyncio.Future[Any]:
        if self.failure is not None:
            raise RespConnectionError(str(self.failure))
        waiter = self._loop.create_future()
        if not self._waiters:
            self._progress = self._loop.time()
        self._waiters.append(waiter)
        self._pending.append(packed)
        return waiter

    def _flush(self) -> None:
        if self._pending and self._transport is not None:
            data = b"".join(self._pending)
            self._pending = []
            self._transport.write(data)
            self.writes += 1

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        self._progress = self._loop.time()
        waiters = self._waiters
        try:
            while (reply := self._reader.gets()) is not False:
                waiter = waiters.popleft()
                if waiter.done():  # its caller was cancelled
                    continue
                if isinstance(reply, hiredis.ReplyError):
                    waiter.set_exception(RespError(str(reply)))
                else:
                    waiter.set_result(reply)
        except hiredis.ProtocolError as exc:
            self.fail(RespConnectionError(f"Redis sent a reply that is not RESP: {exc}"))
        except IndexError:
            self.fail(RespConnectionError("Redis sent a reply no command asked for"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(RespConnectionError("the connection to Redis was lost" + (f": {exc}" if exc else "")))
        if not self.closed.done():
            self.closed.set_result(None)

    def _check(self) -> None:
        if self._waiters and self._loop.time() - self._progress >= self._timeout:
            self.fail(RespTimeout(f"Redis did not answer within {self._timeout:g} s"))
        elif self.failure is None:
            self._watchdog = self._loop.call_later(self._timeout / 4, self._check)

    def fail(self, error: RespConnectionError, *, graceful: bool = False) -> None:
        """Fail every waiting command with ``error`` (each its own copy) and drop the connection; idempotent."""
        if self.failure is None:
            self.failure = error
            self._on_lost(self)
            if self._watchdog is not None:
                self._watchdog.cancel()
            if self._transport is not None:
                if graceful:
                    self._transport.close()
                else:
                    self._transport.abort()
        self._pending = []
        waiters, self._waiters = self._waiters, deque()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(type(error)(*error.args))

    @property
    def connected(self) -> bool:
        return self._transport is not None


class RespClient:
    """Runs commands on one lazily opened, pipelined connection; see the module docstring for the failure rules."""

    def __init__(
        self,
        address: RedisAddress,
        *,
        command_timeout: float = COMMAND_TIMEOUT_S,
        connect_timeout: float = CONNECT_TIMEOUT_S,
    ) -> None:
        self.address = address
        self._command_timeout = command_timeout
        self._connect_timeout = connect_timeout
        self._conn: RespConnection | None = None
        self._connecting: asyncio.Task[RespConnection] | None = None
        self._closed = False

    @classmethod
    def from_url(cls, url: str, **options: float) -> RespClient:
        return cls(parse_redis_url(url), **options)

    @property
    def connection(self) -> RespConnection | None:
        """The open connection, if there is one."""
        return self._conn

    async def execute(self, *args: Arg) -> Any:
        """Run one command; its reply (hiredis types: bytes, int, list, None) or ``RespError``."""
        conn = self._conn or await self.connect()
        return await conn.submit(pack(*args))

    def submit(self, packed: bytes) -> Awaitable[Any]:
        """``execute`` for a command already packed (``pack``, ``Command``); on an open connection the awaitable is
        the reply's future itself (no coroutine: this is the hot path)."""
        conn = self._conn
        return conn.submit(packed) if conn is not None else self._submit_after_connect(packed)

    async def _submit_after_connect(self, packed: bytes) -> Any:
        conn = await self.connect()
        return await conn.submit(packed)

    def send_now(self, packed: bytes) -> asyncio.Future[Any] | None:
        """Write a packed command to the open connection before returning; the future gets the reply. None (nothing
        sent) when no connection is open: use ``submit`` then."""
        conn = self._conn
        return None if conn is None else conn.send_now(packed)

    async def connect(self) -> RespConnection:
        """The open connection, opened first if needed; concurrent callers share one attempt."""
        if self._closed:
            raise RespConnectionError("the Redis client is closed")
        if self._conn is not None:
            return self._conn
        if self._connecting is None:
            self._connecting = asyncio.get_running_loop().create_task(self._open())
            self._connecting.add_done_callback(self._connect_done)
        return await asyncio.shield(self._connecting)

    def _connect_done(self, task: asyncio.Task[RespConnection]) -> None:
        self._connecting = None
        if not task.cancelled():
            task.exception()  # retrieved here: every caller may have been cancelled meanwhile

    async def _open(self) -> RespConnection:
        loop = asyncio.get_running_loop()
        where = self.address
        conn = RespConnection(loop, self._command_timeout, self._lost)
        try:
            async with asyncio.timeout(self._connect_timeout):
                await loop.create_connection(
                    lambda: conn,
                    where.host,
                    where.port,
                    ssl=ssl.create_default_context() if where.tls else None,
                    server_hostname=where.host if where.tls else None,
                )
                await self._set_up(conn)
        except RespError as exc:
            conn.fail(RespConnectionError("Redis refused the connection set-up"))
            raise RespConnectionError(f"Redis refused the connection set-up: {exc.message}") from exc
        except OSError as exc:  # includes TimeoutError and a connection lost during set-up
            conn.fail(RespConnectionError("the connection set-up failed"))
            raise RespConnectionError(f"could not connect to Redis at {where.host}:{where.port}: {exc}") from exc
        except BaseException:  # cancelled (close() while connecting): leave no transport open
            conn.fail(RespConnectionError("the connection set-up was cancelled"))
            raise
        if self._closed:
            conn.fail(RespConnectionError("the Redis client is closed"), graceful=True)
            raise RespConnectionError("the Redis client is closed")
        self._conn = conn
        return conn

    async def _set_up(self, conn: RespConnection) -> None:
        where = self.address
        steps = []
        if where.password is not None:
            login = (where.username, where.password) if where.username else (where.password,)
            steps.append(conn.submit(pack("AUTH", *login)))
        if where.db:
            steps.append(conn.submit(pack("SELECT", where.db)))
        for outcome in await asyncio.gather(*steps, return_exceptions=True):
            if isinstance(outcome, BaseException):
                raise outcome

    def _lost(self, conn: RespConnection) -> None:
        if self._conn is conn:
            self._conn = None

    async def close(self) -> None:
        """Close the connection, failing the commands still waiting; the client cannot be used afterwards."""
        self._closed = True
        if self._connecting is not None:
            self._connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await self._connecting
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.fail(RespConnectionError("the Redis client was closed"), graceful=True)
            if conn.connected:
                await asyncio.wait([conn.closed], timeout=CLOSE_WAIT_S)
