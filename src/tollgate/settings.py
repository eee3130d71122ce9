"""Configuration: read once from a YAML file, validated, typed and frozen.

This is the only module that reads the environment (for ``env:NAME`` secret references and
``TOLLGATE_CONFIG``). Every field is documented in ``docs/configuration.md``. A fault raises
``ConfigError`` whose message names the file, the field and what is wrong.

The types live in ``settings_model`` and the validation in ``settings_parser``; this module loads the file and is
where callers import every configuration name from.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import yaml

from tollgate.errors import ConfigError
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
    Secret,
    Settings,
    hash_key,
)
from tollgate.settings_parser import SettingsParser

__all__ = [
    "ADMISSION_MODES",
    "DEFAULT_ADMISSION",
    "DEFAULT_CONNECT_TIMEOUT_S",
    "DEFAULT_FALLBACK_ON",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_OUTPUT_CAP",
    "DEFAULT_RESERVATION_TTL_S",
    "DEFAULT_STORE",
    "DEFAULT_TIMEOUT_S",
    "ENFORCEMENTS",
    "FALLBACK_CAUSES",
    "KEY_PREFIX",
    "MIN_KEY_LENGTH",
    "PROVIDER_TYPES",
    "WINDOWS",
    "BudgetSettings",
    "Deployment",
    "KeySettings",
    "Limit",
    "MetricsSettings",
    "ModelSettings",
    "Price",
    "ProviderSettings",
    "Secret",
    "Settings",
    "config_path_from_environment",
    "export_config_path",
    "hash_key",
    "load_settings",
]


def config_path_from_environment(default: str = "tollgate.yaml") -> str:
    """The config path a worker process was started with (``TOLLGATE_CONFIG``)."""
    return os.environ.get("TOLLGATE_CONFIG", default)


def load_settings(path: str | Path, environ: Mapping[str, str] | None = None) -> Settings:
    """Read, validate and freeze the configuration file at ``path``."""
    path = str(path)
    try:
        with open(path, encoding="utf-8") as fh:
            raw = yaml.safe_load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{where}") from None
    if raw is None:
        raw = {}
    return SettingsParser(path, os.environ if environ is None else environ).settings(raw)


def export_config_path(path: str) -> None:
    """Hand the config path to worker processes (read back by ``config_path_from_environment``)."""
    os.environ["TOLLGATE_CONFIG"] = str(Path(path).resolve())
