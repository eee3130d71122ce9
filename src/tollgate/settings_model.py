"""The configuration's types: frozen dataclasses, their defaults and allowed values, ``Secret`` and ``hash_key``.

Pure: nothing here reads a file or the environment. ``tollgate.settings`` loads a ``Settings`` (with
``settings_parser``) and re-exports every name below; callers import them from there.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

DEFAULT_STORE = "sqlite:///./tollgate.db"
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
DEFAULT_OUTPUT_CAP = 4096
DEFAULT_RESERVATION_TTL_S = 900
DEFAULT_TIMEOUT_S = 600.0
DEFAULT_CONNECT_TIMEOUT_S = 10.0
DEFAULT_FALLBACK_ON = ("connect", "timeout", "5xx", "429")
DEFAULT_ADMISSION = {"dev": "reserve", "ci": "reserve", "prod": "post"}
KEY_PREFIX = "tg-"
MIN_KEY_LENGTH = len(KEY_PREFIX) + 43  # 32 random bytes, base64url without padding

PROVIDER_TYPES = ("openai", "anthropic", "openai-compatible", "simulated")
WINDOWS = ("daily", "weekly", "monthly")
ENFORCEMENTS = ("hard", "soft", "shadow")
ADMISSION_MODES = ("reserve", "post")
FALLBACK_CAUSES = ("connect", "timeout", "5xx", "429")


class Secret:
    """A secret value that never shows itself in ``repr`` or ``str``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class ProviderSettings:
    name: str
    type: str
    base_url: str
    api_key: Secret | None
    timeout_s: float = DEFAULT_TIMEOUT_S
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S


@dataclass(frozen=True)
class Deployment:
    provider: str
    upstream_model: str

    @property
    def name(self) -> str:
        return f"{self.provider}/{self.upstream_model}"


@dataclass(frozen=True)
class ModelSettings:
    name: str
    deployments: tuple[Deployment, ...]
    output_cap: int


@dataclass(frozen=True)
class KeySettings:
    name: str
    key_hash: str  # hex SHA-256 of the full key
    developer: str | None = None
    team: str | None = None
    repo: str | None = None
    env: str | None = None
    priority: int = 0
    models: tuple[str, ...] | None = None  # None: every model
    expires_at: dt.datetime | None = None
    repo_from_header: bool = False
    revoked: bool = False


@dataclass(frozen=True)
class Limit:
    tokens: int | None = None
    usd_micros: int | None = None


@dataclass(frozen=True)
class BudgetSettings:
    name: str
    scope: str
    window: str
    limit: Limit
    enforce: str = "hard"
    match: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    mode: str | None = None  # None: by the request's env (``admission``)
    allowance: float = 0.0
    overrides: Mapping[str, Limit] = field(default_factory=dict)
    alerts: tuple[float, ...] = ()


@dataclass(frozen=True)
class Price:
    """USD per million tokens."""

    input: float
    output: float
    cached_input: float | None = None
    cache_write: float | None = None


@dataclass(frozen=True)
class MetricsSettings:
    """Which high-cardinality labels ``/metrics`` adds (each distinct developer or repo is a new series)."""

    developer_labels: bool = False
    repo_labels: bool = False


@dataclass(frozen=True)
class Settings:
    config_path: str
    timezone: str = "UTC"
    store: str = DEFAULT_STORE
    ledger: str = DEFAULT_STORE
    admin_key: Secret | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    reservation_ttl_s: int = DEFAULT_RESERVATION_TTL_S
    fallback_on: frozenset[str] = frozenset(DEFAULT_FALLBACK_ON)
    admission: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_ADMISSION))
    providers: Mapping[str, ProviderSettings] = field(default_factory=dict)
    models: tuple[ModelSettings, ...] = ()
    keys: tuple[KeySettings, ...] = ()
    budgets: tuple[BudgetSettings, ...] = ()
    prices: Mapping[str, Price] = field(default_factory=dict)
    log_level: str = "info"
    metrics: MetricsSettings = field(default_factory=MetricsSettings)


def hash_key(key: str) -> str:
    """The hex SHA-256 under which a virtual key is stored and looked up."""
    return hashlib.sha256(key.encode()).hexdigest()
