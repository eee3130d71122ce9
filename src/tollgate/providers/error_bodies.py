"""Upstream error bodies → ``UpstreamStatusError``, and the cleaning of every provider message we pass on (pure).

Both dialects wrap errors the same way — OpenAI ``{"error": {"message", "type", "param", "code"}}``, Anthropic
``{"type": "error", "error": {"type", "message"}, "request_id"}`` — so one reader serves both; only the error type
chosen when the provider gave none differs by dialect. A provider message is shown to the caller only after
anything that looks like a secret is redacted and the length is capped. A body that is not the provider's error
JSON (an HTML page from a load balancer, a proxy's plain text) is never echoed: the caller gets a fixed message
chosen by status.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from tollgate.errors import UpstreamStatusError
from tollgate.providers.base import parse_object
from tollgate.types import Dialect

MAX_MESSAGE_CHARS = 500
# Only this much of a provider message is scanned; it is longer than the cap plus any secret, so a secret cut in
# half here is cut away again by the cap.
_SCAN_CHARS = 4000
REDACTED = "[redacted]"

# Secrets a provider message may quote back: Authorization values, OpenAI / Anthropic keys (masked or not),
# gateway keys, and any long hex or base64 run (other vendors' keys, signatures, tokens).
_SECRET = re.compile(
    r"(?P<bearer>\bBearer\s+)[^\s\"',;]+"
    r"|(?<![A-Za-z0-9])(?:sk-ant-|sk-|tg-)[A-Za-z0-9_\-*]{6,}"
    r"|(?<![A-Za-z0-9+/_\-])[A-Za-z0-9+/_\-]{32,}={0,2}",
    re.IGNORECASE,
)
_TYPE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]{0,63}")

_GENERIC: Mapping[int, str] = {
    400: "the provider rejected the request",
    401: "the provider rejected the gateway's credentials",
    402: "the provider account has a billing problem",
    403: "the provider refused the request",
    404: "the provider does not know this model or route",
    408: "the provider timed out waiting for the request",
    409: "the provider reported a conflict",
    413: "the request is too large for the provider",
    422: "the provider could not process the request",
    429: "the provider is rate limiting requests; retry later",
    500: "the provider failed with an internal error",
    502: "the provider is unavailable",
    503: "the provider is unavailable",
    504: "the provider timed out",
    529: "the provider is overloaded; retry later",
}

_TYPES: Mapping[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    409: "conflict_error",
    413: "request_too_large",
    422: "invalid_request_error",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_SERVER_TYPES: Mapping[Dialect, str] = {Dialect.OPENAI: "server_error", Dialect.ANTHROPIC: "api_error"}


def error_from_body(dialect: Dialect, status: int, body: bytes) -> UpstreamStatusError:
    """The gateway error for an upstream error response: same status, the provider's type, a safe message."""
    error = _provider_error(body)
    kind: Any = None
    message: Any = None
    if error is not None:
        kind = error.get("type") or error.get("code")
        message = error.get("message")
    if not isinstance(kind, str) or not _TYPE_NAME.fullmatch(kind):
        kind = default_error_type(dialect, status)
    shown = isinstance(message, str) and message.strip()
    return UpstreamStatusError(status, kind, safe_message(message) if shown else generic_message(status))


def stream_error_message(error: Any) -> str:
    """A loggable one-liner for an error object found inside a stream (``{"type", "message"}`` or a string)."""
    if isinstance(error, str):
        return safe_message(error)
    if isinstance(error, dict):
        kind = error.get("type") or error.get("code")
        message = error.get("message")
        text = safe_message(message) if isinstance(message, str) else "no message"
        if isinstance(kind, str) and _TYPE_NAME.fullmatch(kind):
            return f"{kind}: {text}"
        return text
    return "the provider reported an error in the stream"


def safe_message(message: str) -> str:
    """The message with secrets redacted, whitespace trimmed, and at most ``MAX_MESSAGE_CHARS`` long."""
    text = _SECRET.sub(_redact, message[:_SCAN_CHARS]).strip()
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[: MAX_MESSAGE_CHARS - 1].rstrip() + "…"
    return text


def generic_message(status: int) -> str:
    """A fixed message for a status, used when the provider's own cannot be shown."""
    known = _GENERIC.get(status)
    if known is not None:
        return known
    if status >= 500:
        return f"the provider failed (HTTP {status})"
    return f"the provider refused the request (HTTP {status})"


def default_error_type(dialect: Dialect, status: int) -> str:
    known = _TYPES.get(status)
    if known is not None:
        return known
    return _SERVER_TYPES[dialect] if status >= 500 else "invalid_request_error"


def _provider_error(body: bytes) -> Mapping[str, Any] | None:
    """The ``{"type", "message", ...}`` part of a provider error body, or None if the body is not one."""
    if body.lstrip()[:1] != b"{":  # HTML, plain text, empty: not worth a parse
        return None
    obj = parse_object(body)
    if obj is None:
        return None
    error = obj.get("error")
    if isinstance(error, dict):
        return error
    if isinstance(error, str):  # some OpenAI-compatible servers: {"error": "message"}
        return {"message": error}
    if obj.get("object") == "error":  # older vLLM: the error fields at the top level
        return obj
    return None


def _redact(match: re.Match[str]) -> str:
    bearer = match.group("bearer")
    return bearer + REDACTED if bearer else REDACTED
