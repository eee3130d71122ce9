"""Outbound credentials and headers: what the provider sees (the caller's own key never leaves the gateway).

Inbound credentials (the caller's virtual key) are the authenticator's business (``services/authenticator.py``);
this module only builds the upstream request's headers from an allow-list, so nothing the caller sent — its key,
cookies, our ``x-tollgate-*`` headers — is forwarded by accident.
"""

from __future__ import annotations

from collections.abc import Mapping

from tollgate.settings import ProviderSettings

ANTHROPIC_DEFAULT_VERSION = "2023-06-01"

# Caller headers that carry API semantics and are safe to forward.
_FORWARDED = ("anthropic-version", "anthropic-beta", "openai-beta", "accept")


def upstream_headers(provider: ProviderSettings, caller_headers: Mapping[str, str]) -> dict[str, str]:
    """Headers for the upstream request: allow-listed caller headers plus the provider's own credential."""
    headers = {"content-type": "application/json", "accept-encoding": "identity"}
    for name in _FORWARDED:
        value = caller_headers.get(name)
        if value is not None:
            headers[name] = value
    key = provider.api_key.reveal() if provider.api_key is not None else None
    if provider.type == "anthropic":
        headers.setdefault("anthropic-version", ANTHROPIC_DEFAULT_VERSION)
        if key is not None:
            headers["x-api-key"] = key
    elif key is not None:
        headers["authorization"] = f"Bearer {key}"
    return headers


def upstream_url(provider: ProviderSettings, base_url: str, path: str) -> str:
    """The provider URL for a caller path such as ``/v1/chat/completions``.

    OpenAI-style base URLs include the version (``https://api.openai.com/v1``), Anthropic's and the simulator's
    do not (``https://api.anthropic.com``).
    """
    if provider.type in ("openai", "openai-compatible"):
        return base_url + path[len("/v1") :]
    return base_url + path
