"""Uvicorn's HTTP protocol, without dropping requests that are on their way at shutdown.

When a worker begins a graceful shutdown (SIGTERM, SIGHUP, max-requests), Uvicorn
closes every connection without a request in progress. That includes a
connection the worker accepted a moment ago whose request has not arrived yet,
and one whose request headers are only half read: those requests are lost (the
client or load balancer sees the connection reset), which is exactly what a
rolling restart or worker recycling must not do.

Here such a connection gets ``FIRST_REQUEST_GRACE`` seconds to deliver its
request, which is then served with ``Connection: close``. An idle keep-alive
connection that has already served requests is still closed at once, as HTTP
allows and every server does; clients and load balancers retry an idempotent
request that meets a closing keep-alive connection.
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

FIRST_REQUEST_GRACE = 1.0


class GracefulHttpToolsProtocol(HttpToolsProtocol):
    first_request_grace = FIRST_REQUEST_GRACE
    _messages_begun = 0
    _cycles_started = 0
    _draining = False

    def on_message_begin(self) -> None:
        self._messages_begun += 1
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._cycles_started += 1
        if self._draining and self.cycle is not None:
            self.cycle.keep_alive = False  # answer with Connection: close

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
