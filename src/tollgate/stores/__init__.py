"""I/O adapters for budget counters (SQLite, Redis); the only package that imports sqlite3 and hiredis for them."""

from __future__ import annotations

from tollgate.errors import ConfigError
from tollgate.stores.redis_counters import RedisCounterStore
from tollgate.stores.sqlite_counters import SqliteCounterStore


def open_counter_store(url: str) -> SqliteCounterStore | RedisCounterStore:
    """The counter store a ``store:`` URL names; nothing is connected until first use.

    Both classes satisfy ``tollgate.services.admission.CounterStore`` (not named here: stores sit below services).
    """
    try:
        if url.startswith("sqlite:"):
            return SqliteCounterStore.from_url(url)
        if url.startswith(("redis://", "rediss://")):
            return RedisCounterStore.from_url(url)
    except ValueError as exc:
        raise ConfigError(f"store: {exc}") from None
    raise ConfigError(f"store: unsupported counter store URL scheme {url.split('://', 1)[0]!r}")
