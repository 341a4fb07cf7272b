"""The access log: one line per request on the ``django_k8s_runtime.access`` logger.

Through ``logging``, a line is a ``LogRecord``, a filter, python-json-logger's
formatter and a write and flush of its own: a fifth of a light request's CPU.
When the ``access`` logger is configured as the runtime configures it (JSON, the
console handler alone), the request's values are handed to that handler as they
are, and the handler makes the lines, as the formatter would, and writes them
together a moment later (``ConsoleHandler``): one write for many requests, each
line made while the code that makes it is still warm in the CPU's caches. Any
other configuration (text, a handler or filter a project added, a level above
INFO) gets its records through ``logging``, as before.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django_k8s_runtime.observability.logconfig import (
    ACCESS_LOGGER,
    ConsoleHandler,
    JsonLines,
    RequestContextFilter,
    json_string,
)
from django_k8s_runtime.observability.request_id import current_request_id
from django_k8s_runtime.observability.trace_ids import TraceIds, current_trace_ids


class AccessLog:
    def __init__(self, name: str = ACCESS_LOGGER) -> None:
        self.logger = logging.getLogger(name)

    def request(
        self,
        address: str,
        method: str,
        path: str,
        status: int,
        seconds: float,
        answered: int | None = None,
        ended: str | None = None,
    ) -> None:
        """The line of a request: ``answered`` is the status of a response the
        application completed after its client had gone (``status`` is then 499);
        ``ended``, why a response under way ended early (``status`` is the one sent)."""
        handler = self._direct_handler()
        if handler is None:
            message, fields = _message_and_fields(
                address, method, path, status, seconds, answered, ended
            )
            self.logger.info(message, extra=fields)
            return
        handler.write_later(
            _line,
            (
                handler.formatter,
                self.logger.name,
                time.time(),
                current_request_id(),
                current_trace_ids(),
                address,
                method,
                path,
                status,
                seconds,
                answered,
                ended,
            ),
        )

    def _direct_handler(self) -> ConsoleHandler | None:
        """The console handler, if it is the only place a record of this logger
        would go and nothing on the way would change it."""
        logger = self.logger
        handlers = logger.handlers
        if len(handlers) != 1 or logger.propagate or logger.filters or logger.disabled:
            return None
        handler = handlers[0]
        if (
            type(handler) is not ConsoleHandler
            or type(handler.formatter) is not JsonLines
            or handler.level > logging.INFO
            or not logger.isEnabledFor(logging.INFO)
            or not all(type(each) is RequestContextFilter for each in handler.filters)
        ):
            return None
        return handler


def _message_and_fields(
    address: str,
    method: str,
    path: str,
    status: int,
    seconds: float,
    answered: int | None,
    ended: str | None,
) -> tuple[str, dict[str, Any]]:
    fields: dict[str, Any] = {
        "method": method,
        "path": path,
        "status": status,
        "duration_ms": _milliseconds(seconds),
        "client": address,
    }
    if answered is not None:
        fields["answered"] = answered
    if ended is not None:
        fields["ended"] = ended
    return _message(address, method, path, status, seconds, answered, ended), fields


def _milliseconds(seconds: float) -> float:
    return round(seconds * 1000, 2)


def _message(
    address: str,
    method: str,
    path: str,
    status: int,
    seconds: float,
    answered: int | None,
    ended: str | None,
) -> str:
    if answered is not None:
        note = f" (client gone before its response; the application answered {answered})"
    elif ended is not None:
        note = f" (ended early: {ended.replace('_', ' ')})"
    else:
        note = ""
    return f'{address} "{method} {path}" {status} {seconds * 1000:.1f}ms{note}'


def _line(
    formatter: JsonLines,
    logger: str,
    created: float,
    request_id: str | None,
    trace_ids: TraceIds | None,
    address: str,
    method: str,
    path: str,
    status: int,
    seconds: float,
    answered: int | None,
    ended: str | None,
) -> str:
    """The JSON line of :func:`_message_and_fields`' record, as the formatter writes
    it (the same keys in the same order), without making the record."""
    message = _message(address, method, path, status, seconds, answered, ended)
    line = (
        f"{formatter.info_head(logger, message, created)}, "
        f'"method": {json_string(method)}, "path": {json_string(path)}, "status": {status}, '
        f'"duration_ms": {_milliseconds(seconds)!r}, "client": {json_string(address)}'
    )
    if answered is not None:
        line += f', "answered": {answered}'
    if ended is not None:
        line += f', "ended": {json_string(ended)}'
    if request_id:
        line += f', "request_id": {json_string(request_id)}'
    if trace_ids is not None:  # the filter's, after the request id
        line += f', "trace_id": "{trace_ids[0]}", "span_id": "{trace_ids[1]}"'
    return line + "}"
