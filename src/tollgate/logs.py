"""Structured JSON log lines, each carrying the request id of the request it belongs to (if any)."""

from __future__ import annotations

import contextvars
import logging
import sys

import orjson

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("tollgate_request_id", default=None)


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "request_id", "msg"}`` per line; a usage line's message is itself JSON."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "request_id": request_id_var.get(),
            "msg": record.getMessage(),
        }
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(line).decode()


def configure_logging(level: str) -> None:
    """Send every tollgate and server log line to stderr as JSON."""
    # The formatter reads none of the caller's file and line, thread, process or multiprocessing name: do not collect
    # them for every record (the "Optimization" section of the logging HOWTO; a usage line is logged per request).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    # No access log: every proxied request already has its usage line with the same request id. uvicorn decides per
    # connection with ``hasHandlers()``, so the access logger must neither have handlers nor reach the root's.
    access = logging.getLogger("uvicorn.access")
    access.handlers[:] = []
    access.propagate = False
