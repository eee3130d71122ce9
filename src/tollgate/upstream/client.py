"""The pooled upstream HTTP client: the only module that imports the HTTP client library.

One ``aiohttp.ClientSession`` per process, created on first use inside the running loop, keeps connections alive
and pooled per host. Every aiohttp and timeout exception is translated here, once, into the gateway's
``UpstreamUnavailable`` / ``UpstreamTimeout`` (see ``map_client_error``); nothing above this module sees aiohttp.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import aiohttp

from tollgate.errors import UpstreamError, UpstreamTimeout, UpstreamUnavailable

# Relay chunks as soon as any bytes arrive; this only caps one read.
_READ_CHUNK = 65536


def map_client_error(exc: BaseException) -> UpstreamError:
    """Translate a client-library or timeout exception into the gateway's error (messages hide host names)."""
    if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return UpstreamTimeout("the provider did not answer in time")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return UpstreamUnavailable("the provider could not be reached")
    if isinstance(exc, aiohttp.ClientError):
        return UpstreamUnavailable("the connection to the provider failed")
    if isinstance(exc, OSError):
        return UpstreamUnavailable("the connection to the provider failed")
    raise TypeError(f"not a client error: {type(exc).__name__}")


def is_connect_failure(error: UpstreamError) -> bool:
    """Whether nothing reached the provider, so another deployment may safely be tried."""
    return isinstance(error, UpstreamUnavailable)


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect_s: float
    read_s: float  # between two reads, so a long stream is fine as long as it keeps moving


class UpstreamResponse:
    """A response whose body is read whole or streamed; always ``close()`` it (the proxy does, in its close path)."""

    __slots__ = ("_response", "headers", "status")

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status = response.status
        self.headers: Mapping[str, str] = response.headers

    @property
    def content_type(self) -> str:
        return self._response.headers.get("content-type", "application/json")

    async def read(self) -> bytes:
        try:
            return await self._response.read()
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise map_client_error(exc) from exc
        finally:
            self._response.release()

    async def chunks(self) -> AsyncIterator[bytes]:
        """Bytes as they arrive (not waiting for a full buffer)."""
        content = self._response.content
        try:
            while True:
                chunk = await content.readany()
                if not chunk:
                    return
                yield chunk
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise map_client_error(exc) from exc

    def close(self) -> None:
        self._response.close()


class UpstreamClient:
    """Sends one request to one deployment; pooling and keep-alive live in the shared session."""

    def __init__(self, *, pool_size: int = 0, keepalive_s: float = 30.0) -> None:
        self._pool_size = pool_size
        self._keepalive_s = keepalive_s
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._pool_size, keepalive_timeout=self._keepalive_s, ttl_dns_cache=60, enable_cleanup_closed=True
            )
            self._session = aiohttp.ClientSession(
                connector=connector, auto_decompress=False, skip_auto_headers=("User-Agent",), trust_env=False
            )
        return self._session

    async def send(self, url: str, headers: Mapping[str, str], body: bytes, timeouts: Timeouts) -> UpstreamResponse:
        """POST (or GET when body is empty) and return once the status line and headers are in."""
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeouts.connect_s, sock_read=timeouts.read_s)
        method = "POST" if body else "GET"
        try:
            response = await self._get_session().request(
                method, url, data=body or None, headers=dict(headers), timeout=timeout, allow_redirects=False
            )
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise map_client_error(exc) from exc
        return UpstreamResponse(response)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
