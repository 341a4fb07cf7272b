"""Uvicorn's HTTP protocol, fitted at the connection's level: what the other layers
of :class:`.protocol.HttpProtocol` build on.

* **Requests on their way at shutdown are kept.** When a worker begins a graceful
  shutdown (SIGTERM, SIGHUP, max-requests), Uvicorn closes every connection without
  a request in progress, including one accepted a moment ago whose request has not
  arrived, or whose head is half read: lost requests, exactly what a rolling restart
  must not do. Here such a connection gets ``FIRST_REQUEST_GRACE`` seconds to
  deliver its request, served with ``Connection: close``. An idle keep-alive
  connection is closed at once, as every server does.
* **A client gone** is recorded in the scope (``scope[CLIENT_GONE]``, False from the
  start, so the application knows this server tells it, at no cost per request),
  for every request of the connection, pipelined ones too, at the moment it is
  known. A client that half-closes after its request (``nc -N``) reads, as to nginx,
  as a client gone.
* **A malformed body is the client's 400** (``scope[CLIENT_ERROR]``), not a 500.
* **Past ``connections`` connections**, idle keep-alive ones are closed to make room.
* **The keep-alive timer is cancelled on every connection loss** (Uvicorn cancels
  it only on a clean close, so a reset kept the connection's objects alive 75 s).
* **An upgrade not taken** (WebSocket, h2c) is answered over HTTP/1.1 with one
  warning line, where Uvicorn wrote two.
* **A stream cut by the request timeout** is closed without Uvicorn's error line:
  the request timeout said why.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from django_k8s_runtime.asgi_types import CLIENT_ERROR, CLIENT_GONE, Scope
from django_k8s_runtime.server import timeout
from django_k8s_runtime.server.limits import ConnectionLimits, HeadLimits, refusal
from django_k8s_runtime.server.worker_state import this_worker

FIRST_REQUEST_GRACE = 1.0
UNFINISHED = "ASGI callable returned without completing response."


def _not_a_cut_response(record: logging.LogRecord) -> bool:
    """Uvicorn's line for a response left unfinished, unless the request timeout cut
    it (in the request's task, where Uvicorn logs it)."""
    return not (record.msg == UNFINISHED and timeout.CUT.get())


logging.getLogger("uvicorn.error").addFilter(_not_a_cut_response)


def scope_of(cycle: Any) -> Scope:
    """A request's scope as the layers share it (Uvicorn types it as ASGI's keys only)."""
    scope: Scope = cycle.scope
    return scope


class Refused(Exception):
    """Raised in a parser callback: answer ``status`` and close (httptools reports
    the callback's exception as the context of its own)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class ConnectionProtocol(HttpToolsProtocol):
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
        self._refused = False
        self._served = 0  # responses completed on this connection
        self._running: Any = None  # the cycle whose request runs (not always self.cycle)

    # The connection's life ------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        if len(self._http_connections()) > self.bounds.connections:
            self._close_idle_connections()

    def connection_lost(self, exc: Exception | None) -> None:
        self._tell_cycles_the_client_is_gone()
        super().connection_lost(exc)
        # Uvicorn cancels the keep-alive timer only when exc is None.
        self._unset_keepalive_if_required()

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

    def _http_connections(self) -> list[ConnectionProtocol]:
        """The worker's HTTP connections: Uvicorn's set also holds the WebSockets,
        which WEBSOCKET_MAX_CONNECTIONS bounds."""
        return [c for c in self.connections if isinstance(c, ConnectionProtocol)]

    def _idle_after_a_response(self) -> bool:
        return bool(
            self._served > 0
            and not self.pipeline
            and (self.cycle is None or self.cycle.response_complete)
            and not self._head_begun()
            and not self.transport.is_closing()
        )

    def _head_begun(self) -> bool:
        """Whether some of a request head has arrived, but not all of it."""
        return self._messages_begun > self._cycles_started

    def on_response_complete(self) -> None:
        self._served += 1
        self._start_next()

    def _start_next(self) -> None:
        """Uvicorn's: the next pipelined request starts, and reading resumes (a layer
        above may wait for the client to read first)."""
        super().on_response_complete()

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        self._running = cycle
        super()._start_asgi_task(cycle, app)

    # The client gone, or refused ------------------------------------------------

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
                scope_of(cycle)[CLIENT_GONE] = True  # for the application and the access log
                cycle.message_event.set()

    def _refuse(self, status: int, reason: str) -> None:
        """Answer a request the application never sees, and close."""
        self._refused = True
        if status != 408:
            this_worker.connection_dropped("head_too_large")
        client = self.client[0] if self.client else "-"
        self.logger.warning("Request refused with %d: %s (from %s)", status, reason, client)
        self.transport.write(refusal(status, reason))
        self.transport.close()

    # Reading ----------------------------------------------------------------------

    def _feed(self, data: bytes) -> None:
        """Hand ``data`` to the parser (a layer above may hold some of it back)."""
        self._parse(data)

    def _parse(self, data: bytes) -> None:
        """Uvicorn's ``data_received``, telling a refusal from a malformed request."""
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as error:
            if isinstance(error.__context__, Refused):
                self._refuse(error.__context__.status, error.__context__.reason)
                return
            message = "Invalid HTTP request received."
            self.logger.warning(message)
            if self._reading_head:
                this_worker.connection_dropped("malformed")
            elif self.cycle is not None:
                scope_of(self.cycle)[CLIENT_ERROR] = 400  # in the body: not the app's fault
            self.send_400_response(message)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()

    def _unsupported_upgrade_warning(self) -> None:
        """One line where Uvicorn wrote two (the second about installing a library)."""
        upgrade = self._get_upgrade()
        wanted = repr(upgrade.decode("latin-1")) if upgrade else "another protocol"
        client = self.client[0] if self.client else "-"
        self.logger.warning(
            "Upgrade to %s not supported: answered over HTTP/1.1 (from %s)", wanted, client
        )

    # Requests on their way at shutdown --------------------------------------------

    def on_message_begin(self) -> None:
        self._messages_begun += 1
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._reading_head = False
        previous = self.cycle
        super().on_headers_complete()
        if self.cycle is not previous:
            scope_of(self.cycle)[CLIENT_GONE] = False  # this server says when it changes
        self._cycles_started += 1
        if self._draining and self.cycle is not None:
            self.cycle.keep_alive = False  # answer with Connection: close

    def on_message_complete(self) -> None:
        # What arrives next is the next request's head (on a keep-alive connection).
        self._reading_head = True
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
