"""The own Redis client against the real server: pipelining, error replies, reconnects, timeouts, AUTH/SELECT, URLs."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest
import redis
import uvloop

from tollgate.stores.resp import (
    Command,
    RedisAddress,
    RespClient,
    RespConnectionError,
    RespError,
    RespTimeout,
    encode,
    pack,
    parse_redis_url,
)

Main = Callable[[], Coroutine[Any, Any, None]]
Runner = Callable[[Main], None]


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Runner:
    """Runs a test's coroutine on the default asyncio loop, then (second parameter) on uvloop."""
    if request.param == "asyncio":
        return lambda main: asyncio.run(main())
    return lambda main: uvloop.run(main())


@pytest.fixture
def inspector(redis_url: str) -> Iterator[redis.Redis]:
    """An independent redis-py client on the test database, to look at and act on the server."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def test_pack_encodes_bytes_str_and_int_as_bulk_strings() -> None:
    assert pack("SET", b"k\r\n", 42, -1, "é") == (
        b"*5\r\n$3\r\nSET\r\n$3\r\nk\r\n\r\n$2\r\n42\r\n$2\r\n-1\r\n$2\r\n\xc3\xa9\r\n"
    )
    assert pack("PING") == b"*1\r\n$4\r\nPING\r\n"
    assert encode(b"x" * 2000) == b"$2000\r\n" + b"x" * 2000 + b"\r\n"
    with pytest.raises(TypeError):
        pack("SET", "k", 1.5)  # type: ignore[arg-type]


def test_a_command_encodes_its_head_once_and_takes_encoded_arguments() -> None:
    evalsha = Command("EVALSHA", "abc")
    assert evalsha.pack(1, "k") == pack("EVALSHA", "abc", 1, "k")
    assert evalsha.pack_encoded(3, [encode(1) + encode("k"), encode(b"v")]) == pack("EVALSHA", "abc", 1, "k", b"v")


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("redis://127.0.0.1", RedisAddress("127.0.0.1")),
        ("redis://cache.internal:6380/3", RedisAddress("cache.internal", 6380, 3)),
        ("redis://cache:6379/", RedisAddress("cache")),
        ("redis://:s3cret@cache/1", RedisAddress("cache", db=1, password="s3cret")),
        ("redis://app:p%40ss%3Aw%2Frd@cache:7000/2", RedisAddress("cache", 7000, 2, "app", "p@ss:w/rd")),
        ("redis://app:@cache", RedisAddress("cache", username="app", password="")),
        ("rediss://cache.internal:6380/1", RedisAddress("cache.internal", 6380, 1, tls=True)),
        ("redis://[::1]:6379/0", RedisAddress("::1")),
    ],
)
def test_parse_redis_url(url: str, address: RedisAddress) -> None:
    assert parse_redis_url(url) == address


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://cache:6379/0", "not a redis:// or rediss:// URL: scheme 'http'"),
        ("unix:///tmp/redis.sock", "not a redis:// or rediss:// URL: scheme 'unix'"),
        ("redis-sentinel://cache", "not a redis:// or rediss:// URL: scheme 'redis-sentinel'"),
        ("redis://", "the Redis URL names no host"),
        ("redis://cache/zero", "the Redis URL's database must be a number, not 'zero'"),
        ("redis://cache/0?ssl_cert_reqs=none", "the Redis URL may not have query options or a fragment"),
        ("redis://app@cache/0", "the Redis URL names a user but no password (redis://user:password@host)"),
    ],
)
def test_parse_redis_url_refuses(url: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_redis_url(url)
    assert str(caught.value) == message


def test_a_bad_port_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse_redis_url("redis://cache:99999/0")


def test_the_password_is_not_in_the_address_repr() -> None:
    assert "s3cret" not in repr(parse_redis_url("redis://:s3cret@cache/1"))


def test_concurrent_commands_share_one_write_and_get_their_own_replies(redis_url: str, run: Runner) -> None:
    async def main() -> None:
        client = RespClient.from_url(redis_url)
        try:
            await client.execute("PING")
            conn = client.connection
            assert conn is not None
            before = conn.writes
            replies = await asyncio.gather(*(client.execute("ECHO", f"m{i}") for i in range(500)))
            assert replies == [f"m{i}".encode() for i in range(500)]
            assert conn.writes == before + 1
            assert await client.execute("INCRBY", "n", 5) == 5
            assert conn.writes == before + 2
        finally:
            await client.close()

    run(main)


def test_many_first_commands_share_one_connect(redis_url: str, run: Runner) -> None:
    async def main() -> None:
        client = RespClient.from_url(redis_url)
        try:
            ids = await asyncio.gather(*(client.execute("CLIENT", "ID") for _ in range(50)))
            assert len(set(ids)) == 1
        finally:
            await client.close()

    run(main)


def test_send_now_writes_before_returning_after_what_the_turn_queued(redis_url: str, run: Runner) -> None:
    async def main() -> None:
        client = RespClient.from_url(redis_url)
        try:
            assert client.send_now(pack("PING")) is None  # not connected yet: nothing sent
            conn = await client.connect()
            before = conn.writes
            queued = conn.submit(pack("RPUSH", "order", "first"))
            sent = client.send_now(pack("RPUSH", "order", "second"))
            assert conn.writes == before + 1  # both left in that one write, in order
            assert sent is not None
            assert (await queued, await sent) == (1, 2)
            assert await client.execute("LRANGE", "order", 0, -1) == [b"first", b"second"]
            assert conn.writes == before + 2  # the flush queued for the first command found nothing left to write
        finally:
            await client.close()

    run(main)


def test_an_error_reply_fails_only_its_command(redis_url: str, run: Runner) -> None:
    async def main() -> None:
        client = RespClient.from_url(redis_url)
        try:
            await client.execute("SET", "s", "text")
            conn = client.connection
            results = await asyncio.gather(
                client.execute("INCR", "s"), client.execute("GET", "s"), client.execute("NOSUCHCMD"),
                return_exceptions=True,
            )  # fmt: skip
            assert isinstance(results[0], RespError)
            assert results[0].message == "ERR value is not an integer or out of range"
            assert results[1] == b"text"
            assert isinstance(results[2], RespError) and results[2].message.startswith("ERR unknown command")
            with pytest.raises(RespError) as caught:
                await client.execute("EVALSHA", "0" * 40, 0)
            assert caught.value.message.startswith("NOSCRIPT")
            assert await client.execute("PING") == b"PONG"
            assert client.connection is conn  # the same connection throughout
        finally:
            await client.close()

    run(main)


def test_a_killed_connection_fails_its_commands_and_the_next_command_reconnects(
    redis_url: str, inspector: redis.Redis, run: Runner
) -> None:
    async def main() -> None:
        client = RespClient.from_url(redis_url)
        try:
            first_id = await client.execute("CLIENT", "ID")
            conn = client.connection
            assert conn is not None
            waiting = asyncio.ensure_future(client.execute("BLPOP", "nothing", 5))
            await asyncio.sleep(0.05)  # the BLPOP is on the server, blocking
            await asyncio.to_thread(inspector.client_kill_filter, _id=first_id)
            with pytest.raises(RespConnectionError):
                await waiting
            await conn.closed
            assert client.connection is None
            assert await client.execute("CLIENT", "ID") != first_id
            assert await client.execute("PING") == b"PONG"
        finally:
            await client.close()

    run(main)


def test_a_command_without_an_answer_times_out_and_drops_the_connection(redis_url: str, run: Runner) -> None:
    async def main() -> None:
        client = RespClient.from_url(redis_url, command_timeout=0.2)
        try:
            await client.execute("PING")
            conn = client.connection
            began = time.monotonic()
            blocked = asyncio.ensure_future(client.execute("BLPOP", "nothing", 10))  # holds the connection 10 s
            behind = asyncio.ensure_future(client.execute("PING"))  # pipelined behind it
            with pytest.raises(RespTimeout) as caught:
                await blocked
            waited = time.monotonic() - began
            with pytest.raises(RespTimeout):
                await behind
            assert 0.2 <= waited < 5.0  # the BLPOP alone would have held the connection 10 s (loose: busy machines)
            assert isinstance(caught.value, ConnectionError) and isinstance(caught.value, TimeoutError)
            assert await client.execute("PING") == b"PONG"  # a new connection
            assert client.connection is not conn
        finally:
            await client.close()

    run(main)


def test_the_timeout_counts_from_the_last_reply_not_from_the_connect(redis_url: str, run: Runner) -> None:
    async def main() -> None:
        client = RespClient.from_url(redis_url, command_timeout=0.2)
        try:
            await client.execute("PING")
            conn = client.connection
            await asyncio.sleep(0.5)  # idle longer than the timeout: nothing is waiting, nothing fails
            assert await client.execute("PING") == b"PONG"
            assert client.connection is conn
        finally:
            await client.close()

    run(main)


def test_connect_and_set_up_time_out_on_a_server_that_never_answers(run: Runner) -> None:
    silent = socket.create_server(("127.0.0.1", 0))  # accepts (via the backlog) and never answers
    port = silent.getsockname()[1]

    async def main() -> None:
        client = RespClient.from_url(f"redis://127.0.0.1:{port}/1", connect_timeout=0.2)
        try:
            began = time.monotonic()
            with pytest.raises(RespConnectionError) as caught:
                await client.execute("PING")
            assert time.monotonic() - began < 1.0
            assert isinstance(caught.value.__cause__, TimeoutError)
            assert client.connection is None
        finally:
            await client.close()

    try:
        run(main)
    finally:
        silent.close()


def test_an_unreachable_server_is_a_connection_error(run: Runner) -> None:
    async def main() -> None:
        client = RespClient.from_url("redis://127.0.0.1:1/0")
        try:
            for _ in range(2):  # and again: every command tries to connect anew
                with pytest.raises(RespConnectionError) as caught:
                    await client.execute("PING")
                assert str(caught.value).startswith("could not connect to Redis at 127.0.0.1:1: ")
                assert isinstance(caught.value.__cause__, OSError)
        finally:
            await client.close()

    run(main)


def test_close_fails_waiting_commands_and_refuses_new_ones(redis_url: str, run: Runner) -> None:
    async def main() -> None:
        client = RespClient.from_url(redis_url)
        await client.execute("PING")
        waiting = asyncio.ensure_future(client.execute("BLPOP", "nothing", 5))
        await asyncio.sleep(0.05)
        await client.close()
        with pytest.raises(RespConnectionError):
            await waiting
        with pytest.raises(RespConnectionError) as caught:
            await client.execute("PING")
        assert str(caught.value) == "the Redis client is closed"

    run(main)


def test_close_while_connecting_leaves_nothing_open(redis_url: str, run: Runner) -> None:
    async def main() -> None:
        client = RespClient.from_url(redis_url)
        first = asyncio.ensure_future(client.execute("PING"))
        await asyncio.sleep(0)  # the connect has started
        await client.close()
        with pytest.raises((RespConnectionError, asyncio.CancelledError)):
            await first

    run(main)


def test_auth_and_select_come_from_the_url(redis_url: str, inspector: redis.Redis, unique: str, run: Runner) -> None:
    user, password = f"tg-test-{unique}", "p@ss:w/rd"
    inspector.acl_setuser(user, enabled=True, passwords=[f"+{password}"], keys=["*"], commands=["+@all"])
    host = redis_url.split("://", 1)[1].split("/", 1)[0]

    async def main() -> None:
        client = RespClient.from_url(f"redis://{user}:p%40ss%3Aw%2Frd@{host}/15")
        wrong = RespClient.from_url(f"redis://{user}:wrong@{host}/15")
        try:
            assert await client.execute("ACL", "WHOAMI") == user.encode()
            info = (await client.execute("CLIENT", "INFO")).decode().split()
            assert "db=15" in info and f"user={user}" in info
            with pytest.raises(RespConnectionError) as caught:
                await wrong.execute("PING")
            assert str(caught.value).startswith("Redis refused the connection set-up: WRONGPASS")
            assert isinstance(caught.value.__cause__, RespError)
        finally:
            await client.close()
            await wrong.close()

    try:
        run(main)
    finally:
        inspector.acl_deluser(user)
