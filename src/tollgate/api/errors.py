"""Exceptions become HTTP responses here and nowhere else, in the caller's API dialect.

A ``TollgateError`` shows its own status, type and (caller-safe) message. Anything else is a bug: the caller gets a
500 naming the request id, and the log gets the traceback under that id. Once a stream has started an error cannot
become a new response; ``stream_error_event`` ends the stream with an error event the official SDKs raise on.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import orjson

from tollgate.errors import TollgateError
from tollgate.types import Dialect

_log = logging.getLogger("tollgate.errors")


def _public(exc: BaseException, request_id: str) -> TollgateError:
    if isinstance(exc, TollgateError):
        return exc
    _log.error("unhandled error in request %s", request_id, exc_info=exc)
    return TollgateError(f"internal error (request id {request_id})")


def _error_object(error: TollgateError, dialect: Dialect) -> dict[str, object]:
    body: dict[str, object] = {"type": error.error_type, "message": error.message}
    if dialect is Dialect.OPENAI:
        body["param"] = None
        body["code"] = error.error_type
    details = error.details()
    if details:
        body.update(details)
    return body


def render_error(exc: BaseException, dialect: Dialect, request_id: str) -> tuple[int, Mapping[str, str], bytes]:
    """Status, extra headers and JSON body for an error, in the caller's dialect."""
    error = _public(exc, request_id)
    if dialect is Dialect.ANTHROPIC:
        payload: dict[str, object] = {
            "type": "error",
            "error": _error_object(error, dialect),
            "request_id": request_id,
        }
    else:
        payload = {"error": _error_object(error, dialect)}
    return error.status, error.headers(), orjson.dumps(payload)


def stream_error_event(exc: BaseException, dialect: Dialect, request_id: str) -> bytes:
    """An SSE event that ends a started stream with an error the SDKs raise (OpenAI ``error`` chunk, Anthropic
    ``event: error``)."""
    error = _public(exc, request_id)
    if dialect is Dialect.ANTHROPIC:
        data = orjson.dumps({"type": "error", "error": {"type": "api_error", "message": error.message}})
        return b"event: error\ndata: " + data + b"\n\n"
    data = orjson.dumps({"error": _error_object(error, dialect)})
    return b"data: " + data + b"\n\n"
