"""The pure pieces of the HTTP/1.1 client (``upstream/http1.py``): its errors, URL parsing, the request head, headers.

No sockets, no event loop: a URL becomes a ``Target`` (origin and request heads), a request head becomes bytes, the
parsed response headers become a case-insensitive mapping.

Errors raised by the client (``upstream/client.py`` translates them, once)::

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

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

_RESERVED: Final = frozenset({"host", "content-length", "transfer-encoding", "connection"})


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
class Target:
    """A parsed URL: its origin and the request heads (request line and Host) for POST and GET."""

    origin: Origin
    post: str
    get: str


def parse_url(url: str) -> Target:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("the upstream URL must be http:// or https:// with a host")
    default = 443 if parts.scheme == "https" else 80
    port = parts.port or default
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    authority = host if port == default else f"{host}:{port}"
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    tail = f" {path} HTTP/1.1\r\nhost: {authority}\r\n"
    return Target(Origin(parts.scheme, parts.hostname, port), "POST" + tail, "GET" + tail)


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
