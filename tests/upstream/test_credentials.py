"""Outbound headers: allow-listed caller headers plus the provider's own credential; the caller's key never."""

from __future__ import annotations

from tollgate.settings import ProviderSettings, Secret
from tollgate.upstream.credentials import upstream_headers, upstream_url

CALLER = {
    "authorization": "Bearer tg-caller",
    "x-api-key": "tg-caller",
    "cookie": "s=1",
    "x-tollgate-repo": "r",
    "anthropic-version": "2023-06-01",
    "anthropic-beta": "prompt-caching",
    "accept": "text/event-stream",
    "host": "gateway.internal",
}


def test_openai_provider_gets_bearer_and_no_caller_key() -> None:
    provider = ProviderSettings("openai", "openai", "https://api.openai.com/v1", Secret("sk-prov"))
    headers = upstream_headers(provider, CALLER)
    assert headers["authorization"] == "Bearer sk-prov"
    assert "x-api-key" not in headers
    assert "cookie" not in headers and "x-tollgate-repo" not in headers and "host" not in headers
    assert "tg-caller" not in str(headers)


def test_anthropic_provider_gets_x_api_key_and_version() -> None:
    provider = ProviderSettings("anthropic", "anthropic", "https://api.anthropic.com", Secret("sk-ant-prov"))
    headers = upstream_headers(provider, {"x-api-key": "tg-caller"})
    assert headers["x-api-key"] == "sk-ant-prov"
    assert headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in headers


def test_urls_by_provider_type() -> None:
    openai = ProviderSettings("o", "openai", "https://api.openai.com/v1", None)
    anthropic = ProviderSettings("a", "anthropic", "https://api.anthropic.com", None)
    assert upstream_url(openai, openai.base_url, "/v1/chat/completions") == "https://api.openai.com/v1/chat/completions"
    assert upstream_url(anthropic, anthropic.base_url, "/v1/messages") == "https://api.anthropic.com/v1/messages"
