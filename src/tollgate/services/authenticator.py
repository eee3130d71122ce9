"""Inbound credentials: turn the caller's virtual key into a ``Caller``.

Keys are stored and compared only as SHA-256 hashes. A key is read from ``Authorization: Bearer …`` or, for the
Anthropic SDK, ``x-api-key``. Only keys marked ``repo_from_header`` take the repository from ``X-Tollgate-Repo``.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from tollgate.errors import AuthenticationFailed, BadRequest
from tollgate.settings import KEY_PREFIX, KeySettings, hash_key
from tollgate.types import Caller

REPO_HEADER = "x-tollgate-repo"
_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/@-]{0,199}$")


def new_virtual_key() -> str:
    """A fresh gateway key: ``tg-`` and 32 random bytes, base64url."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class AuthenticatedKey:
    caller: Caller
    models: frozenset[str] | None  # None: every model

    def may_use(self, model: str) -> bool:
        return self.models is None or model in self.models


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key the caller sent, from ``Authorization: Bearer`` or ``x-api-key``."""
    auth = headers.get("authorization")
    if auth is not None:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    key = headers.get("x-api-key")
    return key.strip() if key and key.strip() else None


class Authenticator:
    """Looks keys up by hash; every answer is in memory."""

    def __init__(self, keys: Sequence[KeySettings], clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._by_hash: dict[str, tuple[KeySettings, AuthenticatedKey]] = {}
        for key in keys:
            caller = Caller(
                key_name=key.name,
                developer=key.developer,
                team=key.team,
                repo=key.repo,
                env=key.env,
                priority=key.priority,
            )
            models = frozenset(key.models) if key.models is not None else None
            self._by_hash[key.key_hash] = (key, AuthenticatedKey(caller=caller, models=models))

    def authenticate(self, headers: Mapping[str, str]) -> AuthenticatedKey:
        """The caller behind the request's key; raises ``AuthenticationFailed`` when there is none."""
        presented = presented_key(headers)
        if presented is None:
            raise AuthenticationFailed("no API key: send it as 'Authorization: Bearer <key>' or 'x-api-key'")
        entry = self._by_hash.get(hash_key(presented))
        if entry is None:
            raise AuthenticationFailed("invalid API key")
        settings, authenticated = entry
        if settings.revoked:
            raise AuthenticationFailed("this API key has been revoked")
        if settings.expires_at is not None and self._clock() >= settings.expires_at.timestamp():
            raise AuthenticationFailed(f"this API key expired at {settings.expires_at.astimezone(dt.UTC).isoformat()}")
        if settings.repo_from_header:
            return self._with_repo(authenticated, headers.get(REPO_HEADER))
        return authenticated

    @staticmethod
    def _with_repo(authenticated: AuthenticatedKey, repo: str | None) -> AuthenticatedKey:
        if repo is None:
            return authenticated
        if not _REPO.match(repo):
            raise BadRequest(f"{REPO_HEADER} must be a plain repository name (letters, digits, _ . : / @ -)")
        caller = authenticated.caller
        return AuthenticatedKey(
            caller=Caller(caller.key_name, caller.developer, caller.team, repo, caller.env, caller.priority),
            models=authenticated.models,
        )
