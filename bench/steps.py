"""Where one request's time goes at one connection: the gateway's steps, timed inside the worker.

Usage: ``.venv/bin/python -m bench.steps [--seconds 5] [--store redis|sqlite]``. Not a test; numbers of record:
``bench/results.md`` ("The 1-connection request, step by step").

Same layout as ``bench.run``: the simulator and the bench's own Redis on core 1 with wrk (one connection, openai chat,
not streamed), the gateway alone on core 0. The gateway runs as ``python -m bench.steps --worker CONFIG PORT OUT``:
that process wraps a few methods with clocks (``install``) and then serves exactly as ``tollgate serve --workers 1``
does. On SIGUSR1 it writes every request's marks to ``OUT``; this script prints the median of each step, in the order
a request meets them. The clocks cost about a microsecond per mark, so the steps sum a little above wrk's figure.
"""

from __future__ import annotations

import argparse
import contextvars
import functools
import itertools
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench import run

_MARKS: contextvars.ContextVar[dict[str, int]] = contextvars.ContextVar("bench_steps")
_WIRE: dict[str, int] = {"store.write": 0, "store.read": 0, "upstream.write": 0, "upstream.read": 0}
_ROWS: list[dict[str, int]] = []

# (label, from mark, to mark); "next.app" is the next request's arrival in the app.
STEPS: tuple[tuple[str, str, str], ...] = (
    ("headers, key, body, route, estimate", "app.start", "admit.start"),
    ("admission (reserve)", "admit.start", "admit.end"),
    ("  of which: until the command is written", "admit.start", "store.write"),
    ("  of which: written → reply read (store, both wake-ups)", "store.write", "store.read"),
    ("  of which: reply read → admitted", "store.read", "admit.end"),
    ("admitted → upstream call starts", "admit.end", "forward.start"),
    ("upstream call (headers back)", "forward.start", "forward.end"),
    ("  of which: until the request is written", "forward.start", "upstream.write"),
    ("  of which: written → first bytes read (provider, both wake-ups)", "upstream.write", "upstream.read"),
    ("answer complete: body, usage, cost, settle hand-off", "complete.start", "complete.end"),
    ("  of which: settle hand-off (EVALSHA written)", "hand_off.start", "hand_off.end"),
    ("answer written (head + body)", "send.start", "send.end"),
    ("after the answer: settle confirmed, log line, metrics", "send.end", "app.end"),
    ("answer written → next request reaches the app", "send.end", "next.app"),
    ("cycle (one request to the next)", "app.start", "next.app"),
)


def _now() -> int:
    return time.perf_counter_ns()


def _mark(name: str) -> None:
    marks = _MARKS.get(None)
    if marks is not None:
        marks[name] = _now()


def _timed(cls: Any, name: str, label: str, copy_wire: str = "") -> None:
    """Wrap the coroutine method ``cls.name``: marks ``label.start``/``label.end`` (and, at the end, the last wire
    write and read of ``copy_wire``)."""
    original = getattr(cls, name)

    @functools.wraps(original)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        _mark(f"{label}.start")
        try:
            return await original(*args, **kwargs)
        finally:
            _mark(f"{label}.end")
            marks = _MARKS.get(None)
            if copy_wire and marks is not None:
                marks[f"{copy_wire}.write"] = _WIRE[f"{copy_wire}.write"]
                marks[f"{copy_wire}.read"] = _WIRE[f"{copy_wire}.read"]

    setattr(cls, name, wrapper)


def _wire(cls: Any, write: str, read: str, side: str) -> None:
    """Stamp ``cls.write`` (every call) and ``cls.read`` (the first call after a write) for ``side``."""
    original_write, original_read = getattr(cls, write), getattr(cls, read)

    def on_write(self: Any, *args: Any) -> Any:
        _WIRE[f"{side}.write"] = _now()
        return original_write(self, *args)

    def on_read(self: Any, *args: Any) -> Any:
        if _WIRE[f"{side}.read"] < _WIRE[f"{side}.write"]:
            _WIRE[f"{side}.read"] = _now()
        return original_read(self, *args)

    setattr(cls, write, on_write)
    setattr(cls, read, on_read)


def install() -> None:
    """Put the clocks in (the worker process only)."""
    from tollgate.api import gateway
    from tollgate.services.admission import Admission
    from tollgate.services.proxy import ProxyService
    from tollgate.stores.resp import RespConnection
    from tollgate.upstream.http1 import Connection

    original_http = gateway.GatewayApp._http

    async def http(self: Any, *args: Any) -> None:
        marks = {"app.start": _now()}
        _MARKS.set(marks)
        try:
            await original_http(self, *args)
        finally:
            marks["app.end"] = _now()
            _ROWS.append(marks)

    gateway.GatewayApp._http = http  # type: ignore[method-assign,assignment]
    _timed(ProxyService, "_admit", "admit", copy_wire="store")
    _timed(ProxyService, "_forward", "forward", copy_wire="upstream")
    _timed(ProxyService, "_complete", "complete")
    _timed(Admission, "hand_off", "hand_off")
    _timed(gateway, "_send_json", "send")
    _wire(RespConnection, "_flush", "data_received", "store")
    _wire(Connection, "send", "data_received", "upstream")


def worker(config: str, port: int, out: str) -> int:
    """Serve like ``tollgate serve --workers 1`` with the clocks in; SIGUSR1 writes the marks to ``out``."""
    from tollgate.cli import main

    install()

    def dump(_signum: int, _frame: object) -> None:
        partial = Path(f"{out}.partial")
        partial.write_text(json.dumps(_ROWS))
        partial.rename(out)

    signal.signal(signal.SIGUSR1, dump)
    return main(["serve", "--config", config, "--port", str(port), "--workers", "1"])


def medians(rows: list[dict[str, int]], skip: int = 200) -> Iterator[tuple[str, float, int]]:
    """(step, median µs, requests that had both marks) per ``STEPS``; the first ``skip`` requests warm up."""
    rows = sorted(rows, key=lambda r: r["app.start"])[skip:]
    for current, following in itertools.pairwise(rows):
        current["next.app"] = following["app.start"]
    for label, start, end in STEPS:
        spans = [(r[end] - r[start]) / 1000 for r in rows if r.get(start) and r.get(end) and r[end] >= r[start]]
        if spans:
            yield label, statistics.median(spans), len(spans)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--store", choices=("redis", "sqlite"), default="redis")
    parser.add_argument("--worker", nargs=3, metavar=("CONFIG", "PORT", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        config, port, out = args.worker
        return worker(config, int(port), out)
    run.ensure_wrk()
    tmp = Path(tempfile.mkdtemp(prefix="tollgate-steps-"))
    sim_port = run.free_port()
    simulator = ["taskset", "-c", run.LOAD_CORE, run.TOLLGATE, "simulate", "--port", str(sim_port), "--no-record"]
    with run.redis_server(tmp) as redis_url, run.started(simulator, tmp / "simulator.log") as sim:
        run.wait_ready(*run.probe(sim_port, "gpt-4o-mini"), sim, tmp / "simulator.log")
        config, db, out = tmp / "steps.yaml", tmp / "steps.db", tmp / "marks.json"
        run.write_config(config, args.store, sim_port, db, redis_url)
        port = run.free_port()
        cmd = ["taskset", "-c", run.GATEWAY_CORE, sys.executable, "-m", "bench.steps", "--worker"]
        with run.started([*cmd, str(config), str(port), str(out)], tmp / "gateway.log") as gateway:
            run.wait_ready(*run.probe(port, "bench-gpt"), gateway, tmp / "gateway.log")
            endpoint = run.ENDPOINTS[0]
            url = f"http://127.0.0.1:{sim_port}"
            direct = run.run_wrk(run.wrk_command(url, endpoint, endpoint.upstream_model, 1, args.seconds, True))
            url = f"http://127.0.0.1:{port}"
            through = run.run_wrk(run.wrk_command(url, endpoint, endpoint.gateway_model, 1, args.seconds, True))
            os.kill(gateway.pid, signal.SIGUSR1)
            _wait_for(out.exists)
            rows = json.loads(out.read_text())
    print(f"{args.store} store, openai chat, 1 connection, {args.seconds:g} s; {len(rows)} requests timed")
    print(f"wrk p50: direct {direct.p50_ms * 1000:.0f} µs, through the gateway {through.p50_ms * 1000:.0f} µs")
    print("| step | median µs |\n|---|---:|")
    for label, micros, _count in medians(rows):
        print(f"| {label} | {micros:.1f} |")
    return 0


def _wait_for(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit("bench: the gateway wrote no marks")
        time.sleep(0.05)


if __name__ == "__main__":
    raise SystemExit(main())
