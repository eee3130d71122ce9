"""Test harness: run any ASGI app (the gateway) under uvicorn in a background thread on an ephemeral port."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from tollgate.app import Gateway, build_gateway
from tollgate.settings import load_settings


class ServerThread:
    """uvicorn (uvloop + httptools, lifespan on) serving ``app`` on 127.0.0.1:<ephemeral>; stopped on exit."""

    def __init__(self, app: Any) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        config = uvicorn.Config(
            app,
            loop="uvloop",
            http="httptools",
            lifespan="on",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=5,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=15)
        self._sock.close()


@dataclass
class RunningGateway:
    gateway: Gateway
    base_url: str

    @property
    def records(self) -> list[Any]:
        return self.gateway.recorder.records


@contextlib.contextmanager
def running_gateway(tmp_path: Path, config: str, environ: Mapping[str, str] | None = None) -> Iterator[RunningGateway]:
    """Write ``config`` to a file, build the gateway from it exactly as ``tollgate serve`` would, and serve it."""
    path = tmp_path / "tollgate.yaml"
    path.write_text(config)
    settings = load_settings(path, environ=environ or {})
    gateway = build_gateway(settings)
    with ServerThread(gateway.app) as server:
        yield RunningGateway(gateway, server.base_url)


def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    """Poll until ``predicate()`` is true (for effects that land just after a response, like a stream's settle)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)
