"""The pooled upstream HTTP client: the gateway's face of ``upstream/http1.py`` (decision 0016).

One ``Http1Client`` per process, created on first use inside the running loop, keeps connections alive and pooled
per origin. Every failure of a request or of reading its response — connect, TLS, timeout, reset, unparsable bytes —
is translated here, once, into the gateway's ``UpstreamUnavailable`` / ``UpstreamTimeout`` (``map_client_error``);
nothing above this module sees ``http1``'s exceptions. The translated error keeps its cause, which
``is_connect_failure`` reads: a failure to connect means nothing reached the provider.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

from tollgate.errors import UpstreamError, UpstreamTimeout, UpstreamUnavailable
from tollgate.upstream.http1 import Http1Client
from tollgate.upstream.http1_response import Response
from tollgate.upstream.http1_wire import ConnectError, HttpError


def map_client_error(exc: BaseException) -> UpstreamError:
    """Translate an ``http1``, socket or timeout exception into the gateway's error (messages hide host names)."""
    error: UpstreamError
    if isinstance(exc, TimeoutError):  # ConnectTimeout, ReadTimeout
        error = UpstreamTimeout("the provider did not answer in time")
    elif isinstance(exc, ConnectError):
        error = UpstreamUnavailable("the provider could not be reached")
    elif isinstance(exc, (HttpError, OSError)):
        error = UpstreamUnavailable("the connection to the provider failed")
    else:
        raise TypeError(f"not a client error: {type(exc).__name__}")
    error.__cause__ = exc  # what ``raise … from exc`` sets; set here so the mapping alone answers is_connect_failure
    return error


def is_connect_failure(error: UpstreamError) -> bool:
    """Whether no connection could be made, so nothing reached the provider and another deployment may be tried.

    True for refused, unreachable, DNS, TLS and connect-timeout failures (the last is an ``UpstreamTimeout``); false
    once a connection carried the request, whatever happened next.
    """
    return isinstance(error.__cause__, ConnectError)


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect_s: float  # TCP connect plus TLS handshake
    read_s: float  # for the head, then between two reads, so a long stream is fine as long as it keeps moving


class _Chunks:
    """The body as it arrives; each step yields everything buffered so far."""

    __slots__ = ("_response",)

    def __init__(self, response: Response) -> None:
        self._response = response

    def __aiter__(self) -> _Chunks:
        return self

    async def __anext__(self) -> bytes:
        try:
            chunk = await self._response.next_chunk()
        except (HttpError, OSError) as exc:
            raise map_client_error(exc) from exc
        if not chunk:
            raise StopAsyncIteration
        return chunk


class UpstreamResponse:
    """A response whose body is read whole or streamed; always ``close()`` it (the proxy does, in its close path)."""

    __slots__ = ("_response", "headers", "status")

    def __init__(self, response: Response) -> None:
        self._response = response
        self.status = response.status
        self.headers: Mapping[str, str] = response.headers

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "application/json")

    async def read(self) -> bytes:
        try:
            return await self._response.read()
        except (HttpError, OSError) as exc:
            raise map_client_error(exc) from exc
        finally:
            self._response.close()

    def chunks(self) -> AsyncIterator[bytes]:
        """Bytes as they arrive (not waiting for a full buffer)."""
        return _Chunks(self._response)

    def close(self) -> None:
        """Hand the connection back if the body was received whole, else close it."""
        self._response.close()


class UpstreamClient:
    """Sends one request to one deployment; pooling and keep-alive live in the shared ``Http1Client``.

    ``pool_size`` caps the open connections per origin (0: no cap); ``ssl_context`` replaces the default
    (``ssl.create_default_context()``), for a private CA or a test's self-signed certificate.
    """

    def __init__(
        self, *, pool_size: int = 0, keepalive_s: float = 30.0, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self._pool_size = pool_size
        self._keepalive_s = keepalive_s
        self._ssl_context = ssl_context
        self._client: Http1Client | None = None

    def _get_client(self) -> Http1Client:
        if self._client is None:
            self._client = Http1Client(
                pool_size=self._pool_size, keepalive_s=self._keepalive_s, ssl_context=self._ssl_context
            )
        return self._client

    async def send(self, url: str, headers: Mapping[str, str], body: bytes, timeouts: Timeouts) -> UpstreamResponse:
        """POST (or GET when body is empty) and return once the status line and headers are in.

        A header with CR, LF or NUL raises ``ValueError`` (a bug or a bad configuration, not the provider's fault).
        """
        client = self._client or self._get_client()
        try:
            response = await client.request(url, headers, body, connect_s=timeouts.connect_s, read_s=timeouts.read_s)
        except (HttpError, OSError) as exc:
            raise map_client_error(exc) from exc
        return UpstreamResponse(response)

    async def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
