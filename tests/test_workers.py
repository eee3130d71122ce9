"""The per-worker listening sockets of ``tollgate serve --workers N`` (docs/decisions/0057), with real sockets."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import select
import socket
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tollgate.workers import WorkerListener, reuse_port_socket, worker_socket


@pytest.fixture
def listener() -> Iterator[WorkerListener]:
    held = WorkerListener("127.0.0.1", 0)
    yield held
    held.close()


def test_a_listener_binds_the_address_in_the_parent_and_resolves_port_0(listener: WorkerListener) -> None:
    host, port = listener.address
    assert host == "127.0.0.1" and port > 0
    # The port is taken: a plain socket (no SO_REUSEPORT) cannot bind it while the parent holds it.
    with socket.socket() as other, pytest.raises(OSError):
        other.bind(listener.address)


def test_the_parent_never_accepts_so_a_connection_waits_for_a_worker(listener: WorkerListener) -> None:
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(listener.address, timeout=2).close()


def test_each_worker_unpickles_a_socket_of_its_own_bound_to_the_same_address(listener: WorkerListener) -> None:
    with ExitStack() as stack:
        workers = [stack.enter_context(pickle.loads(pickle.dumps(listener))) for _ in range(2)]
        assert all(isinstance(sock, socket.socket) for sock in workers)
        assert [sock.getsockname() for sock in workers] == [listener.address] * 2
        assert workers[0].fileno() != workers[1].fileno()
        assert all(sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1 for sock in workers)


def test_the_kernel_spreads_connections_over_the_workers_sockets(listener: WorkerListener) -> None:
    """200 connections opened at once over two listening sockets: each socket gets a share (by the kernel's hash of
    the addresses; fewer than 50 of 200 on one side has a probability of about 3 in 10^13)."""
    accepted: Counter[int] = Counter()
    with ExitStack() as stack:
        workers = [stack.enter_context(worker_socket(socket.AF_INET, listener.address)) for _ in range(2)]
        for sock in workers:
            sock.listen(256)
        clients = [stack.enter_context(socket.create_connection(listener.address, timeout=2)) for _ in range(200)]
        # Until every connection is accepted: a handshake's last ACK may still be on its way when connect returns.
        deadline = time.monotonic() + 10
        while sum(accepted.values()) < len(clients):
            assert time.monotonic() < deadline, accepted
            ready, _, _ = select.select(workers, [], [], 0.1)
            for sock in ready:
                conn, _ = sock.accept()
                conn.close()
                accepted[workers.index(sock)] += 1
        assert min(accepted[0], accepted[1]) >= 50, accepted


def test_a_worker_that_cannot_bind_exits_with_the_start_up_failure_status(listener: WorkerListener) -> None:
    """The address is held by a socket without SO_REUSEPORT: the worker may not join it, and says so by exiting
    with status 3, which uvicorn's supervisor reads as "do not restart"."""
    with socket.socket() as plain:
        plain.bind(("127.0.0.1", 0))
        with pytest.raises(SystemExit) as exited:
            worker_socket(socket.AF_INET, plain.getsockname())
    assert exited.value.code == 3


def test_a_spawned_worker_that_cannot_bind_exits_with_the_start_up_failure_status() -> None:
    """As uvicorn starts a worker: the listener is unpickled in a spawned process, before its target runs (which would
    exit 0). Its address is taken by a socket without SO_REUSEPORT, so the process exits with status 3."""
    held = WorkerListener("127.0.0.1", 0)
    held.close()
    with socket.socket() as plain:
        plain.bind(held.address)
        plain.listen()
        worker = multiprocessing.get_context("spawn").Process(target=print, args=(held,))
        worker.start()
        worker.join(timeout=30)
    assert worker.exitcode == 3


def test_a_busy_address_fails_in_the_parent() -> None:
    with socket.socket() as plain:
        plain.bind(("127.0.0.1", 0))
        plain.listen()
        with pytest.raises(OSError):
            WorkerListener("127.0.0.1", plain.getsockname()[1])


def test_a_port_another_gateway_listens_on_fails_in_the_parent(listener: WorkerListener) -> None:
    """Another gateway's workers listen with SO_REUSEPORT: a new set could join them, so the parent refuses."""
    with worker_socket(socket.AF_INET, listener.address) as other_gateway:
        other_gateway.listen()
        with pytest.raises(OSError):
            WorkerListener("127.0.0.1", listener.address[1])


def test_the_port_of_an_earlier_run_is_free_again_with_connections_in_time_wait() -> None:
    """A run that stopped leaves its closed connections in TIME_WAIT on the port; the next run binds it at once."""
    first = WorkerListener("127.0.0.1", 0)
    port = first.address[1]
    with worker_socket(socket.AF_INET, first.address) as worker:
        worker.listen()
        client = socket.create_connection(first.address, timeout=2)
        conn, _ = worker.accept()
        conn.close()  # the server side closes first: its end of the connection goes to TIME_WAIT
        client.recv(1)
        client.close()
    first.close()
    assert any(
        line.split()[1].endswith(f":{port:04X}") and line.split()[3] == "06"  # 06: TIME_WAIT
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
    )
    second = WorkerListener("127.0.0.1", port)
    assert second.address == ("127.0.0.1", port)
    second.close()


def test_reuse_port_socket_closes_what_it_opened_when_the_bind_fails() -> None:
    with socket.socket() as plain:
        plain.bind(("127.0.0.1", 0))
        before = set(os.listdir("/proc/self/fd"))
        for _ in range(3):
            with pytest.raises(OSError):
                reuse_port_socket(socket.AF_INET, plain.getsockname())
        assert set(os.listdir("/proc/self/fd")) == before
