"""The access log's direct way to the console handler, against what ``logging`` writes.

As the runtime configures logging (JSON, the console handler), a request's line is
made by ``access_log._line`` and written with others by ``ConsoleHandler``; any
other configuration goes through ``logging``. Both must write the same line: the
same keys in the same order with the same values.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from datetime import UTC, datetime

import pytest

from django_k8s_runtime.observability import access_log, logconfig, request_id, trace_ids
from django_k8s_runtime.observability.logconfig import ConsoleHandler

pytestmark = pytest.mark.in_process

REQUESTS = [
    # address, method, path, status, seconds, answered, ended
    ("10.0.0.9", "GET", "/items?page=2", 200, 0.0123456, None, None),
    ("2001:db8::1", "POST", "/upload", 499, 1.5, 201, None),  # answered after the client left
    ("-", "GET", '/caf\u00e9/"quoted"\\/\r\n\x1b[31m', 404, 0.0, None, None),  # escaped
    ("10.0.0.9", "HEAD", "/", 504, 30.000049, None, None),
    ("10.0.0.9", "GET", "/events", 200, 61.5, None, "send_timeout"),  # a 200, cut
]


@pytest.fixture
def console():
    """The access logger as the runtime's JSON configuration sets it up, writing to a
    buffer (set up here: dictConfig would close every handler of this process); the
    one before it back after."""
    config = logconfig.logging_config(log_format="json", level="INFO", server_level="INFO")
    console = config["handlers"]["console"]
    assert console["class"] == "django_k8s_runtime.observability.logconfig.ConsoleHandler"
    assert config["formatters"]["default"]["()"].endswith("logconfig.json_formatter")
    assert config["loggers"]["django_k8s_runtime.access"] == {
        "level": "INFO",
        "handlers": ["console"],
        "propagate": False,
    }
    assert console["filters"] == ["request"]
    assert config["filters"]["request"]["()"].endswith("logconfig.RequestContextFilter")

    logger = logging.getLogger("django_k8s_runtime.access")
    saved = (list(logger.handlers), list(logger.filters), logger.propagate, logger.level)
    stream = io.StringIO()
    handler = ConsoleHandler(stream)
    handler.setFormatter(logconfig.json_formatter())
    handler.addFilter(logconfig.RequestContextFilter())
    logger.handlers[:], logger.filters[:] = [handler], []
    logger.propagate, logger.disabled = False, False
    logger.setLevel(logging.INFO)
    yield stream, handler
    logger.handlers[:], logger.filters[:], logger.propagate, level = saved
    logger.setLevel(level)
    logger.disabled = False


def alone(handler: ConsoleHandler) -> None:
    """The handler alone on the access logger: pytest adds its capturing handlers to
    every logger that does not propagate, as each phase of a test begins."""
    logging.getLogger("django_k8s_runtime.access").handlers[:] = [handler]


TRACED = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")  # a traced request's ids


@pytest.mark.parametrize("traced", [None, TRACED], ids=["untraced", "traced"])
@pytest.mark.parametrize("request_id_bound", [None, "req-abc-12345"])
@pytest.mark.parametrize("values", REQUESTS)
def test_the_direct_line_is_the_one_logging_writes(
    console, values, request_id_bound, traced
) -> None:
    stream, handler = console
    alone(handler)
    log = access_log.AccessLog("django_k8s_runtime.access")
    assert log._direct_handler() is handler  # the runtime's configuration: direct

    token = request_id.bind(request_id_bound) if request_id_bound else None
    traced_token = trace_ids.bind(traced) if traced else None
    try:
        before = time.time()

        async def on_a_loop() -> None:
            log.request(*values)  # waits in the handler...
            assert stream.getvalue() == ""

        asyncio.run(on_a_loop())
        handler.flush()  # ...until written
        message, fields = access_log._message_and_fields(*values)
        log.logger.info(message, extra=fields)  # the same request, through logging
    finally:
        if token is not None:
            request_id.unbind(token)
        if traced_token is not None:
            trace_ids.unbind(traced_token)

    direct, logged = stream.getvalue().splitlines()
    assert list(json.loads(direct)) == list(json.loads(logged))  # the keys, in order
    direct_fields, logged_fields = json.loads(direct), json.loads(logged)
    for stamped in (direct_fields, logged_fields):
        assert datetime.fromisoformat(stamped.pop("timestamp")).timestamp() >= before - 0.001
    assert direct_fields == logged_fields
    assert direct.isascii()  # as python-json-logger writes it
    assert direct_fields.get("request_id") == request_id_bound
    assert (direct_fields.get("trace_id"), direct_fields.get("span_id")) == (traced or (None, None))


def test_timestamps_are_written_as_isoformat_writes_them() -> None:
    now = time.time()
    moments = [now, float(int(now)), int(now) + 0.5, int(now) + 0.9999996, int(now) + 4e-7]
    moments += [now + step * 0.0137 for step in range(2000)]
    for moment in moments:
        assert logconfig._timestamp(moment) == datetime.fromtimestamp(moment, tz=UTC).isoformat()


@pytest.mark.parametrize(
    "change",
    ["text", "another handler", "a filter", "propagate", "level", "disabled"],
)
def test_any_other_configuration_goes_through_logging(console, change, caplog) -> None:
    stream, handler = console
    alone(handler)
    logger = logging.getLogger("django_k8s_runtime.access")
    if change == "text":
        handler.setFormatter(logconfig.text_formatter())
    elif change == "another handler":
        logger.addHandler(logging.NullHandler())
    elif change == "a filter":
        logger.addFilter(lambda record: True)
    elif change == "propagate":
        logger.propagate = True
    elif change == "level":
        logger.setLevel(logging.WARNING)
    elif change == "disabled":
        logger.disabled = True
    log = access_log.AccessLog("django_k8s_runtime.access")
    assert log._direct_handler() is None
    log.request(*REQUESTS[0])
    handler.flush()
    written = stream.getvalue()
    if change in ("level", "disabled"):
        assert written == ""  # as logging would: nothing
    elif change == "text":
        assert '10.0.0.9 "GET /items?page=2" 200 12.3ms' in written
    else:
        assert json.loads(written)["path"] == "/items?page=2"


def test_waiting_lines_are_written_before_a_later_record_and_at_flush() -> None:
    stream = io.StringIO()
    handler = ConsoleHandler(stream)
    handler.setFormatter(logconfig.json_formatter())

    async def on_a_loop() -> None:
        handler.write_later(str, ("first",))
        handler.write_later(str, ("second",))
        assert stream.getvalue() == ""
        handler.handle(logging.makeLogRecord({"msg": "a warning", "levelno": 30}))
        handler.write_later(str, ("third",))
        await asyncio.sleep(logconfig.LINES_WAIT_SECONDS * 3)  # the timer writes it

    asyncio.run(on_a_loop())
    first, second, warning, third = stream.getvalue().splitlines()
    assert (first, second, third) == ("first", "second", "third")
    assert json.loads(warning)["message"] == "a warning"


def test_a_loop_that_closed_before_its_timer_leaves_no_line_waiting_on_the_next() -> None:
    stream = io.StringIO()
    handler = ConsoleHandler(stream)

    async def write(text: str, wait: float) -> None:
        handler.write_later(str, (text,))
        await asyncio.sleep(wait)

    asyncio.run(write("first", 0))  # closed before the timer: the line waits...
    asyncio.run(write("second", logconfig.LINES_WAIT_SECONDS * 3))  # ...this one's timer
    assert stream.getvalue() == "first\nsecond\n"


def test_lines_off_an_event_loop_are_written_at_once_and_many_do_not_wait() -> None:
    stream = io.StringIO()
    handler = ConsoleHandler(stream)
    handler.write_later(str, ("from a thread",))
    assert stream.getvalue() == "from a thread\n"

    async def many() -> None:
        for number in range(logconfig.LINES_WAIT_MAX):
            handler.write_later(str, (number,))

    asyncio.run(many())
    assert len(stream.getvalue().splitlines()) == 1 + logconfig.LINES_WAIT_MAX


def test_a_line_that_cannot_be_written_is_reported_and_the_rest_go_on(capsys) -> None:
    stream = io.StringIO()
    handler = ConsoleHandler(stream)

    def broken() -> str:
        raise ValueError("no line")

    handler.write_later(broken, ())
    handler.write_later(str, ("next",))
    assert "Logging error" in capsys.readouterr().err
    assert stream.getvalue() == "next\n"
