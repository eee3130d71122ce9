"""Recorded-shape provider transcripts (``tests/data/transcripts``) and ways to feed them to a ``StreamMeter``."""

from __future__ import annotations

import random
from pathlib import Path

from tollgate.providers import ENDPOINTS, StreamMeter

DIRECTORY = Path(__file__).resolve().parent.parent / "data" / "transcripts"


def load(name: str) -> bytes:
    return (DIRECTORY / name).read_bytes()


def random_splits(stream: bytes, seed: int, largest: int) -> list[bytes]:
    rng = random.Random(seed)
    chunks, pos = [], 0
    while pos < len(stream):
        size = rng.randint(1, largest)
        chunks.append(stream[pos : pos + size])
        pos += size
    return chunks


def feedings(stream: bytes) -> dict[str, list[bytes]]:
    """The same bytes fed whole, one byte at a time, and in seeded random splits (small and network-sized)."""
    ways = {"whole": [stream], "bytewise": [stream[i : i + 1] for i in range(len(stream))]}
    for seed in range(3):
        ways[f"random-small-{seed}"] = random_splits(stream, seed, 16)
        ways[f"random-large-{seed}"] = random_splits(stream, 100 + seed, 700)
    return ways


def meter(path: str, chunks: list[bytes], *, hide_usage: bool = False) -> tuple[bytes, StreamMeter]:
    """Run chunks through a fresh meter, then close it; the relayed bytes and the meter."""
    stream_meter = StreamMeter(ENDPOINTS[path], hide_usage)
    relayed = b"".join(stream_meter.feed(chunk) for chunk in chunks) + stream_meter.close()
    return relayed, stream_meter


def events_of(stream: bytes) -> list[bytes]:
    """A LF-framed transcript cut at its blank lines (each piece keeps its terminating blank line)."""
    pieces = stream.split(b"\n\n")
    assert pieces[-1] == b"", "transcripts end with a blank line"
    return [piece + b"\n\n" for piece in pieces[:-1]]
