"""The trace id and span id of the request being served, for its log lines.

Set by the request's server span (:mod:`.traces`) while it is current, as the request
id is (:mod:`.request_id`), and copied with it into the thread that runs a
synchronous view; read by the log filter and the access log, which write them beside
the request id. Unset when tracing is off: no line carries them, and this module
imports nothing of OpenTelemetry.
"""

from __future__ import annotations

from contextvars import ContextVar

# (trace id, span id) as W3C trace context writes them: 32 and 16 lowercase hex digits.
TraceIds = tuple[str, str]
_current: ContextVar[TraceIds | None] = ContextVar("trace_ids", default=None)


def current_trace_ids() -> TraceIds | None:
    return _current.get()


def bind(ids: TraceIds) -> object:
    return _current.set(ids)


def unbind(token: object) -> None:
    _current.reset(token)  # type: ignore[arg-type]
