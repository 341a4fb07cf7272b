"""One access-log line per WebSocket, when it closes, and the sockets' metrics.

An HTTP request is logged when its response is done; a socket may stay open for
hours, so it is logged once, when it ends: its path, how long it was open, the
messages in and out, and how it closed: the close code for a socket that was
accepted (1000 normal, 1001 going away, 1006 dropped without a close frame...),
the HTTP status for a handshake that was refused (400, 403, 503, 504). The query
string is left out: WebSocket clients, which cannot set headers from a browser,
often carry tokens in it.

The request id (an incoming well-formed ``X-Request-ID``, else a new one) is sent
back with the handshake's answer and bound for the socket's whole life, so the
application's log lines about it carry it too.

Metrics, when on: open sockets (a gauge across workers), sockets closed by close
code, handshakes refused by status, and messages by direction. None is labelled by
path, which would give every id in a URL its own time series, nor by anything a
client chooses: a close code is one of the registered ones (1000-1015) or
``other`` (a client may close with any of 2,000 codes; the access line has the
exact one). Messages are counted as they pass, in the worker, and added to what
a scrape reads with the request counts (:meth:`SocketMetrics.publish`, once a
second): a socket open for hours is counted while it is open, and a worker killed
outright loses at most its last second.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from django_k8s_runtime.asgi_types import ASGIApp, Message, Receive, Scope, Send
from django_k8s_runtime.observability import logconfig, request_id

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

access_logger = logging.getLogger(logconfig.ACCESS_LOGGER)

ABNORMAL_CLOSURE = 1006  # closed without a close frame (RFC 6455 7.1.5)
# RFC 6455's codes and those IANA's registry adds below 3000 (1004 reserved).
REGISTERED_CLOSE_CODES = frozenset(range(1000, 1016))


def close_code_label(code: int) -> str:
    """The metrics' label for a close code: itself if registered, else ``other``."""
    return str(code) if code in REGISTERED_CLOSE_CODES else "other"


class SocketMetrics:
    """The sockets' metrics. Created once per process tree (:func:`get`), before
    forking; ``registry`` is prometheus_client's default one unless a test passes
    its own."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        from prometheus_client import REGISTRY, Counter, Gauge

        registry = REGISTRY if registry is None else registry
        self.open = Gauge(
            "websocket_connections_open",
            "WebSockets open now.",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.closed = Counter(
            "websocket_connections_closed",
            "WebSockets closed, by close code: the registered ones (1000-1015), else other.",
            ("code",),
            registry=registry,
        )
        self.refused = Counter(
            "websocket_handshakes_refused",
            "WebSocket handshakes answered with an HTTP status instead of a socket.",
            ("status",),
            registry=registry,
        )
        self.messages = Counter(
            "websocket_messages",
            "WebSocket messages, received from clients (in) and sent to them (out).",
            ("direction",),
            registry=registry,
        )
        self._messages_in = 0  # this worker's, since the last publish()
        self._messages_out = 0

    def message_received(self) -> None:
        self._messages_in += 1  # on the event loop, as every socket's messages

    def message_sent(self) -> None:
        self._messages_out += 1

    def publish(self) -> None:
        """Add the messages counted since the last call to what a scrape reads (with the
        request counts: Metrics.publish)."""
        received, sent = self._messages_in, self._messages_out
        self._messages_in = self._messages_out = 0
        if received:
            self.messages.labels("in").inc(received)
        if sent:
            self.messages.labels("out").inc(sent)


_metrics: SocketMetrics | None = None


def get() -> SocketMetrics:
    """The one SocketMetrics of this process tree (made in the master when the app
    is preloaded, and inherited by every worker)."""
    global _metrics
    if _metrics is None:
        _metrics = SocketMetrics()
    return _metrics


class SocketObserver:
    def __init__(
        self, app: ASGIApp, *, access_log: bool, metrics: SocketMetrics | None = None
    ) -> None:
        self.app = app
        self.access_log = access_log
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        incoming = next(
            (value for name, value in scope["headers"] if name == request_id.HEADER), None
        )
        rid = request_id.accept_or_make(incoming)
        token = request_id.bind(rid)
        socket = _Socket()
        started = time.perf_counter()
        metrics = self.metrics

        async def observed_receive() -> Message:
            message = await receive()
            if socket.received(message) and metrics is not None:
                metrics.message_received()
            return message

        async def observed_send(message: Message) -> None:
            if message["type"] in ("websocket.accept", "websocket.http.response.start"):
                headers = [*message.get("headers", ()), (request_id.HEADER, rid.encode())]
                message = {**message, "headers": headers}
            await send(message)
            what = socket.sent(message)
            if metrics is not None and what is not None:
                if what == "message":
                    metrics.message_sent()
                else:
                    metrics.open.inc()

        try:
            await self.app(scope, observed_receive, observed_send)
        finally:
            elapsed = time.perf_counter() - started
            if self.metrics is not None:
                self._count(socket)
            if self.access_log:
                _log(scope, socket, elapsed)
            request_id.unbind(token)

    def _count(self, socket: _Socket) -> None:
        assert self.metrics is not None
        if socket.accepted:
            self.metrics.open.dec()
            self.metrics.closed.labels(close_code_label(socket.close_code)).inc()
        else:
            self.metrics.refused.labels(str(socket.status)).inc()


class _Socket:
    """What one socket did, as its messages show."""

    def __init__(self) -> None:
        self.accepted = False
        self.closed_before_accepting = False
        self.code: int | None = None  # the first close, from either side
        self.http_status: int | None = None
        self.messages_in = 0
        self.messages_out = 0

    def received(self, message: Message) -> bool:
        """Records ``message``; True when it is a message from the client."""
        kind = message["type"]
        if kind == "websocket.receive":
            self.messages_in += 1
            return True
        if kind == "websocket.disconnect" and self.accepted and self.code is None:
            self.code = message.get("code", 1005)
        return False

    def sent(self, message: Message) -> str | None:
        """Records ``message``; ``"message"`` for a message to the client, ``"accepted"``
        when it accepted the socket."""
        kind = message["type"]
        if kind == "websocket.send":
            self.messages_out += 1
            return "message"
        if kind == "websocket.accept":
            self.accepted = True
            return "accepted"
        if kind == "websocket.close":
            if not self.accepted:
                self.closed_before_accepting = True
            elif self.code is None:
                self.code = message.get("code", 1000)
        elif kind == "websocket.http.response.start":
            self.http_status = message["status"]
        return None

    @property
    def close_code(self) -> int:
        return ABNORMAL_CLOSURE if self.code is None else self.code

    @property
    def status(self) -> int:
        """The HTTP status of a refused handshake: the application's own; 403 for a
        close before accepting (as servers answer it); else 500 (it failed)."""
        if self.http_status is not None:
            return self.http_status
        return 403 if self.closed_before_accepting else 500


def _log(scope: Scope, socket: _Socket, elapsed: float) -> None:
    client = scope.get("client")
    address = client[0] if client else "-"
    if socket.accepted:
        outcome, fields = socket.close_code, {"close_code": socket.close_code}
    else:
        outcome, fields = socket.status, {"status": socket.status}
    access_logger.info(
        '%s "WEBSOCKET %s" %d %.1fms %d in %d out',
        address,
        scope["path"],
        outcome,
        elapsed * 1000,
        socket.messages_in,
        socket.messages_out,
        extra={
            "method": "WEBSOCKET",
            "path": scope["path"],
            **fields,
            "duration_ms": round(elapsed * 1000, 2),
            "messages_in": socket.messages_in,
            "messages_out": socket.messages_out,
            "client": address,
        },
    )
