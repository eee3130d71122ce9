"""Micro-benchmark: the gateway's JSON work per request under stdlib ``json``, ``orjson``, ``msgspec`` and ``ujson``.

Usage: ``.venv/bin/python -m bench.json_libs [--repeat 7]``. Not a test: timings depend on the machine; the numbers
of record are in ``docs/decisions/0017-orjson.md``. A library that is not installed is reported "not installed"
(only orjson is a dependency; ``pip install msgspec ujson`` to measure the others).

What one proxied request does with JSON (``services/proxy.py``, ``providers/translate.py``, ``providers/base.py``,
``services/admission.py``, ``services/recorder.py``), timed one operation at a time, in µs:

1. parse the caller's chat request body (~1 KB: model, messages, max_tokens, stream);
2. serialise the rewritten request that goes upstream;
3. parse the provider's chat completion (the recorded ``tests/data/transcripts/openai_chat.json``) to read ``usage``;
4. serialise the ``UsageRecord`` (twice per request: the settle's ledger payload and the usage log line).

Every operation yields what the gateway needs (a dict in, bytes out): libraries that return ``str`` pay for the
``.encode()``; libraries that cannot serialise a dataclass pay for ``dataclasses.asdict``. Each cell is the median
of ``--repeat`` timeit repeats, each long enough (``Timer.autorange``) to be above the clock's noise; the libraries
are interleaved within each repeat. The outputs are checked to decode to the same value before anything is timed.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import platform
import statistics
import sys
import timeit
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson

# tollgate has no py.typed marker, so outside src/ mypy sees it as untyped (with MYPYPATH=src it is typed)
from tollgate.types import Usage, UsageRecord  # type: ignore[import-untyped, unused-ignore]

ROOT = Path(__file__).resolve().parent.parent
RESPONSE = (ROOT / "tests" / "data" / "transcripts" / "openai_chat.json").read_bytes().strip()
SYSTEM = (
    "You are a careful assistant for the platform team. Answer in plain English, cite the file and line you rely "
    "on, and say so when you are not sure. Prefer short answers; use a list only for steps that must be followed "
    "in order. Never invent configuration keys: if a setting is not in the documentation, say that it is not."
)
QUESTION = (
    "Our nightly job started failing after the upgrade. The log says the connection pool is exhausted after about "
    "forty minutes, always while the report step runs. We did not change the pool size. What changed in the "
    "upgrade that could explain it, and what should we check first?"
)
REQUEST = orjson.dumps(
    {
        "model": "bench-gpt",
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": "Which version are we on?"},
            {"role": "assistant", "content": "The lock file pins 4.2.1; the changelog lists 4.2.0 as the upgrade."},
            {"role": "user", "content": QUESTION},
        ],
        "max_tokens": 512,
        "stream": False,
    }
)
RECORD = UsageRecord(
    request_id="req_01JH8Z2Q4W7N3KX5V6B9C0DMEF",
    started_at=1752841200.123456,
    key_name="ci-payments",
    developer="dana.smith",
    team="payments",
    repo="acme/payments-service",
    env="ci",
    endpoint="/v1/chat/completions",
    model="bench-gpt",
    upstream_model="gpt-4o-mini",
    provider="openai",
    deployment="openai-eu",
    usage=Usage(
        input_tokens=2006, output_tokens=300, cached_input_tokens=1920, cache_write_tokens=0, reasoning_tokens=256
    ),
    usage_source="provider",
    cost_micros=1234,
    estimate_tokens=2100,
    status=200,
    outcome="ok",
    rejected_by=None,
    streamed=False,
    latency_ms=812.5,
    ttft_ms=None,
)
LIBRARIES = ("json", "orjson", "msgspec", "ujson")


@dataclasses.dataclass(frozen=True)
class Codec:
    """One library's way of doing the four operations, each returning what the gateway needs."""

    name: str
    loads: Callable[[bytes], Any]
    dumps: Callable[[Any], bytes]
    dump_record: Callable[[UsageRecord], bytes]


def _optional(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def codecs() -> dict[str, Codec | None]:
    """Each library's codec; None for one that is not installed."""
    found: dict[str, Codec | None] = {
        "json": Codec(
            "json",
            json.loads,
            lambda v: json.dumps(v, separators=(",", ":")).encode(),
            lambda r: json.dumps(dataclasses.asdict(r), separators=(",", ":")).encode(),
        ),
        "orjson": Codec("orjson", orjson.loads, orjson.dumps, orjson.dumps),
    }
    msgspec = _optional("msgspec")
    found["msgspec"] = None
    if msgspec is not None:
        encoder, decoder = msgspec.json.Encoder(), msgspec.json.Decoder()
        found["msgspec"] = Codec("msgspec", decoder.decode, encoder.encode, encoder.encode)
    ujson = _optional("ujson")
    found["ujson"] = None
    if ujson is not None:
        found["ujson"] = Codec(
            "ujson",
            ujson.loads,
            lambda v: ujson.dumps(v, ensure_ascii=False).encode(),
            lambda r: ujson.dumps(dataclasses.asdict(r), ensure_ascii=False).encode(),
        )
    return found


def operations(codec: Codec) -> dict[str, Callable[[], object]]:
    """The four timed operations, bound to one library."""
    request = codec.loads(REQUEST)
    upstream = {**request, "model": "gpt-4o-mini"}
    return {
        "parse chat request (1 KB)": lambda: codec.loads(REQUEST),
        "serialise upstream request": lambda: codec.dumps(upstream),
        "parse chat completion, read usage": lambda: codec.loads(RESPONSE)["usage"]["prompt_tokens"],
        "serialise UsageRecord (22 fields + 5 in usage)": lambda: codec.dump_record(RECORD),
    }


# how often one proxied request does each operation (the record is serialised for the settle and for the log line)
PER_REQUEST = {
    "parse chat request (1 KB)": 1,
    "serialise upstream request": 1,
    "parse chat completion, read usage": 1,
    "serialise UsageRecord (22 fields + 5 in usage)": 2,
}


def check_same(found: dict[str, Codec | None]) -> None:
    """Every library must produce what orjson produces (compared as decoded values), or its timing means nothing."""
    reference = orjson.loads(orjson.dumps(RECORD))
    request = orjson.loads(REQUEST)
    for codec in (c for c in found.values() if c is not None):
        if orjson.loads(codec.dump_record(RECORD)) != reference:
            raise SystemExit(f"bench: {codec.name} serialises UsageRecord differently")
        if codec.loads(REQUEST) != request or orjson.loads(codec.dumps(request)) != request:
            raise SystemExit(f"bench: {codec.name} does not round-trip the chat request")
        if codec.loads(RESPONSE) != orjson.loads(RESPONSE):
            raise SystemExit(f"bench: {codec.name} parses the chat completion differently")


def measure(found: dict[str, Codec | None], repeat: int) -> dict[tuple[str, str], float]:
    """Median µs per operation for each (operation, library); libraries interleaved within each repeat."""
    timers = {
        (op, name): timeit.Timer(fn)
        for name, codec in found.items()
        if codec is not None
        for op, fn in operations(codec).items()
    }
    numbers = {key: timer.autorange()[0] for key, timer in timers.items()}
    samples: dict[tuple[str, str], list[float]] = {key: [] for key in timers}
    for _ in range(repeat):
        for key, timer in timers.items():
            samples[key].append(timer.timeit(numbers[key]) / numbers[key] * 1e6)
    return {key: statistics.median(values) for key, values in samples.items()}


def table(found: dict[str, Codec | None], us: dict[tuple[str, str], float]) -> list[str]:
    names = list(found)
    lines = [
        "| operation (µs, median) | " + " | ".join(f"`{n}`" for n in names) + " |",
        "|---|" + "---:|" * len(names),
    ]

    def cell(op: str, name: str) -> str:
        return "not installed" if found[name] is None else f"{us[(op, name)]:.2f}"

    for op in PER_REQUEST:
        lines.append(f"| {op} | " + " | ".join(cell(op, n) for n in names) + " |")
    total = {n: sum(k * us[(op, n)] for op, k in PER_REQUEST.items()) for n in names if found[n] is not None}
    per_request = " | ".join(f"**{total[n]:.2f}**" if n in total else "not installed" for n in names)
    lines.append(f"| **one request** (1+1+1+2 of the above) | {per_request} |")
    return lines


def versions(found: dict[str, Codec | None]) -> str:
    parts = [f"Python {platform.python_version()}"]
    for name in found:
        if name == "json" or found[name] is None:
            continue
        try:
            parts.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            parts.append(f"{name} not installed")
    return ", ".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.json_libs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7, help="timeit repeats per cell; medians (default 7)")
    args = parser.parse_args(argv)
    found = codecs()
    check_same(found)
    us = measure(found, args.repeat)
    invocation = " ".join(["python -m bench.json_libs", *sys.argv[1:]])
    print(f"`{invocation}`; {versions(found)}.")
    print(f"Request body {len(REQUEST)} bytes, chat completion {len(RESPONSE)} bytes.\n")
    print("\n".join(table(found, us)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
