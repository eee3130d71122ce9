"""Inbound keys: hashes only, both header forms, revoked/expired, repo from header only where allowed."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from tollgate.errors import AuthenticationFailed, BadRequest
from tollgate.services.authenticator import Authenticator, new_virtual_key
from tollgate.settings import KeySettings, hash_key

ALICE = "tg-" + "a" * 43
CI = "tg-" + "c" * 43
OLD = "tg-" + "o" * 43
GONE = "tg-" + "g" * 43
NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC).timestamp()


def authenticator() -> Authenticator:
    keys = [
        KeySettings(
            name="alice",
            key_hash=hash_key(ALICE),
            developer="alice",
            team="payments",
            env="dev",
            repo="web",
            models=("gpt-4o-mini",),
        ),
        KeySettings(name="ci", key_hash=hash_key(CI), team="payments", env="ci", repo_from_header=True),
        KeySettings(name="old", key_hash=hash_key(OLD), expires_at=dt.datetime(2026, 11, 1, tzinfo=dt.UTC)),
        KeySettings(name="gone", key_hash=hash_key(GONE), revoked=True),
    ]
    return Authenticator(keys, clock=lambda: NOW)


@pytest.mark.parametrize(
    "headers", [{"authorization": f"Bearer {ALICE}"}, {"x-api-key": ALICE}, {"authorization": f"bearer  {ALICE} "}]
)
def test_key_accepted_in_both_header_forms(headers: dict[str, str]) -> None:
    key = authenticator().authenticate(headers)
    assert key.caller.key_name == "alice"
    assert key.caller.developer == "alice"
    assert key.caller.team == "payments"
    assert key.may_use("gpt-4o-mini") and not key.may_use("gpt-4o")


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "no API key"),
        ({"authorization": "Basic abc"}, "no API key"),
        ({"authorization": "Bearer tg-nope"}, "invalid API key"),
        ({"x-api-key": GONE}, "revoked"),
        ({"x-api-key": OLD}, "expired at 2026-11-01T00:00:00+00:00"),
    ],
)
def test_rejected_keys(headers: dict[str, str], message: str) -> None:
    with pytest.raises(AuthenticationFailed, match=re.escape(message)):
        authenticator().authenticate(headers)


def test_repo_header_only_for_keys_that_allow_it() -> None:
    auth = authenticator()
    ci = auth.authenticate({"x-api-key": CI, "x-tollgate-repo": "payments-api"})
    assert ci.caller.repo == "payments-api"
    assert auth.authenticate({"x-api-key": CI}).caller.repo is None
    alice = auth.authenticate({"x-api-key": ALICE, "x-tollgate-repo": "other"})
    assert alice.caller.repo == "web"


def test_bad_repo_header_is_rejected() -> None:
    with pytest.raises(BadRequest, match="x-tollgate-repo"):
        authenticator().authenticate({"x-api-key": CI, "x-tollgate-repo": "../etc passwd"})


def test_new_virtual_key_shape() -> None:
    key = new_virtual_key()
    assert key.startswith("tg-") and len(key) == 46
    assert new_virtual_key() != key
