"""A connection holds the worker only as long as its client does its part: a layer
of :class:`.protocol.HttpProtocol`.

* **A client that takes none of a response** for ``bounds.send_timeout``
  (RESPONSE_SEND_TIMEOUT) is reset, one warning line, and the response recorded
  with ``ended: send_timeout`` (the handler's thread, waiting to send, is let go at
  once); a pipelined request waits while its predecessor's response cannot be
  written, so one connection buffers about one response.
* **What was read and not handed over is bounded.** Uvicorn queues pipelined
  requests without a limit and resumes reading after every response, so a client
  that pipelines without reading had the worker parse and hold hundreds of
  thousands of requests. Here at most ``PIPELINE_DEPTH`` wait behind the one
  running; the rest of what was read stays unparsed (at most one read and
  ``HELD_BYTES``), and reading stops until they are served.
* **A request body has a minimum rate** (``bounds.body_min_rate`` after
  ``bounds.body_grace``, as Kestrel's ``MinRequestBodyDataRate``): slower is
  answered 408, recorded as the client's (``scope[CLIENT_ERROR]``), and the
  connection closed; the application sees its client leave.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from django_k8s_runtime.asgi_types import CLIENT_ERROR, ENDED_EARLY, ROUTE, SEND_TIMEOUT
from django_k8s_runtime.server.http_connection import scope_of
from django_k8s_runtime.server.http_head import HeadLimitedProtocol
from django_k8s_runtime.server.limits import refusal
from django_k8s_runtime.server.worker_state import this_worker

PIPELINE_DEPTH = 16  # requests a connection may have waiting behind the one running
FEED_BYTES = 4096  # parsed at a time while requests wait, so few more can queue
HELD_BYTES = 1024 * 1024  # read and not yet parsed: past it, the connection is dropped
BODY_CHECK_SECONDS = 1.0


class PacedProtocol(HeadLimitedProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._send_timer: asyncio.TimerHandle | None = None
        self._next_when_writable = False  # a pipelined request waits for the client
        self._held = bytearray()  # read, not yet parsed: requests wait already
        self._body_expected = False  # the head being read announces a body
        self._body_timer: asyncio.TimerHandle | None = None
        self._body_started = 0.0
        self._body_bytes = 0

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        for timer in (self._send_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._send_timer = self._body_timer = None
        self._held = bytearray()

    # A client that does not read ------------------------------------------------------

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._send_timer is None:
            self._send_timer = self.loop.call_later(self.bounds.send_timeout, self._send_stalled)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None
        if self._next_when_writable:
            self._next_when_writable = False
            self._start_next()

    def _send_stalled(self) -> None:
        self._send_timer = None
        if not self.flow.write_paused:
            return
        cycle = self._running or self.cycle
        scope = scope_of(cycle) if cycle is not None else {}
        self.logger.warning(
            'Client took none of the response for %gs, disconnected: %s "%s %s" route=%s, '
            "%d bytes unsent",
            self.bounds.send_timeout,
            self.client[0] if self.client else "-",
            scope.get("method", "-"),
            scope.get("path", "-"),
            scope.get(ROUTE, "-"),
            self.transport.get_write_buffer_size(),
        )
        this_worker.connection_dropped("send_timeout")
        if cycle is not None:
            scope_of(cycle).setdefault(ENDED_EARLY, SEND_TIMEOUT)
        self._reset()

    # Requests pipelined -----------------------------------------------------------------

    def _start_next(self) -> None:
        """The next pipelined request starts once its predecessor's response could be
        written; reading resumes only once nothing waits, after what was held back."""
        if self.pipeline and self.flow.write_paused and not self.transport.is_closing():
            self._next_when_writable = True  # resume_writing() starts it
            return
        super()._start_next()
        if self._held and not self.transport.is_closing():
            held, self._held = bytes(self._held), bytearray()
            self._feed(held)
        if self.pipeline or self._held:
            self.flow.pause_reading()

    def _feed(self, data: bytes) -> None:
        """Parse ``data``; while requests wait behind the one running, a little at a
        time, holding back what would queue past ``PIPELINE_DEPTH``."""
        if self._held or len(self.pipeline) >= PIPELINE_DEPTH:
            self._hold(data)
            return
        if len(data) <= FEED_BYTES or self.cycle is None or self.cycle.response_complete:
            self._parse(data)
            return
        for offset in range(0, len(data), FEED_BYTES):
            self._parse(data[offset : offset + FEED_BYTES])
            if self._refused or self.transport.is_closing():
                return
            if len(self.pipeline) >= PIPELINE_DEPTH:
                self._hold(data[offset + FEED_BYTES :])
                return

    def _hold(self, data: bytes) -> None:
        self.flow.pause_reading()
        self._held += data
        if len(self._held) > HELD_BYTES:
            self.logger.warning(
                "Client pipelined over %d bytes of requests without reading: disconnected (%s)",
                HELD_BYTES,
                self.client[0] if self.client else "-",
            )
            this_worker.connection_dropped("pipeline_full")
            self._reset()

    # A body's minimum rate ----------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._body_expected = False
        super().on_message_begin()

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) in (14, 17):  # content-length, transfer-encoding
            lowered = name.lower()
            if (lowered == b"content-length" and value.strip() != b"0") or (
                lowered == b"transfer-encoding"
            ):
                self._body_expected = True
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        previous = self.cycle
        super().on_headers_complete()
        if self._body_expected and self.bounds.body_min_rate and self.cycle is not previous:
            self._body_started, self._body_bytes = time.monotonic(), 0
            self._body_timer = self.loop.call_later(self.bounds.body_grace, self._check_body)

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        super().on_message_complete()

    def _check_body(self) -> None:
        self._body_timer = None
        cycle = self.cycle
        if cycle is None or not cycle.more_body or self.transport.is_closing():
            return
        elapsed = time.monotonic() - self._body_started
        if self._body_bytes >= self.bounds.body_min_rate * elapsed:
            self._body_timer = self.loop.call_later(BODY_CHECK_SECONDS, self._check_body)
            return
        this_worker.connection_dropped("body_too_slow")
        self.logger.warning(
            "Request body too slow, answered 408: %d bytes in %.1fs (REQUEST_BODY_MIN_RATE=%d "
            'after %gs): %s "%s %s"',
            self._body_bytes,
            elapsed,
            self.bounds.body_min_rate,
            self.bounds.body_grace,
            self.client[0] if self.client else "-",
            cycle.scope.get("method", "-"),
            cycle.scope.get("path", "-"),
        )
        scope_of(cycle)[CLIENT_ERROR] = 408  # the client's, for the access log and metrics
        cycle.disconnected = True  # the application sees its client leave
        cycle.message_event.set()
        if not cycle.response_started:
            self.transport.write(refusal(408, "request body too slow"))
        self._refused = True
        self.transport.close()
