"""Load benchmark: the simulated provider direct and through the gateway, cell by cell, with wrk.

Usage: ``python -m bench.run [--seconds 4] [--repeat 3] [--quick] [--stores sqlite,redis] [--profile-seconds 10]
[--out bench/results.md]`` (``make bench``). See ``bench/README.md``. Not a test: the numbers depend on the machine;
the numbers of record are in ``bench/results.md``.

Layout (two cores): the gateway (``tollgate serve --workers 1``) is pinned to core 0; the simulator
(``tollgate simulate --no-record``), the bench's own ``redis-server`` and wrk are pinned to core 1. Every cell runs
wrk direct to the simulator and then through the gateway, for the same number of seconds, with the same body,
``--repeat`` times; the report gives the median of each column. Everything started here runs in
its own process group and is killed in ``finally``.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import hashlib
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LUA = ROOT / "bench" / "lua"
TOLLGATE = str(Path(sys.executable).with_name("tollgate"))
PYSPY = str(Path(sys.executable).with_name("py-spy"))
BENCH_KEY = "tg-bench-" + "0123456789abcdef" * 4  # 64 hex digits: a valid, fixed, bench-only key
GATEWAY_CORE = "0"
LOAD_CORE = "1"
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclasses.dataclass(frozen=True)
class Endpoint:
    name: str
    lua: str
    gateway_model: str
    upstream_model: str
    stream: bool


ENDPOINTS = [
    Endpoint("openai chat", "openai_chat.lua", "bench-gpt", "gpt-4o-mini", False),
    Endpoint("openai chat stream", "openai_chat.lua", "bench-gpt", "gpt-4o-mini", True),
    Endpoint("anthropic messages", "anthropic_messages.lua", "bench-claude", "claude-haiku-4-5", False),
    Endpoint("anthropic messages stream", "anthropic_messages.lua", "bench-claude", "claude-haiku-4-5", True),
]


@dataclasses.dataclass(frozen=True)
class WrkResult:
    requests: int
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    non2xx: int
    socket_errors: int
    command: str


@dataclasses.dataclass(frozen=True)
class Row:
    store: str
    endpoint: str
    connections: int
    workers: int
    direct: WrkResult | None
    gateway: WrkResult
    cpu_ms_per_request: float
    peak_rss_mb: float
    cores_busy: tuple[int, ...] = ()  # % of each CPU busy (anything, not only the gateway) during the gateway runs
    beside_ms_per_request: float | None = None  # CPU of the simulator, the bench's Redis and wrk per gateway request


# ---------------------------------------------------------------- processes


@contextlib.contextmanager
def started(cmd: Sequence[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``cmd`` in its own process group, output to ``log``; kill the whole group on exit."""
    with log.open("ab") as out:
        proc = subprocess.Popen(list(cmd), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        # workers of a multi-process server may outlive the parent by a moment: sweep the group
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def redis_server(tmp: Path) -> Iterator[str]:
    """The bench's own Redis (no persistence), pinned with the load generator; yields its URL."""
    with redis_process(tmp) as (url, _pid):
        yield url


@contextlib.contextmanager
def redis_process(tmp: Path) -> Iterator[tuple[str, int]]:
    """``redis_server``, yielding its URL and its process id."""
    if not shutil.which("redis-server"):
        raise SystemExit("bench: redis-server is not installed (apt-get install -y redis-server)")
    port = free_port()
    cmd = ["taskset", "-c", LOAD_CORE, "redis-server", "--port", str(port), "--bind", "127.0.0.1"]
    cmd += ["--save", "", "--appendonly", "no", "--dir", str(tmp)]
    log = tmp / "redis.log"
    with started(cmd, log) as proc:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"bench: redis-server exited with {proc.returncode}; log:\n{log.read_text()[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(64).startswith(b"+PONG"):
                    break
            if time.monotonic() > deadline:
                raise SystemExit("bench: redis-server not answering after 30 s")
            time.sleep(0.1)
        yield f"redis://127.0.0.1:{port}/0", proc.pid  # taskset runs redis-server in its own process


def wait_ready(url: str, body: bytes, headers: dict[str, str], proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"bench: {url} exited with {proc.returncode}; log:\n{log.read_text()[-3000:]}")
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                if response.status == 200:
                    response.read()
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise SystemExit(f"bench: {url} not ready after 60 s; log:\n{log.read_text()[-3000:]}")


def descendants(pid: int) -> list[int]:
    """``pid`` and every live descendant."""
    children: dict[int, list[int]] = collections.defaultdict(list)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        children[ppid].append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo.extend(children.get(current, []))
    return out


def cpu_seconds(pids: Sequence[int]) -> float:
    """utime + stime of ``pids`` (from /proc/<pid>/stat), in seconds."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{pid}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            total += int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)
    return total / CLK_TCK


def children_cpu_seconds() -> float:
    """User + system CPU of this process's children that have ended and been waited for (wrk runs), in seconds."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def core_jiffies() -> list[tuple[int, int]]:
    """(busy, busy + idle) clock ticks per CPU since boot, from /proc/stat; busy is user, nice, system, irq, softirq."""
    ticks = []
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("cpu") and line[3].isdigit():
            user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in line.split()[1:9])
            busy = user + nice + system + irq + softirq
            ticks.append((busy, busy + idle + iowait + steal))
    return ticks


def busy_percent(before: Sequence[tuple[int, int]], after: Sequence[tuple[int, int]]) -> tuple[int, ...]:
    return tuple(round(100 * (a[0] - b[0]) / max(1, a[1] - b[1])) for b, a in zip(before, after, strict=True))


def peak_rss_mb(pids: Sequence[int]) -> float:
    """The largest VmHWM of ``pids``, in MB (10^6 bytes)."""
    peak = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
    return peak * 1024 / 1e6


def worker_pids(server_pid: int, workers: int) -> list[int]:
    """The processes that serve requests: the server itself with one worker, else its children."""
    pids = descendants(server_pid)
    return pids if workers == 1 else [pid for pid in pids if pid != server_pid]


# ---------------------------------------------------------------- wrk


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        raise ValueError(f"bench: cannot read wrk latency {text!r}")
    return float(match[1]) * _UNITS[match[2]]


def parse_wrk(output: str, command: str) -> WrkResult:
    def percentile(p: str) -> float:
        match = re.search(rf"^\s*{p}%\s+(\S+)", output, re.M)
        return _ms(match[1]) if match else float("nan")

    requests = re.search(r"(\d+) requests in", output)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if not requests or not rps:
        raise SystemExit(f"bench: cannot read wrk output of {command}:\n{output}")
    return WrkResult(
        requests=int(requests[1]),
        rps=float(rps[1]),
        p50_ms=percentile("50"),
        p90_ms=percentile("90"),
        p99_ms=percentile("99"),
        non2xx=int(non2xx[1]) if non2xx else 0,
        socket_errors=sum(int(n) for n in sock.groups()) if sock else 0,
        command=command,
    )


def wrk_command(url: str, endpoint: Endpoint, model: str, connections: int, seconds: float, pin: bool) -> list[str]:
    cmd = ["taskset", "-c", LOAD_CORE] if pin else []
    cmd += ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", "-s", f"bench/lua/{endpoint.lua}", url]
    return [*cmd, "--", model, "1" if endpoint.stream else "0", BENCH_KEY]


def run_wrk(cmd: list[str]) -> WrkResult:
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"bench: {shlex.join(cmd)} failed:\n{done.stdout}\n{done.stderr}")
    return parse_wrk(done.stdout, shlex.join(cmd))


# ---------------------------------------------------------------- config


def write_config(path: Path, store: str, sim_port: int, db: Path, redis_url: str) -> None:
    sqlite_url = f"sqlite:///{db}"  # db is absolute, so four slashes
    store_url = redis_url if store == "redis" else sqlite_url
    key_hash = hashlib.sha256(BENCH_KEY.encode()).hexdigest()
    big = "{tokens: 1000000000000, usd: 1000000000}"
    path.write_text(
        f"""timezone: UTC
store: {store_url}
ledger: {sqlite_url}
log_level: info
providers:
  sim-openai: {{type: openai, base_url: "http://127.0.0.1:{sim_port}/v1"}}
  sim-anthropic: {{type: anthropic, base_url: "http://127.0.0.1:{sim_port}"}}
models:
  - {{name: bench-gpt, provider: sim-openai, upstream_model: gpt-4o-mini}}
  - {{name: bench-claude, provider: sim-anthropic, upstream_model: claude-haiku-4-5}}
keys:
  - {{name: bench, key: "sha256:{key_hash}", developer: bench-dev, team: bench-team, env: dev}}
budgets:
  - {{name: bench-developer, scope: developer, window: daily, limit: {big}, enforce: hard}}
  - {{name: bench-team, scope: team, window: monthly, limit: {big}, enforce: hard}}
  - {{name: bench-env, scope: env, window: daily, limit: {big}, enforce: hard}}
"""
    )


def flush_redis(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


def ledger_rows(db: Path) -> int:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        names = [r[0] for r in conn.execute("select name from sqlite_master where type='table'")]
        table = next((n for n in names if "ledger" in n or n == "usage"), None)
        if table is None:
            return -1
        count: int = conn.execute(f"select count(*) from {table}").fetchone()[0]
        return count


# ---------------------------------------------------------------- the run


def probe(port: int, model: str) -> tuple[str, bytes, dict[str, str]]:
    body = f'{{"model":"{model}","max_tokens":4,"messages":[{{"role":"user","content":"hi"}}]}}'.encode()
    headers = {"content-type": "application/json", "authorization": f"Bearer {BENCH_KEY}"}
    return f"http://127.0.0.1:{port}/v1/chat/completions", body, headers


@contextlib.contextmanager
def gateway(
    tmp: Path, store: str, sim_port: int, workers: int, pin: bool, tag: str, redis_url: str
) -> Iterator[tuple[int, int, Path, str]]:
    """A fresh gateway (fresh stores): yields (pid, port, ledger db, command)."""
    db = tmp / f"{tag}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    if store == "redis":
        flush_redis(redis_url)
    config = tmp / f"{tag}.yaml"
    write_config(config, store, sim_port, db, redis_url)
    port = free_port()
    cmd = ["taskset", "-c", GATEWAY_CORE] if pin else []
    cmd += [TOLLGATE, "serve", "--config", str(config), "--port", str(port), "--workers", str(workers)]
    log = tmp / f"{tag}.log"
    with started(cmd, log) as proc:
        wait_ready(*probe(port, "bench-gpt"), proc, log)
        yield proc.pid, port, db, shlex.join(cmd)


def measure(
    store: str,
    endpoint: Endpoint,
    connections: int,
    seconds: float,
    sim_port: int,
    gw_pid: int,
    gw_port: int,
    workers: int,
    direct: bool,
    repeat: int,
    beside: Sequence[int] = (),
) -> Row:
    """``repeat`` pairs of runs (direct, then gateway); each column is the median over the pairs. ``beside``: the
    processes that share the machine with the gateway (simulator, Redis), counted with wrk in ``beside CPU``."""
    pin = workers == 1
    directs: list[WrkResult] = []
    gateways: list[WrkResult] = []
    cpu_per_request: list[float] = []
    beside_per_request: list[float] = []
    busy: list[tuple[int, ...]] = []
    for _ in range(repeat):
        if direct:
            directs.append(
                run_wrk(
                    wrk_command(
                        f"http://127.0.0.1:{sim_port}", endpoint, endpoint.upstream_model, connections, seconds, True
                    )
                )
            )
        pids = worker_pids(gw_pid, workers)
        before, cores_before = cpu_seconds(pids), core_jiffies()
        beside_before = cpu_seconds(beside) + children_cpu_seconds()
        result = run_wrk(
            wrk_command(f"http://127.0.0.1:{gw_port}", endpoint, endpoint.gateway_model, connections, seconds, pin)
        )
        cpu_per_request.append((cpu_seconds(pids) - before) * 1000 / max(result.requests, 1))
        beside_cpu = cpu_seconds(beside) + children_cpu_seconds() - beside_before
        beside_per_request.append(beside_cpu * 1000 / max(result.requests, 1))
        busy.append(busy_percent(cores_before, core_jiffies()))
        gateways.append(result)
    row = Row(
        store=store,
        endpoint=endpoint.name,
        connections=connections,
        workers=workers,
        direct=median_result(directs) if directs else None,
        gateway=median_result(gateways),
        cpu_ms_per_request=statistics.median(cpu_per_request),
        peak_rss_mb=peak_rss_mb(worker_pids(gw_pid, workers)),
        cores_busy=tuple(round(statistics.median(core)) for core in zip(*busy, strict=True)),
        beside_ms_per_request=statistics.median(beside_per_request) if beside else None,
    )
    print(format_row(row), flush=True)
    return row


def median_result(results: Sequence[WrkResult]) -> WrkResult:
    """The median of each rate and latency over repeated runs; requests and errors summed."""
    return WrkResult(
        requests=sum(r.requests for r in results),
        rps=statistics.median(r.rps for r in results),
        p50_ms=statistics.median(r.p50_ms for r in results),
        p90_ms=statistics.median(r.p90_ms for r in results),
        p99_ms=statistics.median(r.p99_ms for r in results),
        non2xx=sum(r.non2xx for r in results),
        socket_errors=sum(r.socket_errors for r in results),
        command=results[0].command,
    )


def profile(tmp: Path, sim_port: int, store: str, seconds: float, redis_url: str) -> tuple[str, str]:
    """py-spy the gateway worker under openai non-stream load at 16 connections; (command, markdown breakdown)."""
    if not Path(PYSPY).exists():
        return "", "py-spy is not installed (`.venv/bin/pip install py-spy`); no profile.\n"
    endpoint = ENDPOINTS[0]
    raw = tmp / "profile.txt"
    with gateway(tmp, store, sim_port, 1, True, "profile", redis_url) as (pid, port, _db, _cmd):
        wrk = wrk_command(f"http://127.0.0.1:{port}", endpoint, endpoint.gateway_model, 16, seconds + 4, True)
        with started(wrk, tmp / "profile-wrk.log"):
            time.sleep(2)
            spy = [PYSPY, "record", "--pid", str(pid), "--duration", f"{seconds:g}", "--rate", "250"]
            spy += ["--format", "raw", "--nonblocking", "--output", str(raw)]
            done = subprocess.run(spy, capture_output=True, text=True, check=False)
            if done.returncode != 0 or not raw.exists():
                return shlex.join(spy), f"py-spy failed:\n\n```\n{done.stderr[-2000:]}\n```\n"
    return shlex.join(spy), breakdown(raw.read_text())


def breakdown(collapsed: str, top: int = 30) -> str:
    """Self time and inclusive time per function from py-spy's collapsed stacks."""
    self_time: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    files: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [_frame(f) for f in stack.split(";") if f.strip()]
        if not frames:
            continue
        self_time[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
        for module in {_module(f) for f in frames}:
            files[module] += count
    if total == 0:
        return "py-spy collected no samples.\n"

    def table(counter: collections.Counter[str], title: str) -> list[str]:
        lines = [f"| {title} | % of samples |", "|---|---:|"]
        lines += [f"| `{name}` | {100 * n / total:.1f} |" for name, n in counter.most_common(top)]
        return lines

    out = [f"{total} samples.", "", "**Self time** (the frame on top of the stack):", ""]
    out += table(self_time, "function (file:line of the def)")
    out += ["", "**Inclusive time** (the frame anywhere on the stack):", ""]
    out += table(inclusive, "function")
    out += ["", "**Inclusive time per file:**", ""]
    out += table(files, "file")
    return "\n".join(out) + "\n"


def _frame(frame: str) -> str:
    # py-spy raw frames look like "handle (tollgate/api/gateway.py:42)"
    frame = frame.strip()
    match = re.fullmatch(r"(.*?) \((.*?)(?::\d+)?\)", frame)
    if not match:
        return frame
    return f"{match[1]} ({_short(match[2])})"


def _module(frame: str) -> str:
    match = re.search(r"\((.*)\)$", frame)
    return match[1] if match else frame


def _short(path: str) -> str:
    for marker in ("site-packages/", "/src/", "lib/python3.11/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


# ---------------------------------------------------------------- report


def format_row(row: Row) -> str:
    d, g = row.direct, row.gateway
    added = f"{g.p50_ms - d.p50_ms:.2f}" if d else "—"
    direct = f"{d.rps:,.0f} | {d.p50_ms:.2f} | {d.p99_ms:.2f}" if d else "— | — | —"
    errors = g.non2xx + g.socket_errors + ((d.non2xx + d.socket_errors) if d else 0)
    beside = f"{row.beside_ms_per_request:.3f}" if row.beside_ms_per_request is not None else "—"
    return (
        f"| {row.store} | {row.endpoint} | {row.connections} | {row.workers} | {direct} | {g.rps:,.0f} | "
        f"{g.p50_ms:.2f} | {g.p90_ms:.2f} | {g.p99_ms:.2f} | {added} | {row.cpu_ms_per_request:.3f} | {beside} | "
        f"{row.peak_rss_mb:.0f} | {errors} | {' / '.join(map(str, row.cores_busy))} |"
    )


HEADER = (
    "| store | endpoint | conns | workers | direct req/s | direct p50 ms | direct p99 ms | gateway req/s | "
    "gw p50 ms | gw p90 ms | gw p99 ms | added p50 ms | gw CPU ms/req | beside CPU ms/req | peak RSS MB | errors | "
    "cores busy % |\n"
    "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def versions() -> list[str]:
    def out(cmd: list[str]) -> str:
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=10)
        except OSError:
            return "not found"
        return (done.stdout + done.stderr).strip().splitlines()[0] if (done.stdout + done.stderr).strip() else "?"

    from importlib.metadata import PackageNotFoundError, version

    lines = [f"- Python {platform.python_version()} ({sys.executable})"]
    for package in ("tollgate", "uvicorn", "uvloop", "httptools", "aiohttp", "orjson", "redis", "hiredis", "py-spy"):
        try:
            lines.append(f"- {package} {version(package)}")
        except PackageNotFoundError:
            lines.append(f"- {package}: not installed")
    lines.append(f"- SQLite {sqlite3.sqlite_version}")
    lines.append(f"- {out(['redis-server', '--version'])}")
    lines.append(f"- {out(['wrk', '-v'])}")
    lines.append(f"- kernel {platform.release()}")
    return lines


def machine() -> list[str]:
    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with contextlib.suppress(OSError):
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split(":", 1)[1].strip()
    return [f"- nproc: {os.cpu_count()}", f"- CPU: {model}", f"- memory: {mem}"]


def ensure_wrk() -> None:
    if shutil.which("wrk"):
        return
    print("bench: installing wrk (apt-get install -y wrk)", file=sys.stderr)
    prefix = [] if os.geteuid() == 0 else ["sudo"]
    subprocess.run([*prefix, "apt-get", "install", "-y", "wrk"], check=False)
    if not shutil.which("wrk"):
        subprocess.run([*prefix, "apt-get", "update"], check=False)
        subprocess.run([*prefix, "apt-get", "install", "-y", "wrk"], check=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="wrk duration of each run (default 4)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per cell; the report gives medians (default 3)")
    parser.add_argument("--quick", action="store_true", help="a small subset: openai chat, 1 and 16 connections")
    parser.add_argument("--stores", default="sqlite,redis", help="comma-separated: sqlite, redis")
    parser.add_argument("--connections", default="1,16,64", help="comma-separated connection counts")
    parser.add_argument("--profile-seconds", type=float, default=10.0, help="py-spy duration (0: no profile)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results.md"), help="the report to write")
    args = parser.parse_args(argv)
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("bench: needs two cores (gateway on core 0; simulator and wrk on core 1)")
    ensure_wrk()
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    connections = [int(c) for c in args.connections.split(",")]
    endpoints = ENDPOINTS
    if args.quick:
        endpoints, connections = ENDPOINTS[:1], [c for c in connections if c <= 16] or [1]

    rows: list[Row] = []
    commands: list[str] = []
    ledger_notes: list[str] = []
    profile_cmd, profile_text = "", ""
    with tempfile.TemporaryDirectory(prefix="tollgate-bench-") as tmp_name:
        tmp = Path(tmp_name)
        sim_port = free_port()
        sim_cmd = ["taskset", "-c", LOAD_CORE, TOLLGATE, "simulate", "--port", str(sim_port), "--no-record"]
        commands.append(shlex.join(sim_cmd))
        with started(sim_cmd, tmp / "simulator.log") as sim, redis_process(tmp) as (redis_url, redis_pid):
            url, body, headers = probe(sim_port, "gpt-4o-mini")
            wait_ready(url, body, headers, sim, tmp / "simulator.log")
            beside = [*descendants(sim.pid), redis_pid]
            print(HEADER, flush=True)
            for store in stores:
                with gateway(tmp, store, sim_port, 1, True, store, redis_url) as (pid, port, db, cmd):
                    commands.append(cmd)
                    # warm-up: imports, connection pools, caches (not reported)
                    run_wrk(wrk_command(f"http://127.0.0.1:{port}", ENDPOINTS[0], "bench-gpt", 16, 2, True))
                    for endpoint in endpoints:
                        for conns in connections:
                            row = measure(
                                store, endpoint, conns, args.seconds, sim_port, pid, port, 1, True, args.repeat, beside
                            )
                            rows.append(row)
                            commands.append(row.direct.command if row.direct else "")
                            commands.append(row.gateway.command)
                    ledger_notes.append(f"{store}: {ledger_rows(db)} ledger rows after the run")
                if not args.quick:
                    try:
                        with gateway(tmp, store, sim_port, 2, False, f"{store}-w2", redis_url) as (pid, port, _db, cmd):
                            commands.append(cmd)
                            run_wrk(wrk_command(f"http://127.0.0.1:{port}", ENDPOINTS[0], "bench-gpt", 16, 2, False))
                            for conns in [c for c in connections if c >= 16]:
                                row = measure(
                                    store,
                                    ENDPOINTS[0],
                                    conns,
                                    args.seconds,
                                    sim_port,
                                    pid,
                                    port,
                                    2,
                                    False,
                                    args.repeat,
                                    beside,
                                )
                                rows.append(row)
                                commands.append(row.gateway.command)
                    except SystemExit as exc:  # report the failure, keep the rest of the run
                        log_tail = (tmp / f"{store}-w2.log").read_text()[-1500:]
                        ledger_notes.append(f"{store} --workers 2 FAILED: {exc}\n\n```\n{log_tail}\n```\n")
                        print(f"bench: {store} --workers 2 failed: {exc}\n{log_tail}", file=sys.stderr)
            if args.profile_seconds > 0 and not args.quick:
                profile_store = "redis" if "redis" in stores else stores[0]
                profile_cmd, profile_text = profile(tmp, sim_port, profile_store, args.profile_seconds, redis_url)
    write_report(Path(args.out), args, rows, commands, ledger_notes, profile_cmd, profile_text)
    print(f"bench: wrote {args.out}", file=sys.stderr)
    return 0


def write_report(
    out: Path,
    args: argparse.Namespace,
    rows: list[Row],
    commands: list[str],
    ledger_notes: list[str],
    profile_cmd: str,
    profile_text: str,
) -> None:
    argv = " ".join(shlex.quote(a) for a in sys.argv[1:])
    lines = [
        "# Load benchmark results",
        "",
        f"Written by `python -m bench.run {argv}`".rstrip() + f" on {time.strftime('%Y-%m-%d %H:%M %Z')}; "
        f"{args.seconds:g} s of wrk per run, {args.repeat} runs per cell, medians. "
        "See `bench/README.md` for what each column means.",
        "",
        "## Machine",
        "",
        *machine(),
        "",
        "## Versions",
        "",
        *versions(),
        "",
        "## Results",
        "",
        HEADER,
        *(format_row(r) for r in rows),
        "",
        *(f"- {note}" for note in ledger_notes),
        "",
        "## Commands",
        "",
        "```",
        *dict.fromkeys(c for c in commands if c),
        "```",
        "",
    ]
    if profile_text:
        lines += ["## Profile", "", f"`{profile_cmd}`", "", profile_text]
    out.write_text("\n".join(lines))


if __name__ == "__main__":
    raise SystemExit(main())
