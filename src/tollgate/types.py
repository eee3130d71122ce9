"""Plain value types shared by every layer: who is calling, what they used, what one request cost."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Dialect(enum.Enum):
    """The API family a caller speaks; errors are answered in the same family."""

    OPENAI = "openai"
    ANTHROPIC = "anthropic"


# The dimensions a budget can scope or match on, in the order reports print them.
DIMENSIONS: tuple[str, ...] = ("global", "team", "developer", "repo", "env", "key", "model")


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is spending, as resolved from the virtual key (and, for CI keys, the repo header)."""

    key_name: str
    developer: str | None
    team: str | None
    repo: str | None
    env: str | None
    priority: int

    def dimension(self, name: str, model: str) -> str | None:
        """The value of one budget dimension for this caller and model (``global`` is always ``"*"``)."""
        if name == "global":
            return "*"
        if name == "key":
            return self.key_name
        if name == "model":
            return model
        value: str | None = getattr(self, name)
        return value


@dataclass(slots=True)
class Usage:
    """Tokens a provider reported (or that we counted), cumulative for one request.

    ``input_tokens`` counts every prompt token including the cached and cache-write ones, so
    ``input_tokens + output_tokens`` is what a token budget is charged. ``reasoning_tokens`` is a part
    of ``output_tokens``.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(slots=True)
class UsageRecord:
    """One request, as handed to the usage recorder when the request is over."""

    request_id: str
    started_at: float  # unix seconds
    key_name: str | None
    developer: str | None
    team: str | None
    repo: str | None
    env: str | None
    endpoint: str
    model: str | None  # as the caller asked for it
    upstream_model: str | None = None
    provider: str | None = None
    deployment: str | None = None
    usage: Usage = field(default_factory=Usage)
    usage_source: str = "none"  # "provider", "counted" (stream cut before the provider's count) or "none"
    cost_micros: int = 0
    estimate_tokens: int = 0
    status: int = 0
    outcome: str = "ok"  # ok, upstream_error, client_disconnect, rejected, error
    rejected_by: str | None = None
    streamed: bool = False
    latency_ms: float = 0.0
    ttft_ms: float | None = None
