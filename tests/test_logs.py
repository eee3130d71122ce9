"""Log configuration: JSON lines with the request id, and no uvicorn access log (usage lines cover every request)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import orjson
import pytest

from tollgate.logs import configure_logging, request_id_var


@pytest.fixture
def restored_logging() -> Iterator[None]:
    names = ("", "uvicorn", "uvicorn.error", "uvicorn.access")
    saved = [(logging.getLogger(n), list(logging.getLogger(n).handlers), logging.getLogger(n).propagate) for n in names]
    level = logging.getLogger().level
    yield
    for logger, handlers, propagate in saved:
        logger.handlers[:] = handlers
        logger.propagate = propagate
    logging.getLogger().setLevel(level)


@pytest.mark.usefixtures("restored_logging")
def test_uvicorn_access_log_stays_off() -> None:
    # uvicorn's httptools protocol logs access lines iff the access logger has handlers (its own or the root's).
    logging.getLogger("uvicorn.access").propagate = True
    configure_logging("info")
    assert not logging.getLogger("uvicorn.access").hasHandlers()
    assert logging.getLogger("uvicorn.error").hasHandlers()


@pytest.mark.usefixtures("restored_logging")
def test_lines_are_json_with_the_request_id(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info")
    token = request_id_var.set("req_abc")
    try:
        logging.getLogger("tollgate.test").info("hello %s", "world")
    finally:
        request_id_var.reset(token)
    line = orjson.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["request_id"] == "req_abc"
    assert line["msg"] == "hello world"
    assert line["level"] == "info"
