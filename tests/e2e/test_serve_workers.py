"""``tollgate serve --workers 2`` for real: each worker listens on a socket of its own (SO_REUSEPORT, decision 0057), so
connections opened together are spread over the workers; a replaced worker listens again; a busy port fails once; a
worker that fails to start stops the server with status 3."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.e2e.processes import ServerProcess, running, tollgate_serve

pytestmark = pytest.mark.slow

CONFIG = """
store: sqlite:///{tmp}/counters.db
providers:
  sim: {{type: simulated}}
models:
  - {{name: gpt-4o-mini, provider: sim}}
keys: []
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "tollgate.yaml"
    path.write_text(CONFIG.format(tmp=tmp_path))
    return path


@pytest.fixture
def server(config: Path, tmp_path: Path) -> Iterator[ServerProcess]:
    with tollgate_serve(config, 2, tmp_path / "server.log") as running_server:
        # /healthz answers once one worker is up; the other may still be starting.
        wait_until_each_worker_listens(running_server)
        yield running_server


def wait_until_each_worker_listens(server: ServerProcess, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        workers = server.workers()
        owners = server.listening_owners()
        if len(workers) == 2 and owners == sorted(workers):
            return
        assert time.monotonic() < deadline, f"workers {workers}, listening {owners}: {server.log.read_text()[-2000:]}"
        time.sleep(0.05)


def healthz(sock: socket.socket) -> bytes:
    """One keep-alive GET /healthz on ``sock``; the answer's status line."""
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n")
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = sock.recv(4096)
        assert chunk, "connection closed before the answer"
        answer += chunk
    return answer.split(b"\r\n", 1)[0]


def test_each_worker_listens_on_a_socket_of_its_own(server: ServerProcess) -> None:
    """The fixture waited for it (a shared socket never gets there: one socket, two holders and the parent); here
    the parent holds no listening socket and each worker exactly one."""
    workers = server.workers()
    owners = server.listening_owners()
    assert len(workers) == 2 and owners == sorted(workers)
    assert server.process.pid not in owners


def test_connections_opened_together_are_spread_over_the_workers(server: ServerProcess) -> None:
    """32 keep-alive connections opened at once, as a client pool does. With one shared socket the first worker to
    wake took most or all of them; over per-worker sockets each gets a share (fewer than 4 of 32 on one side: a
    probability of about 3 in a million)."""
    with ExitStack() as stack:
        clients = [
            stack.enter_context(socket.create_connection(("127.0.0.1", server.port), timeout=10)) for _ in range(32)
        ]
        assert {healthz(sock) for sock in clients} == {b"HTTP/1.1 200 OK"}
        holders = Counter(server.worker_holding(sock.getsockname()[1]) for sock in clients)
    assert set(holders) == set(server.workers()), holders
    assert min(holders.values()) >= 4, holders


def test_a_killed_worker_is_replaced_and_the_replacement_listens(server: ServerProcess) -> None:
    victim = server.workers()[0]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while running(victim) or victim in server.workers():
        assert time.monotonic() < deadline, "the killed worker is still there"
        time.sleep(0.05)
    wait_until_each_worker_listens(server)
    assert victim not in server.workers()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        assert healthz(sock) == b"HTTP/1.1 200 OK"


def test_a_busy_port_fails_before_any_worker_starts(config: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        command = [sys.executable, "-m", "tollgate.cli", "serve", "--config", str(config), "--port", str(port)]
        finished = subprocess.run([*command, "--workers", "2"], capture_output=True, text=True, timeout=60)
    assert finished.returncode == 3  # uvicorn's start-up failure status, as with one worker
    assert f"cannot listen on 127.0.0.1:{port}" in finished.stderr
    assert "Address already in use" in finished.stderr
    assert "Started parent process" not in finished.stderr


def test_a_second_gateway_on_the_same_port_fails_instead_of_joining(server: ServerProcess, config: Path) -> None:
    """The running workers' sockets have SO_REUSEPORT, so a second set of them could join the port and take a share
    of its connections; the supervisor's check with a plain socket refuses the port instead."""
    command = [sys.executable, "-m", "tollgate.cli", "serve", "--config", str(config), "--port", str(server.port)]
    finished = subprocess.run([*command, "--workers", "2"], capture_output=True, text=True, timeout=60)
    assert finished.returncode == 3, finished.stderr[-2000:]
    assert f"cannot listen on 127.0.0.1:{server.port}" in finished.stderr
    assert "Address already in use" in finished.stderr
    assert server.listening_owners() == sorted(server.workers())  # the first gateway is untouched


def test_a_worker_that_fails_to_start_stops_the_server_with_the_start_up_failure_status(tmp_path: Path) -> None:
    """The file is valid but its store cannot be opened (no such directory), so every worker's start-up fails.
    uvicorn's supervisor stops instead of restarting them, but returns normally; the command exits 3, not 0."""
    config = tmp_path / "tollgate.yaml"
    config.write_text(CONFIG.format(tmp=tmp_path / "missing"))
    command = [sys.executable, "-m", "tollgate.cli", "serve", "--config", str(config), "--port", "0"]
    finished = subprocess.run([*command, "--workers", "2"], capture_output=True, text=True, timeout=60)
    assert finished.returncode == 3, finished.stderr[-2000:]
    assert "failed to start, stopping the parent process" in finished.stderr
