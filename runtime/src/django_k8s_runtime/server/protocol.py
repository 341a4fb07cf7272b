"""Uvicorn's HTTP protocol, fitted: requests on their way at shutdown are kept,
Gunicorn's request-head limits are enforced, and a connection holds the worker
only as long as its client does its part.

**Requests on their way at shutdown.** When a worker begins a graceful shutdown
(SIGTERM, SIGHUP, max-requests), Uvicorn closes every connection without a request
in progress. That includes a connection the worker accepted a moment ago whose
request has not arrived yet, and one whose request headers are only half read:
those requests are lost (the client or load balancer sees the connection reset),
which is exactly what a rolling restart or worker recycling must not do.

Here such a connection gets ``FIRST_REQUEST_GRACE`` seconds to deliver its
request, which is then served with ``Connection: close``. An idle keep-alive
connection that has already served requests is still closed at once, as HTTP
allows and every server does; clients and load balancers retry an idempotent
request that meets a closing keep-alive connection.

**Request-head limits** (:class:`server.limits.HeadLimits`: Gunicorn's
``limit_request_line``, ``limit_request_fields``, ``limit_request_field_size``).
Uvicorn ignores them and httptools has none, so a header line of any length was
read into memory. Here a request line over the limit is answered 414, too many or
too large header fields 431, and the connection is closed; the application never
sees the request. httptools gathers a header field whole before it reports it,
so the bytes of a request head are also counted as they arrive: no head larger
than the limits allow (``HeadLimits.head_bytes``, about 0.8 MB with Gunicorn's
defaults) is ever buffered.

**Bounds in time and number** (:class:`server.limits.ConnectionLimits`). Uvicorn
has no deadline for a request head and none for a client that stops reading, so
``GET / HTTP/1.1\r\n`` and silence, or a pipeline of requests whose responses
are never read, held a connection (and, for a streamed response, a thread) for
ever. Here:

* a head must be complete within ``head_timeout`` of the connection's start or
  of its first byte: else 408 (or, if nothing arrived, the connection is closed);
* a client that takes none of a response for ``send_timeout`` is disconnected
  (the handler's thread, waiting to send, is let go at once), and a pipelined
  request waits while its predecessor's response cannot be written, so one
  connection buffers at most about one response;
* past ``connections`` connections, idle keep-alive ones are closed to make room.

**What a connection may have read and not yet handed over is bounded.** Uvicorn
queues pipelined requests without a limit and resumes reading after every response,
so a client that pipelines without reading had the worker parse and hold hundreds
of thousands of requests. Here at most ``PIPELINE_DEPTH`` requests wait behind the
one running; the rest of what was read stays unparsed (at most one read and
``HELD_BYTES``), and reading stops until they are served.

**A request body has a minimum rate** (``body_min_rate`` after ``body_grace``, as
Kestrel's ``MinRequestBodyDataRate``): a body that arrives slower is answered 408,
recorded as the client's (``scope[CLIENT_ERROR]``), and the connection closed; the
application sees its client leave. A body on its way holds no request slot.

**The keep-alive timer is cancelled on every connection loss.** Uvicorn cancels it
only when the connection closed cleanly (``connection_lost(None)``); a connection
reset by the client kept its protocol, cycle and buffers alive until the timer
fired, ``GUNICORN_KEEPALIVE`` (75 s) later.

**A malformed body is the client's 400**, not the server's 500: the parser's 400
is recorded in the scope (``scope[CLIENT_ERROR]``) for the access log and
metrics, as the application only sees the client leave.

**A client gone before its response** is recorded in the scope
(``scope[CLIENT_GONE]``, False from the start, so the application knows this
server tells it, at no cost per request): Uvicorn drops what the application
sends then, and the access log said 200 for a response nobody got. That includes a client that
half-closes after its request (``shutdown(SHUT_WR)``, ``nc -N``): TCP tells that
from a client that left only once a write fails, and this server, like nginx,
reads the end of input as the client gone, so an abandoned async view is
cancelled at once.

**A stream cut by the request timeout** (it sent nothing for ``GUNICORN_TIMEOUT``) is
closed as Uvicorn closes any response the application left unfinished, without
Uvicorn's error line: the request timeout has logged why, and the access line says
it ended early.

**Upgrade requests** (WebSocket, h2c) this server does not take are answered as
the plain HTTP/1.1 requests they also are, with one warning line; Uvicorn logged
two, the second advising to install a WebSocket library.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import time
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from django_k8s_runtime.asgi_types import (
    CLIENT_ERROR,
    CLIENT_GONE,
    ENDED_EARLY,
    ROUTE,
    SEND_TIMEOUT,
)
from django_k8s_runtime.server import timeout
from django_k8s_runtime.server.limits import ConnectionLimits, HeadLimits, refusal
from django_k8s_runtime.server.worker_state import this_worker

FIRST_REQUEST_GRACE = 1.0
PIPELINE_DEPTH = 16  # requests a connection may have waiting behind the one running
FEED_BYTES = 4096  # parsed at a time while requests wait, so few more can queue
HELD_BYTES = 1024 * 1024  # read and not yet parsed: past it, the connection is dropped
BODY_CHECK_SECONDS = 1.0
UNFINISHED = "ASGI callable returned without completing response."


def _not_a_cut_response(record: logging.LogRecord) -> bool:
    """Uvicorn's line for a response left unfinished, unless the request timeout cut
    it (in the request's task, where Uvicorn logs it)."""
    return not (record.msg == UNFINISHED and timeout.CUT.get())


logging.getLogger("uvicorn.error").addFilter(_not_a_cut_response)
_HTTP_VERSION_AND_SPACES = len(b"  HTTP/1.1")


class _Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class GracefulHttpToolsProtocol(HttpToolsProtocol):
    first_request_grace = FIRST_REQUEST_GRACE
    _messages_begun = 0
    _cycles_started = 0
    _draining = False

    def __init__(
        self,
        *args: Any,
        limits: HeadLimits | None = None,
        bounds: ConnectionLimits | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits or HeadLimits()
        self.bounds = bounds or ConnectionLimits()
        self._reading_head = True  # until a request's headers are complete
        self._head_bytes = 0
        self._in_request_line = True  # until the first header field is reported
        self._line_ended = False  # a newline of this head was fed
        self._fields = 0
        self._refused = False
        self._served = 0  # responses completed on this connection
        self._head_timer: asyncio.TimerHandle | None = None
        self._send_timer: asyncio.TimerHandle | None = None
        self._next_when_writable = False  # a pipelined request waits for the client
        self._running: Any = None  # the cycle whose request runs (not always self.cycle)
        self._held = bytearray()  # read, not yet parsed: requests wait already
        self._body_expected = False  # the head being read announces a body
        self._body_timer: asyncio.TimerHandle | None = None
        self._body_started = 0.0
        self._body_bytes = 0

    # Connection life ------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_timer = self.loop.call_later(self.bounds.head_timeout, self._head_timed_out)
        if len(self._http_connections()) > self.bounds.connections:
            self._close_idle_connections()

    def connection_lost(self, exc: Exception | None) -> None:
        self._tell_cycles_the_client_is_gone()
        super().connection_lost(exc)
        # Uvicorn cancels the keep-alive timer only when exc is None.
        self._unset_keepalive_if_required()
        for timer in (self._head_timer, self._send_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._send_timer = self._body_timer = None
        self._held = bytearray()

    def _close_idle_connections(self) -> None:
        """Over ``bounds.connections``: close idle keep-alive connections (clients
        retry a request that meets a closing keep-alive connection, as they must)."""
        connections = self._http_connections()
        excess = len(connections) - self.bounds.connections
        for connection in connections:
            if excess <= 0:
                return
            if connection is not self and connection._idle_after_a_response():
                connection.transport.close()
                this_worker.connection_dropped("idle_evicted")
                excess -= 1

    def _http_connections(self) -> list[GracefulHttpToolsProtocol]:
        """The worker's HTTP connections: Uvicorn's set also holds the WebSockets
        (server/websocket_protocol.py), which WEBSOCKET_MAX_CONNECTIONS bounds."""
        return [c for c in self.connections if isinstance(c, GracefulHttpToolsProtocol)]

    def _idle_after_a_response(self) -> bool:
        return (
            self._served > 0
            and not self.pipeline
            and (self.cycle is None or self.cycle.response_complete)
            and not self._head_begun()
            and not self.transport.is_closing()
        )

    # The request head's deadline ------------------------------------------------

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

    def _head_begun(self) -> bool:
        """Whether some of a request head has arrived, but not all of it."""
        return self._messages_begun > self._cycles_started

    def _start_head_clock(self) -> None:
        if self._head_timer is None and self._head_begun() and not self.transport.is_closing():
            self._head_timer = self.loop.call_later(self.bounds.head_timeout, self._head_timed_out)

    # A client that does not read ------------------------------------------------

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
            self._next_request()

    def on_response_complete(self) -> None:
        self._served += 1
        if self.pipeline and self.flow.write_paused and not self.transport.is_closing():
            self._next_when_writable = True  # resume_writing() starts it
            return
        self._next_request()

    def _next_request(self) -> None:
        """Uvicorn's: the next pipelined request starts, and reading resumes; but
        only once nothing waits, and after what was held back is parsed."""
        super().on_response_complete()
        if self._held and not self.transport.is_closing():
            held, self._held = bytes(self._held), bytearray()
            self._feed(held)
        if self.pipeline or self._held:
            self.flow.pause_reading()

    def _send_stalled(self) -> None:
        self._send_timer = None
        if not self.flow.write_paused:
            return
        cycle = self._running or self.cycle
        scope = cycle.scope if cycle is not None else {}
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
            cycle.scope.setdefault(ENDED_EARLY, SEND_TIMEOUT)
        self._reset()

    def _reset(self) -> None:
        """Drop the connection now, and what the kernel still holds for it: a reset
        (SO_LINGER 0), not a close that waits for a client that does not read."""
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self._tell_cycles_the_client_is_gone()
        self.transport.abort()

    def _tell_cycles_the_client_is_gone(self) -> None:
        """Uvicorn tells only ``self.cycle``, the newest request parsed; with requests
        pipelined, the one running is another, and its send, woken when the
        transport closes, would write to it (uvloop raises). Said now, at the abort,
        not a loop turn later in ``connection_lost``."""
        for cycle in (self._running, self.cycle, *(cycle for cycle, _ in self.pipeline)):
            if cycle is not None and not cycle.response_complete:
                cycle.disconnected = True
                cycle.scope[CLIENT_GONE] = True  # for the application and the access log
                cycle.message_event.set()

    def _unsupported_upgrade_warning(self) -> None:
        """One line where Uvicorn wrote two (the second about installing a library)."""
        upgrade = self._get_upgrade()
        wanted = repr(upgrade.decode("latin-1")) if upgrade else "another protocol"
        client = self.client[0] if self.client else "-"
        self.logger.warning(
            "Upgrade to %s not supported: answered over HTTP/1.1 (from %s)", wanted, client
        )

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        self._running = cycle
        super()._start_asgi_task(cycle, app)

    # Request-head limits ------------------------------------------------------

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

    def _parse(self, data: bytes) -> None:
        """Uvicorn's ``data_received``, telling a refusal from a malformed request."""
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as error:
            if isinstance(error.__context__, _Refused):
                self._refuse(error.__context__.status, error.__context__.reason)
                return
            message = "Invalid HTTP request received."
            self.logger.warning(message)
            if self._reading_head:
                this_worker.connection_dropped("malformed")
            elif self.cycle is not None:
                self.cycle.scope[CLIENT_ERROR] = 400  # in the body: not the app's fault
            self.send_400_response(message)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()

    def _refuse(self, status: int, reason: str) -> None:
        self._refused = True
        if status != 408:
            this_worker.connection_dropped("head_too_large")
        client = self.client[0] if self.client else "-"
        self.logger.warning("Request refused with %d: %s (from %s)", status, reason, client)
        self.transport.write(refusal(status, reason))
        self.transport.close()

    def on_url(self, url: bytes) -> None:
        method = self.parser.get_method() or b""
        allowed = self.limits.request_line - len(method) - _HTTP_VERSION_AND_SPACES
        if len(self.url) + len(url) > allowed:
            raise _Refused(414, f"request line over {self.limits.request_line} bytes")
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._in_request_line = False
        self._fields += 1
        if len(name) in (14, 17):  # content-length, transfer-encoding
            lowered = name.lower()
            if (lowered == b"content-length" and value.strip() != b"0") or (
                lowered == b"transfer-encoding"
            ):
                self._body_expected = True
        if self._fields > self.limits.fields:
            raise _Refused(431, f"more than {self.limits.fields} header fields")
        if len(name) + 2 + len(value) > self.limits.field_size:
            raise _Refused(431, f"a header field over {self.limits.field_size} bytes")
        super().on_header(name, value)

    # Requests on their way at shutdown, and the head's bookkeeping ----------------

    def on_message_begin(self) -> None:
        self._messages_begun += 1
        self._in_request_line, self._line_ended, self._fields = True, False, 0
        self._body_expected = False
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._reading_head = False
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        previous = self.cycle
        super().on_headers_complete()
        if self.cycle is not previous:
            self.cycle.scope[CLIENT_GONE] = False  # this server says when it changes
        self._cycles_started += 1
        if self._draining and self.cycle is not None:
            self.cycle.keep_alive = False  # answer with Connection: close
        if self._body_expected and self.bounds.body_min_rate and self.cycle is not previous:
            self._body_started, self._body_bytes = time.monotonic(), 0
            self._body_timer = self.loop.call_later(self.bounds.body_grace, self._check_body)

    # A body's minimum rate --------------------------------------------------------

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        super().on_body(body)

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
        cycle.scope[CLIENT_ERROR] = 408  # the client's, for the access log and metrics
        cycle.disconnected = True  # the application sees its client leave
        cycle.message_event.set()
        if not cycle.response_started:
            self.transport.write(refusal(408, "request body too slow"))
        self._refused = True
        self.transport.close()

    def on_message_complete(self) -> None:
        # What arrives next is the next request's head (on a keep-alive connection).
        self._reading_head, self._head_bytes = True, 0
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        super().on_message_complete()

    def shutdown(self) -> None:
        self._draining = True
        fresh = self._messages_begun == 0
        half_read = self._messages_begun > self._cycles_started
        if fresh or half_read:
            self.loop.call_later(self.first_request_grace, self._close_if_idle)
            return
        super().shutdown()

    def _close_if_idle(self) -> None:
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:
            self.transport.close()
