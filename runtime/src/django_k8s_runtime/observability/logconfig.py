"""One logging configuration for every process: Gunicorn's master, the Uvicorn
workers, Django and the probes.

The same dictionary is handed to Gunicorn (``logconfig_dict``, applied in the
master before it forks) and to Django (``LOGGING``, re-applied in each worker),
so a line looks the same whoever wrote it. ``json`` emits one object per line
for log collectors; ``text`` is for people at a terminal, with the control
characters of a message escaped, so that a client cannot write a line of its
own (a path with ``%0d%0a``) or terminal escapes into it. (Named ``logconfig`` so
that it never shadows the standard library's ``logging``.)
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from django_k8s_runtime.observability.request_id import current_request_id
from django_k8s_runtime.observability.trace_ids import current_trace_ids

TEXT_FORMAT = "%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s%(request_suffix)s"
JSON_FIELDS = "%(timestamp)s %(levelname)s %(name)s %(message)s %(process)d"

ACCESS_LOGGER = "django_k8s_runtime.access"  # one line per request or socket


class RequestContextFilter(logging.Filter):
    """Stamp every record with the id of the request being served, if any, and with
    its trace id and span id when it is traced.

    The ids live in context variables, which the runtime copies into the thread that
    runs a synchronous view, so Django's own error log carries them too.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = getattr(record, "request_id", None) or current_request_id()
        if request_id:
            record.request_id = request_id
        trace_ids = current_trace_ids()
        if trace_ids is not None:
            record.trace_id, record.span_id = trace_ids
        record.request_suffix = f" [{request_id}]" if request_id else ""
        return True


class RefusalAsWarning(logging.Filter):
    """Log a rejected request as one warning line, not an ERROR with a traceback.

    Scanners send junk Host headers, thousands of query parameters or form fields
    all day; Django logs each such refusal (a ``SuspiciousOperation``, answered
    400) with a full traceback at ERROR, which buries real errors. The access log
    still records the 400.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info = None
        record.exc_text = None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


# C0 and C1 control characters and DEL, and the Unicode line and paragraph
# separators, as Python writes them in a string's repr: \r, \n, \x1b, \x00...
_ESCAPES = {
    code: repr(chr(code))[1:-1]
    for code in [*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029]
    if code != 0x09  # a tab stays a tab
}


class TextFormatter(logging.Formatter):
    """The text format, with each message on one line of its own: control
    characters in it (from a request's path, a header) are escaped, not written.
    A traceback after the message keeps its lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = record.message.translate(_ESCAPES)
        return super().formatMessage(record)


def text_formatter() -> logging.Formatter:
    return TextFormatter(TEXT_FORMAT, datefmt="%Y-%m-%d %H:%M:%S%z")


class JsonLines(JsonFormatter):
    """The JSON format: python-json-logger's, which can also start a line of the
    access log without a ``LogRecord`` (:meth:`info_head`)."""

    def info_head(self, logger: str, message: str, created: float) -> str:
        """The start of the line :meth:`format` writes for an INFO record of
        ``logger`` with ``message`` made at ``created``: the keys every line has,
        without the closing brace; the record's own fields follow, as
        ``, "key": value`` each (the access log's tests compare such a line with the
        formatter's)."""
        return (
            f'{{"timestamp": "{_timestamp(created)}", "level": "INFO", '
            f'"logger": {json_string(logger)}, "message": {json_string(message)}, '
            f'"pid": {_pid}'
        )


# A string as json.dumps() writes it (ASCII, the rest escaped), by the standard
# library's encoder in C.
json_string = json.encoder.encode_basestring_ascii


_second_prefix = (0, "")  # the last whole second stamped, as isoformat() writes it


def _timestamp(now: float) -> str:
    """``datetime.fromtimestamp(now, tz=UTC).isoformat()``, as python-json-logger
    writes a record's time, for a fifth of its cost: the date and time are made once
    a second."""
    global _second_prefix
    second = int(now)
    micro = round((now - second) * 1e6)  # rounded half to even, as datetime does
    if micro >= 1_000_000:
        return datetime.fromtimestamp(now, tz=UTC).isoformat()
    cached, prefix = _second_prefix
    if cached != second:
        prefix = datetime.fromtimestamp(second, tz=UTC).isoformat()[:-6]  # no "+00:00"
        _second_prefix = (second, prefix)
    return f"{prefix}.{micro:06d}+00:00" if micro else f"{prefix}+00:00"


def json_formatter() -> logging.Formatter:
    return JsonLines(
        JSON_FIELDS,
        rename_fields={"levelname": "level", "name": "logger", "process": "pid"},
        timestamp=True,
        reserved_attrs=[*_RESERVED, "request_suffix", "color_message"],
    )


_pid = os.getpid()


def _forked() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_forked)


class ConsoleHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The one handler: a ``StreamHandler`` that also takes lines to make later
    (:meth:`write_later`, the access log's), made and written together: one write to
    the stream for the lines of up to ``LINES_WAIT_SECONDS`` (a write of its own for
    each cost a light request a twentieth of its CPU), or of ``LINES_WAIT_MAX`` lines.

    Nothing waits longer: a record emitted meanwhile (a warning, an error) writes the
    waiting lines first, so lines keep their order, and :meth:`flush` writes them,
    which logging does at exit and the worker when it has served its last request
    and when it exits without waiting. A worker killed outright (SIGKILL, the OOM
    killer) loses what waited, as it loses its last second of request counts."""

    def __init__(self, stream: Any = None) -> None:
        super().__init__(stream)
        self._waiting: list[tuple[Callable[..., str], tuple[Any, ...]]] = []
        self._flush_on: asyncio.AbstractEventLoop | None = None  # the loop whose timer will

    def write_later(self, make_line: Callable[..., str], arguments: tuple[Any, ...]) -> None:
        """Write the line ``make_line(*arguments)`` makes, with others, soon."""
        with self.lock:  # type: ignore[union-attr]
            waiting = self._waiting
            waiting.append((make_line, arguments))
            if len(waiting) >= LINES_WAIT_MAX:
                self._write_waiting()
                return
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # not on an event loop: no timer to wait for
                self._write_waiting()
                super().flush()
                return
            if self._flush_on is loop:
                return
            self._flush_on = loop  # (a loop closed before its timer ran is not this one)
        loop.call_later(LINES_WAIT_SECONDS, self.flush)

    def emit(self, record: logging.LogRecord) -> None:
        if self._waiting:  # called with the lock held (Handler.handle)
            self._write_waiting()
        super().emit(record)

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._flush_on = None
            self._write_waiting()
            super().flush()

    def _write_waiting(self) -> None:
        waiting, self._waiting = self._waiting, []
        if not waiting:
            return
        try:
            lines = [make_line(*arguments) for make_line, arguments in waiting]
            self.stream.write("\n".join(lines) + self.terminator)
        except Exception:  # as emit() does: report it on stderr, go on
            self.handleError(logging.makeLogRecord({"msg": f"{len(waiting)} access-log lines"}))


LINES_WAIT_SECONDS = 0.1
LINES_WAIT_MAX = 256


# LogRecord attributes that are not fields of their own in the JSON output.
_RESERVED = [
    "args",
    "asctime",
    "created",
    "exc_info",
    "exc_text",
    "filename",
    "funcName",
    "levelno",
    "lineno",
    "module",
    "msecs",
    "msg",
    "pathname",
    "processName",
    "relativeCreated",
    "stack_info",
    "thread",
    "threadName",
    "taskName",
]


# The SuspiciousOperations Django raises for what a client sent, each logged on
# the logger django.security.<name>: a bad Host, too many query parameters or
# form fields, too many files, a body over DATA_UPLOAD_MAX_MEMORY_SIZE, a
# malformed multipart body.
CLIENT_REFUSALS = (
    "DisallowedHost",
    "TooManyFieldsSent",
    "TooManyFilesSent",
    "RequestDataTooBig",
    "SuspiciousMultipartForm",
)


def logging_config(*, log_format: str, level: str, server_level: str) -> dict[str, Any]:
    formatter: dict[str, Any]
    if log_format == "json":
        formatter = {"()": "django_k8s_runtime.observability.logconfig.json_formatter"}
    else:
        formatter = {"()": "django_k8s_runtime.observability.logconfig.text_formatter"}
    console = ["console"]
    server = {"level": server_level.upper(), "handlers": console, "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "request": {"()": "django_k8s_runtime.observability.logconfig.RequestContextFilter"},
            "one_line": {"()": "django_k8s_runtime.observability.logconfig.RefusalAsWarning"},
        },
        "formatters": {"default": formatter},
        "handlers": {
            "console": {
                "class": "django_k8s_runtime.observability.logconfig.ConsoleHandler",
                "stream": "ext://sys.stdout",
                "formatter": "default",
                "filters": ["request"],
            }
        },
        "root": {"level": level.upper(), "handlers": console},
        "loggers": {
            "gunicorn.error": server,
            "uvicorn": server,
            "uvicorn.error": server,
            # Uvicorn's access line lacks duration and request id; ours replaces it.
            "gunicorn.access": {"handlers": [], "propagate": False},
            "uvicorn.access": {"handlers": [], "propagate": False},
            ACCESS_LOGGER: {"level": "INFO", "handlers": console, "propagate": False},
            "django": {"level": level.upper(), "handlers": [], "propagate": True},
            # Requests Django refuses with 400 (a SuspiciousOperation): one line each.
            **{
                f"django.security.{refusal}": {"filters": ["one_line"], "propagate": True}
                for refusal in CLIENT_REFUSALS
            },
            # Python warnings go through logging, so JSON mode stays JSON.
            "py.warnings": {"level": "WARNING", "handlers": console, "propagate": False},
        },
    }
