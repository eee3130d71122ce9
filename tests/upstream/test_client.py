"""The upstream client (on ``upstream/http1.py``) against scripted loopback servers that write exact bytes.

Every test runs on the default asyncio loop and on uvloop. A scripted server counts the connections it accepted and
records each request with the index of the connection it came on, so reuse is seen from the server's side.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
import uvloop

from tollgate.errors import UpstreamError, UpstreamTimeout, UpstreamUnavailable
from tollgate.upstream.client import Timeouts, UpstreamClient, is_connect_failure, map_client_error
from tollgate.upstream.http1 import RACE_WINDOW_S
from tollgate.upstream.http1_response import HIGH_WATER
from tollgate.upstream.http1_wire import (
    ClosedBeforeResponse,
    ConnectError,
    ConnectTimeout,
    HttpError,
    ProtocolError,
    ReadError,
    ReadTimeout,
)

Main = Callable[[], Coroutine[Any, Any, None]]
Runner = Callable[[Main], None]
FAST = Timeouts(1.0, 1.0)
OK_HELLO = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Runner:
    """Runs a test's coroutine on the default asyncio loop, then (second parameter) on uvloop."""
    if request.param == "asyncio":
        return lambda main: asyncio.run(main())
    return lambda main: uvloop.run(main())


class Peer:
    """The server's side of one accepted connection."""

    def __init__(self, server: Scripted, index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.server = server
        self.index = index
        self.reader = reader
        self.writer = writer

    async def request(self) -> bytes | None:
        """The next request (head and body), or None at EOF."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        request = head + await self.reader.readexactly(length)
        self.server.requests.append((self.index, request))
        return request

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()


Script = Callable[[Peer], Awaitable[None]]


class Scripted:
    """A loopback server running ``script`` on every connection it accepts (optionally TLS)."""

    def __init__(self, script: Script, tls: ssl.SSLContext | None = None) -> None:
        self._script = script
        self._tls = tls
        self.connections = 0
        self.requests: list[tuple[int, bytes]] = []
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    @property
    def url(self) -> str:
        return f"{'https' if self._tls else 'http'}://127.0.0.1:{self.port}/v1/x?a=1"

    async def __aenter__(self) -> Scripted:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0, ssl=self._tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        await asyncio.sleep(0.01)  # let the aborted transports report connection_lost

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        self.connections += 1
        try:
            await self._script(Peer(self, self.connections, reader, writer))
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.transport.abort()


async def answer_each(peer: Peer, response: bytes = OK_HELLO) -> None:
    """Keep-alive: answer every request on the connection with ``response``."""
    while await peer.request() is not None:
        await peer.send(response)


def refused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- bodies


def test_a_content_length_body_and_the_request_as_sent(run: Runner) -> None:
    async def main() -> None:
        client = UpstreamClient()
        async with Scripted(answer_each) as server:
            response = await client.send(server.url, {"authorization": "Bearer k", "x-a": "1"}, b'{"a":1}', FAST)
            assert response.status == 200
            assert response.headers.get("CONTENT-TYPE") == "text/plain"
            assert ("content-length", "5") in response.headers.items()
            assert response.content_type == "text/plain"
            assert await response.read() == b"hello"
            assert server.requests == [
                (
                    1,
                    b"POST /v1/x?a=1 HTTP/1.1\r\nhost: 127.0.0.1:%d\r\nauthorization: Bearer k\r\nx-a: 1\r\n"
                    b'content-length: 7\r\n\r\n{"a":1}' % server.port,
                )
            ]
        await client.close()

    run(main)


def test_an_empty_body_is_sent_as_get_without_content_length(run: Runner) -> None:
    async def main() -> None:
        client = UpstreamClient()
        async with Scripted(answer_each) as server:
            response = await client.send(server.url, {}, b"", FAST)
            assert await response.read() == b"hello"
            assert server.requests == [(1, b"GET /v1/x?a=1 HTTP/1.1\r\nhost: 127.0.0.1:%d\r\n\r\n" % server.port)]
        await client.close()

    run(main)


def test_a_chunked_body_is_read_whole(run: Runner) -> None:
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"

    async def main() -> None:
        client = UpstreamClient()
        async with Scripted(lambda peer: answer_each(peer, chunked)) as server:
            response = await client.send(server.url, {}, b"{}", FAST)
            assert response.content_type == "application/json"  # the default when the provider names none
            assert await response.read() == b"hello world"
            response = await client.send(server.url, {}, b"{}", FAST)  # and the connection is reused
            assert await response.read() == b"hello world"
            assert [index for index, _ in server.requests] == [1, 1]
        await client.close()

    run(main)


def test_a_close_delimited_body_ends_at_eof_and_its_connection_is_not_reused(run: Runner) -> None:
    async def script(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: 1\n\n")
        await peer.send(b"data: 2\n\n")

    async def main() -> None:
        client = UpstreamClient()
        async with Scripted(script) as server:
            for _ in range(2):
                response = await client.send(server.url, {}, b"{}", FAST)
                assert await response.read() == b"data: 1\n\ndata: 2\n\n"
            assert server.connections == 2
        await client.close()

    run(main)


def test_stream_chunks_arrive_before_the_body_ends(run: Runner) -> None:
    async def main() -> None:
        first_seen = asyncio.Event()

        async def script(peer: Peer) -> None:
            await peer.request()
            await peer.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\none \r\n")
            await first_seen.wait()
            await peer.send(b"3\r\ntwo\r\n0\r\n\r\n")

        client = UpstreamClient()
        async with Scripted(script) as server:
            response = await client.send(server.url, {}, b"{}", FAST)
            chunks = []
            async for chunk in response.chunks():
                chunks.append(chunk)
                first_seen.set()
            response.close()
            assert chunks == [b"one ", b"two"]
        await client.close()

    run(main)


def test_a_chunk_joins_everything_buffered_and_reading_pauses_above_the_high_water_mark(run: Runner) -> None:
    size = 4 * HIGH_WATER
    body = bytes(range(256)) * (size // 256)

    async def script(peer: Peer) -> None:
        await peer.request()
        head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size
        for start in range(0, size, 4096):  # many small writes, so many small arrivals
            peer.writer.write((head if start == 0 else b"") + body[start : start + 4096])
        await peer.writer.drain()
        await peer.request()

    async def main() -> None:
        client = UpstreamClient()
        async with Scripted(script) as server:
            response = await client.send(server.url, {}, b"{}", FAST)
            received = []
            async for chunk in response.chunks():
                received.append(chunk)
                await asyncio.sleep(0.02)  # a slow reader: the buffer fills, then reading pauses
            assert b"".join(received) == body
            assert max(len(chunk) for chunk in received) <= 2 * HIGH_WATER
            assert max(len(chunk) for chunk in received) > 4096  # arrivals were joined
        await client.close()

    run(main)


def test_an_informational_response_is_skipped(run: Runner) -> None:
    early = b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n" + OK_HELLO

    async def main() -> None:
        client = UpstreamClient()
        async with Scripted(lambda peer: answer_each(peer, early)) as server:
            response = await client.send(server.url, {}, b"{}", FAST)
            assert (response.status, response.headers.get("link"), await response.read()) == (200, None, b"hello")
        await client.close()

    run(main)


def test_repeated_headers_are_joined(run: Runner) -> None:
    repeated = b"HTTP/1.1 429 Too Many Requests\r\nX-Limit: a\r\nx-limit: b\r\nContent-Length: 0\r\n\r\n"

    async def main() -> None:
        client = UpstreamClient()
        async with Scripted(lambda peer: answer_each(peer, repeated)) as server:
            response = await client.send(server.url, {}, b"{}", FAST)
            assert (response.status, response.headers["X-LIMIT"], await response.read()) == (429, "a, b", b"")
            assert "x-limit" in response.headers and len(response.headers) == 2
        await client.close()

    run(main)


# -- the pool


def test_a_keep_alive_connection_is_reused(run: Runner) -> None:
    async def main() -> None:
        client = UpstreamClient()
        async with Scripted(answer_each) as server:
            for _ in range(3):
                response = await client.send(server.url, {}, b"{}", FAST)
                assert await response.read() == b"hello"
            assert [index for index, _ in server.requests] == [1, 1, 1]
        await client.close()

    run(main)


def test_an_idle_connection_the_server_closed_is_replaced(run: Runner) -> None:
    async def script(peer: Peer) -> None:
        await peer.request()
        await peer.send(OK_HELLO)  # keep-alive by the headers, but the server closes it right after

    async def main() -> None:
        client = UpstreamClient()
        async with Scripted(script) as server:
            assert await (await client.send(server.url, {}, b"{}", FAST)).read() == b"hello"
            await asyncio.sleep(0.05)  # the close reaches the client while the connection is idle
            assert await (await client.send(server.url, {}, b"{}", FAST)).read() == b"hello"
            assert [index for index, _ in server.requests] == [1, 2]  # no request was sent on the closed one
        await client.close()

    run(main)


def test_an_idle_connection_expires_after_keepalive_s(run: Runner) -> None:
    async def main() -> None:
        client = UpstreamClient(keepalive_s=0.05)
        async with Scripted(answer_each) as server:
            assert await (await client.send(server.url, {}, b"{}", FAST)).read() == b"hello"
            await asyncio.sleep(0.15)
            assert await (await client.send(server.url, {}, b"{}", FAST)).read() == b"hello"
            assert [index for index, _ in server.requests] == [1, 2]
        await client.close()

    run(main)


def test_connection_close_is_not_pooled(run: Runner) -> None:
    closing = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello"

    async def main() -> None:
        client = UpstreamClient()
        async with Scripted(lambda peer: answer_each(peer, closing)) as server:  # the server keeps it open
            for _ in range(2):
                assert await (await client.send(server.url, {}, b"{}", FAST)).read() == b"hello"
            assert [index for index, _ in server.requests] == [1, 2]
        await client.close()

    run(main)


def test_an_unfinished_response_that_is_closed_closes_its_connection(run: Runner) -> None:
    async def main() -> None:
        eof = asyncio.Event()

        async def script(peer: Peer) -> None:
            if peer.index == 1:
                await peer.request()
                await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
                assert await peer.reader.read() == b""
                eof.set()
            else:
                await answer_each(peer)

        client = UpstreamClient()
        async with Scripted(script) as server:
            response = await client.send(server.url, {}, b"{}", FAST)
            assert await response.chunks().__anext__() == b"abc"
            response.close()
            await asyncio.wait_for(eof.wait(), 1.0)
            assert await (await client.send(server.url, {}, b"{}", FAST)).read() == b"hello"
            assert [index for index, _ in server.requests] == [1, 2]
        await client.close()

    run(main)


def test_pool_size_caps_the_connections_to_one_origin(run: Runner) -> None:
    async def main() -> None:
        client = UpstreamClient(pool_size=1)
        async with Scripted(answer_each) as server:

            async def one() -> bytes:
                return await (await client.send(server.url, {}, b"{}", FAST)).read()

            assert await asyncio.gather(*(one() for _ in range(4))) == [b"hello"] * 4
            assert server.connections == 1
        await client.close()

    run(main)


# -- the keep-alive race


def test_a_reused_connection_closed_before_any_response_byte_is_retried_once(run: Runner) -> None:
    async def script(peer: Peer) -> None:
        if peer.index == 1:
            await peer.request()
            await peer.send(OK_HELLO)
            await peer.request()  # read the second request, then close without a byte of answer
        else:
            await answer_each(peer)

    async def main() -> None:
        client = UpstreamClient()
        async with Scripted(script) as server:
            for _ in range(2):
                assert await (await client.send(server.url, {}, b"{}", FAST)).read() == b"hello"
            assert [index for index, _ in server.requests] == [1, 1, 2]
        await client.close()

    run(main)


def test_the_retry_happens_once_and_its_failure_is_not_a_connect_failure(run: Runner) -> None:
    async def script(peer: Peer) -> None:
        if peer.index == 1:
            await peer.request()
            await peer.send(OK_HELLO)
        await peer.request()  # then close without answering, on the reused and on the fresh connection

    async def main() -> None:
        client = UpstreamClient()
        async with Scripted(script) as server:
            assert await (await client.send(server.url, {}, b"{}", FAST)).read() == b"hello"
            with pytest.raises(UpstreamUnavailable) as info:
                await client.send(server.url, {}, b"{}", FAST)
            assert not is_connect_failure(info.value)
            assert [index for index, _ in server.requests] == [1, 1, 2]
        await client.close()

    run(main)


def test_a_reused_connection_closed_after_a_silence_is_not_retried(run: Runner) -> None:
    # Closed without a byte, but later than a keep-alive race could explain: the provider may have begun the work.
    async def script(peer: Peer) -> None:
        await peer.request()
        await peer.send(OK_HELLO)
        await peer.request()
        await asyncio.sleep(RACE_WINDOW_S + 0.1)

    async def main() -> None:
        client = UpstreamClient()
        async with Scripted(script) as server:
            assert await (await client.send(server.url, {}, b"{}", FAST)).read() == b"hello"
            with pytest.raises(UpstreamUnavailable) as info:
                await client.send(server.url, {}, b"{}", FAST)
            assert isinstance(info.value.__cause__, ClosedBeforeResponse)
            assert [index for index, _ in server.requests] == [1, 1]
        await client.close()

    run(main)


def test_a_fresh_connection_closed_without_an_answer_is_not_retried(run: Runner) -> None:
    async def script(peer: Peer) -> None:
        await peer.request()

    async def main() -> None:
        client = UpstreamClient()
        async with Scripted(script) as server:
            with pytest.raises(UpstreamUnavailable) as info:
                await client.send(server.url, {}, b"{}", FAST)
            assert not is_connect_failure(info.value)
            assert isinstance(info.value.__cause__, ClosedBeforeResponse)
            assert server.connections == 1
        await client.close()

    run(main)


def test_a_connection_closed_after_part_of_the_response_is_not_retried(run: Runner) -> None:
    async def script(peer: Peer) -> None:
        if peer.index == 1:
            await peer.request()
            await peer.send(OK_HELLO)
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\nContent-Len")

    async def main() -> None:
        client = UpstreamClient()
        async with Scripted(script) as server:
            assert await (await client.send(server.url, {}, b"{}", FAST)).read() == b"hello"
            with pytest.raises(UpstreamUnavailable):
                await client.send(server.url, {}, b"{}", FAST)
            assert server.connections == 1
        await client.close()

    run(main)


# -- failures


def test_a_refused_connect_is_a_connect_failure(run: Runner) -> None:
    async def main() -> None:
        client = UpstreamClient()
        with pytest.raises(UpstreamUnavailable) as info:
            await client.send(f"http://127.0.0.1:{refused_port()}/v1/x", {}, b"{}", FAST)
        assert is_connect_failure(info.value)
        assert "127.0.0.1" not in info.value.message
        await client.close()

    run(main)


def test_a_silent_server_is_a_head_timeout(run: Runner) -> None:
    async def script(peer: Peer) -> None:
        await peer.request()
        await peer.reader.read()

    async def main() -> None:
        client = UpstreamClient()
        async with Scripted(script) as server:
            with pytest.raises(UpstreamTimeout) as info:
                await client.send(server.url, {}, b"{}", Timeouts(1.0, 0.1))
            assert not is_connect_failure(info.value)
        await client.close()

    run(main)


def test_read_s_bounds_the_wait_between_chunks_not_the_whole_stream(run: Runner) -> None:
    async def script(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(6):  # 0.3 s in all, more than read_s, but never 0.2 s without a byte
            await asyncio.sleep(0.05)
            await peer.send(b"1\r\nx\r\n")
        await asyncio.sleep(0.5)  # then silence
        await peer.send(b"0\r\n\r\n")

    async def main() -> None:
        client = UpstreamClient()
        async with Scripted(script) as server:
            response = await client.send(server.url, {}, b"{}", Timeouts(1.0, 0.2))
            received = b""
            with pytest.raises(UpstreamTimeout):
                async for chunk in response.chunks():
                    received += chunk
            assert received == b"x" * 6
            response.close()
        await client.close()

    run(main)


def test_bytes_that_are_not_http_are_unavailable(run: Runner) -> None:
    async def main() -> None:
        client = UpstreamClient()
        async with Scripted(lambda peer: answer_each(peer, b"SSH-2.0-OpenSSH\r\n\r\n")) as server:
            with pytest.raises(UpstreamUnavailable) as info:
                await client.send(server.url, {}, b"{}", FAST)
            assert isinstance(info.value.__cause__, ProtocolError)
        await client.close()

    run(main)


@pytest.mark.parametrize(
    "headers",
    [
        {"x-a": "v\r\nx-injected: 1"},
        {"x-a": "v\nx-injected: 1"},
        {"x-a": "v\rx"},
        {"x-a": "v\0"},
        {"x-a\r\nx-injected": "1"},
        {"Host": "elsewhere"},
        {"content-length": "0"},
        {"Transfer-Encoding": "chunked"},
    ],
)
def test_header_injection_and_framing_headers_are_refused_before_sending(run: Runner, headers: dict[str, str]) -> None:
    async def main() -> None:
        client = UpstreamClient()
        async with Scripted(answer_each) as server:
            with pytest.raises(ValueError):
                await client.send(server.url, headers, b"{}", FAST)
            assert server.connections == 0
        await client.close()

    run(main)


# -- TLS


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made by the openssl CLI."""
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    command = "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1"
    command += f" -keyout {key} -out {cert} -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1"
    subprocess.run(command.split(), check=True, capture_output=True)
    return cert, key


def test_https_with_a_trusted_self_signed_certificate(run: Runner, certificate: tuple[Path, Path]) -> None:
    cert, key = certificate

    async def main() -> None:
        server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_context.load_cert_chain(cert, key)
        trusting = UpstreamClient(ssl_context=ssl.create_default_context(cafile=str(cert)))
        default = UpstreamClient()
        async with Scripted(answer_each, tls=server_context) as server:
            for _ in range(2):
                assert await (await trusting.send(server.url, {}, b"{}", FAST)).read() == b"hello"
            assert [index for index, _ in server.requests] == [1, 1]
            with pytest.raises(UpstreamUnavailable) as info:  # the default context does not trust it
                await default.send(server.url, {}, b"{}", FAST)
            assert is_connect_failure(info.value)
        await trusting.close()
        await default.close()

    run(main)


def test_a_tls_handshake_that_never_ends_is_a_connect_timeout(run: Runner) -> None:
    async def script(peer: Peer) -> None:
        await peer.reader.read()  # accepts TCP, never answers the ClientHello

    async def main() -> None:
        client = UpstreamClient()
        async with Scripted(script) as server:
            with pytest.raises(UpstreamTimeout) as info:
                await client.send(f"https://127.0.0.1:{server.port}/", {}, b"{}", Timeouts(0.2, 1.0))
            assert is_connect_failure(info.value)
        await client.close()

    run(main)


# -- the mapping


@pytest.mark.parametrize(
    ("exc", "expected", "connect"),
    [
        (ConnectError("x"), UpstreamUnavailable, True),
        (ConnectTimeout("x"), UpstreamTimeout, True),
        (ReadError("x"), UpstreamUnavailable, False),
        (ClosedBeforeResponse("x"), UpstreamUnavailable, False),
        (ReadTimeout("x"), UpstreamTimeout, False),
        (ProtocolError("x"), UpstreamUnavailable, False),
        (HttpError("x"), UpstreamUnavailable, False),
        (ConnectionResetError(), UpstreamUnavailable, False),
        (TimeoutError(), UpstreamTimeout, False),
    ],
)
def test_every_failure_maps_to_one_gateway_error(
    exc: BaseException, expected: type[UpstreamError], connect: bool
) -> None:
    mapped = map_client_error(exc)
    assert type(mapped) is expected
    assert mapped.__cause__ is exc
    assert is_connect_failure(mapped) is connect


def test_every_http1_error_class_is_in_the_mapping_table() -> None:
    def subclasses(cls: type[BaseException]) -> set[type[BaseException]]:
        return {cls}.union(*(subclasses(sub) for sub in cls.__subclasses__()))

    assert subclasses(HttpError) == {
        HttpError,
        ConnectError,
        ConnectTimeout,
        ReadError,
        ClosedBeforeResponse,
        ReadTimeout,
        ProtocolError,
    }


def test_non_client_error_is_a_bug() -> None:
    with pytest.raises(TypeError):
        map_client_error(ValueError("x"))
