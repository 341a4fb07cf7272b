"""The request head's limits and deadline, a layer of :class:`.protocol.HttpProtocol`.

* **Limits** (:class:`.limits.HeadLimits`: Gunicorn's ``limit_request_line``,
  ``limit_request_fields``, ``limit_request_field_size``), which Uvicorn ignores and
  httptools does not have: a request line over the limit is answered 414, too many
  or too large header fields 431, and the connection closed; the application never
  sees the request. httptools gathers a field whole before it reports it, so the
  bytes of a head are also counted as they arrive: no head larger than the limits
  allow (about 0.8 MB with Gunicorn's defaults) is ever buffered.
* **A deadline** (``bounds.head_timeout``, REQUEST_HEAD_TIMEOUT): a head must be
  whole within it of the connection's start or of its first byte, else 408 (or, if
  nothing arrived, the connection is closed).
"""

from __future__ import annotations

import asyncio
from typing import Any

from django_k8s_runtime.server.http_connection import ConnectionProtocol, Refused
from django_k8s_runtime.server.worker_state import this_worker

_HTTP_VERSION_AND_SPACES = len(b"  HTTP/1.1")


class HeadLimitedProtocol(ConnectionProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0
        self._in_request_line = True  # until the first header field is reported
        self._line_ended = False  # a newline of this head was fed
        self._fields = 0
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._head_timer = self.loop.call_later(self.bounds.head_timeout, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    # The head's size ----------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._reading_head:
            room = self.limits.head_bytes - self._head_bytes
            if len(data) > room:
                # Feed only what a head within the limits could hold; if the head
                # has not ended by then, it is too large.
                self._feed(data[:room])
                self._line_ended = self._line_ended or b"\n" in data[:room]
                if self._reading_head and not self._refused:
                    # httptools reports a field only once it is whole: a first field
                    # too large to end looks like the request line still going, but
                    # the line ended with its newline. (A newline of the request before
                    # it, read together with this one, counts too: 431, still refused.)
                    if self._in_request_line and not self._line_ended:
                        self._refuse(414, f"request line over {self.limits.request_line} bytes")
                    else:
                        self._refuse(431, f"request head over {self.limits.head_bytes} bytes")
                elif not self._refused:
                    self.data_received(data[room:])
                return
            self._head_bytes += len(data)
        self._feed(data)
        if self._reading_head:
            self._line_ended = self._line_ended or b"\n" in data
        if not self._refused:
            self._start_head_clock()

    def on_url(self, url: bytes) -> None:
        method = self.parser.get_method() or b""
        allowed = self.limits.request_line - len(method) - _HTTP_VERSION_AND_SPACES
        if len(self.url) + len(url) > allowed:
            raise Refused(414, f"request line over {self.limits.request_line} bytes")
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._in_request_line = False
        self._fields += 1
        if self._fields > self.limits.fields:
            raise Refused(431, f"more than {self.limits.fields} header fields")
        if len(name) + 2 + len(value) > self.limits.field_size:
            raise Refused(431, f"a header field over {self.limits.field_size} bytes")
        super().on_header(name, value)

    def on_message_begin(self) -> None:
        self._in_request_line, self._line_ended, self._fields = True, False, 0
        super().on_message_begin()

    def on_message_complete(self) -> None:
        self._head_bytes = 0
        super().on_message_complete()

    # The head's deadline ------------------------------------------------------------

    def on_headers_complete(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().on_headers_complete()

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or not self._reading_head:
            return
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a response is on its way; the next head's clock starts later
        this_worker.connection_dropped("head_timeout")
        if not self._head_begun():
            self.transport.close()  # nothing arrived: an idle connection, no answer
            return
        self._refuse(408, f"request head not complete within {self.bounds.head_timeout:g}s")

    def _start_head_clock(self) -> None:
        if self._head_timer is None and self._head_begun() and not self.transport.is_closing():
            self._head_timer = self.loop.call_later(self.bounds.head_timeout, self._head_timed_out)
