"""The access log: one line per request on the ``access`` logger.

Through ``logging``, a line is a ``LogRecord``, a filter, python-json-logger's
formatter and a write and flush of its own: more than a fifth of a light request.
When the ``access`` logger is configured as the runtime configures it (JSON, the
console handler alone), the line is made here as that formatter would make it and
handed to the handler, which writes the lines of one turn of the event loop at
once. Any other configuration (text, a handler or filter a project added, a level
above INFO) gets its records through ``logging``, as before.
"""

from __future__ import annotations

import logging
from typing import Any

from django_k8s_runtime.observability.logconfig import (
    ConsoleHandler,
    JsonLines,
    RequestContextFilter,
)


class AccessLog:
    def __init__(self, name: str = "access") -> None:
        self.logger = logging.getLogger(name)

    def write(self, message: str, fields: dict[str, Any]) -> None:
        handler = self._direct_handler()
        if handler is None:
            self.logger.info(message, extra=fields)
        else:
            line = handler.formatter.info_line(self.logger.name, message, fields)  # type: ignore[union-attr]
            handler.write_line(line)

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
