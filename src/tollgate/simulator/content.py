"""The deterministic reply and its token counts (pure: the rules ``docs/simulator.md`` states for tests).

- Reply: ``min(limit, reply_words)`` words cycled from ``WORDS``, joined by single spaces, where ``limit`` is the
  request's ``max_tokens`` / ``max_completion_tokens`` / ``max_output_tokens`` (whichever is present, in that
  order). Streamed, the first chunk is the first word and every later chunk is ``" " + word``.
- Output tokens: one per reply word, plus ``sim-reasoning-N``.
- Prompt tokens: ``max(1, ceil(characters / 4))`` over every text the prompt carries (see ``prompt_chars``).
  ``sim-cached-N`` and ``sim-cache-write-N`` add tokens on top (a cached prefix, as if a system prompt were
  cached), so OpenAI's ``prompt_tokens`` = prompt + cached + cache-write while Anthropic's ``input_tokens`` =
  prompt alone, beside ``cache_read_input_tokens`` and ``cache_creation_input_tokens``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tollgate.simulator.behaviour import Behaviour

WORDS: tuple[str, ...] = (
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliet",
    "kilo",
    "lima",
    "mike",
    "november",
    "oscar",
    "papa",
)

# Request fields that cap the reply, in the order they are looked for.
LIMIT_FIELDS = ("max_tokens", "max_completion_tokens", "max_output_tokens")


@dataclass(frozen=True, slots=True)
class Reply:
    """One answer's words and the usage to report for it."""

    words: tuple[str, ...]
    truncated: bool  # cut by the request's limit (finish reason "length" / "max_tokens")
    prompt_tokens: int  # the prompt text alone
    cached_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int

    @property
    def text(self) -> str:
        return " ".join(self.words)

    @property
    def output_tokens(self) -> int:
        return len(self.words) + self.reasoning_tokens

    @property
    def input_tokens(self) -> int:
        """Every input token, cached and cache-write included (OpenAI's ``prompt_tokens``)."""
        return self.prompt_tokens + self.cached_tokens + self.cache_write_tokens

    def chunks(self) -> list[str]:
        """The text as streamed: one word per chunk, later words with their leading space."""
        return [word if i == 0 else " " + word for i, word in enumerate(self.words)]


def reply_words(count: int) -> tuple[str, ...]:
    return tuple(WORDS[i % len(WORDS)] for i in range(count))


def prompt_chars(value: Any) -> int:
    """Characters of text in a prompt value: a string, a list of them, or message/part objects.

    Strings count whole; lists add up their items; an object counts its ``text`` (when a string) plus its
    ``content`` (recursively). Roles, tool definitions, images and token-id arrays count nothing.
    """
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return sum(prompt_chars(item) for item in value)
    if isinstance(value, Mapping):
        text = value.get("text")
        return (len(text) if isinstance(text, str) else 0) + prompt_chars(value.get("content"))
    return 0


def tokens_for_chars(chars: int) -> int:
    return max(1, -(-chars // 4))


def reply_limit(body: Mapping[str, Any]) -> int | None:
    for name in LIMIT_FIELDS:
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            return max(0, value)
    return None


def plan_reply(body: Mapping[str, Any], prompt: int, behaviour: Behaviour) -> Reply:
    """The reply to ``body`` whose prompt has ``prompt`` characters of text."""
    count = behaviour.reply_words
    limit = reply_limit(body)
    truncated = limit is not None and limit < count
    if limit is not None:
        count = min(count, limit)
    return Reply(
        words=reply_words(count),
        truncated=truncated,
        prompt_tokens=tokens_for_chars(prompt),
        cached_tokens=behaviour.cached_tokens,
        cache_write_tokens=behaviour.cache_write_tokens,
        reasoning_tokens=behaviour.reasoning_tokens,
    )
