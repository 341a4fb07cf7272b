"""Uvicorn's HTTP protocol, fitted: requests on their way at shutdown are kept, and
Gunicorn's request-head limits are enforced.

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

**A client that leaves before its response** (closes, or half-closes after its
request: TCP tells the two apart only once a write fails, and this server, like
nginx, reads the end of input as the client gone) gets nothing: Uvicorn drops
what the application sends then. The request's scope is marked ``client_gone``,
so the access log says so (499) instead of the status nobody received.

**Upgrade requests** (WebSocket, h2c) this server does not take are answered as
the plain HTTP/1.1 requests they also are, with one warning line; Uvicorn logged
two, the second advising to install a WebSocket library.
"""

from __future__ import annotations

from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from django_k8s_runtime.server.limits import HeadLimits, refusal

FIRST_REQUEST_GRACE = 1.0
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

    def __init__(self, *args: Any, limits: HeadLimits | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits or HeadLimits()
        self._reading_head = True  # until a request's headers are complete
        self._head_bytes = 0
        self._in_request_line = True
        self._fields = 0
        self._refused = False

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
                if self._reading_head and not self._refused:
                    if self._in_request_line:
                        self._refuse(414, f"request line over {self.limits.request_line} bytes")
                    else:
                        self._refuse(431, f"request head over {self.limits.head_bytes} bytes")
                elif not self._refused:
                    self.data_received(data[room:])
                return
            self._head_bytes += len(data)
        self._feed(data)

    def _feed(self, data: bytes) -> None:
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
            self.send_400_response(message)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()

    def _refuse(self, status: int, reason: str) -> None:
        self._refused = True
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
        if self._fields > self.limits.fields:
            raise _Refused(431, f"more than {self.limits.fields} header fields")
        if len(name) + 2 + len(value) > self.limits.field_size:
            raise _Refused(431, f"a header field over {self.limits.field_size} bytes")
        super().on_header(name, value)

    # Requests on their way at shutdown, and the head's bookkeeping ----------------

    def on_message_begin(self) -> None:
        self._messages_begun += 1
        self._in_request_line, self._fields = True, 0
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._reading_head = False
        super().on_headers_complete()
        self._cycles_started += 1
        if self._draining and self.cycle is not None:
            self.cycle.keep_alive = False  # answer with Connection: close

    def on_message_complete(self) -> None:
        # What arrives next is the next request's head (on a keep-alive connection).
        self._reading_head, self._head_bytes = True, 0
        super().on_message_complete()

    def shutdown(self) -> None:
        self._draining = True
        fresh = self._messages_begun == 0
        half_read = self._messages_begun > self._cycles_started
        if fresh or half_read:
            self.loop.call_later(self.first_request_grace, self._close_if_idle)
            return
        super().shutdown()

    # A client gone, and upgrades not taken ---------------------------------------

    def connection_lost(self, exc: Exception | None) -> None:
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.scope["client_gone"] = True  # what is sent now is dropped
        super().connection_lost(exc)

    def _unsupported_upgrade_warning(self) -> None:
        upgrade = self._get_upgrade()
        wanted = repr(upgrade.decode("latin-1")) if upgrade else "another protocol"
        client = self.client[0] if self.client else "-"
        self.logger.warning(
            "Upgrade to %s not supported: answered over HTTP/1.1 (from %s)", wanted, client
        )

    def _close_if_idle(self) -> None:
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:
            self.transport.close()
