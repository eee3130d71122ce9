"""Server benchmark: the same ASGI apps under uvicorn (httptools, h11), granian and hypercorn, with wrk (issue 5).

Usage: ``.venv/bin/python -m bench.servers [--apps minimal,gateway] [--seconds 4] [--repeat 3]``. Not a test: the
numbers depend on the machine; the numbers of record are in ``docs/decisions/0001-raw-asgi-edge-on-uvicorn.md``.

Two apps, each served by every server that is installed (a missing one is reported "not installed"):

- ``minimal``: ``minimal_app`` below reads the request body, parses it and answers a fixed ~300-byte JSON body with
  its content-length; what is left is the server's own work per request.
- ``gateway``: the real gateway (``tollgate.app:create_app_from_environment``), configured by ``bench.run`` as the
  load benchmark configures it, in front of ``tollgate simulate --no-record`` (Redis store if ``redis-server`` is
  installed, each server on its own Redis database; else SQLite).

Layout (two cores), as in ``bench.run``: every server process is pinned to core 0; wrk, the simulator and Redis to
core 1. All servers run at once and are measured in turn, interleaved (the order rotates every repeat); each cell
gives the median over ``--repeat`` runs. Server CPU is utime+stime of the server's whole process tree (granian and
hypercorn serve from a child process) over the run, per request. Everything started here runs in its own process
group and is killed in ``finally``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import os
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import orjson

from bench.run import (
    ENDPOINTS,
    LOAD_CORE,
    TOLLGATE,
    WrkResult,
    cpu_seconds,
    descendants,
    ensure_wrk,
    free_port,
    machine,
    median_result,
    peak_rss_mb,
    probe,
    redis_server,
    run_wrk,
    started,
    wait_ready,
    write_config,
    wrk_command,
)

SERVER_CORE = "0"
BIN = Path(sys.executable).parent
CONNECTIONS = (16, 1)

# ---------------------------------------------------------------- the minimal app

_REPLY = orjson.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1752841200,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello, benchmark."},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16},
    }
)
_HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(_REPLY)).encode())]

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


async def minimal_app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """Read the whole body, parse it, answer a fixed JSON body: the edge's work without the gateway's."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break
    orjson.loads(body)
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": _REPLY})


# ---------------------------------------------------------------- the servers


@dataclasses.dataclass(frozen=True)
class App:
    name: str
    target: str  # module:attribute
    factory: bool  # the attribute is called (no arguments) to make the app


MINIMAL = App("minimal", "bench.servers:minimal_app", False)
GATEWAY = App("gateway", "tollgate.app:create_app_from_environment", True)


@dataclasses.dataclass(frozen=True)
class Server:
    name: str
    package: str  # the distribution that must be installed
    command: Callable[[App, int], list[str]]


def _uvicorn(http: str) -> Callable[[App, int], list[str]]:
    def command(app: App, port: int) -> list[str]:
        cmd = [str(BIN / "uvicorn"), app.target, *(["--factory"] if app.factory else [])]
        cmd += ["--host", "127.0.0.1", "--port", str(port), "--loop", "uvloop", "--http", http, "--lifespan", "on"]
        # as `tollgate serve` runs it (src/tollgate/cli.py)
        return [*cmd, "--no-access-log", "--no-proxy-headers", "--no-server-header", "--log-level", "warning"]

    return command


def _granian(app: App, port: int) -> list[str]:
    cmd = [str(BIN / "granian"), "--interface", "asgi", "--workers", "1", "--loop", "uvloop", "--http", "1"]
    cmd += ["--no-ws", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log"]
    return [*cmd, *(["--factory"] if app.factory else []), app.target]


def _hypercorn(app: App, port: int) -> list[str]:
    cmd = [str(BIN / "hypercorn"), "--bind", f"127.0.0.1:{port}", "--workers", "1", "--worker-class", "uvloop"]
    # hypercorn evaluates the text after the colon, so a factory is called by writing the call
    return [*cmd, "--log-level", "warning", f"asgi:{app.target}{'()' if app.factory else ''}"]


SERVERS = [
    Server("uvicorn httptools", "httptools", _uvicorn("httptools")),
    Server("uvicorn h11", "h11", _uvicorn("h11")),
    Server("granian", "granian", _granian),
    Server("hypercorn", "hypercorn", _hypercorn),
]


def installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


# ---------------------------------------------------------------- the run


@dataclasses.dataclass(frozen=True)
class Cell:
    app: str
    server: str
    connections: int
    wrk: WrkResult | None  # None: the server is not installed
    cpu_ms_per_request: float
    peak_rss_mb: float


@dataclasses.dataclass(frozen=True)
class Running:
    server: Server
    pid: int
    port: int
    command: str


@contextlib.contextmanager
def serving(app: App, tmp: Path, servers: Sequence[Server]) -> Iterator[list[Running]]:
    """Every server in ``servers`` up at once on ``app``, pinned to the server core; stopped on exit."""
    with contextlib.ExitStack() as stack:
        env: list[str] = []
        sim_port = 0
        store, redis_url = "sqlite", ""
        if app is GATEWAY:
            sim_port = free_port()
            sim_cmd = ["taskset", "-c", LOAD_CORE, TOLLGATE, "simulate", "--port", str(sim_port), "--no-record"]
            sim = stack.enter_context(started(sim_cmd, tmp / "simulator.log"))
            wait_ready(*probe(sim_port, "gpt-4o-mini"), sim, tmp / "simulator.log")
            with contextlib.suppress(SystemExit):  # no redis-server: SQLite store
                redis_url = stack.enter_context(redis_server(tmp))
                store = "redis"
            print(f"bench: gateway on the {store} store", file=sys.stderr)
        running = []
        for index, server in enumerate(servers):
            tag = f"{app.name}-{server.name.replace(' ', '-')}"
            if app is GATEWAY:
                config = tmp / f"{tag}.yaml"
                server_redis = redis_url.rsplit("/", 1)[0] + f"/{index}" if redis_url else ""
                write_config(config, store, sim_port, tmp / f"{tag}.db", server_redis)
                env = ["env", f"TOLLGATE_CONFIG={config}"]
            port = free_port()
            cmd = ["taskset", "-c", SERVER_CORE, *env, *server.command(app, port)]
            proc = stack.enter_context(started(cmd, tmp / f"{tag}.log"))
            wait_ready(*probe(port, "bench-gpt"), proc, tmp / f"{tag}.log")
            running.append(Running(server, proc.pid, port, shlex.join(cmd)))
        yield running


def measure(app: App, running: Sequence[Running], seconds: float, repeat: int) -> list[Cell]:
    """``repeat`` rounds; in each, every server at every connection count, the server order rotating per round."""
    endpoint = ENDPOINTS[0]
    for run in running:  # warm-up: imports, pools, caches (not reported)
        run_wrk(wrk_command(f"http://127.0.0.1:{run.port}", endpoint, "bench-gpt", 16, 2, True))
    results: dict[tuple[str, int], list[tuple[WrkResult, float]]] = {}
    for round_ in range(repeat):
        order = [*running[round_ % len(running) :], *running[: round_ % len(running)]]
        for conns in CONNECTIONS:
            for run in order:
                pids = descendants(run.pid)
                before = cpu_seconds(pids)
                result = run_wrk(
                    wrk_command(f"http://127.0.0.1:{run.port}", endpoint, "bench-gpt", conns, seconds, True)
                )
                cpu_ms = (cpu_seconds(pids) - before) * 1000 / max(result.requests, 1)
                results.setdefault((run.server.name, conns), []).append((result, cpu_ms))
                print(f"  {app.name} | {run.server.name} | c{conns} | {result.rps:,.0f} req/s | {cpu_ms:.3f} ms CPU")
    cells = []
    for run in running:
        rss = peak_rss_mb(descendants(run.pid))
        for conns in CONNECTIONS:
            runs = results[(run.server.name, conns)]
            cpu = statistics.median(cpu_ms for _, cpu_ms in runs)
            cells.append(Cell(app.name, run.server.name, conns, median_result([r for r, _ in runs]), cpu, rss))
    return cells


def format_cell(cell: Cell) -> str:
    head = f"| {cell.app} | {cell.server} | {cell.connections} |"
    w = cell.wrk
    if w is None:
        return f"{head} not installed | | | | | |"
    errors = w.non2xx + w.socket_errors
    return (
        f"{head} {w.rps:,.0f} | {w.p50_ms:.2f} | {w.p99_ms:.2f} | {cell.cpu_ms_per_request:.3f} | "
        f"{cell.peak_rss_mb:.0f} | {errors} |"
    )


HEADER = (
    "| app | server | conns | req/s | p50 ms | p99 ms | server CPU ms/req | peak RSS MB | errors |\n"
    "|---|---|---:|---:|---:|---:|---:|---:|---:|"
)


def versions() -> list[str]:
    lines = []
    for package in ("uvicorn", "uvloop", "httptools", "h11", "granian", "hypercorn", "orjson"):
        try:
            lines.append(f"- {package} {version(package)}")
        except PackageNotFoundError:
            lines.append(f"- {package}: not installed")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.servers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--apps", default="minimal,gateway", help="comma-separated: minimal, gateway")
    parser.add_argument("--seconds", type=float, default=4.0, help="wrk duration of each run (default 4)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per cell; the table gives medians (default 3)")
    args = parser.parse_args(argv)
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("bench: needs two cores (servers on core 0; wrk on core 1)")
    ensure_wrk()
    apps = [{"minimal": MINIMAL, "gateway": GATEWAY}[name.strip()] for name in args.apps.split(",") if name.strip()]
    available = [s for s in SERVERS if installed(s.package)]
    missing = [s for s in SERVERS if not installed(s.package)]
    cells: list[Cell] = []
    commands: list[str] = []
    with tempfile.TemporaryDirectory(prefix="tollgate-bench-servers-") as tmp_name:
        for app in apps:
            with serving(app, Path(tmp_name), available) as running:
                commands += [run.command for run in running]
                cells += measure(app, running, args.seconds, args.repeat)
            cells += [Cell(app.name, s.name, c, None, 0.0, 0.0) for s in missing for c in CONNECTIONS]
    wrk_example = shlex.join(wrk_command("http://127.0.0.1:PORT", ENDPOINTS[0], "bench-gpt", 16, args.seconds, True))
    invocation = f"python -m bench.servers {shlex.join(sys.argv[1:])}".rstrip()
    print(f"\n`{invocation}` on {time.strftime('%Y-%m-%d %H:%M %Z')}; ", end="")
    print(f"{args.seconds:g} s of wrk per run, {args.repeat} runs per cell, medians.\n")
    print("\n".join([*machine(), *versions()]) + "\n")
    print(HEADER)
    print("\n".join(format_cell(c) for c in cells))
    print("\nCommands:\n\n```\n" + "\n".join([*commands, wrk_example]) + "\n```")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
