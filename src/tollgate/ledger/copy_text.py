"""PostgreSQL's COPY text format, read: the bytes of ``COPY (…) TO STDOUT`` as rows of values.

Each row ends with a newline and its fields are separated by tabs. NULL is ``\\N``. In a value, a backslash is
written ``\\\\`` and backspace, form feed, newline, carriage return, tab and vertical tab as a backslash and a letter
(``\\b``, ``\\f``, ``\\n``, ``\\r``, ``\\t``, ``\\v``); every other character is written as it is (PostgreSQL's
``CopyAttributeOutText``). So a row with no backslash in it needs no decoding — its fields are its values — and a
newline byte only ever ends a row. Pure: the PostgreSQL ledger feeds it the chunks ``copy_from_query`` hands over.
"""

from __future__ import annotations

import re

_ESCAPE = re.compile(r"\\(.)", re.DOTALL)
_LETTERS = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}

CopyRow = tuple[str | None, ...]


class CopyTextRows:
    """Cuts the chunks of one COPY into rows. A chunk may end anywhere, even inside a character: the bytes after its
    last newline wait for the next chunk."""

    def __init__(self) -> None:
        self._rest = b""

    def feed(self, chunk: bytes) -> list[CopyRow]:
        """The rows completed by ``chunk``, as tuples of text fields (None for NULL)."""
        data = self._rest + chunk if self._rest else chunk
        end = data.rfind(b"\n") + 1
        self._rest = data[end:]
        if not end:
            return []
        rows: list[CopyRow] = []
        append = rows.append  # bound once: this loop runs once per row of a full-grain export
        for line in data[: end - 1].decode().split("\n"):
            fields = tuple(line.split("\t"))
            append(tuple(map(_value, fields)) if "\\" in line else fields)
        return rows

    def close(self) -> None:
        """Check the COPY ended at the end of a row."""
        if self._rest:
            raise ValueError("the COPY output ended inside a row")


def _value(field: str) -> str | None:
    if field == "\\N":
        return None
    return _ESCAPE.sub(_unescape, field) if "\\" in field else field


def _unescape(match: re.Match[str]) -> str:
    letter = match.group(1)
    return _LETTERS.get(letter, letter)
