"""Every error tollgate raises on purpose, each carrying its public face.

The tree::

    TollgateError                 500 internal_error: a bug or an unexpected failure; logged with the request id
    ├── ConfigError               the configuration file is invalid; ``tollgate serve`` exits with status 2
    ├── BadRequest                400 invalid_request_error: the body is not JSON, or a required field is wrong
    ├── PayloadTooLarge           413 request_too_large: the body is over ``max_body_bytes``
    ├── AuthenticationFailed      401 authentication_error: the key is missing, unknown, revoked or expired
    ├── PermissionDenied          403 permission_error: the key may not use this model (or the admin API)
    ├── NotFound                  404 not_found_error: an unknown model or route
    ├── BudgetExceeded            429 budget_exceeded: a hard budget cannot admit the request; upstream untouched
    ├── StoreUnavailable          503 service_unavailable: a counter or ledger store did not answer
    └── UpstreamError             an upstream deployment failed
        ├── UpstreamStatusError   the provider answered 4xx/5xx; passed through with that status
        ├── UpstreamTimeout       504 timeout_error: the provider did not answer in time
        └── UpstreamUnavailable   502 upstream_unavailable: the provider could not be reached

Every message is safe to show a caller: no stack trace, no provider key, no internal host name. The
HTTP edge (``tollgate.api.errors``) is the one place that turns these into responses.
"""

from __future__ import annotations

from collections.abc import Mapping


class TollgateError(Exception):
    """Base class; raised as-is only for failures the caller cannot fix."""

    status: int = 500
    error_type: str = "internal_error"

    def __init__(self, message: str = "internal error") -> None:
        super().__init__(message)
        self.message = message

    def headers(self) -> Mapping[str, str]:
        """Extra response headers this error asks for."""
        return {}

    def details(self) -> Mapping[str, object]:
        """Extra fields for the error body, beside type and message."""
        return {}


class ConfigError(TollgateError):
    """The configuration file is invalid; the message names the file, the field and the fault."""


class BadRequest(TollgateError):
    """The request body is not valid JSON or misses or misuses a field the gateway needs."""

    status = 400
    error_type = "invalid_request_error"


class PayloadTooLarge(TollgateError):
    """The request body is larger than the configured ``max_body_bytes``."""

    status = 413
    error_type = "request_too_large"


class AuthenticationFailed(TollgateError):
    """No key, an unknown key, a revoked key or an expired key."""

    status = 401
    error_type = "authentication_error"


class PermissionDenied(TollgateError):
    """The key is valid but may not use the requested model or endpoint."""

    status = 403
    error_type = "permission_error"


class NotFound(TollgateError):
    """The model or route does not exist."""

    status = 404
    error_type = "not_found_error"


class BudgetExceeded(TollgateError):
    """A hard budget cannot admit the request; raised before any upstream call."""

    status = 429
    error_type = "budget_exceeded"

    def __init__(
        self,
        *,
        budget: str,
        scope: str,
        scope_value: str,
        window: str,
        limit_tokens: int | None,
        used_tokens: int,
        limit_usd: float | None,
        used_usd: float,
        reset_at: str,
        retry_after_s: int,
    ) -> None:
        what = f"{scope} {scope_value!r}" if scope != "global" else "global"
        limits = []
        if limit_tokens is not None:
            limits.append(f"{used_tokens} of {limit_tokens} tokens")
        if limit_usd is not None:
            limits.append(f"${used_usd:.2f} of ${limit_usd:.2f}")
        super().__init__(
            f"budget {budget!r} ({what}, {window}) is spent: {', '.join(limits)} used; it resets at {reset_at}"
        )
        self.budget = budget
        self.scope = scope
        self.scope_value = scope_value
        self.window = window
        self.limit_tokens = limit_tokens
        self.used_tokens = used_tokens
        self.limit_usd = limit_usd
        self.used_usd = used_usd
        self.reset_at = reset_at
        self.retry_after_s = retry_after_s

    def headers(self) -> Mapping[str, str]:
        headers = {
            "retry-after": str(self.retry_after_s),
            "x-ratelimit-reset-tokens": f"{self.retry_after_s}s",
            "x-should-retry": "false",
        }
        if self.limit_tokens is not None:
            headers["x-ratelimit-limit-tokens"] = str(self.limit_tokens)
            headers["x-ratelimit-remaining-tokens"] = str(max(0, self.limit_tokens - self.used_tokens))
        return headers

    def details(self) -> Mapping[str, object]:
        return {
            "budget": self.budget,
            "scope": self.scope,
            "scope_value": self.scope_value,
            "window": self.window,
            "limit_tokens": self.limit_tokens,
            "used_tokens": self.used_tokens,
            "limit_usd": self.limit_usd,
            "used_usd": round(self.used_usd, 6),
            "reset_at": self.reset_at,
        }


class StoreUnavailable(TollgateError):
    """A counter or ledger store did not answer; the request is refused rather than let through unmetered."""

    status = 503
    error_type = "service_unavailable"


class UpstreamError(TollgateError):
    """An upstream deployment failed; the router may try the next deployment."""

    status = 502
    error_type = "upstream_error"


class UpstreamStatusError(UpstreamError):
    """The provider answered with an error status; the caller sees that status and a cleaned message."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type


class UpstreamTimeout(UpstreamError):
    """The provider did not answer within the deployment's timeout."""

    status = 504
    error_type = "timeout_error"


class UpstreamUnavailable(UpstreamError):
    """The provider could not be reached (refused, reset, DNS failure, broken connection)."""

    status = 502
    error_type = "upstream_unavailable"
