"""Reading one typed field of the raw configuration tree: every fault is a ``ConfigError`` naming the file and field.

``FieldReader`` holds the scalar readers (mapping, word, choice, number, secret …) that ``SettingsParser`` builds the
sections from. The environment comes in as a mapping (for ``env:NAME`` secrets), handed over by ``tollgate.settings``;
this module never reads ``os.environ`` itself.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tollgate.errors import ConfigError
from tollgate.settings_model import Secret

_WORD = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/@-]*$")


class FieldReader:
    """Reads typed values out of the raw YAML tree, naming the field of every fault."""

    def __init__(self, path: str, environ: Mapping[str, str]) -> None:
        self.path = path
        self.environ = environ

    def fail(self, where: str, what: str) -> ConfigError:
        return ConfigError(f"{self.path}: {where}: {what}")

    def mapping(self, value: Any, where: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, "must be a mapping")
        return value

    def only(self, raw: dict[str, Any], allowed: tuple[str, ...], where: str) -> None:
        for name in raw:
            if name not in allowed:
                prefix = f"{where}." if where else ""
                raise self.fail(f"{prefix}{name}", f"unknown field (allowed: {', '.join(allowed)})")

    def string(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(where, "must be a non-empty string")
        return value

    def word(self, value: Any, where: str) -> str:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        text = self.string(value, where)
        if not _WORD.match(text):
            raise self.fail(where, f"{text!r} is not a plain word (letters, digits, _ . : / @ -)")
        return text

    def choice(self, value: Any, choices: tuple[str, ...], where: str) -> str:
        if value not in choices:
            raise self.fail(where, f"must be one of {', '.join(choices)} (got {value!r})")
        return str(value)

    def integer(self, value: Any, where: str, minimum: int = 0) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.fail(where, f"must be a whole number >= {minimum}")
        return value

    def number(self, value: Any, where: str, minimum: float = 0.0) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
            raise self.fail(where, f"must be a number >= {minimum}")
        return float(value)

    def boolean(self, value: Any, where: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(where, "must be true or false")
        return value

    def items(self, value: Any, where: str) -> list[Any]:
        if not isinstance(value, list):
            raise self.fail(where, "must be a list")
        return value

    def secret(self, value: Any, where: str) -> Secret:
        text = self.string(value, where)
        if text.startswith("env:"):
            name = text[4:]
            if name not in self.environ or not self.environ[name]:
                raise self.fail(where, f"environment variable {name} is not set")
            return Secret(self.environ[name])
        if text.startswith("file:"):
            try:
                return Secret(Path(text[5:]).read_text(encoding="utf-8").strip())
            except OSError:
                raise self.fail(where, f"cannot read secret file {text[5:]}") from None
        raise self.fail(where, "a secret must be a reference: env:NAME or file:/path")

    def optional_word(self, spec: dict[str, Any], name: str, where: str) -> str | None:
        return self.word(spec[name], f"{where}.{name}") if spec.get(name) is not None else None

    def timestamp(self, value: Any, where: str) -> dt.datetime:
        if isinstance(value, dt.datetime):
            stamp = value
        elif isinstance(value, dt.date):
            stamp = dt.datetime(value.year, value.month, value.day)
        else:
            try:
                stamp = dt.datetime.fromisoformat(self.string(value, where))
            except ValueError:
                raise self.fail(where, "must be an ISO 8601 date or date-time") from None
        return stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.UTC)
