"""Test harness for the real server: ``tollgate serve --workers N`` as a subprocess in its own session, its worker
processes found through /proc, and the worker that holds a given client connection found through /proc/net/tcp."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """A running ``tollgate serve``; ``base_url`` answers /healthz once the context is entered."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.process = process
        self.port = port
        self.log = log

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def workers(self) -> list[int]:
        """The worker processes (the server's children running the app), by pid."""
        return [pid for pid in children(self.process.pid) if b"resource_tracker" not in _cmdline(pid)]

    def worker_holding(self, client_port: int) -> int | None:
        """The worker that has the server side of the TCP connection from 127.0.0.1:``client_port``."""
        local, remote = f"0100007F:{self.port:04X}", f"0100007F:{client_port:04X}"
        inodes = _tcp_inodes(lambda fields: fields[1] == local and fields[2] == remote)
        holders = _socket_holders(self.workers(), inodes)
        return holders[0] if holders else None

    def listening_owners(self) -> list[int]:
        """The processes (the server and its workers) holding a listening socket on the port, once per socket."""
        inodes = _tcp_inodes(lambda fields: fields[1].endswith(f":{self.port:04X}") and fields[3] == "0A")  # LISTEN
        return sorted(_socket_holders([self.process.pid, *self.workers()], inodes))


@contextmanager
def tollgate_serve(config: Path, workers: int, log: Path) -> Iterator[ServerProcess]:
    """Start ``tollgate serve`` in a new session, wait for /healthz, and kill the whole session group on exit."""
    port = free_port()
    command = [sys.executable, "-m", "tollgate.cli", "serve", "--config", str(config), "--port", str(port)]
    command += ["--workers", str(workers)]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    server = ServerProcess(process, port, log)
    try:
        _wait_healthy(server, workers)
        yield server
    finally:
        _stop(process)


def kill_group(server: ServerProcess, timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGKILL the whole session group at once (server and workers, nothing gets to clean up), and wait until every
    one of them is gone."""
    pids = [server.process.pid, *server.workers()]
    os.killpg(server.process.pid, signal.SIGKILL)
    server.process.wait(timeout=timeout)
    deadline = time.monotonic() + timeout
    while any(running(pid) for pid in pids):
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes still running after SIGKILL: {[p for p in pids if running(p)]}")
        time.sleep(0.02)


def children(pid: int) -> list[int]:
    """Direct children of ``pid``, from /proc/<pid>/task/*/children."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            text = Path(f"/proc/{pid}/task/{task}/children").read_text()
        except OSError:
            continue
        found.extend(int(child) for child in text.split())
    return sorted(set(found))


def running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _tcp_inodes(match: Callable[[list[str]], bool]) -> set[str]:
    """The inodes of the IPv4 TCP sockets whose /proc/net/tcp fields ``match``."""
    lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return {fields[9] for fields in (line.split() for line in lines) if match(fields)}


def _socket_holders(pids: list[int], inodes: set[str]) -> list[int]:
    """``pids`` that hold one of the sockets ``inodes``, once per socket held."""
    holders = []
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:[") and link[8:-1] in inodes:
                holders.append(pid)
    return holders


def _wait_healthy(server: ServerProcess, workers: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(f"tollgate serve exited with {server.process.returncode}: {server.log.read_text()}")
        try:
            if httpx.get(server.base_url + "/healthz", timeout=1.0).status_code == 200 and (
                len(server.workers()) >= workers
            ):
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"tollgate serve did not become healthy: {server.log.read_text()}")
        time.sleep(0.1)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the session group, then SIGKILL it if it has not gone within the bound."""
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with suppress(subprocess.TimeoutExpired):
        process.wait(timeout=STOP_TIMEOUT_S)
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # stragglers of the group, the workers included
    process.wait(timeout=STOP_TIMEOUT_S)
