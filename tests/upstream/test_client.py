"""The upstream client maps every client-library exception to a gateway error, once."""

from __future__ import annotations

import asyncio
import inspect

import aiohttp
import pytest

from tollgate.errors import UpstreamError, UpstreamTimeout, UpstreamUnavailable
from tollgate.upstream.client import Timeouts, UpstreamClient, map_client_error


def _all_client_errors() -> list[type[BaseException]]:
    found = []
    for _name, obj in inspect.getmembers(aiohttp):
        if inspect.isclass(obj) and issubclass(obj, aiohttp.ClientError):
            found.append(obj)
    return found


def test_every_aiohttp_client_error_is_mapped() -> None:
    classes = _all_client_errors()
    assert len(classes) > 15
    for cls in classes:
        exc = cls.__new__(cls)
        mapped = map_client_error(exc)
        assert isinstance(mapped, UpstreamError), cls
        assert "127.0.0.1" not in mapped.message


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (TimeoutError(), UpstreamTimeout),
        (aiohttp.ServerTimeoutError(), UpstreamTimeout),
        (ConnectionResetError(), UpstreamUnavailable),
        (aiohttp.ServerDisconnectedError(), UpstreamUnavailable),
    ],
)
def test_mapping_table(exc: BaseException, expected: type[UpstreamError]) -> None:
    assert type(map_client_error(exc)) is expected


def test_non_client_error_is_a_bug() -> None:
    with pytest.raises(TypeError):
        map_client_error(ValueError("x"))


def test_connection_refused_becomes_unavailable() -> None:
    async def run() -> None:
        client = UpstreamClient()
        try:
            with pytest.raises(UpstreamUnavailable) as info:
                await client.send("http://127.0.0.1:9/v1/x", {}, b"{}", Timeouts(1.0, 1.0))
            assert "127.0.0.1" not in info.value.message
        finally:
            await client.close()

    asyncio.run(run())
