"""``tollgate serve --workers N``: uvicorn's supervisor, with one listening socket per worker (docs/decisions/0057).

uvicorn binds one socket in the parent and every worker accepts from it. The worker that wakes first takes every
connection waiting (libuv accepts until the queue is empty), so a burst of keep-alive connections — a load
balancer's pool, a benchmark's — lands mostly on one worker and stays there: 16 connections split 13:3 and 16:0, and
two workers carried less than one. Here every worker binds a socket of its own to the address with ``SO_REUSEPORT``,
and the kernel hands each new connection to one of them by a hash of its addresses: an even split on average.

The parent binds the address too (``SO_REUSEPORT``, never listening, so it is given no connections): a busy port or a
bad host fails once, before any worker starts, and ``--port 0`` resolves to one port for all. uvicorn passes the
parent's sockets to each worker by pickling them; a ``WorkerListener`` pickles as "bind a socket of your own to this
address", so each worker unpickles a fresh socket rather than a copy of the parent's. Everything else (starting,
health checks, restarts, signals) is uvicorn's ``Multiprocess``, unchanged.

``SO_REUSEPORT`` would let another process of the same user bind the port as well and take a share of the
connections — a second ``tollgate serve --workers N`` started by mistake would join instead of failing. So before
it binds, the parent checks the port with a plain socket (no ``SO_REUSEPORT``), which no socket already listening on
it can share: a port another gateway serves fails like any busy port. Something that binds the port with
``SO_REUSEPORT`` in the short moment between that check and the workers' binds can still join.
"""

from __future__ import annotations

import logging
import socket
from typing import Any, cast

import uvicorn
from uvicorn import Config
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

_log = logging.getLogger("tollgate.workers")

Address = tuple[str, int]


class WorkerListener:
    """The address every worker listens on. In the parent it holds the address bound (not listening); pickled to a
    worker, it arrives as that worker's own socket, bound to the same address (``worker_socket``)."""

    def __init__(self, host: str, port: int) -> None:
        self.family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._socket = reuse_port_socket(self.family, unshared_address(self.family, (host, port)))
        name = self._socket.getsockname()
        self.address: Address = (name[0], name[1])

    def __reduce__(self) -> tuple[object, tuple[int, Address]]:
        return worker_socket, (self.family, self.address)

    def close(self) -> None:
        self._socket.close()


def unshared_address(family: int, address: Address) -> Address:
    """``address`` with its port resolved (port 0: a free one), once a plain socket could bind it: no socket is
    listening on it, not even one with ``SO_REUSEPORT`` (a plain socket cannot join those). ``SO_REUSEADDR`` lets
    the connections of an earlier run, still in ``TIME_WAIT``, pass. Raises ``OSError`` when the address is taken."""
    probe = socket.socket(family, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(address)
        name = probe.getsockname()
        return name[0], name[1]
    finally:
        probe.close()


def reuse_port_socket(family: int, address: Address) -> socket.socket:
    """A TCP socket bound to ``address`` with ``SO_REUSEADDR`` and ``SO_REUSEPORT`` set (``listen`` is left to the
    caller). Raises ``OSError`` when the address cannot be bound."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock


def worker_socket(family: int, address: Address) -> socket.socket:
    """Run in a worker as it starts (unpickling its ``WorkerListener``): its own socket, bound to ``address``; uvicorn
    makes it listen. A worker that cannot bind exits with uvicorn's start-up failure status, so the parent stops
    instead of restarting it forever."""
    try:
        return reuse_port_socket(family, address)
    except OSError as exc:
        _log.error("worker cannot listen on %s:%d: %s", address[0], address[1], exc)
        raise SystemExit(STARTUP_FAILURE) from None


def serve(app: str, *, host: str, port: int, workers: int, **options: Any) -> None:
    """uvicorn serving ``app`` (an import string) until SIGINT or SIGTERM: in this process when ``workers`` is 1,
    else from ``workers`` processes with a listening socket each. ``options`` are ``uvicorn.Config``'s."""
    if workers == 1:
        uvicorn.run(app, host=host, port=port, **options)
    else:
        run_workers(Config(app, host=host, port=port, workers=workers, **options))


def run_workers(config: Config) -> None:
    """Serve ``config.app`` (an import string) from ``config.workers`` processes until SIGINT or SIGTERM. Exits with
    uvicorn's start-up failure status when the address cannot be bound or a worker fails to start."""
    try:
        listener = WorkerListener(config.host, config.port)
    except OSError as exc:
        _log.error("cannot listen on %s:%d: %s", config.host, config.port, exc)
        raise SystemExit(STARTUP_FAILURE) from None
    host, port = listener.address
    shown = f"[{host}]" if ":" in host else host
    _log.info("listening on http://%s:%d with %d workers, a socket each (SO_REUSEPORT)", shown, port, config.workers)
    # Multiprocess only passes the sockets on to the workers, where the listener becomes a real one.
    supervisor = Multiprocess(config, sockets=[cast(socket.socket, listener)])
    try:
        supervisor.run()
    except KeyboardInterrupt:
        pass
    finally:
        listener.close()
    # Multiprocess stops when a worker fails to start but returns normally (uvicorn.run exits 3 only for one worker).
    if any(process.exitcode == STARTUP_FAILURE for process in supervisor.processes):
        raise SystemExit(STARTUP_FAILURE)
