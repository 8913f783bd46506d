"""One JSON object per line on stdout (ARCHITECTURE section 7, STYLE section 9).

The message is an event name (``smtpd.accepted``); fields come from ``extra=``. Every line
carries ``service``. Never log bodies, passwords or AUTH data.

Formatting is on every message's path, so it does little per line: the fields ``extra=`` added
are the record's attributes a fresh ``LogRecord`` does not have (they come after its own, which
are skipped without a look), the timestamp's seconds are formatted once per second, and the
JSON is compact. A line whose values are all strings, integers, booleans or None is encoded by
pydantic-core's JSON, in Rust, and kept when it is ASCII (nearly every line); anything else goes
through Python's ``json`` with ASCII escapes and ``str`` for other objects, and both give the
same text for the same line. :func:`setup_logging` turns off what the stdlib gathers for every
record and no line shows (the caller's frame, thread and process names), as the logging HOWTO's
"Optimization" section describes.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from itertools import islice
from typing import Any

from pydantic_core import PydanticSerializationError, to_json

_OWN = len(vars(logging.LogRecord("", 0, "", 0, "", (), None)))  # set first, extras after
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
}
_LEVELS = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warning",
    logging.ERROR: "error",
    logging.CRITICAL: "critical",
}
_encode = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), default=str).encode
_PLAIN = frozenset({str, int, bool, type(None)})  # the same text from pydantic-core and json


def encode(line: dict[str, Any]) -> str:
    """``line`` as one compact ASCII JSON object, the text of Python's ``json``."""
    if all(type(value) in _PLAIN for value in line.values()):
        try:
            text = to_json(line)
        except PydanticSerializationError:  # a lone surrogate
            pass
        else:
            if text.isascii():
                return text.decode("ascii")
    return _encode(line)


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service
        self._second = -1
        self._stamp = ""

    def _timestamp(self, created: float, msecs: float) -> str:
        second = int(created)
        if second != self._second:  # a race between threads only formats the same second twice
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._stamp}.{int(msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": self._timestamp(record.created, record.msecs),
            "level": _LEVELS.get(record.levelno) or record.levelname.lower(),
            "event": record.getMessage() if record.args else str(record.msg),
            "service": self._service,
            "logger": record.name,
        }
        for key, value in islice(vars(record).items(), _OWN, None):
            if key not in _STANDARD and key[:1] != "_":
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return encode(line)


def setup_logging(service: str, level: str = "INFO") -> None:
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging._srcfile = None  # no frame walk to find the caller: no line shows it
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("uvicorn", "uvicorn.error", "uvicorn.access", "nats"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
