"""Upstream error bodies map to the same status, the provider's type, and a message that is safe to show."""

from __future__ import annotations

import pytest

from tests.providers.transcripts import load
from tollgate.errors import UpstreamStatusError
from tollgate.providers import error_from_body
from tollgate.providers.error_bodies import MAX_MESSAGE_CHARS, safe_message, stream_error_message
from tollgate.types import Dialect

OPENAI, ANTHROPIC = Dialect.OPENAI, Dialect.ANTHROPIC

# dialect, status, body, error type, message
ERRORS = [
    pytest.param(
        OPENAI,
        401,
        load("openai_error_401.json"),
        "invalid_request_error",
        "Incorrect API key provided: [redacted]. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
        id="openai-401-key-redacted",
    ),
    pytest.param(
        OPENAI,
        429,
        load("openai_error_429.json"),
        "tokens",
        "Rate limit reached for gpt-4o-mini in organization org-AbCdEfGhIjKlMnOpQrStUvWx on tokens per min (TPM): "
        "Limit 200000, Used 199500, Requested 1200. Please try again in 210ms. Visit "
        "https://platform.openai.com/account/rate-limits to learn more.",
        id="openai-429",
    ),
    pytest.param(
        OPENAI,
        400,
        load("openai_error_400_context.json"),
        "invalid_request_error",
        "This model's maximum context length is 128000 tokens. However, your messages resulted in 130415 tokens. "
        "Please reduce the length of the messages.",
        id="openai-400-context",
    ),
    pytest.param(
        OPENAI,
        404,
        load("openai_error_404_model.json"),
        "invalid_request_error",
        "The model `gpt-9-turbo` does not exist or you do not have access to it.",
        id="openai-404-model",
    ),
    pytest.param(
        OPENAI,
        429,
        b'{"error":{"message":"You exceeded your current quota.","type":null,"code":"insufficient_quota"}}',
        "insufficient_quota",
        "You exceeded your current quota.",
        id="openai-type-from-code",
    ),
    pytest.param(
        ANTHROPIC,
        529,
        load("anthropic_error_529.json"),
        "overloaded_error",
        "Overloaded",
        id="anthropic-529",
    ),
    pytest.param(
        ANTHROPIC,
        401,
        load("anthropic_error_401.json"),
        "authentication_error",
        "invalid x-api-key",
        id="anthropic-401",
    ),
    pytest.param(
        ANTHROPIC,
        400,
        load("anthropic_error_400.json"),
        "invalid_request_error",
        "prompt is too long: 215000 tokens > 200000 maximum",
        id="anthropic-400",
    ),
    pytest.param(OPENAI, 502, load("html_502.html"), "server_error", "the provider is unavailable", id="openai-html"),
    pytest.param(
        ANTHROPIC, 502, load("html_502.html"), "api_error", "the provider is unavailable", id="anthropic-html"
    ),
    pytest.param(
        OPENAI,
        503,
        b"upstream connect error or disconnect/reset before headers. reset reason: connection failure",
        "server_error",
        "the provider is unavailable",
        id="plain-text",
    ),
    pytest.param(ANTHROPIC, 500, b"", "api_error", "the provider failed with an internal error", id="empty"),
    pytest.param(
        OPENAI,
        404,
        b'{"detail":"Not Found"}',
        "not_found_error",
        "the provider does not know this model or route",
        id="json-not-an-error-body",
    ),
    pytest.param(
        OPENAI, 400, b'{"error":"invalid model name"}', "invalid_request_error", "invalid model name", id="error-string"
    ),
    pytest.param(
        OPENAI,
        400,
        b'{"object":"error","message":"max_tokens must be at least 1, got 0.","type":"BadRequestError","param":null,'
        b'"code":400}',
        "BadRequestError",
        "max_tokens must be at least 1, got 0.",
        id="vllm-top-level",
    ),
    pytest.param(
        OPENAI,
        500,
        b'{"error":{"message":"  ","type":"server_error"}}',
        "server_error",
        "the provider failed with an internal error",
        id="blank-message",
    ),
    pytest.param(
        OPENAI,
        400,
        b'{"error":{"message":"x","type":"<script>alert(1)</script>"}}',
        "invalid_request_error",
        "x",
        id="type-not-a-name",
    ),
    pytest.param(
        ANTHROPIC,
        413,
        b"<html><body>413 Request Entity Too Large</body></html>",
        "request_too_large",
        "the request is too large for the provider",
        id="anthropic-413-html",
    ),
    pytest.param(
        ANTHROPIC,
        418,
        b"teapot",
        "invalid_request_error",
        "the provider refused the request (HTTP 418)",
        id="unknown-4xx",
    ),
    pytest.param(OPENAI, 599, b"", "server_error", "the provider failed (HTTP 599)", id="unknown-5xx"),
]


@pytest.mark.parametrize(("dialect", "status", "body", "error_type", "message"), ERRORS)
def test_error_from_body(dialect: Dialect, status: int, body: bytes, error_type: str, message: str) -> None:
    error = error_from_body(dialect, status, body)
    assert isinstance(error, UpstreamStatusError)
    assert (error.status, error.error_type, error.message) == (status, error_type, message)


def test_html_bodies_are_never_echoed() -> None:
    error = error_from_body(OPENAI, 502, load("html_502.html"))
    assert "nginx" not in error.message
    assert "10.0.3.17" not in error.message


# message → shown
REDACTIONS = [
    pytest.param(
        "Authorization: Bearer tg-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_abcdefg failed",
        "Authorization: Bearer [redacted] failed",
        id="bearer",
    ),
    pytest.param("bearer abc.def rejected", "bearer [redacted] rejected", id="bearer-any-case"),
    pytest.param("key sk-ant-api03-R2D2C3POxyz_-abc123 rejected", "key [redacted] rejected", id="anthropic-key"),
    pytest.param("key sk-proj-abc123DEF456 rejected", "key [redacted] rejected", id="openai-key"),
    pytest.param("key 'sk-abc1234567' rejected", "key '[redacted]' rejected", id="quoted-key"),
    pytest.param("gateway key tg-Zm9vYmFyYmF6cXV4 leaked", "gateway key [redacted] leaked", id="gateway-key"),
    pytest.param(
        "signature 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 invalid",
        "signature [redacted] invalid",
        id="long-hex",
    ),
    pytest.param(
        "token eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9abcdef== expired", "token [redacted] expired", id="long-base64"
    ),
    pytest.param(
        "task-force, desk-lamp, disk-0123456 and deadbeef are fine",
        "task-force, desk-lamp, disk-0123456 and deadbeef are fine",
        id="no-false-positives",
    ),
    pytest.param(
        "the model claude-sonnet-4-5-20250929 is not available",
        "the model claude-sonnet-4-5-20250929 is not available",
        id="model-name-kept",
    ),
    pytest.param("  padded message \n", "padded message", id="trimmed"),
]


@pytest.mark.parametrize(("message", "shown"), REDACTIONS)
def test_safe_message_redacts_secrets(message: str, shown: str) -> None:
    assert safe_message(message) == shown


def test_safe_message_caps_the_length() -> None:
    shown = safe_message("word " * 1000)
    assert len(shown) == MAX_MESSAGE_CHARS
    assert shown.endswith("word…")


def test_a_secret_at_the_cap_is_redacted_before_the_cut() -> None:
    shown = safe_message("ab " * 165 + "sk-" + "A1b2" * 10)
    assert "A1b2" not in shown
    assert shown == "ab " * 165 + "[red…"


def test_a_secret_in_a_very_long_message_does_not_survive() -> None:
    shown = safe_message("x " * 3000 + "Bearer sk-secret-value")
    assert "secret" not in shown
    assert len(shown) == MAX_MESSAGE_CHARS


def test_error_body_messages_are_redacted_and_capped() -> None:
    body = b'{"error":{"message":"bad key sk-live-1234567890 ' + b"z " * 450 + b'","type":"invalid_request_error"}}'
    error = error_from_body(OPENAI, 401, body)
    assert error.message.startswith("bad key [redacted] z z z")
    assert error.message.endswith("z…")
    assert len(error.message) == MAX_MESSAGE_CHARS - 1  # the cut fell after a space, which is trimmed


@pytest.mark.parametrize(
    ("error", "line"),
    [
        ({"type": "overloaded_error", "message": "Overloaded"}, "overloaded_error: Overloaded"),
        ({"code": "server_error", "message": "Boom"}, "server_error: Boom"),
        ({"type": None, "message": "no type"}, "no type"),
        ({"type": "api_error"}, "api_error: no message"),
        ("plain string with Bearer abc", "plain string with Bearer [redacted]"),
        (None, "the provider reported an error in the stream"),
        (42, "the provider reported an error in the stream"),
    ],
)
def test_stream_error_message(error: object, line: str) -> None:
    assert stream_error_message(error) == line
