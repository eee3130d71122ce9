"""Validation of the configuration: the raw YAML tree in, a frozen ``Settings`` out, every fault naming its field.

``SettingsParser`` reads each section with the field readers of ``settings_fields``. ``tollgate.settings`` opens the
file and hands the environment in; this module never reads ``os.environ`` itself.
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Mapping
from typing import Any

from tollgate.settings_fields import FieldReader
from tollgate.settings_model import (
    ADMISSION_MODES,
    DEFAULT_ADMISSION,
    DEFAULT_CONNECT_TIMEOUT_S,
    DEFAULT_FALLBACK_ON,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_OUTPUT_CAP,
    DEFAULT_RESERVATION_TTL_S,
    DEFAULT_STORE,
    DEFAULT_TIMEOUT_S,
    ENFORCEMENTS,
    FALLBACK_CAUSES,
    KEY_PREFIX,
    MIN_KEY_LENGTH,
    PROVIDER_TYPES,
    WINDOWS,
    BudgetSettings,
    Deployment,
    KeySettings,
    Limit,
    MetricsSettings,
    ModelSettings,
    Price,
    ProviderSettings,
    Settings,
    hash_key,
)
from tollgate.types import DIMENSIONS

_SHA256 = re.compile(r"^sha256:[0-9a-f]{64}$")


class SettingsParser(FieldReader):
    """Turns the raw YAML tree into ``Settings``, naming the field of every fault."""

    def settings(self, raw: Any) -> Settings:
        top = self.mapping(raw, "top level")
        self.only(
            top,
            (
                "timezone",
                "store",
                "ledger",
                "admin_key",
                "max_body_bytes",
                "reservation_ttl_seconds",
                "fallback_on",
                "admission",
                "providers",
                "models",
                "keys",
                "budgets",
                "prices",
                "log_level",
                "metrics",
            ),
            "",
        )
        timezone = self.string(top.get("timezone", "UTC"), "timezone")
        try:
            zoneinfo.ZoneInfo(timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise self.fail("timezone", f"unknown time zone {timezone!r}") from None
        store = self.store_url(top.get("store", DEFAULT_STORE), "store", ("sqlite", "redis", "rediss"))
        ledger = self.store_url(
            top.get("ledger", store if store.startswith("sqlite") else DEFAULT_STORE),
            "ledger",
            ("sqlite", "postgresql", "postgres"),
        )
        providers = self.providers(top.get("providers", {}))
        models = self.models(top.get("models", []), providers)
        model_names = {m.name for m in models}
        settings = Settings(
            config_path=self.path,
            timezone=timezone,
            store=store,
            ledger=ledger,
            admin_key=self.secret(top["admin_key"], "admin_key") if top.get("admin_key") else None,
            max_body_bytes=self.integer(top.get("max_body_bytes", DEFAULT_MAX_BODY_BYTES), "max_body_bytes", 1),
            reservation_ttl_s=self.integer(
                top.get("reservation_ttl_seconds", DEFAULT_RESERVATION_TTL_S), "reservation_ttl_seconds", 1
            ),
            fallback_on=frozenset(
                self.choice(c, FALLBACK_CAUSES, f"fallback_on[{i}]")
                for i, c in enumerate(self.items(top.get("fallback_on", list(DEFAULT_FALLBACK_ON)), "fallback_on"))
            ),
            admission=self.admission(top.get("admission", {})),
            providers=providers,
            models=models,
            keys=self.keys(top.get("keys", []), model_names),
            budgets=self.budgets(top.get("budgets", [])),
            prices=self.prices(top.get("prices", {})),
            log_level=self.choice(top.get("log_level", "info"), ("debug", "info", "warning", "error"), "log_level"),
            metrics=self.metrics(top.get("metrics", {})),
        )
        return settings

    def metrics(self, value: Any) -> MetricsSettings:
        spec = self.mapping(value, "metrics")
        self.only(spec, ("developer_labels", "repo_labels"), "metrics")
        return MetricsSettings(
            developer_labels=self.boolean(spec.get("developer_labels", False), "metrics.developer_labels"),
            repo_labels=self.boolean(spec.get("repo_labels", False), "metrics.repo_labels"),
        )

    def store_url(self, value: Any, where: str, schemes: tuple[str, ...]) -> str:
        url = self.string(value, where)
        scheme = url.split("://", 1)[0] if "://" in url else ""
        if scheme not in schemes:
            raise self.fail(where, f"must be a URL with scheme {' or '.join(schemes)}")
        return url

    def admission(self, value: Any) -> dict[str, str]:
        modes = dict(DEFAULT_ADMISSION)
        for env, mode in self.mapping(value, "admission").items():
            modes[self.word(env, "admission")] = self.choice(mode, ADMISSION_MODES, f"admission.{env}")
        return modes

    def providers(self, value: Any) -> dict[str, ProviderSettings]:
        providers = {}
        for name, raw in self.mapping(value, "providers").items():
            where = f"providers.{name}"
            self.word(name, "providers")
            spec = self.mapping(raw, where)
            self.only(spec, ("type", "base_url", "api_key", "timeout", "connect_timeout"), where)
            kind = self.choice(spec.get("type"), PROVIDER_TYPES, f"{where}.type")
            if kind == "simulated":
                base_url = ""
            else:
                base_url = self.string(spec.get("base_url"), f"{where}.base_url").rstrip("/")
                if not base_url.startswith(("http://", "https://")):
                    raise self.fail(f"{where}.base_url", "must start with http:// or https://")
            api_key = self.secret(spec["api_key"], f"{where}.api_key") if spec.get("api_key") else None
            providers[name] = ProviderSettings(
                name=name,
                type=kind,
                base_url=base_url,
                api_key=api_key,
                timeout_s=self.number(spec.get("timeout", DEFAULT_TIMEOUT_S), f"{where}.timeout", 0.001),
                connect_timeout_s=self.number(
                    spec.get("connect_timeout", DEFAULT_CONNECT_TIMEOUT_S), f"{where}.connect_timeout", 0.001
                ),
            )
        return providers

    def models(self, value: Any, providers: Mapping[str, ProviderSettings]) -> tuple[ModelSettings, ...]:
        models: list[ModelSettings] = []
        seen: set[str] = set()
        for i, raw in enumerate(self.items(value, "models")):
            where = f"models[{i}]"
            spec = self.mapping(raw, where)
            self.only(spec, ("name", "provider", "upstream_model", "deployments", "output_cap"), where)
            name = self.string(spec.get("name"), f"{where}.name")
            if name in seen:
                raise self.fail(f"{where}.name", f"model {name!r} is declared twice")
            seen.add(name)
            if "deployments" in spec:
                if "provider" in spec or "upstream_model" in spec:
                    raise self.fail(where, "give either provider/upstream_model or deployments, not both")
                raws = self.items(spec["deployments"], f"{where}.deployments")
                if not raws:
                    raise self.fail(f"{where}.deployments", "must name at least one deployment")
                deployments = tuple(
                    self.deployment(d, name, providers, f"{where}.deployments[{j}]") for j, d in enumerate(raws)
                )
            else:
                deployments = (self.deployment(spec, name, providers, where),)
            output_cap = self.integer(spec.get("output_cap", DEFAULT_OUTPUT_CAP), f"{where}.output_cap", 1)
            models.append(ModelSettings(name=name, deployments=deployments, output_cap=output_cap))
        return tuple(models)

    def deployment(self, raw: Any, model: str, providers: Mapping[str, ProviderSettings], where: str) -> Deployment:
        spec = self.mapping(raw, where)
        self.only(spec, ("provider", "upstream_model", "name", "output_cap"), where)
        provider = self.string(spec.get("provider"), f"{where}.provider")
        if provider not in providers:
            raise self.fail(f"{where}.provider", f"no provider named {provider!r} under providers")
        upstream = self.string(spec.get("upstream_model", model), f"{where}.upstream_model")
        return Deployment(provider=provider, upstream_model=upstream)

    def keys(self, value: Any, model_names: set[str]) -> tuple[KeySettings, ...]:
        keys: list[KeySettings] = []
        names: set[str] = set()
        hashes: set[str] = set()
        for i, raw in enumerate(self.items(value, "keys")):
            where = f"keys[{i}]"
            spec = self.mapping(raw, where)
            self.only(
                spec,
                (
                    "name",
                    "key",
                    "developer",
                    "team",
                    "repo",
                    "env",
                    "priority",
                    "models",
                    "expires",
                    "repo_from_header",
                    "revoked",
                ),
                where,
            )
            name = self.word(spec.get("name"), f"{where}.name")
            if name in names:
                raise self.fail(f"{where}.name", f"key name {name!r} is used twice")
            names.add(name)
            key_hash = self.key_hash(spec.get("key"), f"{where}.key")
            if key_hash in hashes:
                raise self.fail(f"{where}.key", "the same key is given to two entries")
            hashes.add(key_hash)
            models = None
            if "models" in spec:
                models = tuple(
                    self.string(m, f"{where}.models[{j}]")
                    for j, m in enumerate(self.items(spec["models"], f"{where}.models"))
                )
                for j, m in enumerate(models):
                    if m not in model_names:
                        raise self.fail(f"{where}.models[{j}]", f"no model named {m!r} under models")
            keys.append(
                KeySettings(
                    name=name,
                    key_hash=key_hash,
                    developer=self.optional_word(spec, "developer", where),
                    team=self.optional_word(spec, "team", where),
                    repo=self.optional_word(spec, "repo", where),
                    env=self.optional_word(spec, "env", where),
                    priority=self.integer(spec.get("priority", 0), f"{where}.priority"),
                    models=models,
                    expires_at=self.timestamp(spec["expires"], f"{where}.expires") if "expires" in spec else None,
                    repo_from_header=self.boolean(spec.get("repo_from_header", False), f"{where}.repo_from_header"),
                    revoked=self.boolean(spec.get("revoked", False), f"{where}.revoked"),
                )
            )
        return tuple(keys)

    def key_hash(self, value: Any, where: str) -> str:
        text = self.string(value, where)
        if _SHA256.match(text):
            return text[7:]
        if text.startswith("sha256:"):
            raise self.fail(where, "a sha256: key must be 64 lowercase hex digits")
        key = self.secret(text, where).reveal()
        if not key.startswith(KEY_PREFIX) or len(key) < MIN_KEY_LENGTH:
            raise self.fail(
                where,
                f"a virtual key must start with {KEY_PREFIX} and carry at least 32 random bytes "
                "(make one with `tollgate keys generate`)",
            )
        return hash_key(key)

    def limit(self, value: Any, where: str) -> Limit:
        spec = self.mapping(value, where)
        self.only(spec, ("tokens", "usd"), where)
        if "tokens" not in spec and "usd" not in spec:
            raise self.fail(where, "must give tokens, usd or both")
        tokens = self.integer(spec["tokens"], f"{where}.tokens") if "tokens" in spec else None
        usd = round(self.number(spec["usd"], f"{where}.usd") * 1_000_000) if "usd" in spec else None
        return Limit(tokens=tokens, usd_micros=usd)

    def budgets(self, value: Any) -> tuple[BudgetSettings, ...]:
        budgets: list[BudgetSettings] = []
        names: set[str] = set()
        for i, raw in enumerate(self.items(value, "budgets")):
            where = f"budgets[{i}]"
            spec = self.mapping(raw, where)
            self.only(
                spec,
                ("name", "scope", "match", "window", "limit", "enforce", "mode", "allowance", "overrides", "alerts"),
                where,
            )
            name = self.word(spec.get("name"), f"{where}.name")
            if name in names:
                raise self.fail(f"{where}.name", f"budget name {name!r} is used twice")
            names.add(name)
            match: dict[str, tuple[str, ...]] = {}
            for dim, wanted in self.mapping(spec.get("match", {}), f"{where}.match").items():
                self.choice(dim, DIMENSIONS[1:], f"{where}.match")
                values = wanted if isinstance(wanted, list) else [wanted]
                match[dim] = tuple(self.word(v, f"{where}.match.{dim}") for v in values)
            overrides = {
                self.word(v, f"{where}.overrides"): self.limit(lim, f"{where}.overrides.{v}")
                for v, lim in self.mapping(spec.get("overrides", {}), f"{where}.overrides").items()
            }
            alerts = tuple(
                self.number(a, f"{where}.alerts[{j}]", 0.0)
                for j, a in enumerate(self.items(spec.get("alerts", []), f"{where}.alerts"))
            )
            budgets.append(
                BudgetSettings(
                    name=name,
                    scope=self.choice(spec.get("scope"), DIMENSIONS, f"{where}.scope"),
                    window=self.choice(spec.get("window"), WINDOWS, f"{where}.window"),
                    limit=self.limit(spec.get("limit"), f"{where}.limit"),
                    enforce=self.choice(spec.get("enforce", "hard"), ENFORCEMENTS, f"{where}.enforce"),
                    match=match,
                    mode=self.choice(spec["mode"], ADMISSION_MODES, f"{where}.mode") if "mode" in spec else None,
                    allowance=self.number(spec.get("allowance", 0.0), f"{where}.allowance"),
                    overrides=overrides,
                    alerts=alerts,
                )
            )
        return tuple(budgets)

    def prices(self, value: Any) -> dict[str, Price]:
        prices = {}
        for model, raw in self.mapping(value, "prices").items():
            where = f"prices.{model}"
            spec = self.mapping(raw, where)
            self.only(spec, ("input", "output", "cached_input", "cache_write"), where)
            prices[str(model)] = Price(
                input=self.number(spec.get("input"), f"{where}.input"),
                output=self.number(spec.get("output"), f"{where}.output"),
                cached_input=self.number(spec["cached_input"], f"{where}.cached_input")
                if "cached_input" in spec
                else None,
                cache_write=self.number(spec["cache_write"], f"{where}.cache_write") if "cache_write" in spec else None,
            )
        return prices
