"""The bounded record of requests the simulator received, readable from any thread."""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

DEFAULT_MAX_RECORDS = 1000


class RequestLog:
    """The last ``limit`` requests as dicts: ``method``, ``path``, ``headers`` (lowercase names), ``body``
    (the parsed JSON, or ``None``), ``time`` (unix seconds). Appends come from the server's loop; reads and
    clears may come from a test's thread, hence the lock (uncontended, so cheap)."""

    def __init__(self, limit: int = DEFAULT_MAX_RECORDS) -> None:
        self._entries: deque[dict[str, Any]] = deque(maxlen=limit)
        self._lock = threading.Lock()

    def add(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._entries.append(entry)

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._entries)

    def clear(self) -> int:
        """Forget everything; returns how many entries there were."""
        with self._lock:
            count = len(self._entries)
            self._entries.clear()
            return count
