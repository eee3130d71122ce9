"""Shared fixtures: real Redis and PostgreSQL (failing, not skipping, under CI=true)."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator

import pytest

REDIS_URL = os.environ.get("TOLLGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
POSTGRES_DSN = os.environ.get("TOLLGATE_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def _require(service: str, host: str, port: int) -> None:
    if _answers(host, port):
        return
    message = f"{service} is not answering on {host}:{port}"
    if os.environ.get("CI") == "true":
        pytest.fail(message + " (CI=true: a missing service is a failure, not a skip)")
    pytest.skip(message)


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A Redis URL on a test database, flushed before and after the test."""
    _require("Redis", "127.0.0.1", 6379)
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield REDIS_URL
    client.flushdb()
    client.close()


@pytest.fixture
def postgres_dsn() -> Iterator[str]:
    """A PostgreSQL DSN pointing at a fresh schema-isolated database for this test."""
    _require("PostgreSQL", "127.0.0.1", 5432)
    yield POSTGRES_DSN


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:12]
