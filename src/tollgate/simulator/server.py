"""Serving the simulator with uvicorn (uvloop + httptools): in a thread, inside a running loop, or blocking.

Every variant listens on a socket bound before the server starts (port 0 picks a free port with no race), so
the URL is known up front. Embedded variants do not install signal handlers: the host process owns SIGINT and
SIGTERM, and stops the simulator through the handle it got back.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import uvicorn
from uvicorn.config import LOGGING_CONFIG

from tollgate.simulator.app import Simulator
from tollgate.simulator.behaviour import DEFAULT_REPLY_WORDS

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8100
START_TIMEOUT_SECONDS = 10.0
STOP_TIMEOUT_SECONDS = 10.0
GRACEFUL_SHUTDOWN_SECONDS = 5


class _EmbeddedServer(uvicorn.Server):
    """uvicorn that leaves the process's signal handlers alone."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind_socket(host: str = DEFAULT_HOST, port: int = 0) -> socket.socket:
    """A TCP socket bound to ``host:port`` (0: a free port); the server listens on it when it starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def _config(simulator: Simulator, log_level: str | None, log_config: dict[str, Any] | None) -> uvicorn.Config:
    return uvicorn.Config(
        simulator,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        log_level=log_level,
        log_config=log_config,
        access_log=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class SimulatorServer:
    """The simulator on ``host``:<free port> in a background thread; a context manager (or ``start``/``stop``).

    ``start`` returns once the server accepts connections; ``stop`` shuts it down and joins the thread.
    """

    def __init__(self, simulator: Simulator | None = None, host: str = DEFAULT_HOST, port: int = 0) -> None:
        self.simulator = simulator if simulator is not None else Simulator()
        self._sock = bind_socket(host, port)
        self.port: int = self._sock.getsockname()[1]
        self.base_url = _url(self._sock)
        self._server = _EmbeddedServer(_config(self.simulator, "warning", None))
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, name="tollgate-simulator", daemon=True
        )

    def start(self) -> SimulatorServer:
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the simulator did not start")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(STOP_TIMEOUT_SECONDS)
        if self._thread.is_alive():  # connections that would not finish: stop waiting for them
            self._server.force_exit = True
            self._thread.join(STOP_TIMEOUT_SECONDS)
        self._sock.close()

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class RunningSimulator:
    """A simulator served inside the caller's event loop; ``await stop()`` shuts it down."""

    def __init__(self, server: uvicorn.Server, task: asyncio.Task[None], sock: socket.socket) -> None:
        self._server = server
        self._task = task
        self.port: int = sock.getsockname()[1]
        self.base_url = _url(sock)

    async def stop(self) -> None:
        self._server.should_exit = True
        await self._task


async def _serve_in_loop(simulator: Simulator, sock: socket.socket) -> RunningSimulator:
    # log_level None and log_config None: the host process's logging is left as it is.
    server = _EmbeddedServer(_config(simulator, None, None))
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]), name="tollgate-simulator")
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while not server.started:
        if task.done():
            task.result()  # re-raises why it stopped
            raise RuntimeError("the simulator stopped while starting")
        if time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError("the simulator did not start")
        await asyncio.sleep(0.005)
    return RunningSimulator(server, task, sock)


async def start_on_socket(simulator: Simulator, sock: socket.socket) -> Callable[[], Awaitable[None]]:
    """Serve ``simulator`` on an already bound ``sock`` inside the running loop; returns the stop coroutine
    function (the server closes the socket when it stops)."""
    running = await _serve_in_loop(simulator, sock)
    return running.stop


async def start_in_loop(simulator: Simulator, host: str = DEFAULT_HOST, port: int = 0) -> tuple[RunningSimulator, int]:
    """Serve ``simulator`` on ``host:port`` (0: a free port) inside the running loop: ``(handle, port)``."""
    running = await _serve_in_loop(simulator, bind_socket(host, port))
    return running, running.port


def run_simulator(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    record: bool = True,
    require_key: str | None = None,
    latency_ms: float = 0.0,
    chunk_delay_ms: float = 0.0,
    reply_words: int = DEFAULT_REPLY_WORDS,
) -> None:
    """Serve a simulator until SIGINT or SIGTERM (``tollgate simulate``); prints the URL it listens on.

    Records requests by default (bounded, readable at ``GET /_sim/received``); pass ``record=False`` for load tests.
    """
    simulator = Simulator(
        record=record,
        require_key=require_key,
        latency_ms=latency_ms,
        chunk_delay_ms=chunk_delay_ms,
        reply_words=reply_words,
    )
    sock = bind_socket(host, port)
    sock.listen(2048)  # before the line goes out: a client reading it may connect before uvicorn has started
    print(f"tollgate simulator listening on {_url(sock)}", file=sys.stderr, flush=True)
    # uvicorn re-raises the SIGINT it caught once it has shut down: Ctrl+C is a normal way to stop.
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.Server(_config(simulator, "warning", LOGGING_CONFIG)).run(sockets=[sock])
