"""The JSON log line: one object, the event name, ``service``, the ``extra=`` fields in the
order given, nothing of the record's own attributes (STYLE section 9)."""

from __future__ import annotations

import json
import logging
import sys

from qmesh.runtime.logging import JsonFormatter, encode


def record(msg: str, created: float | None = None, **extra: object) -> logging.LogRecord:
    r = logging.getLogger("services.send.consumer").makeRecord(
        "services.send.consumer", logging.INFO, "consumer.py", 1, msg, (), None, extra=extra
    )
    if created is not None:
        r.created, r.msecs = created, (created % 1) * 1000
    return r


def test_a_line_carries_the_event_service_and_extra_fields_in_order() -> None:
    f = JsonFormatter("send")
    text = f.format(record("starting_delivery", msg_id="01ABC", rcpt_index=0, attempt=1))
    assert "\n" not in text
    line = json.loads(text)
    assert list(line) == [
        "ts", "level", "event", "service", "logger", "msg_id", "rcpt_index", "attempt"
    ]  # fmt: skip
    assert (line["level"], line["event"], line["service"]) == ("info", "starting_delivery", "send")
    assert (line["msg_id"], line["rcpt_index"], line["attempt"]) == ("01ABC", 0, 1)


def test_timestamps_follow_the_clock_across_seconds() -> None:
    f = JsonFormatter("send")
    stamps = [
        json.loads(f.format(record("x", created=t)))["ts"]
        for t in (1_700_000_000.25, 1_700_000_000.5, 1_700_000_001.125, 1_700_000_000.9)
    ]
    assert stamps == [
        "2023-11-14T22:13:20.250Z",
        "2023-11-14T22:13:20.500Z",
        "2023-11-14T22:13:21.125Z",
        "2023-11-14T22:13:20.900Z",
    ]


def test_levels_args_unprintable_text_and_objects_are_kept_readable() -> None:
    f = JsonFormatter("remote")
    r = logging.getLogger("x").makeRecord(
        "x", logging.WARNING, "x.py", 1, "%s.listening", ("smtpd",), None,
        extra={"rcpt": "j\u00f6e@ex\x00.test", "ports": (25, 587), "remote": object()},
    )  # fmt: skip
    text = f.format(r)
    assert text.isascii()
    line = json.loads(text)
    assert (line["level"], line["event"]) == ("warning", "smtpd.listening")
    assert line["rcpt"] == "j\u00f6e@ex\x00.test" and line["ports"] == [25, 587]
    assert line["remote"].startswith("<object object")


def test_an_exception_is_one_field_of_the_same_line() -> None:
    f = JsonFormatter("local")
    try:
        raise ValueError("boom")
    except ValueError:
        r = logging.getLogger("x").makeRecord(
            "x", logging.ERROR, "x.py", 1, "consumer.handler_failed", (), sys.exc_info()
        )
    line = json.loads(f.format(r))
    assert line["level"] == "error" and "ValueError: boom" in line["exc"]


def test_every_line_is_the_text_pythons_json_gives() -> None:
    """The fast encoding (plain values) and the fallback give the same bytes as ``json``."""
    lines: list[dict[str, object]] = [
        {"event": "new_msg", "msg_id": "1765012345.1.ab", "bytes": 2171, "ok": True, "x": None},
        {"event": "x", "big": 2**70, "quote": 'a"b\\c/\x00\x1f\u2028'},
        {"event": "x", "rcpt": "j\u00f6e@ex.test"},
        {"event": "x", "surrogate": "a\udcffb@ex.test"},
        {"event": "x", "delay": 1e-07, "ports": (25, 587), "remote": object()},
    ]
    for line in lines:
        expected = json.dumps(line, ensure_ascii=True, separators=(",", ":"), default=str)
        assert encode(line) == expected
