"""What the simulator does with one request: the default behaviour, overridden by directives in the model name.

A model name is ``+``-separated parts; every part that starts with ``sim-`` is a directive, the rest is the model
name proper (echoed back, otherwise ignored)::

    gpt-4o-mini+sim-latency-50+sim-chunk-delay-5

| directive                  | effect                                                                   |
|----------------------------|--------------------------------------------------------------------------|
| ``sim-status-N``           | answer with HTTP status N (400-599) and an error body in the dialect     |
| ``sim-latency-N``          | wait N ms before the response headers                                    |
| ``sim-chunk-delay-N``      | wait N ms between content chunks of a stream                             |
| ``sim-disconnect-after-N`` | stream N content chunks, then drop the connection (no closing events);   |
|                            | a non-streaming request is dropped before any response                   |
| ``sim-cached-N``           | report N cached input tokens (a cached prefix on top of the prompt)      |
| ``sim-cache-write-N``      | report N cache-write input tokens (on top of the prompt)                 |
| ``sim-reasoning-N``        | report N reasoning tokens (on top of the reply words)                    |
| ``sim-words-N``            | reply with N words when ``max_tokens`` (or its like) does not cut it     |

Pure: no I/O, no clock. An unknown or malformed ``sim-`` part is a ``ValueError`` (the app answers 400).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace

DEFAULT_REPLY_WORDS = 16
DIRECTIVE_PREFIX = "sim-"


@dataclass(frozen=True, slots=True)
class Behaviour:
    """How to answer one request; every field has a ``sim-`` directive of the same meaning."""

    status: int | None = None
    latency_ms: float = 0.0
    chunk_delay_ms: float = 0.0
    disconnect_after: int | None = None
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    reply_words: int = DEFAULT_REPLY_WORDS


def _status(text: str) -> int:
    status = int(text)
    if not 400 <= status <= 599:
        raise ValueError(f"sim-status must be 400-599, not {status}")
    return status


def _millis(text: str) -> float:
    return float(text)


# directive name → (Behaviour field, converter of the number after it)
_DIRECTIVES: dict[str, tuple[str, Callable[[str], object]]] = {
    "status": ("status", _status),
    "latency": ("latency_ms", _millis),
    "chunk-delay": ("chunk_delay_ms", _millis),
    "disconnect-after": ("disconnect_after", int),
    "cached": ("cached_tokens", int),
    "cache-write": ("cache_write_tokens", int),
    "reasoning": ("reasoning_tokens", int),
    "words": ("reply_words", int),
}
_DIRECTIVE_RE = re.compile(r"sim-([a-z-]+?)-(\d+(?:\.\d+)?)")


def parse_behaviour(model: str, default: Behaviour) -> Behaviour:
    """``default`` with every ``sim-`` directive found in ``model`` applied, left to right."""
    if DIRECTIVE_PREFIX not in model:
        return default  # the hot path: a plain model name
    changes: dict[str, object] = {}
    for part in model.split("+"):
        if not part.startswith(DIRECTIVE_PREFIX):
            continue
        match = _DIRECTIVE_RE.fullmatch(part)
        directive = _DIRECTIVES.get(match.group(1)) if match else None
        if match is None or directive is None:
            raise ValueError(f"unknown simulator directive {part!r}")
        field, convert = directive
        try:
            changes[field] = convert(match.group(2))
        except ValueError as exc:
            raise ValueError(f"bad simulator directive {part!r}: {exc}") from None
    return replace(default, **changes) if changes else default  # type: ignore[arg-type]
